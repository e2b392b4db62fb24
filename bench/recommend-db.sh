#!/usr/bin/env bash
# recommend-db seed and cleanup against what one would otherwise write by hand, on the local
# stack's PostgreSQL 18, side by side in one run on the same data.
#
#   seed:    recommend-db seed: BEHAVIORS behaviours over 12 months, generated and streamed with COPY
#       vs   psql \copy user_behaviors FROM a file holding the same rows       (the floor; goal: within 1.5x)
#       vs   INSERT INTO user_behaviors SELECT ... FROM generate_series(1, BEHAVIORS)
#            The three load the same table in the same state: empty, in one transaction, with only
#            its primary key (the seed drops the other indexes for the load and rebuilds them after;
#            the whole command's time, index rebuild and derived tables included, is shown too).
#   cleanup: recommend-db cleanup: the oldest 3 of 12 months go, with the cutoff mid-month and on
#            the first of a month
#       vs   DELETE FROM user_behaviors WHERE created_at < the same cutoff, on an identical copy
#            (goal: 50x faster), and that DELETE followed by the aftercare cleanup does too
#            (VACUUM ANALYZE, refresh of the materialized views).
#
# Usage: bench/recommend-db.sh [ROUNDS] [BEHAVIORS]   (needs `cargo xtask stack up`)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
behaviors=${2:-1000000}

eval "$(cargo xtask stack env)"
export PGPASSWORD; PGPASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
cargo build --release -q -p bins --bin recommend-db
bin=${CARGO_TARGET_DIR:-target}/release
pg=(-h "$POSTGRES_HOST" -p "$POSTGRES_PORT" -U "$POSTGRES_USER")
psql() { PGOPTIONS='-c client_min_messages=warning' "$PG_BIN_DIR/psql" -X -q -v ON_ERROR_STOP=1 "${pg[@]}" "$@"; }
db=bench_seed
work=$(mktemp -d /var/tmp/recommend-db-bench.XXXXXX)
drop_copies() { for d in bench_cleanup_ours bench_cleanup_delete; do psql -d postgres -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done; }
trap 'rm -rf "$work"; drop_copies' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
# The milliseconds psql's \timing printed for the one timed statement of a script.
timing_ms() { grep '^Time:' | awk '{print $2}'; }

psql -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
"$bin/recommend-db" init --create-db --install-extensions --run-migrations --postgres-db "$db" >/dev/null
echo "seed: $behaviors behaviours (10,000 users, 50,000 items, 12 months), $rounds rounds"

# Empty user_behaviors with only its primary key, in an open transaction; the caller rolls back.
prelude="BEGIN;
TRUNCATE user_behaviors;
SELECT format('DROP INDEX %s', i.indexrelid::regclass) FROM pg_index i
 WHERE i.indrelid = 'user_behaviors'::regclass
   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) \\gexec"
floor() {
    psql -d "$db" <<SQL | timing_ms
$prelude
\\timing on
\\copy user_behaviors FROM '$work/behaviors.copy'
\\timing off
ROLLBACK;
SQL
}
insert_select() {
    psql -d "$db" <<SQL | timing_ms
$prelude
\\timing on
INSERT INTO user_behaviors (user_id, item_id, action, value, context, session_id, device_type, created_at)
SELECT u.ids[1 + floor(random() * cardinality(u.ids))::int],
       i.ids[1 + floor(random() * cardinality(i.ids))::int],
       (ARRAY['view', 'click', 'like', 'dislike', 'buy', 'share', 'rating', 'add_to_cart', 'comment', 'skip'])[1 + floor(random() * 10)::int],
       round((random() * 100)::numeric, 2),
       jsonb_build_object('source', 'home', 'position', g % 50, 'page', 1 + g % 5),
       md5((g / 8)::text),
       (ARRAY['mobile', 'desktop', 'tablet', 'tv', 'other'])[1 + floor(random() * 5)::int],
       now() - random() * interval '360 days'
FROM generate_series(1, $behaviors) g, (SELECT array_agg(id) AS ids FROM users) u, (SELECT array_agg(id) AS ids FROM items) i;
\\timing off
ROLLBACK;
SQL
}
ours_seed() {
    "$bin/recommend-db" seed --postgres-db "$db" --clean --seed 1 --months 12 --no-embeddings \
        --users 10000 --items 50000 --behaviors "$behaviors" --requests 0 --output json > "$work/seed.json"
    json "$work/seed.json" "[p['seconds'] for p in d['phases'] if p['phase'] == 'behaviors'][0] * 1000" >> "$work/seed_ours"
    json "$work/seed.json" "d['seconds'] * 1000" >> "$work/seed_command"
}

