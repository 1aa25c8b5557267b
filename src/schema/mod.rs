//! Table schemas, parsed from the files in `schemas/` (embedded at build time).
//!
//! These files are the single source of every Parquet column: [`Catalog::load`] turns each into a
//! [`TableSchema`] (typed column definitions with their JSON source) and an Arrow [`SchemaRef`].
//! Invariants checked at load: every table starts with the columns of [`COMMON_COLUMNS`], column
//! names are unique, every type and source parses. A schema file that breaks one is a build defect,
//! caught by this module's tests.

mod column;
pub(crate) mod ddl;

pub(crate) use column::{ColumnDef, ColumnType, MetaField, Source};

use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};
use serde::Deserialize;

/// Columns every table starts with, in this order.
pub(crate) const COMMON_COLUMNS: [&str; 6] =
    ["event_id", "event_type", "event_time", "received_at", "api_version", "raw_event"];

/// The embedded schema files, in table-id order.
const FILES: [(&str, &str); 5] = [
    ("bookings.toml", include_str!("../../schemas/bookings.toml")),
    ("conversations.toml", include_str!("../../schemas/conversations.toml")),
    ("other_events.toml", include_str!("../../schemas/other_events.toml")),
    ("dead_letter.toml", include_str!("../../schemas/dead_letter.toml")),
    ("contacts.toml", include_str!("../../schemas/contacts.toml")),
];

/// Which table a row belongs to. The discriminant indexes [`Catalog::tables`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Bookings = 0,
    Conversations = 1,
    OtherEvents = 2,
    DeadLetter = 3,
    Contacts = 4,
    /// Derived, not delivered: one row per booking, its latest state (`compact::current`).
    BookingsCurrent = 5,
}

impl Table {
    /// The tables deliveries land in, in table-id order.
    pub const ALL: [Table; 5] =
        [Table::Bookings, Table::Conversations, Table::OtherEvents, Table::DeadLetter, Table::Contacts];

    /// Every table of the lake: the delivered ones, then `bookings_current`.
    pub const LAKE: [Table; 6] = [
        Table::Bookings,
        Table::Conversations,
        Table::OtherEvents,
        Table::DeadLetter,
        Table::Contacts,
        Table::BookingsCurrent,
    ];

    /// The table's name, as used in object keys and in the schema file.
    pub fn name(self) -> &'static str {
        match self {
            Table::Bookings => "bookings",
            Table::Conversations => "conversations",
            Table::OtherEvents => "other_events",
            Table::DeadLetter => "dead_letter",
            Table::Contacts => "contacts",
            Table::BookingsCurrent => "bookings_current",
        }
    }
}

/// A schema file that does not describe a valid table.
#[derive(Debug, thiserror::Error)]
#[error("schema file {file}: {message}")]
pub struct SchemaError {
    pub file: String,
    pub message: String,
}

/// One table: its column definitions and the Arrow schema built from them.
#[derive(Debug)]
pub struct TableSchema {
    pub name: String,
    pub doc: String,
    pub columns: Vec<ColumnDef>,
    pub arrow: SchemaRef,
}

/// All tables, indexed by [`Table`].
#[derive(Debug)]
pub struct Catalog {
    tables: Vec<TableSchema>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    table: String,
    doc: String,
    columns: Vec<column::RawColumn>,
}

impl Catalog {
    /// Parses and checks the embedded schema files.
    pub fn load() -> Result<Catalog, SchemaError> {
        let mut tables: Vec<TableSchema> = FILES
            .iter()
            .zip(Table::ALL)
            .map(|((file, text), table)| parse_table(file, text, table))
            .collect::<Result<_, _>>()?;
        let bookings = &tables[Table::Bookings as usize];
        let current = TableSchema {
            name: Table::BookingsCurrent.name().to_owned(),
            doc: "One row per booking_id: its bookings row with the greatest last_updated_time (a webhook row on ties), kept by oncehub-bridge (compaction rounds of serve, or `oncehub-bridge current`).".to_owned(),
            columns: bookings.columns.clone(),
            arrow: bookings.arrow.clone(),
        };
        tables.push(current);
        Ok(Catalog { tables })
    }

    pub fn table(&self, table: Table) -> &TableSchema {
        &self.tables[table as usize]
    }

    /// Every table of the lake, `bookings_current` last.
    pub fn tables(&self) -> impl Iterator<Item = (Table, &TableSchema)> {
        Table::LAKE.into_iter().zip(self.tables.iter())
    }
}

