#!/bin/sh
# The shared-dictionary benchmark, in one run on one machine:
#   1. bench/dict_bench (C): sets/s, gets/s and updates/s with 16-byte keys and
#      values, 1 and 2 workers on distinct keys, for the shm dict from forked
#      processes (one call per operation, and pf_dict_set_many/get_many in
#      batches of 1000) and the local dict from threads (N = 200 000 and 2 000 000),
#      and the redis backend plain and pipelined, against a private
#      redis-server started here (no persistence, 127.0.0.1, free port);
#      the workers claim their keys in blocks of 1000 from a shared counter
#      (dict_bench --static: equal slices instead);
#      The shm and local runs are made twice: with the workers free, as a
#      program would run them, and bound one per CPU (--pin; the single
#      worker on each CPU in turn), which measures the dict rather than the
#      scheduler's placement of the workers (see bench/dict_bench.c);
#   2. ../shared/anchors/py_dict.py: Python's Manager().dict() and a dict
#      behind a threading.Lock, on the same machine, right after;
#   3. ../shared/anchors/c_hash_ceiling.c (built here): a plain C hash table
#      per process, nothing shared, with 1 and 2 processes: how far two
#      memory-bound processes scale on this machine at this moment;
#   4. a Markdown table of the figures and their ratios to Manager().dict().
#
# Usage:  sh bench/dict_bench.sh            (from the repository root; ~4 min)
# Environment:
#   BUILD_DIR    build folder holding bench/dict_bench (default: build; built if missing)
#   ANCHORS_DIR  the anchors (default: <repo>/../shared/anchors, else /work/shared/anchors)
#   REPS         repetitions per figure (default 5; the median is reported)
#   OUT          folder for the JSON lines and the table (default: a new temp folder)
# The 2-core machine is shared: the 1-minute load average is printed before and
# after; figures taken while other work runs are lower and noisier.
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
reps="${REPS:-5}"
anchors="${ANCHORS_DIR:-$root/../shared/anchors}"
[ -f "$anchors/py_dict.py" ] || anchors=/work/shared/anchors
out="${OUT:-$(mktemp -d)}"
mkdir -p "$out"

