//! The Arrow schema of the canonical events, and conversion of event slices into record batches
//! (what Parquet files and, later, the event log's segments hold). Enums are stored as their wire
//! strings so any tool (DuckDB, pandas, Spark) reads the files without encore.

use crate::event::{ExperimentAssignment, InteractionEvent, PlaybackEvent};
use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, StringArray, StructArray,
    UInt32Array, UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use std::sync::{Arc, OnceLock};

fn experiment_fields() -> Fields {
    Fields::from(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("variant", DataType::Utf8, false),
    ])
}

fn experiments_item() -> Arc<Field> {
    Arc::new(Field::new(
        "item",
        DataType::Struct(experiment_fields()),
        false,
    ))
}

fn consent_fields() -> Fields {
    Fields::from(vec![
        Field::new("personalization", DataType::Boolean, false),
        Field::new("analytics", DataType::Boolean, false),
    ])
}

/// Field order and names follow [`PlaybackEvent`].
pub fn playback_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            use DataType::*;
            Arc::new(Schema::new(vec![
                Field::new("event_id", Utf8, false),
                Field::new("schema_version", UInt32, false),
                Field::new("user_id", Utf8, false),
                Field::new("session_id", Utf8, false),
                Field::new("ts_start_ms", Int64, false),
                Field::new("ts_end_ms", Int64, false),
                Field::new("item_id", Utf8, false),
                Field::new("item_type", Utf8, false),
                Field::new("item_duration_ms", UInt32, false),
                Field::new("ms_played", UInt32, false),
                Field::new("reason_start", Utf8, false),
                Field::new("reason_end", Utf8, false),
                Field::new("context_type", Utf8, false),
                Field::new("context_id", Utf8, true),
                Field::new("request_id", Utf8, true),
                Field::new("position", UInt32, true),
                Field::new("propensity", Float64, true),
                Field::new("experiments", List(experiments_item()), false),
                Field::new("shuffle", Boolean, false),
                Field::new("offline", Boolean, false),
                Field::new("private_session", Boolean, false),
                Field::new("taste_excluded", Boolean, false),
                Field::new("platform", Utf8, false),
                Field::new("country", Utf8, false),
                Field::new("tier", Utf8, false),
                Field::new("consent", Struct(consent_fields()), false),
            ]))
        })
        .clone()
}

/// Field order and names follow [`InteractionEvent`].
pub fn interaction_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            use DataType::*;
            Arc::new(Schema::new(vec![
                Field::new("event_id", Utf8, false),
                Field::new("schema_version", UInt32, false),
                Field::new("user_id", Utf8, false),
                Field::new("session_id", Utf8, true),
                Field::new("ts_ms", Int64, false),
                Field::new("kind", Utf8, false),
                Field::new("item_id", Utf8, true),
                Field::new("item_type", Utf8, true),
                Field::new("context_type", Utf8, true),
                Field::new("context_id", Utf8, true),
                Field::new("request_id", Utf8, true),
                Field::new("position", UInt32, true),
                Field::new("propensity", Float64, true),
                Field::new("experiments", List(experiments_item()), false),
                Field::new("count", UInt64, true),
                Field::new("query", Utf8, true),
                Field::new("value", Float64, true),
                Field::new("platform", Utf8, false),
                Field::new("country", Utf8, false),
                Field::new("tier", Utf8, false),
                Field::new("consent", Struct(consent_fields()), false),
            ]))
        })
        .clone()
}

fn strings<'a, T: 'a>(rows: &'a [T], f: impl Fn(&'a T) -> &'a str) -> ArrayRef {
    Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>())
}

fn opt_strings<'a, T: 'a>(rows: &'a [T], f: impl Fn(&'a T) -> Option<&'a str>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

fn bools<T>(rows: &[T], f: impl Fn(&T) -> bool) -> ArrayRef {
    Arc::new(rows.iter().map(|r| Some(f(r))).collect::<BooleanArray>())
}

