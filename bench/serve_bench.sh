#!/usr/bin/env bash
# Benchmark `pfor serve` against the Python mock (anchors/mock_api.py) under
# wrk, in one run, on this machine (127.0.0.1 only).
#
#   bench/serve_bench.sh            # ~1 min: 3 x (wrk -t2 -c64 -d5s) per server,
#                                   # then 10,000 connections at 200 ms latency
#
# Part 1, throughput at latency 0: wrk -t2 -c64 -d5s with a POST of a small
# JSON body (the body the anchor's wrk_mock.py uses), REPS times against each
# server, alternating; medians and the ratio pfor / Python are printed.  The
# Python mock runs in its fastest mode (--http11 --nodelay: keep-alive, no
# Nagle), the mode of the 4.6k req/s anchor figure.
#
# Part 2, concurrency: pfor serve --latency 200ms, then wrk -t2 -c10000
# -d10s; reports throughput (the ideal is 10,000 / 0.2 s = 50,000 req/s),
# latency percentiles, socket errors and non-2xx answers.  Needs a
# descriptor limit above 10,000 (the soft limit is raised to the hard one).
#
# Environment: PFOR (the pfor binary; default build/pfor under the repo
# root), ANCHORS_DIR (default <repo>/../shared/anchors, else
# /work/shared/anchors), REPS (3), DURATION (5, seconds per throughput run),
# CONNS (64), BIG_CONNS (10000), BIG_LATENCY (200ms), BIG_DURATION (10).
# Client and server share the machine's cores; see BENCHMARKS.md.
set -euo pipefail

ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null || (cd "$(dirname "$0")/.." && pwd))
PFOR=${PFOR:-$ROOT/build/pfor}
ANCHORS_DIR=${ANCHORS_DIR:-$ROOT/../shared/anchors}
[ -f "$ANCHORS_DIR/mock_api.py" ] || ANCHORS_DIR=/work/shared/anchors
REPS=${REPS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
BIG_CONNS=${BIG_CONNS:-10000}
BIG_LATENCY=${BIG_LATENCY:-200ms}
BIG_DURATION=${BIG_DURATION:-10}

die() { echo "serve_bench: $*" >&2; exit 1; }
[ -x "$PFOR" ] || die "no pfor binary at $PFOR (build first: make build, or set PFOR)"
[ -f "$ANCHORS_DIR/mock_api.py" ] || die "mock_api.py not found (set ANCHORS_DIR)"
command -v wrk >/dev/null || die "wrk is not installed (tools/setup.sh installs it)"
command -v python3 >/dev/null || die "python3 is not installed"

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

cat >"$TMP/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body   = '{"id": 1, "name": "item-1", "tags": ["a", "b"]}'
wrk.headers["Content-Type"] = "application/json"
EOF

# wait_line FILE PATTERN: until FILE has a line matching PATTERN (10 s at most)
wait_line() {
    for _ in $(seq 100); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    die "no '$2' in $1: $(cat "$1")"
}

# start_pfor LATENCY -> sets PFOR_PID, PFOR_PORT
start_pfor() {
    "$PFOR" serve --port 0 --latency "$1" >"$TMP/pfor.out" 2>"$TMP/pfor.err" &
    PFOR_PID=$!
    PIDS+=("$PFOR_PID")
    wait_line "$TMP/pfor.out" '^listening on '
    PFOR_PORT=$(sed -n 's/^listening on http:\/\/.*:\([0-9]*\)$/\1/p' "$TMP/pfor.out")
}

stop_pfor() {
    kill -INT "$PFOR_PID"
    wait "$PFOR_PID" || die "pfor serve exited with status $?"
    PFOR_SUMMARY=$(cat "$TMP/pfor.err")
}

# wrk_run NAME CONNS DURATION TIMEOUT URL: output in $TMP/NAME.txt, req/s echoed
wrk_run() {
    wrk -t2 -c"$2" -d"$3"s --timeout "$4" --latency -s "$TMP/post.lua" "$5" >"$TMP/$1.txt" 2>&1 ||
        die "wrk failed: $(cat "$TMP/$1.txt")"
    awk '/^Requests\/sec:/ {print $2}' "$TMP/$1.txt"
}

errors_of() { # socket errors + non-2xx of a wrk output
    awk '/Socket errors:/ {gsub(",", ""); s += $4 + $6 + $8 + $10}
         /Non-2xx or 3xx responses:/ {s += $5}
         END {print s + 0}' "$1"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

echo "# serve_bench: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $("$PFOR" version), $(wrk -v 2>&1 | head -1), $(python3 --version)"
echo "# anchors: $ANCHORS_DIR"

# ---------------------------------------------------------------- part 1 --
start_pfor 0
python3 "$ANCHORS_DIR/mock_api.py" --port 0 --latency-ms 0 --http11 --nodelay \
    --max-seconds $((REPS * DURATION * 2 + 120)) >"$TMP/py.out" 2>"$TMP/py.err" &
PY_PID=$!
PIDS+=("$PY_PID")
wait_line "$TMP/py.out" '^LISTENING '
PY_PORT=$(awk '/^LISTENING/ {print $2}' "$TMP/py.out")

pf_rps=() py_rps=() pf_err=0 py_err=0
for r in $(seq "$REPS"); do
    pf_rps+=("$(wrk_run pf$r "$CONNS" "$DURATION" 5s "http://127.0.0.1:$PFOR_PORT/api/users")")
    pf_err=$((pf_err + $(errors_of "$TMP/pf$r.txt")))
    py_rps+=("$(wrk_run py$r "$CONNS" "$DURATION" 5s "http://127.0.0.1:$PY_PORT/api/users")")
    py_err=$((py_err + $(errors_of "$TMP/py$r.txt")))
    echo "rep $r: pfor serve ${pf_rps[-1]} req/s, mock_api.py ${py_rps[-1]} req/s"
done
stop_pfor
kill -TERM "$PY_PID"
wait "$PY_PID" || true
pf_med=$(median "${pf_rps[@]}")
py_med=$(median "${py_rps[@]}")
ratio=$(awk -v a="$pf_med" -v b="$py_med" 'BEGIN {printf "%.1f", a / b}')
echo
echo "throughput, wrk -t2 -c$CONNS -d${DURATION}s, POST /api/users, latency 0, median of $REPS:"
echo "  pfor serve:   $pf_med req/s  (runs: ${pf_rps[*]}; errors $pf_err)"
echo "  mock_api.py:  $py_med req/s  (runs: ${py_rps[*]}; errors $py_err; --http11 --nodelay)"
echo "  ratio:        ${ratio}x  (target >= 10x)"
echo "  pfor summary: $PFOR_SUMMARY"
echo "  pfor p50/p99: $(awk '/^ +50%/ {a = $2} /^ +99%/ {b = $2} END {print a " / " b}' "$TMP/pf1.txt")"

# ---------------------------------------------------------------- part 2 --
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
need=$((BIG_CONNS + 100))
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$need" ] ||
    die "descriptor limit $(ulimit -n) < $need: raise it (ulimit -n) for the $BIG_CONNS-connection run"
start_pfor "$BIG_LATENCY"
# halfway through, sample the server's threads, descriptors and memory
(sleep $((BIG_DURATION / 2)) &&
    echo "threads $(awk '/^Threads:/ {print $2}' /proc/"$PFOR_PID"/status)," \
        "open descriptors $(ls /proc/"$PFOR_PID"/fd | wc -l)," \
        "RSS $(awk '/^VmRSS:/ {print $2 " " $3}' /proc/"$PFOR_PID"/status)" >"$TMP/sample.txt") &
SAMPLER=$!
big=$(wrk_run big "$BIG_CONNS" "$BIG_DURATION" 10s "http://127.0.0.1:$PFOR_PORT/api/users")
wait "$SAMPLER" || true
stop_pfor
echo
echo "concurrency, wrk -t2 -c$BIG_CONNS -d${BIG_DURATION}s --timeout 10s, latency $BIG_LATENCY:"
echo "  requests/s:   $big"
echo "  latency:      $(awk '/^ +50%/ {a = $2} /^ +90%/ {b = $2} /^ +99%/ {c = $2} END {print "p50 " a ", p90 " b ", p99 " c}' "$TMP/big.txt")"
echo "  socket errors: $(grep 'Socket errors' "$TMP/big.txt" || echo none)"
echo "  non-2xx:      $(awk '/Non-2xx/ {print $5}' "$TMP/big.txt" | grep . || echo 0)"
echo "  errors total: $(errors_of "$TMP/big.txt")"
echo "  server, mid-run: $(cat "$TMP/sample.txt" 2>/dev/null || echo 'not sampled')"
echo "  pfor summary: $PFOR_SUMMARY"
echo
echo "--- raw wrk output of the $BIG_CONNS-connection run ---"
cat "$TMP/big.txt"
