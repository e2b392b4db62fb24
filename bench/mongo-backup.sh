#!/usr/bin/env bash
# mongo-backup against its floors, on the local stack's MongoDB-protocol server, both sides in
# one process of one build, on the same documents (about 1 KB each: ObjectId, dates, numbers,
# nested documents and arrays, 256 bytes of binary, text):
#
#   insert floor: insert_many in batches of 1,000 into a new database (the driver alone);
#   read floor:   every document read with the same driver, to nothing;
#   backup:       mongo_backup::backup of that database to a local folder (zstd:3);
#   restore:      mongo_backup::restore of it into a new database.
#
# The source is loaded once; each round runs the read floor and the backup, then the insert floor
# and the restore, each pair in alternating order, so both sides meet the server in the same state.
# Goals: backup within 1.3 times the read floor, restore within 1.3 times the insert floor. One
# JSON line per round, then the medians, the ratios and the compressed size.
#
# Usage: bench/mongo-backup.sh [DOCUMENTS] [ROUNDS]   (needs `cargo xtask stack up`)
set -euo pipefail
cd "$(dirname "$0")/.."
documents=${1:-1000000}
rounds=${2:-3}

eval "$(cargo xtask stack env)"
# The dev profile, as the other benchmarks: both sides run in this one binary.
cargo build -q -p mongo-backup --example mongo_backup_bench
bin=${CARGO_TARGET_DIR:-target}/debug/examples/mongo_backup_bench
echo "profile: dev (cargo build -p mongo-backup --example mongo_backup_bench)"
"$bin" "$documents" "$rounds"
