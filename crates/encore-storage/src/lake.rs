//! How a log's rows look in its Parquet segments, for the readers outside encore (DuckDB,
//! Spark, Trino, pandas): the lake schema of a table beside the Arrow schema encore works in.
//!
//! - a time is a Parquet `TIMESTAMP` adjusted to UTC (Arrow `Timestamp(unit, "UTC")`), named
//!   `ts_<what>_<unit>` in every table (`ts_start_ms`, `ts_ms`; the spans' `start_ms` is
//!   `ts_start_ms` in the lake);
//! - unsigned integers are signed ones wide enough for every value (`UInt32` as `INT64`),
//!   which every Parquet reader reads (older Hive and JVM readers refuse `UINT_32`);
//! - everything else is as in memory.
//!
//! Segments written before this layout (Int64 times, unsigned integers) read back the same: a
//! column is cast to the in-memory type whatever the file holds.

use crate::error::StorageError;
use crate::table::TableSpec;
use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use std::sync::Arc;

/// An Arrow type as the lake stores it: unsigned integers widened to signed, inside lists and
/// structs too.
fn lake_type(t: &DataType) -> DataType {
    match t {
        DataType::UInt8 | DataType::UInt16 => DataType::Int32,
        DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::List(f) => DataType::List(Arc::new(lake_field(f))),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(lake_field(f))),
        DataType::Struct(fields) => DataType::Struct(Fields::from(
            fields.iter().map(|f| lake_field(f)).collect::<Vec<_>>(),
        )),
        other => other.clone(),
    }
}

fn lake_field(f: &Field) -> Field {
    Field::new(f.name(), lake_type(f.data_type()), f.is_nullable())
}

/// The schema `spec`'s segments are written in.
pub fn lake_schema(spec: &TableSpec) -> SchemaRef {
    let fields: Vec<Field> = spec
        .schema
        .fields()
        .iter()
        .map(|f| {
            let name = spec
                .lake_names
                .iter()
                .find(|(from, _)| *from == f.name())
                .map_or(f.name().as_str(), |(_, to)| to);
            match spec.times.iter().find(|(c, _)| *c == f.name()) {
                Some((_, unit)) => Field::new(
                    name,
                    DataType::Timestamp(*unit, Some("UTC".into())),
                    f.is_nullable(),
                ),
                None => Field::new(name, lake_type(f.data_type()), f.is_nullable()),
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn cast(column: &ArrayRef, to: &DataType) -> Result<ArrayRef, StorageError> {
    if column.data_type() == to {
        return Ok(Arc::clone(column));
    }
    // safe = false: a value that does not fit is an error, never a null
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    cast_with_options(column, to, &options).map_err(StorageError::arrow)
}

/// `batch` (in the table's schema) as the lake stores it.
pub fn to_lake(batch: &RecordBatch, lake: &SchemaRef) -> Result<RecordBatch, StorageError> {
    let columns = batch
        .columns()
        .iter()
        .zip(lake.fields())
        .map(|(c, f)| cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(lake), columns).map_err(StorageError::arrow)
}

/// A batch read from a segment back in the table's schema: its columns are the schema's fields
/// `indices` (ascending, as a projection reads them), or all of them.
pub fn from_lake(
    batch: &RecordBatch,
    schema: &SchemaRef,
    indices: Option<&[usize]>,
) -> Result<RecordBatch, StorageError> {
    let positions: Vec<usize> = match indices {
        Some(idx) => {
            let mut idx = idx.to_vec();
            idx.sort_unstable();
            idx.dedup();
            idx
        }
        None => (0..schema.fields().len()).collect(),
    };
    if positions.len() != batch.num_columns() {
        return Err(StorageError::Arrow {
            message: format!(
                "a segment batch has {} columns where {} were read",
                batch.num_columns(),
                positions.len()
            ),
        });
    }
    let fields: Vec<Field> = positions.iter().map(|&i| schema.field(i).clone()).collect();
    let columns = batch
        .columns()
        .iter()
        .zip(&fields)
        .map(|(c, f)| cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(StorageError::arrow)
}

/// The time units of the usual columns, for a [`TableSpec`].
pub const MILLIS: TimeUnit = TimeUnit::Millisecond;
pub const NANOS: TimeUnit = TimeUnit::Nanosecond;
