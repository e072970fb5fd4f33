#!/usr/bin/env bash
# Benchmark the HTTP workload (pfor compare, the event-driven mode) against
# its targets and the Python anchors, in one run, on this machine
# (127.0.0.1 only).  About 7 minutes with the defaults.
#
#   bench/http_bench.sh
#
# Part 1, efficiency = ideal / measured, ideal = ceil(N / workers) x latency,
#   for processes (2 workers) and threads (Python's default, 6 on 2 cores),
#   every size >= 50; targets: >= 0.98 at 20 ms, >= 0.99 at 200 ms.
#     pfor compare --latency 20ms  --sizes 50,100,500,1000 --reps $REPS
#     pfor compare --latency 200ms --sizes 50,100,500 (one repetition: ~90 s)
# Part 2, throughput at latency 0, against one `pfor serve` process, with the
#   same number of connections C for wrk and pfor, C in $CONNS (default: 64,
#   then the thread pool's default size, 6 on 2 cores): wrk -t2 and wrk -t1
#   (-d5s, POST of the anchor's JSON body), `pfor compare --url ...
#   --workers C --executors event,threads --sizes $N0` right after wrk -t2:
#   the event-driven mode (one loop per core, C transfers in flight) and the
#   thread pool (C threads, one kept-alive connection each).  Targets: event
#   >= 70 % of wrk, threads >= 50 %.  Medians of $REPS, alternating, and the
#   median of the ratios within each repetition.
# Part 3, 500 requests at 200 ms through the event-driven mode (500 in
#   flight); target < 0.5 s.
# Part 4, the Python anchor py_http.py (urllib through ThreadPoolExecutor(6)
#   and ProcessPoolExecutor(2) against mock_api.py) at the same latencies,
#   reduced to --reps 1 --ns 50,100 to bound the time.
#
# Environment: PFOR (default build/pfor under the repo root), ANCHORS_DIR
# (default <repo>/../shared/anchors, else /work/shared/anchors), REPS (3),
# CONNS (part 2's connection counts, default "64 6" on 2 cores), N0 (100000 requests per zero-latency run), SKIP_PY (1: no
# Python anchor), SKIP_200 (1: no 200 ms sweep).  Outputs go to a temporary
# folder (printed; kept when KEEP=1).  Client and servers share the cores.
set -euo pipefail

ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null || (cd "$(dirname "$0")/.." && pwd))
PFOR=${PFOR:-$ROOT/build/pfor}
ANCHORS_DIR=${ANCHORS_DIR:-$ROOT/../shared/anchors}
[ -f "$ANCHORS_DIR/py_http.py" ] || ANCHORS_DIR=/work/shared/anchors
REPS=${REPS:-3}
# Part 2's connection counts: 64, and the thread pool's default size here
# (Python's ThreadPoolExecutor default, min(32, cores + 4): 6 on 2 cores).
CONNS_LIST=${CONNS:-"64 $(( $(nproc) + 4 < 32 ? $(nproc) + 4 : 32 ))"}
N0=${N0:-100000}
SKIP_PY=${SKIP_PY:-0}
SKIP_200=${SKIP_200:-0}
KEEP=${KEEP:-0}

die() { echo "http_bench: $*" >&2; exit 1; }
[ -x "$PFOR" ] || die "no pfor binary at $PFOR (build first: make build, or set PFOR)"
command -v wrk >/dev/null || die "wrk is not installed (tools/setup.sh installs it)"
command -v python3 >/dev/null || die "python3 is not installed"
[ "$SKIP_PY" = 1 ] || [ -f "$ANCHORS_DIR/py_http.py" ] || die "py_http.py not found (set ANCHORS_DIR)"