for r in $(seq 1 "$rounds"); do
    if (( r % 2 )); then order="ours floor insert"; else order="insert floor ours"; fi
    for who in $order; do
        case $who in
            ours) ours_seed ;;
            # The floor's file holds the rows of the first seed: the same rows every round.
            floor) [ -f "$work/behaviors.copy" ] || psql -d "$db" -c "\\copy (SELECT * FROM user_behaviors) TO '$work/behaviors.copy'"
                   floor >> "$work/seed_floor" ;;
            insert) insert_select >> "$work/seed_insert" ;;
        esac
    done
done
s_ours=$(median < "$work/seed_ours"); s_floor=$(median < "$work/seed_floor"); s_insert=$(median < "$work/seed_insert")
s_command=$(median < "$work/seed_command")
echo "  file for the floor: $(( $(stat -c %s "$work/behaviors.copy") / 1048576 )) MiB of COPY text"
rate() { awk -v n="$behaviors" -v ms="$1" 'BEGIN { printf "%.0f rows/s", n / (ms / 1000) }'; }
echo "  recommend-db seed, behaviours phase   median $(printf %.0f "$s_ours") ms, $(rate "$s_ours")   (runs: $(tr '\n' ' ' < "$work/seed_ours"))"
echo "  \\copy FROM file (floor)               median $(printf %.0f "$s_floor") ms, $(rate "$s_floor")   (runs: $(tr '\n' ' ' < "$work/seed_floor"))"
echo "  INSERT ... SELECT generate_series     median $(printf %.0f "$s_insert") ms, $(rate "$s_insert")   (runs: $(tr '\n' ' ' < "$work/seed_insert"))"
awk -v a="$s_ours" -v f="$s_floor" -v i="$s_insert" 'BEGIN {
    printf "  seed / floor: %.2fx (goal <= 1.5); INSERT ... SELECT / seed: %.2fx\n", a / f, i / a }'
echo "  the whole seed command (users, items, behaviours, index rebuild, derived tables, views): median $(printf %.0f "$s_command") ms"

# Cleanup, on two copies of the seeded database per round, with two cutoffs: mid-month, as a
# daily CronJob meets it (one partition is trimmed row by row), and on the first day of a month,
# where three whole partitions go and only that day's first hours are trimmed.
# The first of the month 255 to 285 days back: about 3 of the 12 months.
month_start=$(date -u -d '-255 days' +%Y-%m-01)
aligned_days=$(( ($(date -u +%s) - $(date -u -d "$month_start" +%s)) / 86400 ))
for scenario in 270 "$aligned_days"; do
    rm -f "$work"/cleanup_*
    echo "cleanup --behaviors-days $scenario: $rounds rounds"
    for r in $(seq 1 "$rounds"); do
        drop_copies
        for d in bench_cleanup_ours bench_cleanup_delete; do
            psql -d postgres -c "CREATE DATABASE $d TEMPLATE $db STRATEGY FILE_COPY" >/dev/null
            psql -d "$d" -c "VACUUM ANALYZE" >/dev/null
        done
        if (( r % 2 )); then order="ours delete"; else order="delete ours"; fi
        for who in $order; do
            copy=bench_cleanup_ours; [ "$who" = ours ] || copy=bench_cleanup_delete
            read -r lsn size < <(psql -d "$copy" -Atc "CHECKPOINT" -c "SELECT pg_current_wal_lsn(), pg_database_size(current_database())" | tr '|' ' ')
            if [ "$who" = ours ]; then
                "$bin/recommend-db" cleanup --postgres-db bench_cleanup_ours --behaviors-days "$scenario" --output json > "$work/cleanup.json"
                json "$work/cleanup.json" "d['seconds'] * 1000" >> "$work/cleanup_ours"
                json "$work/cleanup.json" "d['removal_seconds'] * 1000" >> "$work/cleanup_removal"
                json "$work/cleanup.json" "(d['seconds'] - d['views_seconds']) * 1000" >> "$work/cleanup_no_views"
            else
                # The cutoff recommend-db computes (seconds apart from ours'; the order alternates).
                cutoff=$("$bin/recommend-db" cleanup --postgres-db bench_cleanup_delete --behaviors-days "$scenario" --report-only --output json \
                    | python3 -c "import json,sys; print([t['cutoff'] for t in json.load(sys.stdin)['tables'] if t['table'] == 'user_behaviors'][0])")
                psql -d bench_cleanup_delete > "$work/delete.out" <<SQL
