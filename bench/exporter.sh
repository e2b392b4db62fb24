#!/usr/bin/env bash
# `datastores serve-metrics` against the exporters it replaces, Debian's postgres_exporter 0.11.1
# and redis_exporter 1.45.0 (/usr/bin/prometheus-{postgres,redis}-exporter), side by side on the
# stack's PostgreSQL and Redis in one run:
#
#   exporters:  postgres_exporter and redis_exporter with their default collectors; dbkit (release
#               build) four times: PostgreSQL only, Redis only, PostgreSQL and Redis (the other
#               datastores' variables, the TRIGGERS constants of crates/datastores/src/*.rs, unset
#               in its environment), and every datastore of the stack. All listen on loopback.
#   scrapes:    5 warm-up scrapes each, then SCRAPES rounds of one sequential GET /metrics per
#               exporter, round-robin (the first exporter of a round rotates), each exporter over
#               its own kept-alive HTTP connection as Prometheus has one, without
#               Accept-Encoding (no exporter compresses).
#   figures:    wall latency per scrape (request sent to body read; p50 and p99, nearest rank);
#               CPU per scrape, the exporter process's utime+stime (/proc/PID/stat) over the
#               measured rounds divided by SCRAPES; VmRSS after the run and the peak VmHWM
#               (/proc/PID/status); series: lines of the last scrape not starting with #.
#
# Then the ratios dbkit / exporter replaced per figure (below 1: dbkit lower), the memory of one
# dbkit process (PostgreSQL and Redis; every datastore) against both exporters together, the
# core series each side serves, and a JSON line for the record. Everything started here is
# stopped on exit.
#
# Usage: bench/exporter.sh [SCRAPES]   (default 200; needs `cargo xtask stack up`)
set -euo pipefail
cd "$(dirname "$0")/.."
scrapes=${1:-200}
warmup=5

eval "$(cargo xtask stack env)"
cargo build --release -q -p bins --bin datastores
bin=${CARGO_TARGET_DIR:-target}/release/datastores
pg_exporter=/usr/bin/prometheus-postgres-exporter
redis_exporter=/usr/bin/prometheus-redis-exporter

work=$(mktemp -d /var/tmp/exporter-bench.XXXXXX)
pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap stop EXIT

