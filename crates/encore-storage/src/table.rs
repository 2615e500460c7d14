//! What a stored table is: its schema, the column that partitions it by time, the column that
//! identifies a row, and how its columns are named and encoded in the lake.

use arrow::datatypes::SchemaRef;

/// What a table stores and how its rows are keyed.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// directory name, e.g. `playback`
    pub name: &'static str,
    pub schema: SchemaRef,
    /// Int64 epoch-ms column that partitions rows by UTC day
    pub ts_column: &'static str,
    /// Utf8 column that identifies a row (unique in the log)
    pub id_column: &'static str,
    /// columns with (nearly) a distinct value per row, stored without a dictionary
    pub high_cardinality: &'static [&'static str],
    /// Int64 columns that hold times, and their unit: Parquet `TIMESTAMP` (UTC) in the lake
    pub times: &'static [(&'static str, arrow::datatypes::TimeUnit)],
    /// columns named otherwise in the lake, so every table follows `ts_<what>_<unit>`
    pub lake_names: &'static [(&'static str, &'static str)],
}
