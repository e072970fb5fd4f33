#!/bin/sh
# Run the PF_MPI tests under mpirun on this machine (make check calls it):
#   tests/mpi/run.sh BUILD_DIR
# Three ranks (rank 0 submits, two workers), loopback only, oversubscribed
# (2 cores here).  --enable-recovery lets the job go on when the "kill" runs
# SIGKILL a worker rank; every run is bounded by `timeout`, and no rank may
# outlive it: each rank writes its pid to a file of this run's, and only
# those pids are checked (and killed), never other checkouts' runs.
set -eu
build=${1:?usage: tests/mpi/run.sh BUILD_DIR}
bin="$build/pfor-mpi-tests"
if [ ! -x "$bin" ]; then
  echo "mpi tests: $bin not built (no MPI found by CMake)" >&2
  exit 1
fi
bin_real=$(readlink -f "$bin")
# CI runs as root; Open MPI refuses that unless told.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export PFOR_MPI_DEAD_AFTER=1
export PFOR_MPI_TEST_PIDS="$build/mpi-ranks.pids" # set per run below
mpi="mpirun --oversubscribe --enable-recovery -x PFOR_MPI_DEAD_AFTER -x PFOR_MPI_TEST_PIDS
     --mca btl self,vader --mca oob_tcp_if_include lo -n 3"

# The pids in file $1 that still run this run's test binary (a pid reused
# by another program since does not count).
left_running() {
  [ -f "$1" ] || return 0
  while read -r p; do
    [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$bin_real" ] && echo "$p"
  done < "$1"
  return 0
}

# A private redis-server on a free loopback port for the "redis" mode (the
# dict shared live across ranks); stopped on exit.
redis_pid=
trap '[ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null; true' EXIT
start_redis() {
  for _ in 1 2 3 4 5; do
    redis_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
      > "$build/mpi-redis-server.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 50); do
      if redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG; then return 0; fi
      kill -0 "$redis_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$redis_pid" 2>/dev/null; redis_pid=
  done
  return 1
}
if ! start_redis; then
  echo "FAIL mpi redis: redis-server did not start (tools/setup.sh installs it)"
  exit 1
fi

fail=0
for mode in semantics kill kill-last kill-idle kill-sending "redis 127.0.0.1 $redis_port"; do
  start=$(date +%s)
  log="$build/mpi-${mode%% *}.log"
  PFOR_MPI_TEST_PIDS="$build/mpi-${mode%% *}.pids"
  rm -f "$PFOR_MPI_TEST_PIDS"
  rc=0
  # shellcheck disable=SC2086
  timeout 120 $mpi "$bin" $mode > "$log" 2>&1 || rc=$?
  # Under --enable-recovery mpirun exits 0 even when rank 0 fails or
  # crashes: the run passes only with rank 0's own last line, no failure.
  if [ "$rc" = 0 ] && grep -qx "${mode%% *}: 0 failed checks" "$log"; then
    echo "ok   mpi ${mode%% *} ($(($(date +%s) - start)) s)"
  else
    echo "FAIL mpi ${mode%% *} (exit $rc): see $log"
    grep -E "FAIL|failed" "$log" | head -20
    fail=1
  fi
  grep '^ok' "$log" | sed 's/^/     /'
  sleep 0.5
  left=$(left_running "$PFOR_MPI_TEST_PIDS")
  if [ -n "$left" ]; then
    echo "FAIL mpi ${mode%% *}: ranks left running:"
    # shellcheck disable=SC2086
    ps -o pid=,args= -p "$(echo $left | tr ' ' ,)" || true
    # shellcheck disable=SC2086
    kill -9 $left 2>/dev/null || true
    fail=1
  fi
done
# `pfor compare --executors ...,mpi` under mpirun adds the MPI line (HTTP
# against the built-in mock, then the CPU workload).
if [ -x "$build/pfor" ]; then
  out="$build/mpi-compare"
  rm -rf "$out" && mkdir -p "$out"
  # shellcheck disable=SC2086
  if timeout 120 $mpi "$build/pfor" compare --executors threads,mpi --sizes 10,20 \
       --latency 5ms --csv "$out/http.csv" > "$out/http.log" 2>&1 &&
     grep -q '^mpi,2,10,' "$out/http.csv" && grep -q '^mpi,2,20,' "$out/http.csv" &&
     timeout 120 $mpi "$build/pfor" compare --workload cpu --quick \
       --executors sequential,mpi --csv "$out/cpu.csv" > "$out/cpu.log" 2>&1 &&
     grep -q '^mpi,2,' "$out/cpu.csv"; then
    echo "ok   mpi pfor compare: the mpi line is in the HTTP and CPU tables"
  else
    echo "FAIL mpi pfor compare: see $out"
    fail=1
  fi
  # without mpirun: one line saying why, and the rest of the run goes on
  if "$build/pfor" compare --executors threads,mpi --sizes 5 --csv "$out/solo.csv" \
       2>&1 | grep -q 'mpi *skipped: not started by mpirun' && grep -q '^threads,' "$out/solo.csv"; then
    echo "ok   mpi pfor compare without mpirun: skipped with a reason"
  else
    echo "FAIL mpi pfor compare without mpirun"
    fail=1
  fi
fi
exit $fail
