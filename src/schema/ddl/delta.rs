//! Statements for Delta tables: each engine reads schema and partitions from `_delta_log/`.

use super::{Engine, TableSchema, backtick, sql_string};

pub(super) fn statement(table: &TableSchema, engine: Engine, dir: &str) -> String {
    let name = &table.name;
    let location = sql_string(dir);
    match engine {
        // `INSTALL delta; LOAD delta;` comes once, before the first view.
        Engine::Duckdb => format!("CREATE OR REPLACE VIEW {name} AS SELECT * FROM delta_scan({location});\n"),
        // Spark with Delta Lake (delta-spark, or Databricks): the table is the log at LOCATION.
        Engine::Spark => format!("CREATE TABLE IF NOT EXISTS `{name}` USING DELTA LOCATION {location};\n"),
        // Trino's Delta Lake connector: register the existing table in the current schema.
        Engine::Trino => format!(
            "CALL system.register_table(schema_name => CURRENT_SCHEMA, table_name => '{name}', table_location => {location});\n"
        ),
        // Athena (engine v3) reads Delta natively; columns and partitions come from the log.
        Engine::Athena => format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS `{name}`\nLOCATION {}\nTBLPROPERTIES ('table_type' = 'DELTA');\n",
            sql_string(&format!("{dir}/"))
        ),
        // BigQuery BigLake over Delta: needs a Cloud resource connection with access to the bucket.
        Engine::Bigquery => format!(
            "CREATE OR REPLACE EXTERNAL TABLE {}\nWITH CONNECTION `PROJECT.LOCATION.CONNECTION`\nOPTIONS (format = 'DELTA_LAKE', uris = [{location}]);\n",
            backtick(name)
        ),
    }
}
