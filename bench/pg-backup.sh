#!/usr/bin/env bash
# pg-backup against the seed's backup.sh and restore.sh, on the local stack's PostgreSQL 18, on
# one database of at least 1 GB seeded with `recommend-db seed`, side by side in one run.
#
#   backup:  pg-backup backup (custom format, zstd:3, streamed, SHA-256, manifest)
#       vs   pg_dump --format=plain | gzip                 (goal: 2x faster, no larger)
#       and  pg_dump -Fc -Z0 > /dev/null                   (the floor: pg_dump alone)
#   restore: pg-backup restore --jobs 2 (pg_restore in parallel, ANALYZE, row counts)
#       vs   gunzip -c | psql                              (goal: 2x faster)
#
# Usage: bench/pg-backup.sh [ROUNDS] [SCALE]   (needs `cargo xtask stack up`; SCALE 1 = ~1.1 GB)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
scale=${2:-1}

eval "$(cargo xtask stack env)"
# Local disk only, as backup.sh's default; S3 adds the network on both sides alike.
unset S3_BUCKET
export PGPASSWORD; PGPASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
cargo build --release -q -p bins --bin pg-backup --bin recommend-db
bin=${CARGO_TARGET_DIR:-target}/release
pg=(-h "$POSTGRES_HOST" -p "$POSTGRES_PORT" -U "$POSTGRES_USER")
psql() { "$PG_BIN_DIR/psql" -X -q "${pg[@]}" "$@"; }
db=bench_backup
work=$(mktemp -d /var/tmp/pg-backup-bench.XXXXXX)
trap 'rm -rf "$work"; for d in bench_restore_ours bench_restore_psql; do psql -d postgres -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done' EXIT

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
timed() { local out=$1; shift; local start; start=$(now_ms); "$@"; echo $(( $(now_ms) - start )) >> "$work/$out"; }

# The database: the recommendation schema with seed data.
if [ "$(psql -d postgres -Atc "SELECT count(*) FROM pg_database WHERE datname = '$db'")" = 0 ]; then
    "$bin/recommend-db" init --create-db --install-extensions --run-migrations --postgres-db "$db" >/dev/null
    start=$(now_ms)
    "$bin/recommend-db" seed --postgres-db "$db" --clean --seed 1 \
        --users $((25000 * scale)) --items $((125000 * scale)) --behaviors $((1250000 * scale)) --requests $((125000 * scale)) >/dev/null
    echo "seeded $db in $(( ($(now_ms) - start) / 1000 )) s"
fi
size=$(psql -d postgres -Atc "SELECT pg_database_size('$db')")
echo "database $db: $(( size / 1048576 )) MiB, $rounds rounds"

dump_plain_gzip() { "$PG_BIN_DIR/pg_dump" "${pg[@]}" --format=plain "$db" | gzip > "$work/plain.sql.gz"; }
dump_floor() { "$PG_BIN_DIR/pg_dump" "${pg[@]}" -Fc -Z0 "$db" > /dev/null; }
ours_backup() { rm -rf "$work/ours"; POSTGRES_DB=$db "$bin/pg-backup" backup --backup-dir "$work/ours" --tier daily --no-prune >/dev/null; }
for r in $(seq 1 "$rounds"); do
    if (( r % 2 )); then order="ours gzip floor"; else order="floor gzip ours"; fi
    for who in $order; do
        case $who in
            ours) timed backup_ours ours_backup ;;
            gzip) timed backup_gzip dump_plain_gzip ;;
            floor) timed backup_floor dump_floor ;;
        esac
    done
done
ours_size=$(stat -c %s "$work"/ours/daily/*.dump.zst)
gzip_size=$(stat -c %s "$work/plain.sql.gz")
b_ours=$(median < "$work/backup_ours"); b_gzip=$(median < "$work/backup_gzip"); b_floor=$(median < "$work/backup_floor")
echo "backup"
echo "  pg-backup backup (custom, zstd:3)   median ${b_ours} ms, $(( ours_size / 1048576 )) MiB   (runs: $(tr '\n' ' ' < "$work/backup_ours"))"
echo "  pg_dump --format=plain | gzip       median ${b_gzip} ms, $(( gzip_size / 1048576 )) MiB   (runs: $(tr '\n' ' ' < "$work/backup_gzip"))"
echo "  pg_dump -Fc -Z0 > /dev/null (floor) median ${b_floor} ms   (runs: $(tr '\n' ' ' < "$work/backup_floor"))"
awk -v a="$b_ours" -v b="$b_gzip" -v c="$b_floor" -v sa="$ours_size" -v sb="$gzip_size" 'BEGIN {
    printf "  speed-up over pg_dump | gzip: %.2fx (goal >= 2); size ratio %.2f (goal <= 1)\n", b / a, sa / sb
    printf "  overhead over the floor: %.2fx\n", a / c }'

restore_ours() {
    POSTGRES_DB=$db "$bin/pg-backup" restore latest --backup-dir "$work/ours" --target-db bench_restore_ours --jobs 2 --clean --yes --terminate-connections >/dev/null
}
restore_psql() {
    psql -d postgres -c "DROP DATABASE IF EXISTS bench_restore_psql WITH (FORCE)" -c "CREATE DATABASE bench_restore_psql" >/dev/null
    gunzip -c "$work/plain.sql.gz" | psql -v ON_ERROR_STOP=1 -d bench_restore_psql >/dev/null
}
for r in $(seq 1 "$rounds"); do
    if (( r % 2 )); then order="ours psql"; else order="psql ours"; fi
    for who in $order; do
        if [ "$who" = ours ]; then timed restore_ours restore_ours
        else timed restore_psql restore_psql; fi
    done
done
r_ours=$(median < "$work/restore_ours"); r_psql=$(median < "$work/restore_psql")
echo "restore"
echo "  pg-backup restore --jobs 2          median ${r_ours} ms   (runs: $(tr '\n' ' ' < "$work/restore_ours"))"
echo "  gunzip -c | psql                    median ${r_psql} ms   (runs: $(tr '\n' ' ' < "$work/restore_psql"))"
awk -v a="$r_ours" -v b="$r_psql" 'BEGIN { printf "  speed-up: %.2fx (goal >= 2)\n", b / a }'
rows_ours=$(psql -d bench_restore_ours -Atc "SELECT sum(n_live_tup) FROM pg_stat_user_tables")
rows_psql=$(psql -d bench_restore_psql -Atc "ANALYZE" -c "SELECT sum(n_live_tup) FROM pg_stat_user_tables" | tail -1)
echo "  rows restored (statistics estimate): $rows_ours (pg-backup) vs $rows_psql (psql)"
