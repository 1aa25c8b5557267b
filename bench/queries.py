"""Times DuckDB queries over one Delta table (delta extension): count, group by event_type and a
point lookup on event_id; best of REPEAT runs each, a fresh connection per query so no cache
from an earlier one helps. Prints one JSON object: {"count_ms", "group_ms", "lookup_ms", "rows",
"files"} (files: in the table's current version).

Usage: queries.py <table path> <event id to look up>
"""
import glob
import json
import os
import sys
import time

import duckdb
import duckdb_extension_delta
from deltalake import DeltaTable

table, event_id = sys.argv[1], sys.argv[2]
repeat = int(os.environ.get("REPEAT", "3"))
delta_base = os.path.dirname(duckdb_extension_delta.__file__)
extension = glob.glob(os.path.join(delta_base, "extensions", "*", "delta.duckdb_extension"))[0]


def connect():
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{extension}'")
    return con


queries = {
    "count_ms": f"SELECT count(*) FROM delta_scan('{table}')",
    "group_ms": f"SELECT event_type, count(*) FROM delta_scan('{table}') GROUP BY event_type",
    "lookup_ms": f"SELECT booking_id FROM delta_scan('{table}') WHERE event_id = '{event_id}'",
}
out = {}
for name, sql in queries.items():
    best = None
    for _ in range(repeat):
        con = connect()
        started = time.perf_counter()
        rows = con.execute(sql).fetchall()
        took = (time.perf_counter() - started) * 1000
        best = took if best is None else min(best, took)
        con.close()
    out[name] = round(best, 1)
    if name == "count_ms":
        out["rows"] = rows[0][0]
    if name == "lookup_ms":
        out["found"] = len(rows)
out["files"] = len(DeltaTable(table).file_uris())
print(json.dumps(out))
os._exit(0)
