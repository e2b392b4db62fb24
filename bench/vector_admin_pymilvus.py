"""The pymilvus side of bench/vector-admin.sh: the same inserts and searches on the same data.

python vector_admin_pymilvus.py insert FILE ROWS DIM BATCH COLLECTION
python vector_admin_pymilvus.py search FILE ROWS DIM QUERIES COLLECTION
Prints one JSON line.
"""
import json
import os
import sys
import time

import numpy as np
from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections, utility

cmd, path, rows, dim = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
connections.connect(host=os.environ.get("MILVUS_HOST", "127.0.0.1"), port=os.environ.get("MILVUS_PORT", "19530"))
everything = np.fromfile(path, dtype="<f4").reshape(-1, dim)
data, queries = everything[:rows], everything[rows:]

if cmd == "insert":
    size, name = int(sys.argv[5]), sys.argv[6]
    if utility.has_collection(name):
        utility.drop_collection(name)
    schema = CollectionSchema([
        FieldSchema("id", DataType.VARCHAR, is_primary=True, max_length=64),
        FieldSchema("embedding", DataType.FLOAT_VECTOR, dim=dim),
    ])
    coll = Collection(name, schema, consistency_level="Bounded")
    keys = [str(i) for i in range(rows)]
    started = time.perf_counter()
    for start in range(0, rows, size):
        coll.insert([keys[start:start + size], data[start:start + size]])
    inserted = time.perf_counter() - started
    coll.flush()
    total = time.perf_counter() - started
    assert coll.num_entities == rows, coll.num_entities
    print(json.dumps({"side": "pymilvus", "rows": rows, "insert_s": inserted, "flush_s": total - inserted,
                      "total_s": total, "rows_per_s": rows / total}))
elif cmd == "search":
    count, name = int(sys.argv[5]), sys.argv[6]
    coll = Collection(name)
    coll.release()
    coll.drop_index()
    coll.create_index("embedding", {"index_type": "IVF_FLAT", "metric_type": "L2", "params": {"nlist": 1024}})
    utility.wait_for_index_building_complete(name)
    coll.load()
    params = {"metric_type": "L2", "params": {"nprobe": 16}}
    for q in queries[:50]:
        coll.search([q.tolist()], "embedding", params, limit=10)
    times = []
    for q in queries[:count]:
        started = time.perf_counter()
        coll.search([q.tolist()], "embedding", params, limit=10)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    pct = lambda p: times[max(1, min(len(times), int(np.ceil(len(times) * p)))) - 1]
    print(json.dumps({"side": "pymilvus", "searches": len(times), "p50_ms": pct(0.5), "p99_ms": pct(0.99)}))
    utility.drop_collection(name)
