#!/bin/sh
# Run the PF_MPI tests under mpirun on this machine (make check calls it):
#   tests/mpi/run.sh BUILD_DIR
# Three ranks (rank 0 submits, two workers), loopback only, oversubscribed
# (2 cores here).  --enable-recovery lets the job go on when the "kill" run
# SIGKILLs a worker rank; every run is bounded by `timeout`, and no rank may
# outlive it.
set -eu
build=${1:?usage: tests/mpi/run.sh BUILD_DIR}
bin="$build/pfor-mpi-tests"
if [ ! -x "$bin" ]; then
  echo "mpi tests: $bin not built (no MPI found by CMake)" >&2
  exit 1
fi
# CI runs as root; Open MPI refuses that unless told.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export PFOR_MPI_DEAD_AFTER=1
mpi="mpirun --oversubscribe --enable-recovery -x PFOR_MPI_DEAD_AFTER
     --mca btl self,vader --mca oob_tcp_if_include lo -n 3"

fail=0
for mode in semantics kill; do
  start=$(date +%s)
  # shellcheck disable=SC2086
  if timeout 120 $mpi "$bin" "$mode" > "$build/mpi-$mode.log" 2>&1; then
    echo "ok   mpi $mode ($(($(date +%s) - start)) s)"
  else
    echo "FAIL mpi $mode (exit $?): see $build/mpi-$mode.log"
    grep -E "FAIL|failed" "$build/mpi-$mode.log" | head -20
    fail=1
  fi
  grep '^ok' "$build/mpi-$mode.log" | sed 's/^/     /'
  sleep 0.5
  if pgrep -f "$bin" > /dev/null; then
    echo "FAIL mpi $mode: ranks left running:"; pgrep -af "$bin"
    pkill -9 -f "$bin" || true
    fail=1
  fi
done
exit $fail
