//! Arrow batches as contract rows, and conforming a foreign batch (a user's Parquet file) to the
//! canonical schema: columns matched by name, cast where Arrow can, optional columns filled.

use crate::contract::{Cell, Contract, FieldRule, Kind, Row, is_country, is_uuid};
use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, RecordBatch, StringArray,
    StructArray, UInt32Array, UInt64Array, new_null_array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::sync::Arc;

enum Col<'a> {
    Absent,
    Utf8(&'a StringArray),
    I64(&'a Int64Array),
    U32(&'a UInt32Array),
    U64(&'a UInt64Array),
    F64(&'a Float64Array),
    Bool(&'a BooleanArray),
    List(&'a dyn Array),
    Struct(&'a dyn Array),
}

/// Column accessors of one batch, in the order of a contract's fields.
pub struct BatchRows<'a> {
    cols: Vec<Col<'a>>,
}

impl<'a> BatchRows<'a> {
    pub fn new(contract: &Contract, batch: &'a RecordBatch) -> BatchRows<'a> {
        let cols = contract
            .fields
            .iter()
            .map(|f| match batch.column_by_name(f.name) {
                None => Col::Absent,
                Some(a) => {
                    let any = a.as_any();
                    match a.data_type() {
                        DataType::Utf8 => any.downcast_ref().map_or(Col::Absent, Col::Utf8),
                        DataType::Int64 => any.downcast_ref().map_or(Col::Absent, Col::I64),
                        DataType::UInt32 => any.downcast_ref().map_or(Col::Absent, Col::U32),
                        DataType::UInt64 => any.downcast_ref().map_or(Col::Absent, Col::U64),
                        DataType::Float64 => any.downcast_ref().map_or(Col::Absent, Col::F64),
                        DataType::Boolean => any.downcast_ref().map_or(Col::Absent, Col::Bool),
                        DataType::List(_) => Col::List(a.as_ref()),
                        DataType::Struct(_) => Col::Struct(a.as_ref()),
                        _ => Col::Absent,
                    }
                }
            })
            .collect();
        BatchRows { cols }
    }

    /// Column-at-a-time screening of the field rules: `true` marks a row that may break one
    /// (it then gets the row-wise check, which names the violation); `false` rows are known to
    /// pass every field rule. Never misses a violation; this is the ingest hot path.
    pub fn screen(&self, contract: &Contract, n: usize) -> Vec<bool> {
        use rayon::prelude::*;
        // one task per column, OR-ed together
        contract
            .fields
            .par_iter()
            .zip(self.cols.par_iter())
            .map(|(rule, col)| {
                let mut suspect = vec![false; n];
                screen_column(rule, col, &mut suspect);
                suspect
            })
            .reduce(
                || vec![false; n],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(x, y)| *x |= y);
                    a
                },
            )
    }

    pub fn row(&self, i: usize) -> BatchRow<'_, 'a> {
        BatchRow { rows: self, i }
    }
}

impl std::fmt::Debug for BatchRows<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchRows")
            .field("columns", &self.cols.len())
            .finish()
    }
}

#[derive(Debug)]
pub struct BatchRow<'r, 'a> {
    rows: &'r BatchRows<'a>,
    i: usize,
}

impl Row for BatchRow<'_, '_> {
    fn cell(&self, field: usize) -> Cell<'_> {
        let i = self.i;
        macro_rules! get {
            ($a:expr, $f:expr) => {
                if $a.is_null(i) { Cell::Null } else { $f }
            };
        }
        match &self.rows.cols[field] {
            Col::Absent => Cell::Missing,
            Col::Utf8(a) => get!(a, Cell::Str(a.value(i))),
            Col::I64(a) => get!(a, Cell::Int(a.value(i))),
            Col::U32(a) => get!(a, Cell::Int(i64::from(a.value(i)))),
            Col::U64(a) => get!(a, Cell::Int(i64::try_from(a.value(i)).unwrap_or(i64::MAX))),
            Col::F64(a) => get!(a, Cell::Float(a.value(i))),
            Col::Bool(a) => get!(a, Cell::Bool(a.value(i))),
            Col::List(a) => get!(a, Cell::List),
            Col::Struct(a) => get!(a, Cell::Object),
        }
    }
}

/// The canonical schema with every field nullable: what a batch looks like before validation.
pub fn loose_schema(canonical: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        canonical
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// Reshapes `batch` (any schema) to the loose canonical schema: columns by name, cast to the
/// canonical type, missing columns as nulls. Fails naming the column that cannot be cast.
pub fn conform(
    batch: &RecordBatch,
    canonical: &SchemaRef,
) -> Result<RecordBatch, encore_core::Invalid> {
    let loose = loose_schema(canonical);
    let n = batch.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(canonical.fields().len());
    for field in canonical.fields() {
        let col = match batch.column_by_name(field.name()) {
            None => new_null_array(field.data_type(), n),
            Some(c) if c.data_type() == field.data_type() => Arc::clone(c),
            Some(c) => arrow::compute::cast(c, field.data_type()).map_err(|e| {
                format!(
                    "column `{}` has type {}, expected {} ({e})",
                    field.name(),
                    c.data_type(),
                    field.data_type()
                )
            })?,
        };
        columns.push(col);
    }
    RecordBatch::try_new(loose, columns).map_err(|e| encore_core::Invalid(e.to_string()))
}

/// Fills nulls of optional-but-non-nullable canonical columns with their defaults (false, empty
/// list, all-false struct) and re-types the batch with the canonical schema. Call on rows that
/// passed the contract, so required columns hold no nulls.
pub fn finish(
    batch: &RecordBatch,
    canonical: &SchemaRef,
) -> Result<RecordBatch, encore_core::Invalid> {
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, col) in canonical.fields().iter().zip(batch.columns()) {
        if field.is_nullable() || col.null_count() == 0 {
            columns.push(Arc::clone(col));
            continue;
        }
        columns.push(fill_default(col, field.data_type())?);
    }
    RecordBatch::try_new(Arc::clone(canonical), columns)
        .map_err(|e| encore_core::Invalid(e.to_string()))
}

fn fill_default(col: &ArrayRef, data_type: &DataType) -> Result<ArrayRef, String> {
    match data_type {
        DataType::Boolean => {
            let a = col
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or("boolean column expected")?;
            Ok(Arc::new(
                a.iter()
                    .map(|v| Some(v.unwrap_or(false)))
                    .collect::<BooleanArray>(),
            ))
        }
        DataType::List(item) => {
            let a = col
                .as_any()
                .downcast_ref::<ListArray>()
                .ok_or("list column expected")?;
            // a null list becomes an empty one: same values, null entries get length 0
            let lengths = (0..a.len()).map(|i| {
                if a.is_null(i) {
                    0
                } else {
                    a.value_length(i) as usize
                }
            });
            let values: Vec<ArrayRef> = (0..a.len())
                .filter(|&i| !a.is_null(i))
                .map(|i| a.value(i))
                .collect();
            let refs: Vec<&dyn Array> = values.iter().map(|v| v.as_ref()).collect();
            let values = if refs.is_empty() {
                new_null_array(item.data_type(), 0)
            } else {
                arrow::compute::concat(&refs).map_err(|e| e.to_string())?
            };
            Ok(Arc::new(ListArray::new(
                Arc::clone(item),
                OffsetBuffer::from_lengths(lengths),
                values,
                None,
            )))
        }
        DataType::Struct(fields) => {
            let a = col
                .as_any()
                .downcast_ref::<StructArray>()
                .ok_or("struct column expected")?;
            let children: Result<Vec<ArrayRef>, String> = fields
                .iter()
                .zip(a.columns())
                .map(|(f, c)| {
                    // a null struct means "no flags": its children read as defaults
                    let masked: ArrayRef = match a.nulls() {
                        Some(nulls) => {
                            let keep = BooleanArray::from(nulls.iter().collect::<Vec<bool>>());
                            arrow::compute::nullif(
                                c,
                                &arrow::compute::not(&keep).map_err(|e| e.to_string())?,
                            )
                            .map_err(|e| e.to_string())?
                        }
                        None => Arc::clone(c),
                    };
                    if f.is_nullable() || masked.null_count() == 0 {
                        Ok(masked)
                    } else {
                        fill_default(&masked, f.data_type())
                    }
                })
                .collect();
            Ok(Arc::new(StructArray::new(fields.clone(), children?, None)))
        }
        other => Err(format!("no default for a missing {other} value")),
    }
}

fn mark_nulls(a: &dyn Array, required: bool, suspect: &mut [bool]) {
    if required && a.null_count() > 0 {
        for (i, s) in suspect.iter_mut().enumerate() {
            *s |= a.is_null(i);
        }
    }
}

fn screen_ints(values: impl Iterator<Item = i64>, min: i64, max: i64, suspect: &mut [bool]) {
    for (s, v) in suspect.iter_mut().zip(values) {
        *s |= v < min || v > max;
    }
}

fn screen_column(rule: &FieldRule, col: &Col<'_>, suspect: &mut [bool]) {
    match (rule.kind, col) {
        (_, Col::Absent) => {
            if rule.required {
                suspect.iter_mut().for_each(|s| *s = true);
            }
        }
        (Kind::Str | Kind::Uuid | Kind::Enum(_) | Kind::Country, Col::Utf8(a)) => {
            mark_nulls(*a, rule.required, suspect);
            // a one-entry cache: enum-like columns repeat a handful of values
            let mut last_ok: Option<&str> = None;
            for (i, s) in suspect.iter_mut().enumerate() {
                if a.is_null(i) {
                    continue;
                }
                let v = a.value(i);
                if last_ok == Some(v) {
                    continue;
                }
                let ok = match rule.kind {
                    Kind::Str => !v.is_empty(),
                    Kind::Uuid => is_uuid(v),
                    Kind::Enum(names) => names.contains(&v),
                    Kind::Country => is_country(v),
                    _ => false,
                };
                if ok && !matches!(rule.kind, Kind::Uuid) {
                    last_ok = Some(v);
                }
                *s |= !ok;
            }
        }
        (Kind::Int { min, max }, Col::I64(a)) => {
            mark_nulls(*a, rule.required, suspect);
            screen_ints(a.values().iter().copied(), min, max, suspect);
        }
        (Kind::Int { min, max }, Col::U32(a)) => {
            mark_nulls(*a, rule.required, suspect);
            screen_ints(a.values().iter().map(|v| i64::from(*v)), min, max, suspect);
        }
        (Kind::Int { min, max }, Col::U64(a)) => {
            mark_nulls(*a, rule.required, suspect);
            screen_ints(
                a.values()
                    .iter()
                    .map(|v| i64::try_from(*v).unwrap_or(i64::MAX)),
                min,
                max,
                suspect,
            );
        }
        (Kind::Float { min, max }, Col::F64(a)) => {
            mark_nulls(*a, rule.required, suspect);
            for (i, s) in suspect.iter_mut().enumerate() {
                let v = a.value(i);
                let in_range = (min..=max).contains(&v);
                *s |= !a.is_null(i) && !in_range;
            }
        }
        (Kind::Bool, Col::Bool(a)) => mark_nulls(*a, rule.required, suspect),
        (Kind::List, Col::List(a)) | (Kind::Object, Col::Struct(a)) => {
            mark_nulls(*a, rule.required, suspect)
        }
        // a column of another type: let the row-wise check name it
        _ => suspect.iter_mut().for_each(|s| *s = true),
    }
}
