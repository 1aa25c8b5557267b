//! Creating a table on first start, or opening it and bringing its schema up to `schemas/`.
//!
//! A table is created with the Arrow schema of its `schemas/` file plus `dt` (DATE) as partition
//! column. Two replicas starting at once both try: the log's create-only first entry lets one
//! win, and the other opens what it made. On later starts a column added to `schemas/` (at any
//! depth of a struct) becomes an `ALTER TABLE` metadata commit; any other difference (a type
//! changed, a column gone, a column made optional) stops with the column's name.

use std::sync::Arc;

use arrow_schema::{DataType as ArrowType, Field, Schema};
use delta_kernel::committer::FileSystemCommitter;
use delta_kernel::engine::arrow_conversion::TryFromArrow;
use delta_kernel::expressions::{ColumnName, Scalar};
use delta_kernel::schema::{DataType, StructField, StructType};
use delta_kernel::transaction::create_table::create_table;
use delta_kernel::transaction::data_layout::DataLayout;
use delta_kernel::transaction::{CommitResult, UpdateTableOperation};
use delta_kernel::{Snapshot, SnapshotRef};

use super::{DeltaLake, ENGINE_INFO, LakeError, TableState};
use crate::schema::Table;
use crate::sink::StatsSpec;

/// The partition column every table has; not stored in the Parquet files.
pub(crate) const PARTITION_COLUMN: &str = "dt";

/// A change that makes the table's schema match ours.
#[derive(Debug, PartialEq)]
enum Change {
    /// A new nullable field under `parent` (empty: top level).
    Add { parent: Vec<String>, field: StructField },
}

impl DeltaLake {
    /// Creates or opens the table and applies additive schema changes; afterwards commits can
    /// use it. Idempotent: a prepared table is not read again.
    pub fn prepare(&self, table: Table) -> Result<Arc<StatsSpec>, LakeError> {
        if let Some(state) = self.state().get(&table) {
            return Ok(state.stats.clone());
        }
        let wanted = self.wanted_schema(table)?;
        let snapshot = match self.open(table) {
            Ok(snapshot) => snapshot,
            Err(_) => self.create(table, wanted.clone())?,
        };
        let snapshot = self.evolve(table, snapshot, &wanted)?;
        let engine = self.engine.as_ref();
        let app_version = snapshot.get_app_id_version(&self.app_id, engine).map_err(LakeError::kernel(table))?;
        let stats = Arc::new(stats_spec(table, &snapshot, engine)?);
        tracing::info!(table = table.name(), version = snapshot.version(), app_version, "delta table ready");
        let state = TableState { snapshot, stats: stats.clone(), app_version, stale: false };
        self.state().insert(table, state);
        Ok(stats)
    }

