"""Reads a benchmark run's lake back with DuckDB (independent of the bridge) and prints one line:
rows, distinct event ids, Parquet bytes, and for the deliveries whose id starts with LAG_PREFIX the
time from acceptance (received_at, taken just before the 2xx) to their file being in the store
(the file's modification time: the local store renames a finished file into place)."""
import glob
import os
import sys

import duckdb

lake, lag_prefix = sys.argv[1], sys.argv[2]
files = glob.glob(os.path.join(lake, "*", "*", "*.parquet"))
if not files:
    sys.exit(f"no Parquet files under {lake}")
con = duckdb.connect()
con.execute("CREATE TABLE mtimes (filename VARCHAR, mtime_us BIGINT)")
con.executemany("INSERT INTO mtimes VALUES (?, ?)", [(f, os.stat(f).st_mtime_ns // 1000) for f in files])
con.execute(
    "CREATE VIEW rows AS SELECT event_id, epoch_us(received_at) AS received_us, filename "
    f"FROM read_parquet({files!r}, union_by_name = true, filename = true)"
)
rows, distinct = con.execute("SELECT count(*), count(DISTINCT event_id) FROM rows").fetchone()
lag = con.execute(
    "SELECT count(*), quantile_cont(l, 0.5), quantile_cont(l, 0.99), max(l) FROM "
    "(SELECT (m.mtime_us - r.received_us) / 1e6 AS l FROM rows r JOIN mtimes m USING (filename) "
    " WHERE starts_with(r.event_id, ?))",
    [lag_prefix],
).fetchone()
parquet_bytes = sum(os.path.getsize(f) for f in files)
print(
    f"LAKE rows={rows} distinct={distinct} files={len(files)} parquet_bytes={parquet_bytes} "
    f"lag_rows={lag[0]} lag_p50={lag[1] or 0:.2f} lag_p99={lag[2] or 0:.2f} lag_max={lag[3] or 0:.2f}"
)
