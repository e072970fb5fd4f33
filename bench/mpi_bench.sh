#!/bin/sh
# The PF_MPI executor next to the process pool, in one run on this machine:
# bench/mpi_bench (built by `make build`) under mpirun with 2 and 3 ranks
# (1 and 2 worker ranks; 2 cores here, so 3 ranks oversubscribe rank 0's
# engine thread with the workers), each rank free to use every core
# (--bind-to none, as docs/mpi.md advises for ranks that run threads); then
# the CPU kernel once more under mpirun's default binding (one core per
# rank for 2 ranks), to show what that costs.  JSON lines on stdout, each
# run's binding in a "# ..." line on stderr.
#   bench/mpi_bench.sh [--reps N]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
reps=3
[ "${1:-}" = "--reps" ] && reps=$2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi="mpirun --oversubscribe --mca btl self,vader --mca oob_tcp_if_include lo"
for n in 2 3; do
  echo "# mpirun -n $n --bind-to none mpi_bench --reps $reps, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  # shellcheck disable=SC2086
  timeout 600 $mpi --bind-to none -n "$n" "$top/build/bench/mpi_bench" --reps "$reps" 2>/dev/null
done
echo "# mpirun -n 2 (default binding: a core per rank) mpi_bench --only primes --reps $reps" >&2
# shellcheck disable=SC2086
timeout 600 $mpi -n 2 "$top/build/bench/mpi_bench" --only primes --reps "$reps" 2>/dev/null |
  sed 's/"bench": "mpi"/"bench": "mpi", "binding": "core"/'
