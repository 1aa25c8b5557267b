//! `oncehub-bridge schema ddl`: CREATE statements for every table, generated from `schemas/`, so a
//! warehouse engine points at the lake in one step.
//!
//! The lake's layout is `<location>/<table>/dt=YYYY-MM-DD/part-*.parquet`: every statement declares
//! the table's columns in schema order plus the `dt` partition, and where the engine needs it,
//! says how partitions are found (Athena partition projection, Trino/Spark partition sync).

use std::fmt::Write as _;

use super::ColumnType;
use super::{Catalog, TableSchema};

/// The engines `schema ddl` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    Duckdb,
    Athena,
    Trino,
    Spark,
    Bigquery,
}

/// Every table's statement for `engine`, the lake rooted at `location` (e.g. `s3://bucket/prefix`).
pub(crate) fn ddl(catalog: &Catalog, engine: Engine, location: &str) -> String {
    let root = location.trim_end_matches('/');
    let mut out = String::new();
    for (_, table) in catalog.tables() {
        out.push_str(&statement(table, engine, &format!("{root}/{}", table.name)));
        out.push('\n');
    }
    out
}

fn statement(table: &TableSchema, engine: Engine, dir: &str) -> String {
    let name = &table.name;
    let cols = |dialect: &Dialect, quote: fn(&str) -> String| {
        table
            .columns
            .iter()
            .map(|c| format!("  {} {}", quote(&c.name), dialect.type_of(&c.ty)))
            .collect::<Vec<_>>()
            .join(",\n")
    };
    let dir_sql = sql_string(dir);
    let mut s = String::new();
    match engine {
        Engine::Duckdb => {
            let list = table.columns.iter().map(|c| format!("  {}", dquote(&c.name))).collect::<Vec<_>>().join(",\n");
            let glob = sql_string(&format!("{dir}/*/*.parquet"));
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
                cols(&HIVE, backtick),
                sql_string(&format!("{dir}/")),
            );
        }
        Engine::Trino => {
            let _ = writeln!(
                s,
                "CREATE TABLE IF NOT EXISTS {name} (\n{},\n  dt varchar\n)\nWITH (format = 'PARQUET', external_location = {dir_sql}, partitioned_by = ARRAY['dt']);\nCALL system.sync_partition_metadata(CURRENT_SCHEMA, '{name}', 'FULL');",
                cols(&TRINO, dquote),
            );
        }
        Engine::Spark => {
            let _ = writeln!(
                s,
                "CREATE TABLE IF NOT EXISTS `{name}` (\n{},\n  `dt` STRING\n)\nUSING PARQUET\nPARTITIONED BY (`dt`)\nLOCATION {dir_sql};\nMSCK REPAIR TABLE `{name}`;",
                cols(&HIVE, backtick),
            );
        }
        Engine::Bigquery => {
            let _ = writeln!(
                s,
                "CREATE OR REPLACE EXTERNAL TABLE `{name}` (\n{}\n)\nWITH PARTITION COLUMNS (dt DATE)\nOPTIONS (format = 'PARQUET', uris = [{}], hive_partition_uri_prefix = {dir_sql});",
                cols(&BIGQUERY, backtick),
                sql_string(&format!("{dir}/*")),
            );
        }
    }
    s
}

fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn dquote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn backtick(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// How one SQL dialect spells the schema's types.
struct Dialect {
    /// Utf8 (and Json, kept as text), Int64, Float64, Bool, Timestamp, Binary.
    scalars: [&'static str; 6],
    /// Struct and list wrappers around their joined fields / item type.
    structure: (&'static str, &'static str),
    list: (&'static str, &'static str),
    /// Between a struct field's name and its type.
    field_sep: &'static str,
}

/// Athena (Hive DDL) and Spark SQL.
const HIVE: Dialect = Dialect {
    scalars: ["string", "bigint", "double", "boolean", "timestamp", "binary"],
    structure: ("struct<", ">"),
    list: ("array<", ">"),
    field_sep: ":",
};

const TRINO: Dialect = Dialect {
    scalars: ["varchar", "bigint", "double", "boolean", "timestamp(6) with time zone", "varbinary"],
    structure: ("row(", ")"),
    list: ("array(", ")"),
    field_sep: " ",
};

const BIGQUERY: Dialect = Dialect {
    scalars: ["STRING", "INT64", "FLOAT64", "BOOL", "TIMESTAMP", "BYTES"],
    structure: ("STRUCT<", ">"),
    list: ("ARRAY<", ">"),
    field_sep: " ",
};

impl Dialect {
    fn type_of(&self, ty: &ColumnType) -> String {
        let [utf8, int64, float64, boolean, timestamp, binary] = self.scalars;
        match ty {
            ColumnType::Utf8 | ColumnType::Json => utf8.into(),
            ColumnType::Int64 => int64.into(),
            ColumnType::Float64 => float64.into(),
            ColumnType::Bool => boolean.into(),
            ColumnType::Timestamp => timestamp.into(),
            ColumnType::Binary => binary.into(),
            ColumnType::Struct(fields) => {
                let inner: Vec<String> =
                    fields.iter().map(|f| format!("{}{}{}", f.name, self.field_sep, self.type_of(&f.ty))).collect();
                format!("{}{}{}", self.structure.0, inner.join(", "), self.structure.1)
            }
            ColumnType::List(item) => format!("{}{}{}", self.list.0, self.type_of(item), self.list.1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ColumnDef;

    #[test]
    fn every_engine_gets_every_table_with_the_dt_partition() {
        let catalog = Catalog::load().unwrap();
        for engine in [Engine::Duckdb, Engine::Athena, Engine::Trino, Engine::Spark, Engine::Bigquery] {
            let text = ddl(&catalog, engine, "s3://bucket/lake/");
            for (_, table) in catalog.tables() {
                assert!(text.contains(&format!("s3://bucket/lake/{}", table.name)), "{engine:?}: {}", table.name);
            }
            assert_eq!(text.matches("CREATE").count(), catalog.tables().count(), "{engine:?}");
            assert!(text.contains("dt"), "{engine:?}");
            assert!(!text.contains("lake//"), "{engine:?}");
        }
    }

    #[test]
    fn nested_types_map_per_engine() {
        let ty = ColumnType::List(Box::new(ColumnType::Struct(vec![ColumnDef {
            name: "name".into(),
            ty: ColumnType::Utf8,
            nullable: true,
            source: crate::schema::Source::Path(vec!["name".into()]),
            doc: String::new(),
        }])));
        assert_eq!(HIVE.type_of(&ty), "array<struct<name:string>>");
        assert_eq!(TRINO.type_of(&ty), "array(row(name varchar))");
        assert_eq!(BIGQUERY.type_of(&ty), "ARRAY<STRUCT<name STRING>>");
        assert_eq!(sql_string("it's"), "'it''s'");
    }
}
