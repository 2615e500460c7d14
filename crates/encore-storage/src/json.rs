//! Rows of a record batch as JSON objects (an export of what is stored about someone):
//! strings, numbers, booleans, structs and lists; nulls as `null`.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int32Type, Int64Type, UInt32Type, UInt64Type,
};
use serde_json::{Map, Value};

/// Row `i` of `b` as a JSON object keyed by column name.
pub fn row(b: &RecordBatch, i: usize) -> Value {
    let schema = b.schema();
    let mut m = Map::new();
    for (f, c) in schema.fields().iter().zip(b.columns()) {
        m.insert(f.name().clone(), cell(c.as_ref(), i));
    }
    Value::Object(m)
}

/// Element `i` of `a` as JSON.
pub fn cell(a: &dyn Array, i: usize) -> Value {
    if a.is_null(i) {
        return Value::Null;
    }
    match a.data_type() {
        DataType::Utf8 => Value::from(a.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Value::from(a.as_string::<i64>().value(i)),
        DataType::Boolean => Value::from(a.as_boolean().value(i)),
        DataType::Int32 => Value::from(a.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => Value::from(a.as_primitive::<Int64Type>().value(i)),
        DataType::UInt32 => Value::from(a.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => Value::from(a.as_primitive::<UInt64Type>().value(i)),
        DataType::Float32 => Value::from(f64::from(a.as_primitive::<Float32Type>().value(i))),
        DataType::Float64 => Value::from(a.as_primitive::<Float64Type>().value(i)),
        DataType::Binary => Value::from(String::from_utf8_lossy(a.as_binary::<i32>().value(i))),
        DataType::Struct(fields) => {
            let s = a.as_struct();
            Value::Object(
                fields
                    .iter()
                    .zip(s.columns())
                    .map(|(f, c)| (f.name().clone(), cell(c.as_ref(), i)))
                    .collect(),
            )
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            let v = l.value(i);
            Value::Array((0..v.len()).map(|j| cell(v.as_ref(), j)).collect())
        }
        other => Value::from(format!("<{other}>")),
    }
}
