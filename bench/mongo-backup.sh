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
# The restore's time includes renaming each loaded collection over its target; the run also prints
# the loading time alone (a rename is a catalog change on mongod, a copy on some compatible
# servers).
#
# The release profile: the client shares the two cores with the server, so unoptimised hashing
# and archive code would be charged to mongo-backup. The MongoDB-protocol server of the stack
# holds everything in memory: restart the stack first for a clean run, and the driver's timeouts
# are raised so that its monitor does not give up on a server busy loading a gigabyte.
#
# Usage: bench/mongo-backup.sh [DOCUMENTS] [ROUNDS]   (needs `cargo xtask stack up`)
set -euo pipefail
cd "$(dirname "$0")/.."
documents=${1:-1000000}
rounds=${2:-3}

eval "$(cargo xtask stack env)"
export MONGODB_CONNECT_TIMEOUT=${MONGODB_CONNECT_TIMEOUT:-120s} MONGODB_SERVER_SELECTION_TIMEOUT=${MONGODB_SERVER_SELECTION_TIMEOUT:-120s}
cargo build -q --release -p mongo-backup --example mongo_backup_bench
bin=${CARGO_TARGET_DIR:-target}/release/examples/mongo_backup_bench
echo "profile: release (cargo build --release -p mongo-backup --example mongo_backup_bench)"
"$bin" "$documents" "$rounds"
