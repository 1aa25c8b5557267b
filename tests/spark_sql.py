"""Runs SQL statements in a local Spark session (pyspark, a real Spark 3.5 on a Java runtime) and
prints the result of the last one as JSON: {"columns", "rows"}.

Usage: spark_sql.py <file with statements separated by ";" at line ends> <query>
Used by the integration tests to run the generated Spark DDL and the README's portable queries.
"""
import json
import sys

from pyspark.sql import SparkSession

spark = (
    SparkSession.builder.master("local[1]")
    .appName("oncehub-bridge-tests")
    .config("spark.ui.enabled", "false")
    .config("spark.sql.session.timeZone", "UTC")
    .config("spark.sql.warehouse.dir", sys.argv[3] if len(sys.argv) > 3 else "spark-warehouse")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
with open(sys.argv[1]) as f:
    statements = [s.strip() for s in f.read().split(";\n") if s.strip()]
for statement in statements:
    spark.sql(statement.rstrip(";"))
result = spark.sql(sys.argv[2])
rows = [[None if v is None else str(v) for v in row] for row in result.collect()]
print(json.dumps({"columns": result.columns, "rows": rows}))
spark.stop()