    /// The table's schema as `schemas/` describes it, `dt` last.
    fn wanted_schema(&self, table: Table) -> Result<Arc<StructType>, LakeError> {
        let arrow = &self.catalog.table(table).arrow;
        let mut fields: Vec<Field> = arrow.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(PARTITION_COLUMN, ArrowType::Date32, false));
        StructType::try_from_arrow(&Schema::new(fields))
            .map(Arc::new)
            .map_err(|e| LakeError::Other { table: table.name(), message: format!("schema conversion: {e}") })
    }

    fn open(&self, table: Table) -> Result<SnapshotRef, LakeError> {
        let url = self.table_url(table)?;
        Snapshot::builder_for(url.as_str()).build(self.engine.as_ref()).map_err(LakeError::kernel(table))
    }

    fn create(&self, table: Table, schema: Arc<StructType>) -> Result<SnapshotRef, LakeError> {
        let url = self.table_url(table)?;
        if let Some(dir) = &self.local_dir {
            let dir = dir.join(table.name());
            std::fs::create_dir_all(&dir).map_err(|e| LakeError::Other {
                table: table.name(),
                message: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let engine = self.engine.as_ref();
        let built = create_table(url.as_str(), schema, ENGINE_INFO, true)
            .with_data_layout(DataLayout::partitioned([PARTITION_COLUMN]))
            .build(engine, Box::new(FileSystemCommitter::new()));
        let txn = match built {
            Ok(txn) => txn,
            // Created since we looked (another replica): open it.
            Err(delta_kernel::KernelError::TableAlreadyExistsAtPath(_)) => return self.open(table),
            Err(e) => return Err(LakeError::kernel(table)(e)),
        };
        match txn.commit(engine).map_err(LakeError::kernel(table))? {
            CommitResult::Committed(_) => tracing::info!(table = table.name(), url = %url, "created the delta table"),
            CommitResult::Conflicted(_) => {
                tracing::info!(table = table.name(), "another writer created the table first")
            }
            CommitResult::Retryable(r) => return Err(LakeError::kernel(table)(r.error)),
        }
        self.open(table)
    }

    fn evolve(&self, table: Table, snapshot: SnapshotRef, wanted: &StructType) -> Result<SnapshotRef, LakeError> {
        let changes = diff(table, &snapshot.schema(), wanted)?;
        if changes.is_empty() {
            return Ok(snapshot);
        }
        let engine = self.engine.as_ref();
        let mut builder = snapshot.clone().update_table(UpdateTableOperation::AlterTable, ENGINE_INFO, false);
        let mut names = Vec::new();
        for Change::Add { parent, field } in changes {
            names.push(parent.iter().chain([field.name()]).cloned().collect::<Vec<_>>().join("."));
            builder = if parent.is_empty() {
                builder.add_column(field)
            } else {
                builder.add_column_at(ColumnName::new(parent), field)
            };
        }
        let txn = builder.build(engine, Box::new(FileSystemCommitter::new())).map_err(LakeError::kernel(table))?;
        match txn.commit(engine).map_err(LakeError::kernel(table))? {
            CommitResult::Committed(c) => {
                tracing::info!(table = table.name(), version = c.commit_version(), columns = ?names, "added columns to the delta table")
            }
            CommitResult::Conflicted(_) => {
                tracing::info!(table = table.name(), "the schema changed meanwhile; reading it again")
            }
            CommitResult::Retryable(r) => return Err(LakeError::kernel(table)(r.error)),
        }
        let snapshot = Snapshot::builder_from(snapshot).build(engine).map_err(LakeError::kernel(table))?;
        // Another replica may have added the same columns: check again, nothing may remain.
        match diff(table, &snapshot.schema(), wanted)?.first() {
            None => Ok(snapshot),
            Some(Change::Add { field, .. }) => Err(LakeError::Other {
                table: table.name(),
                message: format!("column {} is still missing after the schema update", field.name()),
            }),
        }
    }
}

/// The statistics columns and physical schema of the table's write state.
pub(super) fn stats_spec(table: Table, snapshot: &SnapshotRef, engine: &super::Engine) -> Result<StatsSpec, LakeError> {
    let txn = snapshot
        .clone()
        .update_table(UpdateTableOperation::Write, ENGINE_INFO, true)
        .build(engine, Box::new(FileSystemCommitter::new()))
        .map_err(LakeError::kernel(table))?;
    let state = txn.write_state().map_err(LakeError::kernel(table))?;
    let context = state
        .write_context_builder()
        .with_partition_values([(PARTITION_COLUMN.to_owned(), Scalar::Date(0))].into())
        .build()
        .map_err(LakeError::kernel(table))?;
    Ok(StatsSpec { columns: context.stats_columns().to_vec(), physical: context.physical_data_schema().clone() })
}

/// What must be added to `have` to make it `want`; an error for anything else.
fn diff(table: Table, have: &StructType, want: &StructType) -> Result<Vec<Change>, LakeError> {
    let mut changes = Vec::new();
    diff_struct(table, &mut Vec::new(), have, want, &mut changes)?;
    Ok(changes)
}

fn diff_struct(
    table: Table,
    path: &mut Vec<String>,
    have: &StructType,
    want: &StructType,
    changes: &mut Vec<Change>,
) -> Result<(), LakeError> {
    let incompatible = |path: &[String], name: &str, problem: String| LakeError::Incompatible {
        table: table.name(),
        column: path.iter().map(String::as_str).chain([name]).collect::<Vec<_>>().join("."),
        problem,
    };
    for field in have.fields() {
        if want.field(field.name()).is_none() {
            let problem = "is in the table but not in schemas/ (columns are never dropped)".to_owned();
            return Err(incompatible(path, field.name(), problem));
        }
    }
    for field in want.fields() {
        let Some(existing) = have.field(field.name()) else {
            if !field.is_nullable() {
                let problem = "is new but NOT NULL: files already in the table cannot have it".to_owned();
                return Err(incompatible(path, field.name(), problem));
            }
            changes.push(Change::Add { parent: path.clone(), field: field.clone() });
            continue;
        };
        if existing.is_nullable() != field.is_nullable() {
            let problem = format!(
                "changed from {} to {}",
                if existing.is_nullable() { "nullable" } else { "NOT NULL" },
                if field.is_nullable() { "nullable" } else { "NOT NULL" }
            );
            return Err(incompatible(path, field.name(), problem));
        }
        match (existing.data_type(), field.data_type()) {
            (DataType::Struct(h), DataType::Struct(w)) => {
                path.push(field.name().clone());
                diff_struct(table, path, h, w, changes)?;
                path.pop();
            }
            (h, w) if h == w => {}
            (h, w) => return Err(incompatible(path, field.name(), format!("changed type from {h} to {w}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: Vec<StructField>) -> StructType {
        StructType::try_new(fields).unwrap()
    }

    #[test]
    fn added_nullable_columns_are_changes_at_any_depth() {
        let inner = |extra: bool| {
            let mut f = vec![StructField::nullable("a", DataType::STRING)];
            if extra {
                f.push(StructField::nullable("b", DataType::LONG));
            }
            DataType::Struct(Box::new(schema(f)))
        };
        let have =
            schema(vec![StructField::not_null("id", DataType::STRING), StructField::nullable("s", inner(false))]);
        let want = schema(vec![
            StructField::not_null("id", DataType::STRING),
            StructField::nullable("s", inner(true)),
            StructField::nullable("new_col", DataType::BOOLEAN),
        ]);
        let changes = diff(Table::Bookings, &have, &want).unwrap();
        assert_eq!(
            changes,
            vec![
                Change::Add { parent: vec!["s".into()], field: StructField::nullable("b", DataType::LONG) },
                Change::Add { parent: vec![], field: StructField::nullable("new_col", DataType::BOOLEAN) },
            ]
        );
        assert!(diff(Table::Bookings, &want, &want).unwrap().is_empty());
    }

    #[test]
    fn other_differences_name_the_column() {
        let have =
            schema(vec![StructField::nullable("n", DataType::LONG), StructField::nullable("gone", DataType::LONG)]);
        let typed =
            schema(vec![StructField::nullable("n", DataType::STRING), StructField::nullable("gone", DataType::LONG)]);
        let e = diff(Table::Bookings, &have, &typed).unwrap_err();
        assert!(e.is_permanent() && e.to_string().contains("column n changed type"), "{e}");
        let dropped = schema(vec![StructField::nullable("n", DataType::LONG)]);
        let e = diff(Table::Bookings, &have, &dropped).unwrap_err();
        assert!(e.to_string().contains("column gone is in the table"), "{e}");
        let required = schema(vec![
            StructField::nullable("n", DataType::LONG),
            StructField::nullable("gone", DataType::LONG),
            StructField::not_null("x", DataType::LONG),
        ]);
        let e = diff(Table::Bookings, &have, &required).unwrap_err();
        assert!(e.to_string().contains("column x is new but NOT NULL"), "{e}");
    }
}
