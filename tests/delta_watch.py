"""Reads the lake's Delta tables with the `deltalake` package again and again, until the file
named by the third argument exists, and prints one JSON line per round:

  {"rows": total rows, "distinct": distinct event ids, "max": most rows of one event id,
   "versions": {table: version}}

Usage: delta_watch.py <lake root path> <table,table,...> <stop file>
For a test that checks what a reader sees while the tables change under it.
"""
import collections
import json
import os
import sys

from deltalake import DeltaTable

root, tables, stop = sys.argv[1].rstrip("/"), sys.argv[2].split(","), sys.argv[3]
while not os.path.exists(stop):
    counts, versions = collections.Counter(), {}
    for table in tables:
        dt = DeltaTable(f"{root}/{table}")
        versions[table] = dt.version()
        counts.update(dt.to_pyarrow_table(columns=["event_id"]).column("event_id").to_pylist())
    print(json.dumps({
        "rows": sum(counts.values()),
        "distinct": len(counts),
        "max": max(counts.values(), default=0),
        "versions": versions,
    }), flush=True)
os._exit(0)
