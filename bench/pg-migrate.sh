#!/usr/bin/env bash
# pg-migrate against psql, on the local stack's PostgreSQL 18, side by side in one run.
#
# 1. migrate: the recommendation schema (migrations/V001-V005) plus 120 generated scripts of
#    tables, indexes, functions, views and a few thousand rows, applied by `pg-migrate migrate`
#    on one fresh database and by `psql -1 -f ... -f ...` (one process, one transaction: the
#    fastest way psql has) on another. Goal: pg-migrate at most 1.1 times psql.
# 2. info with 1,000 applied migrations. Goal: under 100 ms.
# 3. process start to first query: `pg-migrate --version` (start-up alone) and `info` on a
#    database without history (start, connect, three queries, exit).
#
# Usage: bench/pg-migrate.sh [ROUNDS]     (needs `cargo xtask stack up`)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}

eval "$(cargo xtask stack env)"
export PGPASSWORD; PGPASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
cargo build --release -q -p bins --bin pg-migrate
bin=${CARGO_TARGET_DIR:-target}/release/pg-migrate
psql=("$PG_BIN_DIR/psql" -X -q -h "$POSTGRES_HOST" -p "$POSTGRES_PORT" -U "$POSTGRES_USER")
url() { echo "postgres://$POSTGRES_USER@$POSTGRES_HOST:$POSTGRES_PORT/$1"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
fresh_db() {
    "${psql[@]}" -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null
    "${psql[@]}" -d "$1" -c "CREATE EXTENSION pg_trgm; CREATE EXTENSION vector" >/dev/null
}

# The script set.
mkdir -p "$work/sql"
cp migrations/V00*.sql "$work/sql/"
for i in $(seq 1 120); do
    v=$((100 + i))
    cat > "$work/sql/V${v}__feature_${i}.sql" <<SQL
CREATE TABLE feature_$i (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id uuid NOT NULL,
    name text NOT NULL,
    score double precision NOT NULL DEFAULT 0,
    tags text[] NOT NULL DEFAULT '{}',
    payload jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feature_${i}_user ON feature_$i (user_id, created_at DESC);
CREATE INDEX feature_${i}_payload ON feature_$i USING gin (payload jsonb_path_ops);
CREATE OR REPLACE FUNCTION feature_${i}_touch() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    NEW.created_at := now();
    RETURN NEW;
END;
\$\$;
CREATE TRIGGER feature_${i}_touch BEFORE UPDATE ON feature_$i FOR EACH ROW EXECUTE FUNCTION feature_${i}_touch();
INSERT INTO feature_$i (user_id, name, score, tags, payload)
SELECT gen_random_uuid(), 'row ' || g, random(), ARRAY['a', 'b'], jsonb_build_object('g', g)
FROM generate_series(1, 200) g;
CREATE VIEW feature_${i}_top AS SELECT * FROM feature_$i WHERE score > 0.9;
COMMENT ON TABLE feature_$i IS 'Feature $i';
SQL
done
# psql does not know placeholders: give it the files with the value in.
mkdir -p "$work/psql"
for f in "$work"/sql/*.sql; do sed 's/\${partitions_ahead}/3/g' "$f" > "$work/psql/$(basename "$f")"; done
files=$(ls "$work"/psql/*.sql | sort -V)
psql_files=(); for f in $files; do psql_files+=(-f "$f"); done
count=$(ls "$work"/sql/*.sql | wc -l)

echo "migrate: $count scripts, $rounds rounds"
: > "$work/ours"; : > "$work/theirs"
for r in $(seq 1 "$rounds"); do
    fresh_db bench_ours; fresh_db bench_psql
    if (( r % 2 )); then order="ours theirs"; else order="theirs ours"; fi
    for who in $order; do
        start=$(now_ms)
        if [ "$who" = ours ]; then
            "$bin" --url "$(url bench_ours)" --locations "$work/sql" --placeholder partitions_ahead=3 migrate >/dev/null
        else
            "${psql[@]}" -d bench_psql -1 -v ON_ERROR_STOP=1 "${psql_files[@]}" >/dev/null
        fi
        echo $(( $(now_ms) - start )) >> "$work/$who"
    done
done
ours=$(median < "$work/ours"); theirs=$(median < "$work/theirs")
echo "  pg-migrate migrate   median ${ours} ms   (runs: $(tr '\n' ' ' < "$work/ours"))"
echo "  psql -1 -f ...       median ${theirs} ms   (runs: $(tr '\n' ' ' < "$work/theirs"))"
awk -v a="$ours" -v b="$theirs" 'BEGIN {printf "  ratio pg-migrate / psql = %.2f (goal <= 1.10)\n", a / b}'
tables_ours=$("${psql[@]}" -d bench_ours -Atc "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
tables_psql=$("${psql[@]}" -d bench_psql -Atc "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
echo "  same result: $tables_ours tables (pg-migrate, with its history table) vs $tables_psql (psql)"

echo "info with 1,000 applied migrations"
mkdir -p "$work/many"
for i in $(seq 1 1000); do echo "CREATE TABLE t_$i (id int);" > "$work/many/V${i}__t_$i.sql"; done
fresh_db bench_many
"$bin" --url "$(url bench_many)" --locations "$work/many" migrate >/dev/null
: > "$work/info"
for _ in $(seq 1 21); do
    start=$(now_ms); "$bin" --url "$(url bench_many)" --locations "$work/many" info >/dev/null; echo $(( $(now_ms) - start )) >> "$work/info"
done
echo "  pg-migrate info      median $(median < "$work/info") ms over 21 runs (goal < 100 ms)"

echo "process start to first query"
mkdir -p "$work/none"
: > "$work/version"; : > "$work/first"
for _ in $(seq 1 21); do
    start=$(now_ms); "$bin" --version >/dev/null; echo $(( $(now_ms) - start )) >> "$work/version"
    start=$(now_ms); "$bin" --url "$(url bench_ours)" --locations "$work/none" --table no_history info >/dev/null; echo $(( $(now_ms) - start )) >> "$work/first"
done
echo "  pg-migrate --version median $(median < "$work/version") ms (start-up alone)"
echo "  info, no history     median $(median < "$work/first") ms (start, connect, first queries, exit)"

for db in bench_ours bench_psql bench_many; do "${psql[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; done
