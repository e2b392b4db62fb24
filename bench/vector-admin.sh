#!/usr/bin/env bash
# vector-admin against pymilvus 2.3.7 on the stack's Milvus 2.3.5, both sides in one run on the
# same data file:
#   insert: ROWS vectors of dim 256 in batches of 1,000, then flush (goal: 2x pymilvus' rows/s)
#   search: IVF_FLAT nlist 1024, 1,000 sequential top-10 searches at nprobe 16 (goal: p50 and
#           p99 no higher than pymilvus')
#   presets: each preset this Milvus builds (all but DISKANN): build time, p50/p99 and recall@10
#           against the exact (FLAT) answers, on vectors around 2,000 centres with noise wider
#           than their spread.
# Rounds alternate which side goes first.
#
# Usage: bench/vector-admin.sh [ROUNDS] [ROWS]   (needs `cargo xtask stack up`)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
rows=${2:-100000}
dim=256
queries=1000

eval "$(cargo xtask stack env)"
venv=${DBKIT_CACHE:-/var/cache/dbkit}/tools/pymilvus-2.3.7
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  # pymilvus 2.3.7 imports only with these older companions.
  "$venv/bin/pip" install -q "pymilvus==2.3.7" "setuptools<70" "marshmallow<4" "environs<10" numpy
fi
cargo build --release -q -p vector-admin --example milvus_bench
bin=${CARGO_TARGET_DIR:-target}/release/examples/milvus_bench
work=$(mktemp -d /var/tmp/vector-admin-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$bin" data "$work/vectors.f32" "$rows" "$dim" "$queries"

ours() { "$bin" "$1" "$work/vectors.f32" "$rows" "$dim" "$2" "$3"; }
theirs() { "$venv/bin/python" bench/vector_admin_pymilvus.py "$1" "$work/vectors.f32" "$rows" "$dim" "$2" "$3"; }
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) = 1 ]; then
    ours insert 1000 bench_va_ours; theirs insert 1000 bench_va_theirs
    ours search "$queries" bench_va_ours; theirs search "$queries" bench_va_theirs
  else
    theirs insert 1000 bench_va_theirs; ours insert 1000 bench_va_ours
    theirs search "$queries" bench_va_theirs; ours search "$queries" bench_va_ours
  fi
done | tee "$work/rounds.jsonl"
python3 - "$work/rounds.jsonl" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(side, key):
    return statistics.median(l[key] for l in lines if l.get("side") == side and key in l)
for key in ["rows_per_s", "insert_s", "flush_s", "p50_ms", "p99_ms"]:
    a, b = med("vector-admin", key), med("pymilvus", key)
    print(f"median {key}: vector-admin {a:.3f}, pymilvus {b:.3f}, ratio {a / b:.2f}")
PY
ours presets "$queries" bench_va_ours