fn experiments<'a, T: 'a>(
    rows: &'a [T],
    f: impl Fn(&'a T) -> &'a [ExperimentAssignment],
) -> ArrayRef {
    let lists: Vec<&[ExperimentAssignment]> = rows.iter().map(f).collect();
    let flat = lists.iter().flat_map(|l| l.iter());
    let ids: StringArray = flat.clone().map(|a| Some(a.id.as_str())).collect();
    let variants: StringArray = flat.map(|a| Some(a.variant.as_str())).collect();
    let values = StructArray::new(
        experiment_fields(),
        vec![Arc::new(ids), Arc::new(variants)],
        None,
    );
    let offsets = OffsetBuffer::from_lengths(lists.iter().map(|l| l.len()));
    Arc::new(ListArray::new(
        experiments_item(),
        offsets,
        Arc::new(values),
        None,
    ))
}

fn consent<T>(rows: &[T], f: impl Fn(&T) -> crate::event::Consent) -> ArrayRef {
    let personalization = bools(rows, |r| f(r).personalization);
    let analytics = bools(rows, |r| f(r).analytics);
    Arc::new(StructArray::new(
        consent_fields(),
        vec![personalization, analytics],
        None,
    ))
}

/// One record batch holding `events` in [`playback_schema`].
pub fn playback_batch(events: &[PlaybackEvent]) -> Result<RecordBatch, ArrowError> {
    let e = events;
    let columns: Vec<ArrayRef> = vec![
        strings(e, |r| r.event_id.as_str()),
        Arc::new(e.iter().map(|r| r.schema_version).collect::<UInt32Array>()),
        strings(e, |r| r.user_id.as_str()),
        strings(e, |r| r.session_id.as_str()),
        Arc::new(e.iter().map(|r| r.ts_start_ms).collect::<Int64Array>()),
        Arc::new(e.iter().map(|r| r.ts_end_ms).collect::<Int64Array>()),
        strings(e, |r| r.item_id.as_str()),
        strings(e, |r| r.item_type.as_str()),
        Arc::new(
            e.iter()
                .map(|r| r.item_duration_ms)
                .collect::<UInt32Array>(),
        ),
        Arc::new(e.iter().map(|r| r.ms_played).collect::<UInt32Array>()),
        strings(e, |r| r.reason_start.as_str()),
        strings(e, |r| r.reason_end.as_str()),
        strings(e, |r| r.context_type.as_str()),
        opt_strings(e, |r| r.context_id.as_deref()),
        opt_strings(e, |r| r.request_id.as_deref()),
        Arc::new(e.iter().map(|r| r.position).collect::<UInt32Array>()),
        Arc::new(e.iter().map(|r| r.propensity).collect::<Float64Array>()),
        experiments(e, |r| &r.experiments),
        bools(e, |r| r.shuffle),
        bools(e, |r| r.offline),
        bools(e, |r| r.private_session),
        bools(e, |r| r.taste_excluded),
        strings(e, |r| r.platform.as_str()),
        strings(e, |r| r.country.as_str()),
        strings(e, |r| r.tier.as_str()),
        consent(e, |r| r.consent),
    ];
    RecordBatch::try_new(playback_schema(), columns)
}

/// One record batch holding `events` in [`interaction_schema`].
pub fn interaction_batch(events: &[InteractionEvent]) -> Result<RecordBatch, ArrowError> {
    let e = events;
    let columns: Vec<ArrayRef> = vec![
        strings(e, |r| r.event_id.as_str()),
        Arc::new(e.iter().map(|r| r.schema_version).collect::<UInt32Array>()),
        strings(e, |r| r.user_id.as_str()),
        opt_strings(e, |r| r.session_id.as_ref().map(|s| s.as_str())),
        Arc::new(e.iter().map(|r| r.ts_ms).collect::<Int64Array>()),
        strings(e, |r| r.kind.as_str()),
        opt_strings(e, |r| r.item_id.as_ref().map(|s| s.as_str())),
        opt_strings(e, |r| r.item_type.map(|t| t.as_str())),
        opt_strings(e, |r| r.context_type.map(|t| t.as_str())),
        opt_strings(e, |r| r.context_id.as_deref()),
        opt_strings(e, |r| r.request_id.as_deref()),
        Arc::new(e.iter().map(|r| r.position).collect::<UInt32Array>()),
        Arc::new(e.iter().map(|r| r.propensity).collect::<Float64Array>()),
        experiments(e, |r| &r.experiments),
        Arc::new(e.iter().map(|r| r.count).collect::<UInt64Array>()),
        opt_strings(e, |r| r.query.as_deref()),
        Arc::new(e.iter().map(|r| r.value).collect::<Float64Array>()),
        strings(e, |r| r.platform.as_str()),
        strings(e, |r| r.country.as_str()),
        strings(e, |r| r.tier.as_str()),
        consent(e, |r| r.consent),
    ];
    RecordBatch::try_new(interaction_schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::*;

    #[test]
    fn batch_matches_schema_and_keeps_lists() {
        let mut event: PlaybackEvent = serde_json::from_str(
            r#"{"event_id":"e","schema_version":1,"user_id":"u","session_id":"s",
            "ts_start_ms":0,"ts_end_ms":1,"item_id":"t","item_type":"track",
            "item_duration_ms":10,"ms_played":1,"reason_start":"playbtn","reason_end":"endplay",
            "context_type":"search","platform":"web","country":"BR","tier":"free"}"#,
        )
        .unwrap();
        let plain = event.clone();
        event.experiments = vec![ExperimentAssignment {
            id: "home-v2".into(),
            variant: "treatment".into(),
        }];
        let batch = playback_batch(&[event, plain]).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let lists = batch
            .column_by_name("experiments")
            .unwrap()
            .as_any()
            .downcast_ref::<ListArray>()
            .unwrap();
        assert_eq!(lists.value_length(0), 1);
        assert_eq!(lists.value_length(1), 0);
        assert_eq!(
            batch.schema().fields().len(),
            playback_schema().fields().len()
        );
    }
}