\\timing on
DELETE FROM user_behaviors WHERE created_at < '$cutoff';
VACUUM ANALYZE user_behaviors;
SELECT refresh_recommendation_views();
SQL
                timing_ms < "$work/delete.out" | sed -n 1p >> "$work/cleanup_delete"
                timing_ms < "$work/delete.out" | awk '{s += $1} END {print s}' >> "$work/cleanup_delete_all"
                timing_ms < "$work/delete.out" | sed -n 1,2p | awk '{s += $1} END {print s}' >> "$work/cleanup_delete_vacuum"
            fi
            # WAL written and disk space given back to the operating system.
            psql -d "$copy" -Atc "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn'), $size - pg_database_size(current_database())" \
                | tr '|' ' ' >> "$work/cleanup_io_$who"
        done
        left_ours=$(psql -d bench_cleanup_ours -Atc "SELECT count(*) FROM user_behaviors")
        left_delete=$(psql -d bench_cleanup_delete -Atc "SELECT count(*) FROM user_behaviors")
        echo "  round $r: rows left $left_ours (recommend-db), $left_delete (DELETE, its cutoff seconds apart)"
    done
    removed=$(json "$work/cleanup.json" "d['rows_removed']")
    plan=$(json "$work/cleanup.json" "', '.join(p['action'] for t in d['tables'] if t['table'] == 'user_behaviors' for p in t['partitions'])")
    c_ours=$(median < "$work/cleanup_ours"); c_removal=$(median < "$work/cleanup_removal")
    c_delete=$(median < "$work/cleanup_delete"); c_all=$(median < "$work/cleanup_delete_all")
    c_no_views=$(median < "$work/cleanup_no_views"); c_vacuum=$(median < "$work/cleanup_delete_vacuum")
    echo "  recommend-db removed $removed rows (partitions: $plan)"
    echo "  recommend-db cleanup                  median $(printf %.0f "$c_ours") ms, of which dropping and trimming $(printf %.0f "$c_removal") ms   (runs: $(tr '\n' ' ' < "$work/cleanup_ours"))"
    echo "  DELETE ... WHERE created_at < cutoff  median $(printf %.0f "$c_delete") ms   (runs: $(tr '\n' ' ' < "$work/cleanup_delete"))"
    echo "  DELETE + VACUUM ANALYZE + refresh     median $(printf %.0f "$c_all") ms   (runs: $(tr '\n' ' ' < "$work/cleanup_delete_all"))"
    echo "  without the views' refresh: recommend-db cleanup median $(printf %.0f "$c_no_views") ms, DELETE + VACUUM ANALYZE median $(printf %.0f "$c_vacuum") ms"
    for who in ours delete; do
        awk -v who="$who" '{w += $1; f += $2} END { printf "  %-12s WAL written %.0f MiB, disk given back %.0f MiB (mean of %d)\n", who, w / NR / 1048576, f / NR / 1048576, NR }' "$work/cleanup_io_$who"
    done
    awk -v a="$c_ours" -v r="$c_removal" -v d="$c_delete" -v all="$c_all" 'BEGIN {
        printf "  DELETE / dropping and trimming: %.1fx (goal >= 50); with the same aftercare on both sides: %.1fx\n", d / r, all / a }'
    awk -v a="$c_no_views" -v v="$c_vacuum" 'BEGIN { printf "  (DELETE + VACUUM ANALYZE) / (cleanup without the refresh): %.1fx\n", v / a }'
done