if [ ! -x "$build/bench/dict_bench" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" --target bench_dict_bench -j2 >/dev/null
fi

tmp="$(mktemp -d)"
rpid=""
cleanup() {
  if [ -n "$rpid" ]; then
    kill "$rpid" 2>/dev/null || true
    wait "$rpid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

load() { cut -d' ' -f1 /proc/loadavg; }
echo "load average before: $(load)" | tee "$out/load.txt"

port=""
if command -v redis-server >/dev/null 2>&1; then
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$tmp" \
    --logfile "$tmp/redis.log" --daemonize no >/dev/null 2>&1 &
  rpid=$!
  i=0
  until [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = "PONG" ]; do
    i=$((i + 1))
    [ $i -gt 100 ] && { echo "redis-server did not start" >&2; exit 1; }
    sleep 0.1
  done
else
  echo "redis-server not installed: the redis rows are skipped" >&2
fi

bench="$build/bench/dict_bench"
{
  "$bench" --only shm,batched,local --reps "$reps" --n 200000
  "$bench" --only shm,batched,local --reps "$reps" --n 2000000 | sed 's/"anchor": "dict_bench\./"anchor": "dict_bench_large./'
  "$bench" --only shm,local --reps "$reps" --n 200000 --pin | sed 's/"anchor": "dict_bench\./"anchor": "dict_bench_pinned./'
  "$bench" --only shm,local --reps "$reps" --n 2000000 --pin |
    sed 's/"anchor": "dict_bench\./"anchor": "dict_bench_pinned_large./'
  if [ -n "$port" ]; then
    "$bench" --only redis --reps "$reps" --redis-port "$port" --n-redis 50000 --n-pipelined 1000000
  fi
} | tee "$out/dict_bench.jsonl"
if [ -n "$rpid" ]; then
  kill "$rpid" 2>/dev/null || true
  wait "$rpid" 2>/dev/null || true
  rpid=""
fi

timeout 600 python3 "$anchors/py_dict.py" --reps 3 | tee "$out/py_dict.jsonl"
cc -O2 -o "$tmp/c_hash_ceiling" "$anchors/c_hash_ceiling.c"
for p in 1 2; do
  "$tmp/c_hash_ceiling" --procs "$p" --ns 200000,2000000 --reps "$reps"
done | tee "$out/c_hash_ceiling.jsonl"
echo "load average after: $(load)" | tee -a "$out/load.txt"

python3 - "$out" <<'EOF' | tee "$out/table.md"
import json, os, statistics, sys
out = sys.argv[1]
rows = {}
for name in ("dict_bench.jsonl", "py_dict.jsonl", "c_hash_ceiling.jsonl"):
    for line in open(os.path.join(out, name)):
        line = line.strip()
        if not line.startswith("{"):
            continue
        o = json.loads(line)
        if "value" in o:
            rows[(o["anchor"], o["metric"])] = o
def v(a, m, key="value"):
    o = rows.get((a, m))
    return o[key] if o else None
mgr = {1: {"set": v("py_dict.manager", "set_throughput_1proc"), "get": v("py_dict.manager", "get_throughput_1proc")},
       2: {"set": v("py_dict.manager", "set_throughput_2proc"), "get": v("py_dict.manager", "get_throughput_2proc")}}
def fmt(x):
    if x is None:
        return "-"
    return "%.2f M" % (x / 1e6) if x >= 1e6 else "%.0f k" % (x / 1e3)
def ratio(x, y):
    return "-" if x is None or not y else "%.0fx" % (x / y) if x / y >= 10 else "%.1fx" % (x / y)
print("Median of the repetitions, best in brackets.")
print()
print("| backend | workers | N | sets/s | gets/s | updates/s | sets vs Manager | gets vs Manager |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
order = [("dict_bench.shm", "proc", "shm dict, processes"),
         ("dict_bench.shm_batched", "proc", "shm dict, processes, set_many/get_many"),
         ("dict_bench.local", "thread", "local dict, threads"),
         ("dict_bench_pinned.shm", "proc", "shm dict, processes, pinned"),
         ("dict_bench_pinned.local", "thread", "local dict, threads, pinned"),
         ("dict_bench_large.shm", "proc", "shm dict, processes"),
         ("dict_bench_large.shm_batched", "proc", "shm dict, processes, set_many/get_many"),
         ("dict_bench_large.local", "thread", "local dict, threads"),
         ("dict_bench_pinned_large.shm", "proc", "shm dict, processes, pinned"),
         ("dict_bench_pinned_large.local", "thread", "local dict, threads, pinned"),
         ("dict_bench.redis", "proc", "redis, plain"), ("dict_bench.redis_pipelined", "proc", "redis, pipelined (batches of 1000)")]
for anchor, unit, label in order:
    for w in (1, 2):
        s = rows.get((anchor, "set_throughput_%d%s" % (w, unit)))
        if not s:
            continue
        cells = []
        for ph in ("set", "get", "update"):
            m = "%s_throughput_%d%s" % (ph, w, unit)
            cells.append("%s (%s)" % (fmt(v(anchor, m)), fmt(v(anchor, m, "max"))))
        g = v(anchor, "get_throughput_%d%s" % (w, unit))
        print("| %s | %d | %s | %s | %s | %s | %s | %s |" % (label, w, "{:,}".format(s["n"]), cells[0], cells[1], cells[2],
              ratio(s["value"], mgr[w]["set"]), ratio(g, mgr[w]["get"])))
for w in (1, 2):
    print("| Python Manager().dict() | %d | 20,000 | %s | %s | - | 1x | 1x |" % (w, fmt(mgr[w]["set"]), fmt(mgr[w]["get"])))
for m, label in (("set_throughput_1thread_lock_n20000", "Python dict + Lock, 1 thread"), ("set_throughput_2thread_lock_n20000", "Python dict + Lock, 2 threads"),
                 ("set_throughput_2thread_lock_n1000000", "Python dict + Lock, 2 threads")):
    o = rows.get(("py_dict.plain_dict", m))
    if o:
        print("| %s | %d | %s | %s | - | - | %s | - |" % (label, o["threads"], "{:,}".format(o["n"]), fmt(o["value"]),
              ratio(o["value"], mgr[1]["set"])))
print()
print("The same operations per CPU-second of the busiest worker (medians): what the")
print("workers achieve while they hold a core, whatever else the machine runs.")
print()
print("| backend | workers | N | sets/s | gets/s | updates/s |")
print("|---|---:|---:|---:|---:|---:|")
for anchor, unit, label in (row for row in order if ".redis" not in row[0]):
    for w in (1, 2):
        s = rows.get((anchor, "set_cpu_throughput_%d%s" % (w, unit)))
        if s:
            print("| %s | %d | %s | %s | %s | %s |" % (label, w, "{:,}".format(s["n"]), fmt(s["value"]),
                  fmt(v(anchor, "get_cpu_throughput_%d%s" % (w, unit))), fmt(v(anchor, "update_cpu_throughput_%d%s" % (w, unit)))))
print()
print("2 workers / 1 worker (medians; bests in brackets; after the semicolons: per CPU-second,")
print("then the median of the ratios within each repetition, whose 1- and 2-worker runs are")
print("back to back, so that slow swings of the machine's other load cancel):")
print()
for anchor, unit, label in (("dict_bench.shm", "proc", "shm, N = 200k"),
                            ("dict_bench.shm_batched", "proc", "shm batched, N = 200k"),
                            ("dict_bench.local", "thread", "local, N = 200k"),
                            ("dict_bench_pinned.shm", "proc", "shm, N = 200k, pinned"),
                            ("dict_bench_pinned.local", "thread", "local, N = 200k, pinned"),
                            ("dict_bench_large.shm", "proc", "shm, N = 2M"),
                            ("dict_bench_large.shm_batched", "proc", "shm batched, N = 2M"),
                            ("dict_bench_large.local", "thread", "local, N = 2M"),
                            ("dict_bench_pinned_large.shm", "proc", "shm, N = 2M, pinned"),
                            ("dict_bench_pinned_large.local", "thread", "local, N = 2M, pinned")):
    parts = []
    for phase in ("set", "get", "update"):
        m1, m2 = "%s_throughput_1%s" % (phase, unit), "%s_throughput_2%s" % (phase, unit)
        a, b = v(anchor, m1), v(anchor, m2)
        if a and b:
            c1 = v(anchor, "%s_cpu_throughput_1%s" % (phase, unit))
            c2 = v(anchor, "%s_cpu_throughput_2%s" % (phase, unit))
            s1, s2 = v(anchor, m1, "samples"), v(anchor, m2, "samples")
            paired = [y / x for x, y in zip(s1, s2) if x > 0]
            pm = statistics.median(paired) if paired else float("nan")
            parts.append("%ss %.2fx (%.2fx; %.2fx; %.2fx)" % (phase, b / a, v(anchor, m2, "max") / v(anchor, m1, "max"), c2 / c1, pm))
    if parts:
        print("- %s: %s" % (label, ", ".join(parts)))
print()
print("This machine's own scaling at the time (anchor c_hash_ceiling: one plain C hash table")
print("per process, nothing shared, no growth, no locks), inserts/s, 1 and 2 processes:")
print()
for n, label in ((200000, "200k"), (2000000, "2M")):
    a = v("c_hash_ceiling.1proc", "insert_per_s_n%d" % n)
    b = v("c_hash_ceiling.2proc", "insert_per_s_n%d_2proc_aggregate" % n)
    if a and b:
        print("- N = %s: %s and %s = %.2fx" % (label, fmt(a), fmt(b), b / a))
print()
print("Against the targets (medians, workers free; shm dict from processes):")
print()
def verdict(ok):
    return "met" if ok else "NOT met"
for anchor, label in (("dict_bench.shm", "200k"), ("dict_bench_large.shm", "2M"),
                      ("dict_bench.shm_batched", "200k, set_many/get_many"),
                      ("dict_bench_large.shm_batched", "2M, set_many/get_many")):
    s2, g2 = v(anchor, "set_throughput_2proc"), v(anchor, "get_throughput_2proc")
    s1, g1 = v(anchor, "set_throughput_1proc"), v(anchor, "get_throughput_1proc")
    u1, u2 = v(anchor, "update_throughput_1proc"), v(anchor, "update_throughput_2proc")
    if not (s1 and s2 and g1 and g2 and u1 and u2):
        continue
    print("- N = %s: 2 processes >= 5 M sets/s: %s (%s); gets >= sets: %s; 2 vs 1 >= 1.6x: "
          "sets %.2fx, gets %.2fx, updates %.2fx: %s"
          % (label, fmt(s2), verdict(s2 >= 5e6), verdict(g1 >= s1 and g2 >= s2), s2 / s1, g2 / g1, u2 / u1,
             verdict(min(s2 / s1, g2 / g1, u2 / u1) >= 1.6)))
best = None
for w in (1, 2):
    p = v("dict_bench.redis_pipelined", "set_throughput_%dproc" % w)
    if p and mgr[w]["set"]:
        r = p / mgr[w]["set"]
        best = r if best is None else min(best, r)
if best is not None:
    print("- redis pipelined >= 10x Manager().dict() (sets, 1 and 2 workers): %.0fx at least: %s"
          % (best, verdict(best >= 10)))
EOF
echo "(JSON lines and the table are in $out)"
