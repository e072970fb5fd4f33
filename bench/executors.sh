#!/bin/sh
# Executors next to their anchors, in one run on this machine:
#   pfor's executor_bench, Python's concurrent.futures/multiprocessing
#   (anchors/py_executors.py) and the OpenMP loop (anchors/omp_for.c).
# Writes the raw JSON lines to $OUT (default: a temp dir) and prints the
# Markdown section for BENCHMARKS.md (bench/update_section.py puts it there).
#   bench/executors.sh [--reps N] [--update]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
anchors=${ANCHORS_DIR:-$top/../shared/anchors}
[ -d "$anchors" ] || anchors=/work/shared/anchors
out=${OUT:-$(mktemp -d)}
reps=3
update=0
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps=$2; shift 2 ;;
    --update) update=1; shift ;;
    *) echo "usage: $0 [--reps N] [--update]" >&2; exit 2 ;;
  esac
done
bin="$top/build/bench/executor_bench"
[ -x "$bin" ] || { echo "build first: make build" >&2; exit 1; }

echo "bench: OpenMP anchor" >&2
gcc -O2 -fopenmp -o "$out/omp_for" "$anchors/omp_for.c"
timeout 300 "$out/omp_for" --reps "$reps" > "$out/omp_for.jsonl"
echo "bench: Python executors anchor" >&2
timeout 400 python3 "$anchors/py_executors.py" --reps "$reps" > "$out/py_executors.jsonl"
echo "bench: Python dict anchor (combining at the end)" >&2
timeout 400 python3 "$anchors/py_dict.py" --reps "$reps" > "$out/py_dict.jsonl"
echo "bench: pfor" >&2
timeout 600 "$bin" --reps "$reps" > "$out/pfor_executors.jsonl"

python3 "$top/bench/executors_report.py" "$out" > "$out/section.md"
cat "$out/section.md"
if [ "$update" = 1 ]; then
  python3 "$top/bench/update_section.py" "$top/BENCHMARKS.md" executors "$out/section.md"
fi
echo "raw results: $out" >&2
