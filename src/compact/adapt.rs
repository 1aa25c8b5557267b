//! Bringing a batch read from an older file to the table's current schema: a file written before
//! a column was added lacks it (at any depth of a struct), and reads as nulls there, the way every
//! Delta reader sees it.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StructArray, new_null_array};
use arrow_schema::{ArrowError, DataType, Field, Fields, SchemaRef};

/// `batch` with exactly `schema`'s columns, in its order; a column the batch lacks is null.
pub(crate) fn to_schema(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return RecordBatch::try_new(schema.clone(), batch.columns().to_vec());
    }
    let rows = batch.num_rows();
    extra(batch.schema().fields(), schema.fields())?;
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) => column_to(column, field),
            None if field.is_nullable() => Ok(new_null_array(field.data_type(), rows)),
            None => Err(ArrowError::SchemaError(format!("a file lacks the NOT NULL column {}", field.name()))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

fn column_to(column: &ArrayRef, field: &Field) -> Result<ArrayRef, ArrowError> {
    match (column.data_type(), field.data_type()) {
        (have, want) if have == want => Ok(column.clone()),
        (DataType::Struct(_), DataType::Struct(want)) => {
            let Some(array) = column.as_any().downcast_ref::<StructArray>() else {
                return Err(ArrowError::SchemaError(format!("column {} is not a struct", field.name())));
            };
            struct_to(array, want).map(|a| Arc::new(a) as ArrayRef)
        }
        _ => arrow_cast::cast(column, field.data_type()),
    }
}

fn struct_to(array: &StructArray, want: &Fields) -> Result<StructArray, ArrowError> {
    let rows = array.len();
    extra(array.fields(), want)?;
    let children = want
        .iter()
        .map(|field| match array.column_by_name(field.name()) {
            Some(child) => column_to(child, field),
            None => Ok(new_null_array(field.data_type(), rows)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    StructArray::try_new(want.clone(), children, array.nulls().cloned())
}

/// A column of the file the table's schema lacks (a newer writer added it): compacting with this
/// schema would drop its values, so it is an error.
fn extra(have: &Fields, want: &Fields) -> Result<(), ArrowError> {
    match have.iter().find(|f| want.find(f.name()).is_none()) {
        Some(f) => Err(ArrowError::SchemaError(format!(
            "a file has the column {}, which the table's schema lacks; compacting would drop it",
            f.name()
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::Schema;

    #[test]
    fn a_missing_column_and_a_missing_struct_field_read_as_null() {
        let inner_old = Fields::from(vec![Field::new("a", DataType::Utf8, true)]);
        let old = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("s", DataType::Struct(inner_old.clone()), true),
        ]));
        let s = StructArray::try_new(inner_old, vec![Arc::new(StringArray::from(vec!["x"]))], None).unwrap();
        let batch = RecordBatch::try_new(old, vec![Arc::new(StringArray::from(vec!["e1"])), Arc::new(s)]).unwrap();
        let inner_new =
            Fields::from(vec![Field::new("a", DataType::Utf8, true), Field::new("b", DataType::Int64, true)]);
        let new = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Struct(inner_new), true),
        ]));
        let out = to_schema(&batch, &new).unwrap();
        assert_eq!(out.schema(), new);
        assert!(out.column(1).as_any().downcast_ref::<Int64Array>().unwrap().is_null(0));
        let s = out.column(2).as_any().downcast_ref::<StructArray>().unwrap();
        assert_eq!(s.column(0).as_any().downcast_ref::<StringArray>().unwrap().value(0), "x");
        assert!(s.column(1).is_null(0));
    }

    #[test]
    fn a_column_the_schema_lacks_is_an_error_not_a_silent_drop() {
        let wide = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("new", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            wide,
            vec![Arc::new(StringArray::from(vec!["e1"])), Arc::new(Int64Array::from(vec![7]))],
        )
        .unwrap();
        let narrow = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
        let e = to_schema(&batch, &narrow).unwrap_err().to_string();
        assert!(e.contains("column new"), "{e}");
    }

    #[test]
    fn a_missing_not_null_column_is_an_error() {
        let old = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(old, vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
        let new = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
        assert!(to_schema(&batch, &new).is_err());
    }
}