# `env -u` arguments that leave dbkit only the datastores named (crates/datastores/src/NAME.rs).
only() {
  local args=() file name
  for file in crates/datastores/src/*.rs; do
    name=$(basename "$file" .rs)
    case " $* " in *" $name "*) continue ;; esac
    for var in $(sed -n 's/^pub const TRIGGERS: .*= &\[\(.*\)\];/\1/p' "$file" | grep -o '[A-Z0-9_]\+'); do
      args+=(-u "$var")
    done
  done
  echo "${args[@]}"
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

declare -A port
for name in postgres_exporter redis_exporter dbkit-pg dbkit-redis dbkit-pg+redis dbkit-all; do port[$name]=$(free_port); done

targets=()
started() { pids+=("$2"); targets+=("$1=$2=http://127.0.0.1:${port[$1]}/metrics"); }

(
  export DATA_SOURCE_URI="$POSTGRES_HOST:$POSTGRES_PORT/${POSTGRES_DB:-postgres}?sslmode=disable"
  export DATA_SOURCE_USER="$POSTGRES_USER" DATA_SOURCE_PASS_FILE="$POSTGRES_PASSWORD_FILE"
  exec "$pg_exporter" --web.listen-address="127.0.0.1:${port[postgres_exporter]}" --log.level=warn
) >"$work/postgres_exporter.log" 2>&1 &
started postgres_exporter $!

(
  REDIS_PASSWORD=$(<"$REDIS_PASSWORD_FILE")
  export REDIS_PASSWORD
  exec "$redis_exporter" -redis.addr "$REDIS_URL" -web.listen-address "127.0.0.1:${port[redis_exporter]}"
) >"$work/redis_exporter.log" 2>&1 &
started redis_exporter $!

# shellcheck disable=SC2046
env $(only postgres) "$bin" serve-metrics --listen "127.0.0.1:${port[dbkit-pg]}" --deadline 5s \
  >"$work/dbkit-pg.log" 2>&1 &
started dbkit-pg $!
# shellcheck disable=SC2046
env $(only redis) "$bin" serve-metrics --listen "127.0.0.1:${port[dbkit-redis]}" --deadline 5s \
  >"$work/dbkit-redis.log" 2>&1 &
started dbkit-redis $!
# shellcheck disable=SC2046
env $(only postgres redis) "$bin" serve-metrics --listen "127.0.0.1:${port[dbkit-pg+redis]}" --deadline 5s \
  >"$work/dbkit-pg+redis.log" 2>&1 &
started dbkit-pg+redis $!
"$bin" serve-metrics --listen "127.0.0.1:${port[dbkit-all]}" --deadline 5s >"$work/dbkit-all.log" 2>&1 &
started dbkit-all $!

echo "postgres_exporter: $("$pg_exporter" --version 2>&1 | head -1)"
echo "redis_exporter: $("$redis_exporter" -version 2>&1 | head -1)"
echo "dbkit: $bin (release), scrapes: $scrapes after $warmup warm-up, CLK_TCK $(getconf CLK_TCK)"

status=0
python3 - "$scrapes" "$warmup" "$(getconf CLK_TCK)" "${targets[@]}" <<'PY' || status=$?
import collections, http.client, json, math, re, sys, time, urllib.parse

scrapes, warmup, tck = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
targets = []
for arg in sys.argv[4:]:
    name, pid, url = arg.split("=", 2)
    targets.append({"name": name, "pid": int(pid), "url": urllib.parse.urlsplit(url), "lat": []})

def alive(t):
    try:
        open(f"/proc/{t['pid']}/stat").close()
        return True
    except OSError:
        return False

def get(t):
    for attempt in range(2):
        if t.get("conn") is None:
            t["conn"] = http.client.HTTPConnection(t["url"].hostname, t["url"].port, timeout=30)
        try:
            t0 = time.perf_counter()
            t["conn"].request("GET", t["url"].path)
            r = t["conn"].getresponse()
            body = r.read()
            elapsed = time.perf_counter() - t0
            if r.status != 200:
                raise RuntimeError(f"{t['name']}: HTTP {r.status}")
            return elapsed, body.decode()
        except (http.client.HTTPException, ConnectionError):
            t["conn"].close()
            t["conn"] = None
            if attempt:
                raise

def cpu_ticks(t):
    fields = open(f"/proc/{t['pid']}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])

def status_kib(t, key):
    for line in open(f"/proc/{t['pid']}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

deadline = time.time() + 60
for t in targets:
    while True:
        if not alive(t):
            sys.exit(f"{t['name']} exited; see its log")
        try:
            get(t)
            break
        except (OSError, http.client.HTTPException, RuntimeError):
            t["conn"] = None
            if time.time() > deadline:
                raise
            time.sleep(0.2)
for t in targets:
    for _ in range(warmup):
        get(t)
    t["cpu0"] = cpu_ticks(t)
for i in range(scrapes):
    k = i % len(targets)
    for t in targets[k:] + targets[:k]:
        elapsed, t["body"] = get(t)
        t["lat"].append(elapsed)
for t in targets:
    t["cpu_ms"] = (cpu_ticks(t) - t["cpu0"]) * 1000 / tck / scrapes
    t["rss"] = status_kib(t, "VmRSS") / 1024
    t["hwm"] = status_kib(t, "VmHWM") / 1024
    t["conn"].close()

def pct(xs, p):
    xs = sorted(xs)
    return xs[max(0, math.ceil(p * len(xs)) - 1)] * 1000

by = {t["name"]: t for t in targets}
for t in targets:
    lines = [l for l in t["body"].splitlines() if l and not l.startswith("#")]
    t["series"] = len(lines)
    t["names"] = {re.match(r"[^{ ]+", l).group(0) for l in lines}
    t["lines"] = lines
    t["p50"], t["p99"] = pct(t["lat"], 0.50), pct(t["lat"], 0.99)
    t["max"] = max(t["lat"]) * 1000

print()
head = f"{'exporter':<18} {'series':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'CPU ms/scrape':>13} {'RSS MiB':>8} {'HWM MiB':>8}"
print(head)
print("-" * len(head))
for t in targets:
    print(f"{t['name']:<18} {t['series']:>6} {t['p50']:>8.2f} {t['p99']:>8.2f} {t['max']:>8.2f} {t['cpu_ms']:>13.2f} {t['rss']:>8.1f} {t['hwm']:>8.1f}")

figures = [("p50", "p50 ms"), ("p99", "p99 ms"), ("cpu_ms", "CPU ms/scrape"), ("rss", "RSS MiB"), ("hwm", "HWM MiB")]
ratios = {}
print()
for ours, theirs in [("dbkit-pg", "postgres_exporter"), ("dbkit-redis", "redis_exporter")]:
    a, b = by[ours], by[theirs]
    r = {key: a[key] / b[key] if b[key] else float("nan") for key, _ in figures}
    ratios[f"{ours}/{theirs}"] = r
    print(f"{ours} / {theirs}: " + ", ".join(f"{label} {r[key]:.2f}" for key, label in figures))
all_, pg, rd = by["dbkit-all"], by["postgres_exporter"], by["redis_exporter"]
for ours, what in [("dbkit-all", "all datastores"), ("dbkit-pg+redis", "PostgreSQL + Redis")]:
    for key, label in [("rss", "RSS"), ("hwm", "HWM")]:
        both = pg[key] + rd[key]
        ratios[f"{ours}/(postgres_exporter+redis_exporter) {key}"] = by[ours][key] / both
        print(f"dbkit ({what}) {label} {by[ours][key]:.1f} MiB vs postgres_exporter + redis_exporter {label} "
              f"{both:.1f} MiB: ratio {by[ours][key] / both:.2f}")
down = [l for l in all_["lines"] if re.match(r"\w+_up ", l) and l.split()[1] != "1"]
ups = sorted(l for l in all_["lines"] if re.match(r"\w+_up ", l))
print(f"dbkit-all datastores: {', '.join(ups)}; its series by prefix: " + ", ".join(
    f"{p} {n}" for p, n in sorted(collections.Counter(l.split('_', 1)[0] for l in all_['lines']).items())))

core = {
    "postgres": [
        ("connections by state", {"pg_stat_activity_count"}, r"state="),
        ("cache hits (blks_hit)", {"pg_stat_database_blks_hit", "pg_stat_database_blks_hit_total"}, None),
        ("cache reads (blks_read)", {"pg_stat_database_blks_read", "pg_stat_database_blks_read_total"}, None),
        ("database sizes", {"pg_database_size_bytes", "pg_database_size"}, None),
        ("locks", {"pg_locks_count"}, None),
        ("max_connections", {"pg_settings_max_connections"}, None),
    ],
    "redis": [
        ("keyspace hits", {"redis_keyspace_hits_total", "redis_keyspace_hits"}, None),
        ("keyspace misses", {"redis_keyspace_misses_total", "redis_keyspace_misses"}, None),
        ("memory used", {"redis_memory_used_bytes"}, None),
        ("memory max", {"redis_memory_max_bytes"}, None),
        ("clients", {"redis_connected_clients"}, None),
        ("commands processed", {"redis_commands_processed_total"}, None),
        ("commands per command", {"redis_commands_total"}, r"cmd="),
        ("command time per command", {"redis_commands_duration_seconds_total"}, r"cmd="),
    ],
}
sides = {"postgres": ["postgres_exporter", "dbkit-pg", "dbkit-all"], "redis": ["redis_exporter", "dbkit-redis", "dbkit-all"]}
served = {}
missing = []
for store, checks in core.items():
    cols = sides[store]
    print()
    print(f"{'core series (' + store + ')':<26} " + " ".join(f"{c:<40}" for c in cols))
    for label, names, label_re in checks:
        cells = []
        for c in cols:
            t = by[c]
            found = sorted(
                n for n in names & t["names"]
                if label_re is None or any(l.startswith(n + "{") and re.search(label_re, l) for l in t["lines"])
            )
            served.setdefault(c, {})[label] = found
            if not found and c.startswith("dbkit"):
                missing.append(f"{c}: {label}")
            cells.append(", ".join(found) or "-")
        print(f"{label:<26} " + " ".join(f"{x:<40}" for x in cells))
only_theirs = {}
for ours, theirs, prefix in [("dbkit-pg", "postgres_exporter", "pg_"), ("dbkit-redis", "redis_exporter", "redis_")]:
    strip = lambda n: re.sub(r"_(total|bytes|seconds)$", "", re.sub(r"_total$", "", n))
    mine = {strip(n) for n in by[ours]["names"]}
    theirs_names = [n for n in by[theirs]["names"] if n.startswith(prefix)]
    only_theirs[theirs] = sorted(n for n in theirs_names if strip(n) not in mine)
    settings = [n for n in only_theirs[theirs] if n.startswith("pg_settings_")]
    rest = [n for n in only_theirs[theirs] if not n.startswith("pg_settings_")]
    print(f"\n{theirs}: {len(only_theirs[theirs])} of its {len(theirs_names)} {prefix}* names have no dbkit series of "
          f"the same base name" + (f" ({len(settings)} pg_settings_*)" if settings else "") + ":")
    print("  " + " ".join(rest))

print()
print(json.dumps({
    "bench": "exporter",
    "scrapes": scrapes,
    "exporters": {t["name"]: {k: round(t[k], 3) if isinstance(t[k], float) else t[k]
                              for k in ["series", "p50", "p99", "max", "cpu_ms", "rss", "hwm"]} for t in targets},
    "ratios": {k: ({f: round(v, 3) for f, v in r.items()} if isinstance(r, dict) else round(r, 3)) for k, r in ratios.items()},
    "core_missing": missing,
    "datastores_down": [l.split()[0] for l in down],
}))
PY
for name in "${!port[@]}"; do
  if [ -s "$work/$name.log" ] && grep -qiE 'error|warn|panic' "$work/$name.log"; then
    echo "--- $name log (last 5 lines) ---"
    tail -n 5 "$work/$name.log"
  fi
done
exit "$status"
