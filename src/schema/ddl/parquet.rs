//! Statements for the plain layout (`--table-format parquet`): columns declared from `schemas/`,
//! the `dt` folders found per engine. A table with no rows yet still has its zero-row file in
//! `dt=1970-01-01/` (written by `serve` at start, see `lake::parquet`), so DuckDB's views bind and
//! Spark's partition repair finds the folder.

use std::fmt::Write as _;

use super::{BIGQUERY, Engine, HIVE, TRINO, TableSchema, backtick, columns, dquote, sql_string};

pub(super) fn statement(table: &TableSchema, engine: Engine, dir: &str) -> String {
    let name = &table.name;
    let dir_sql = sql_string(dir);
    let mut s = String::new();
    match engine {
        Engine::Duckdb => {
            let list = table.columns.iter().map(|c| format!("  {}", dquote(&c.name))).collect::<Vec<_>>().join(",\n");
            let glob = sql_string(&format!("{dir}/dt=*/*.parquet"));
            let _ = writeln!(
                s,
                "CREATE OR REPLACE VIEW {name} AS SELECT\n{list},\n  dt\nFROM read_parquet({glob}, hive_partitioning = true, union_by_name = true);"
            );
        }
        Engine::Athena => {
            let template = sql_string(&format!("{dir}/dt=${{dt}}/"));
            let _ = writeln!(
                s,
                "CREATE EXTERNAL TABLE IF NOT EXISTS `{name}` (\n{}\n)\nPARTITIONED BY (`dt` string)\nSTORED AS PARQUET\nLOCATION {}\nTBLPROPERTIES (\n  'projection.enabled' = 'true',\n  'projection.dt.type' = 'date',\n  'projection.dt.format' = 'yyyy-MM-dd',\n  'projection.dt.range' = '2020-01-01,NOW',\n  'projection.dt.interval' = '1',\n  'projection.dt.interval.unit' = 'DAYS',\n  'storage.location.template' = {template}\n);",
                columns(table, &HIVE, backtick),
                sql_string(&format!("{dir}/")),
            );
        }
        Engine::Trino => {
            let _ = writeln!(
                s,
                "CREATE TABLE IF NOT EXISTS {name} (\n{},\n  dt varchar\n)\nWITH (format = 'PARQUET', external_location = {dir_sql}, partitioned_by = ARRAY['dt']);\nCALL system.sync_partition_metadata(CURRENT_SCHEMA, '{name}', 'FULL');",
                columns(table, &TRINO, dquote),
            );
        }
        Engine::Spark => {
            let _ = writeln!(
                s,
                "CREATE TABLE IF NOT EXISTS `{name}` (\n{},\n  `dt` STRING\n)\nUSING PARQUET\nPARTITIONED BY (`dt`)\nLOCATION {dir_sql};\nMSCK REPAIR TABLE `{name}`;",
                columns(table, &HIVE, backtick),
            );
        }
        Engine::Bigquery => {
            let _ = writeln!(
                s,
                "CREATE OR REPLACE EXTERNAL TABLE `{name}` (\n{}\n)\nWITH PARTITION COLUMNS (dt DATE)\nOPTIONS (format = 'PARQUET', enable_list_inference = true, uris = [{}], hive_partition_uri_prefix = {dir_sql});",
                columns(table, &BIGQUERY, backtick),
                sql_string(&format!("{dir}/*")),
            );
        }
    }
    s
}

/// `bookings_current` over the plain layout, which the bridge does not maintain as a table: a
/// view picking each booking's row with the greatest `last_updated_time` (a webhook row on ties,
/// then the latest event, then the first received), in SQL every engine here runs.
pub(super) fn current_view(name: &str, bookings: &str, engine: Engine) -> String {
    let quote = match engine {
        Engine::Duckdb | Engine::Trino => dquote,
        Engine::Athena | Engine::Spark | Engine::Bigquery => backtick,
    };
    format!(
        "CREATE OR REPLACE VIEW {} AS\nSELECT * FROM (\n  SELECT b.*, row_number() OVER (\n    PARTITION BY booking_id\n    ORDER BY last_updated_time DESC NULLS LAST, CASE WHEN source = 'webhook' THEN 0 ELSE 1 END,\n      event_time DESC NULLS LAST, received_at\n  ) AS current_rank\n  FROM {} b\n  WHERE booking_id IS NOT NULL\n) ranked\nWHERE current_rank = 1;\n",
        quote(name),
        quote(bookings)
    )
}
