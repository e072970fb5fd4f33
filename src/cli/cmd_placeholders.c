/*
 * TEMPORARY scaffolding while the subcommands are written in parallel
 * branches; each branch deletes its entry.  Must not exist on a landing.
 */
#include <stdio.h>

#include "cli.h"

int pf_cli_compare(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fputs("pfor: compare is not built yet\n", stderr);
    return 1;
}
