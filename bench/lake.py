"""Reads a benchmark run's lake back with readers independent of the bridge and prints one line:
rows, distinct event ids, Parquet bytes, and for the deliveries whose id starts with LAG_PREFIX the
time from acceptance (received_at, taken just before the 2xx) to their rows being readable.

Delta tables (the default) are read through their log with the `deltalake` package: only
committed files count, and a file is readable from its commit (the `add` action's
modificationTime, set at commit). A table without a log (`--table-format parquet`) counts every
file under `dt=*/`, readable from its modification time (the local store renames a finished file
into place)."""
import glob
import os
import sys

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

lake, lag_prefix = sys.argv[1], sys.argv[2]
files = []  # (path, readable since, in µs since the epoch)
for table in sorted(glob.glob(os.path.join(lake, "*"))):
    if os.path.isdir(os.path.join(table, "_delta_log")):
        adds = pa.table(DeltaTable(table).get_add_actions(flatten=True)).to_pylist()
        files += [(os.path.join(table, a["path"]), a["modification_time"] * 1000) for a in adds]
    else:
        found = glob.glob(os.path.join(table, "dt=*", "*.parquet"))
        files += [(f, os.stat(f).st_mtime_ns // 1000) for f in found]
if not files:
    sys.exit(f"no committed Parquet files under {lake}")
con = duckdb.connect()
con.execute("CREATE TABLE readable (filename VARCHAR, since_us BIGINT)")
con.executemany("INSERT INTO readable VALUES (?, ?)", files)
paths = [f for f, _ in files]
con.execute(
    "CREATE VIEW rows AS SELECT event_id, epoch_us(received_at) AS received_us, filename "
    f"FROM read_parquet({paths!r}, union_by_name = true, filename = true)"
)
rows, distinct = con.execute("SELECT count(*), count(DISTINCT event_id) FROM rows").fetchone()
lag = con.execute(
    "SELECT count(*), quantile_cont(l, 0.5), quantile_cont(l, 0.99), max(l) FROM "
    "(SELECT (m.since_us - r.received_us) / 1e6 AS l FROM rows r JOIN readable m USING (filename) "
    " WHERE starts_with(r.event_id, ?))",
    [lag_prefix],
).fetchone()
parquet_bytes = sum(os.path.getsize(f) for f in paths)
log_bytes = sum(os.path.getsize(f) for f in glob.glob(os.path.join(lake, "*", "_delta_log", "*.json")))
commits = len(glob.glob(os.path.join(lake, "*", "_delta_log", "*.json")))
print(
    f"LAKE rows={rows} distinct={distinct} files={len(paths)} parquet_bytes={parquet_bytes} "
    f"lag_rows={lag[0]} lag_p50={lag[1] or 0:.2f} lag_p99={lag[2] or 0:.2f} lag_max={lag[3] or 0:.2f} "
    f"log_entries={commits} log_bytes={log_bytes}",
    flush=True,
)
# pyarrow's and delta-rs's thread pools can abort in the interpreter's teardown.
os._exit(0)
