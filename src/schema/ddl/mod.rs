//! `oncehub-bridge schema ddl`: CREATE statements for every table, generated from `schemas/`, so a
//! warehouse engine points at the lake in one step.
//!
//! For Delta tables (`delta`) each engine reads the table's own log, schema and partitions
//! included, so a statement only names the table's location; an empty table is still a table
//! (`bookings_current` included: the bridge keeps it). For the plain layout `bookings_current` is
//! a view over `bookings` (each booking's latest row).
//! For the plain layout (`parquet`: `<location>/<table>/dt=YYYY-MM-DD/part-*.parquet`) every
//! statement declares the columns in schema order plus the `dt` partition and says how partitions
//! are found. Both must work on a lake where a table has no rows yet.

mod delta;
mod parquet;

use super::ColumnType;
use super::{Catalog, Table, TableSchema};
use crate::lake::TableFormat;

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
pub(crate) fn ddl(catalog: &Catalog, engine: Engine, format: TableFormat, location: &str) -> String {
    let root = location.trim_end_matches('/');
    let mut out = String::new();
    if (engine, format) == (Engine::Duckdb, TableFormat::Delta) {
        // DuckDB's own extension (downloaded once by INSTALL; a no-op when it is installed).
        out.push_str("INSTALL delta;\nLOAD delta;\n");
    }
    for (id, table) in catalog.tables() {
        let dir = format!("{root}/{}", table.name);
        out.push_str(&match (format, id) {
            (TableFormat::Delta, _) => delta::statement(table, engine, &dir),
            (TableFormat::Parquet, Table::BookingsCurrent) => {
                parquet::current_view(&table.name, Table::Bookings.name(), engine)
            }
            (TableFormat::Parquet, _) => parquet::statement(table, engine, &dir),
        });
        out.push('\n');
    }
    out
}

/// The table's columns, one per line, in `dialect`.
fn columns(table: &TableSchema, dialect: &Dialect, quote: fn(&str) -> String) -> String {
    table
        .columns
        .iter()
        .map(|c| format!("  {} {}", quote(&c.name), dialect.type_of(&c.ty)))
        .collect::<Vec<_>>()
        .join(",\n")
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
    // The Hive connector has no zoned timestamps; `timestamp(3)` is its default precision (rows
    // read as UTC). With `hive.timestamp-precision=MICROSECONDS` use `timestamp(6)`.
    scalars: ["varchar", "bigint", "double", "boolean", "timestamp(3)", "varbinary"],
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
        for format in [TableFormat::Delta, TableFormat::Parquet] {
            for engine in [Engine::Duckdb, Engine::Athena, Engine::Trino, Engine::Spark, Engine::Bigquery] {
                let text = ddl(&catalog, engine, format, "s3://bucket/lake/");
                for (id, table) in catalog.tables() {
                    let dir = format!("s3://bucket/lake/{}", table.name);
                    let view = format == TableFormat::Parquet && id == Table::BookingsCurrent;
                    assert_eq!(text.contains(&dir), !view, "{engine:?} {format:?}: {}", table.name);
                }
                if format == TableFormat::Parquet {
                    assert!(text.contains("PARTITION BY booking_id"), "{engine:?}: bookings_current is a view");
                }
                let statements = text.matches("CREATE").count() + text.matches("register_table").count();
                assert_eq!(statements, catalog.tables().count(), "{engine:?} {format:?}");
                assert!(!text.contains("lake//"), "{engine:?}");
                if format == TableFormat::Parquet {
                    assert!(text.contains("dt"), "{engine:?}");
                }
            }
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
