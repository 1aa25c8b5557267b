"""Runs one SQL query in DuckDB and prints {"columns", "types", "rows"} as JSON.

Used by the integration tests as an independent Parquet and Delta reader: the delta extension
shipped by the duckdb-extension-delta wheel is always loaded, so `delta_scan('<table>')` works.
With DUCK_S3_ENDPOINT set, it also loads
the httpfs extension shipped by the duckdb-extension-httpfs wheel (no network needed) and registers
an S3 secret from DUCK_S3_ENDPOINT / DUCK_S3_KEY_ID / DUCK_S3_SECRET, so s3:// paths work.
"""
import glob
import json
import os
import sys

import duckdb

import duckdb_extension_delta

con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
con.execute("SET TimeZone = 'UTC'")
delta_base = os.path.dirname(duckdb_extension_delta.__file__)
con.execute(f"LOAD '{glob.glob(os.path.join(delta_base, 'extensions', '*', 'delta.duckdb_extension'))[0]}'")
endpoint = os.environ.get("DUCK_S3_ENDPOINT")
if endpoint:
    import duckdb_extension_httpfs

    base = os.path.dirname(duckdb_extension_httpfs.__file__)
    ext = glob.glob(os.path.join(base, "extensions", "*", "httpfs.duckdb_extension"))[0]
    con.execute(f"LOAD '{ext}'")
    con.execute(
        "CREATE SECRET lake (TYPE s3, KEY_ID ?, SECRET ?, ENDPOINT ?, URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')"
        .replace("?", "'{}'").format(os.environ["DUCK_S3_KEY_ID"], os.environ["DUCK_S3_SECRET"], endpoint)
    )
rel = con.sql(sys.argv[1])
out = {"columns": rel.columns, "types": [str(t) for t in rel.types], "rows": rel.fetchall()}
print(json.dumps(out, default=str))
