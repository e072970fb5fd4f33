#!/bin/sh
# The PF_MPI executor next to the process pool, in one run on this machine:
# bench/mpi_bench (built by `make build`) under mpirun with 2 and 3 ranks
# (1 and 2 worker ranks; 2 cores here, so 3 ranks oversubscribe rank 0's
# engine thread with the workers).  JSON lines on stdout.
#   bench/mpi_bench.sh [--reps N]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
reps=3
[ "${1:-}" = "--reps" ] && reps=$2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for n in 2 3; do
  echo "# mpirun -n $n mpi_bench --reps $reps, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  timeout 600 mpirun --oversubscribe --mca btl self,vader --mca oob_tcp_if_include lo \
    -n "$n" "$top/build/bench/mpi_bench" --reps "$reps" 2>/dev/null
done
