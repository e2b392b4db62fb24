#!/usr/bin/env bash
# `datastores check` (datastores::bootstrap::run, Mode::Check) against the same reads made one
# object at a time, on the local stack (PostgreSQL 18, secantusdb, Redis 7, tansu), both sides in
# one process of one build:
#
#   manifests: the built-in one (seed 003's platform), and a large one: 200 Kafka topics (3
#              partitions, retention.ms and cleanup.policy), a MongoDB database of 10 collections
#              x 10 indexes, 50 PostgreSQL roles and a database with 2 schemas and grants for 10
#              of them, the built-in manifest's 8 settings and its redis section.
#   setup:     one apply of each manifest (untimed; no section may have errors).
#   dbkit:     check, the four sections concurrently; every check must report no drift.
#   one-by-one: a sequential loop of single admin calls over the same manifest, one connection
#              or client per datastore (the conservative baseline: the seed's shell tools also pay a
#              process and a connection per call): pg_roles per role, one query per database,
#              schema and extension, three per grant, SHOW per setting; listCollections and
#              listIndexes per collection, usersInfo per user; CONFIG GET per parameter and ACL
#              GETUSER default; a metadata request and a DescribeConfigs per topic.
#   Rounds rotate the order of the runs; the table gives median and p90 (nearest rank) and the
#   ratio one-by-one / dbkit (medians), and a JSON line follows for the record.
#
# Kafka topics are left on the broker (DeleteTopics on tansu deletes every topic of the cluster);
# the MongoDB database and the PostgreSQL database and roles of the large manifest are dropped at
# the end unless --keep is given. Results go to standard output.
#
# Usage: bench/bootstrap.sh [ROUNDS] [--keep]   (needs `cargo xtask stack up`)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
shift || true

eval "$(cargo xtask stack env)"
# The dev profile: both sides run in this one binary, so the build favours neither.
profile=dev
cargo build -q -p datastores --example bootstrap_bench
bin=${CARGO_TARGET_DIR:-target}/debug/examples/bootstrap_bench
echo "profile: $profile (cargo build -p datastores --example bootstrap_bench), rounds: $rounds"
"$bin" --rounds "$rounds" "$@"