TMP=$(mktemp -d /tmp/pfor-http-bench-XXXXXX)
SERVE_PID=""
cleanup() {
    if [ -n "$SERVE_PID" ]; then
        kill -INT "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
    fi
    if [ "$KEEP" = 1 ]; then echo "outputs kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

echo "== http_bench $(date -u +%Y-%m-%dT%H:%M:%SZ): $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)," \
     "$(uname -sr), $("$PFOR" version), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"

# Print the rows of a compare JSON file: executor workers N wall efficiency p50 p99 errors.
rows() {
    python3 - "$1" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
for r in j["results"]:
    eff = r["efficiency"]
    print("  %-10s W=%-4d N=%-6d wall %8.3f s (min %.3f, max %.3f)  eff %s  p50 %.2f ms  p99 %.2f ms  %8.0f req/s  errors %d"
          % (r["executor"], r["workers"], r["requests"], r["wall_s"], r["wall_min_s"], r["wall_max_s"],
             "%.4f" % eff if eff is not None else "   -  ", r["p50_ms"] or 0, r["p99_ms"] or 0,
             r["requests_per_s"], r["errors"]))
EOF
}

# --- part 1: efficiency -------------------------------------------------------
echo
echo "== part 1: efficiency at 20 ms (target >= 0.98), median of $REPS"
"$PFOR" compare --latency 20ms --sizes 50,100,500,1000 --executors processes,threads \
    --reps "$REPS" --json "$TMP/eff20.json" >/dev/null
rows "$TMP/eff20.json"
if [ "$SKIP_200" != 1 ]; then
    echo "== part 1: efficiency at 200 ms (target >= 0.99), one repetition"
    "$PFOR" compare --latency 200ms --sizes 50,100,500 --executors processes,threads \
        --json "$TMP/eff200.json" >/dev/null
    rows "$TMP/eff200.json"
fi

# --- part 2: zero-latency throughput against wrk ------------------------------
cat >"$TMP/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body   = '{"id": 1, "name": "item-1", "tags": ["a", "b"]}'
wrk.headers["Content-Type"] = "application/json"
EOF
"$PFOR" serve --port 0 >"$TMP/serve.out" 2>"$TMP/serve.err" &
SERVE_PID=$!
for _ in $(seq 100); do grep -q '^listening on ' "$TMP/serve.out" 2>/dev/null && break; sleep 0.1; done
URL="$(sed -n 's/^listening on //p' "$TMP/serve.out")/api/users"
[ "$URL" != "/api/users" ] || die "pfor serve did not start: $(cat "$TMP/serve.err")"
wrk_rps() { # threads connections
    wrk -t"$1" -c"$2" -d5s -s "$TMP/post.lua" "$URL" | awk '/Requests\/sec/ {print $2}'
}
zero_latency() { # connections
    local conns=$1 W2="" W1="" EV="" TH="" r e t
    echo
    echo "== part 2: latency 0, $conns connections, one pfor serve process"
    for r in $(seq "$REPS"); do
        W2="$W2 $(wrk_rps 2 "$conns")"
        "$PFOR" compare --url "$URL" --workers "$conns" --executors event,threads --sizes "$N0" \
            --json "$TMP/zero$conns-$r.json" >/dev/null || die "compare at latency 0 had failures"
        W1="$W1 $(wrk_rps 1 "$conns")"
        read -r e t < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print(r[0]["requests_per_s"], r[1]["requests_per_s"])' "$TMP/zero$conns-$r.json")
        EV="$EV $e"
        TH="$TH $t"
    done
    python3 - "$W2" "$W1" "$EV" "$TH" <<'EOF'
import sys, statistics as st
w2, w1, ev, th = ([float(x) for x in a.split()] for a in sys.argv[1:5])
m = st.median
print("  wrk -t2            %9.0f req/s   (%s)" % (m(w2), ", ".join("%.0f" % x for x in w2)))
print("  wrk -t1            %9.0f req/s   (%s)" % (m(w1), ", ".join("%.0f" % x for x in w1)))
print("  pfor event         %9.0f req/s   (%s)  = %.0f %% of wrk -t2, %.0f %% of wrk -t1  (target >= 70 %%)"
      % (m(ev), ", ".join("%.0f" % x for x in ev), 100 * m(ev) / m(w2), 100 * m(ev) / m(w1)))
print("  pfor threads       %9.0f req/s   (%s)  = %.0f %% of wrk -t2, %.0f %% of wrk -t1  (target >= 50 %%)"
      % (m(th), ", ".join("%.0f" % x for x in th), 100 * m(th) / m(w2), 100 * m(th) / m(w1)))
# Within a repetition wrk and pfor run back to back: the median of those
# ratios cancels slow swings of the machine's other load.
print("  paired (median of the ratios within each repetition): event %.0f %% of wrk -t2, threads %.0f %%"
      % (100 * m([e / w for e, w in zip(ev, w2)]), 100 * m([t / w for t, w in zip(th, w2)])))
EOF
}
for c in $CONNS_LIST; do
    zero_latency "$c"
done
kill -INT "$SERVE_PID"
wait "$SERVE_PID" || true
SERVE_PID=""

# --- part 3: 500 requests at 200 ms, event-driven -----------------------------
echo
echo "== part 3: 500 requests at 200 ms through the event-driven mode (target < 0.5 s), median of $REPS"
"$PFOR" compare --latency 200ms --sizes 500 --executors event --in-flight 500 --reps "$REPS" \
    --json "$TMP/ev200.json" >/dev/null
rows "$TMP/ev200.json"

# --- part 4: the Python anchor ------------------------------------------------
if [ "$SKIP_PY" != 1 ]; then
    echo
    echo "== part 4: Python anchor py_http.py --reps 1 --latencies 20,200 --ns 50,100 (reduced)"
    python3 "$ANCHORS_DIR/py_http.py" --reps 1 --latencies 20,200 --ns 50,100 \
        --modes threads6,processes2 >"$TMP/py_http.jsonl"
    python3 - "$TMP/py_http.jsonl" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    j = json.loads(line)
    if j.get("metric", "").startswith("wall_"):
        print("  %-22s W=%d N=%-4d latency %3g ms  wall %7.3f s  eff %.4f"
              % (j["anchor"], j["workers"], j["n"], j["latency_ms"], j["value"], j["efficiency"]))
EOF
fi
