#!/bin/sh
# Install pfor from a build directory into a scratch prefix, then build and
# run small consumer programs the ways C users find libraries: with
# pkg-config and with CMake's find_package(pfor), and (where MPI was found)
# an MPI program with pkg-config pfor-mpi and mpicc.
#   tests/install/check_install.sh BUILD_DIR
set -eu
build=$(cd "${1:?usage: check_install.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
prefix="$scratch/prefix"

cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name pfor.pc | head -n 1)")/..
test -f "$prefix/include/pfor/pfor.h"

# 1. pkg-config, shared library
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc -std=c11 -Wall -Werror -o "$scratch/consumer_pc" "$here/consumer.c" \
   $(pkg-config --cflags --libs pfor) -Wl,-rpath,"$libdir"
"$scratch/consumer_pc" | grep -qx "consumer: 285 ok"

# 2. CMake find_package
mkdir -p "$scratch/cm"
cat > "$scratch/cm/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.16)
project(consumer C)
find_package(pfor 0.1 REQUIRED)
add_executable(consumer_cmake "$here/consumer.c")
target_link_libraries(consumer_cmake PRIVATE pfor::pfor)
add_executable(consumer_static "$here/consumer.c")
target_link_libraries(consumer_static PRIVATE pfor::pfor_static)
CMAKE
cmake -S "$scratch/cm" -B "$scratch/cm/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$scratch/cm/build" >/dev/null
"$scratch/cm/build/consumer_cmake" | grep -qx "consumer: 285 ok"
"$scratch/cm/build/consumer_static" | grep -qx "consumer: 285 ok"
msg="install: pkg-config and find_package(pfor) consumers built and ran"

# 3. pkg-config pfor-mpi, built with the MPI wrapper, run under mpirun
if [ -f "$libdir/pkgconfig/pfor-mpi.pc" ] && command -v mpicc > /dev/null; then
  mpicc -std=c11 -Wall -Werror -o "$scratch/consumer_mpi" "$here/consumer_mpi.c" \
     $(pkg-config --cflags --libs pfor-mpi)
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 60 \
    mpirun --oversubscribe --mca btl self,vader --mca oob_tcp_if_include lo -n 2 \
    "$scratch/consumer_mpi" 2>/dev/null | grep -qx "consumer_mpi: 285 ok"
  msg="$msg; so did a pkg-config pfor-mpi consumer under mpirun"
fi
echo "$msg"
