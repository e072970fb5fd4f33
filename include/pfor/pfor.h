/*
 * pfor: parallel for-loops for C, with futures, process pools that survive
 * crashing tasks, and shared dictionaries.
 *
 * This umbrella header includes the whole public API.  Link with
 * `pkg-config --libs pfor` or `find_package(pfor)` + `pfor::pfor`.
 */
#ifndef PFOR_PFOR_H
#define PFOR_PFOR_H

#include "pfor/version.h"
#include "pfor/error.h"
#include "pfor/task.h"
#include "pfor/executor.h"
#include "pfor/loop.h"
#include "pfor/dict.h"
#include "pfor/serve.h"
#include "pfor/http.h"

#endif /* PFOR_PFOR_H */