fn parse_table(file: &str, text: &str, table: Table) -> Result<TableSchema, SchemaError> {
    let err = |message: String| SchemaError { file: file.to_owned(), message };
    let def: FileDef = toml::from_str(text).map_err(|e| err(e.to_string()))?;
    if def.table != table.name() {
        return Err(err(format!("declares table {:?}, expected {:?}", def.table, table.name())));
    }
    let columns = def.columns.into_iter().map(ColumnDef::try_from).collect::<Result<Vec<_>, _>>().map_err(err)?;
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    if names.len() < COMMON_COLUMNS.len() || names[..COMMON_COLUMNS.len()] != COMMON_COLUMNS {
        return Err(err(format!("must start with the columns {COMMON_COLUMNS:?}")));
    }
    column::check_unique(&columns).map_err(err)?;
    let fields: Vec<_> = columns.iter().map(ColumnDef::arrow_field).collect();
    Ok(TableSchema { name: def.table, doc: def.doc, columns, arrow: Arc::new(Schema::new(fields)) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType, TimeUnit};

    #[test]
    fn every_embedded_schema_loads_with_the_fixed_columns() {
        let catalog = Catalog::load().expect("schemas load");
        let required: [(Table, &[&str]); 5] = [
            (
                Table::Bookings,
                &[
                    "booking_id",
                    "tracking_id",
                    "status",
                    "subject",
                    "starting_time",
                    "duration_minutes",
                    "owner_id",
                    "customer_timezone",
                    "customer_name",
                    "customer_email",
                    "in_trash",
                ],
            ),
            (
                Table::Conversations,
                &[
                    "conversation_id",
                    "status",
                    "initiated_by",
                    "contact_id",
                    "contact_email",
                    "owner_id",
                    "bot_id",
                    "website_id",
                ],
            ),
            (Table::OtherEvents, &[]),
            (Table::DeadLetter, &["received_at", "reason", "error", "raw_body"]),
            (Table::Contacts, &["contact_id", "email", "owner_id", "last_updated_time", "custom_fields", "source"]),
        ];
        for (table, cols) in required {
            let schema = &catalog.table(table).arrow;
            for name in COMMON_COLUMNS.iter().chain(cols.iter()) {
                assert!(schema.field_with_name(name).is_ok(), "{} lacks {name}", table.name());
            }
        }
    }

    #[test]
    fn arrow_types_follow_the_files() {
        let catalog = Catalog::load().unwrap();
        let b = &catalog.table(Table::Bookings).arrow;
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(b.field_with_name("starting_time").unwrap().data_type(), &ts);
        assert_eq!(b.field_with_name("duration_minutes").unwrap().data_type(), &DataType::Int64);
        assert_eq!(b.field_with_name("in_trash").unwrap().data_type(), &DataType::Boolean);
        assert!(!b.field_with_name("event_id").unwrap().is_nullable());
        let DataType::Struct(fs) = b.field_with_name("form_submission").unwrap().data_type() else {
            panic!("form_submission is a struct")
        };
        let DataType::List(item) = fs.find("custom_fields").unwrap().1.data_type() else {
            panic!("custom_fields is a list")
        };
        assert!(matches!(item.data_type(), DataType::Struct(f) if f.len() == 2));
        let d = &catalog.table(Table::DeadLetter).arrow;
        assert_eq!(d.field_with_name("raw_body").unwrap().data_type(), &DataType::Binary);
        assert!(d.field_with_name("event_id").unwrap().is_nullable());
    }

    #[test]
    fn a_file_missing_the_common_columns_is_rejected() {
        let text = "table = \"bookings\"\ndoc = \"d\"\n[[columns]]\nname = \"x\"\ntype = \"utf8\"\nsource = \"id\"\ndoc = \"d\"\n";
        let e = parse_table("t.toml", text, Table::Bookings).unwrap_err();
        assert!(e.message.contains("must start with"), "{e}");
    }

    #[test]
    fn unknown_keys_and_types_are_rejected() {
        let bad_type = "table = \"bookings\"\ndoc = \"d\"\n[[columns]]\nname = \"x\"\ntype = \"uuid\"\nsource = \"id\"\ndoc = \"d\"\n";
        assert!(parse_table("t.toml", bad_type, Table::Bookings).unwrap_err().message.contains("uuid"));
        let bad_key = "table = \"bookings\"\ndoc = \"d\"\ncolour = 1\n";
        assert!(parse_table("t.toml", bad_key, Table::Bookings).is_err());
    }
}
