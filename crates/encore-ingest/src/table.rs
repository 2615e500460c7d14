//! The two event tables and what differs between them.

use crate::contract::{Contract, INTERACTION, PLAYBACK};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use encore_core::arrow::{interaction_batch, interaction_schema, playback_batch, playback_schema};
use encore_core::event::{InteractionEvent, PlaybackEvent};
use encore_storage::TableSpec;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    Playback,
    Interaction,
}

impl Table {
    pub const ALL: [Table; 2] = [Table::Playback, Table::Interaction];

    pub fn name(self) -> &'static str {
        match self {
            Table::Playback => "playback",
            Table::Interaction => "interaction",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Table::Playback => 0,
            Table::Interaction => 1,
        }
    }

    pub fn contract(self) -> &'static Contract {
        match self {
            Table::Playback => &PLAYBACK,
            Table::Interaction => &INTERACTION,
        }
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            Table::Playback => playback_schema(),
            Table::Interaction => interaction_schema(),
        }
    }

    pub fn spec(self) -> TableSpec {
        use encore_storage::lake::MILLIS;
        match self {
            Table::Playback => TableSpec {
                name: "playback",
                schema: playback_schema(),
                ts_column: "ts_start_ms",
                id_column: "event_id",
                high_cardinality: &["event_id", "session_id", "request_id"],
                times: &[("ts_start_ms", MILLIS), ("ts_end_ms", MILLIS)],
                lake_names: &[],
            },
            Table::Interaction => TableSpec {
                name: "interaction",
                schema: interaction_schema(),
                ts_column: "ts_ms",
                id_column: "event_id",
                high_cardinality: &["event_id", "session_id", "request_id"],
                times: &[("ts_ms", MILLIS)],
                lake_names: &[],
            },
        }
    }

    /// Which table a JSON object belongs to, from its keys: interactions have `kind` and `ts_ms`.
    pub fn of_object(object: &serde_json::Map<String, serde_json::Value>) -> Table {
        if object.contains_key("kind") && object.contains_key("ts_ms") {
            Table::Interaction
        } else {
            Table::Playback
        }
    }
}

/// Typed rows of a table, as parsed from JSON.
#[derive(Debug)]
pub enum Typed {
    Playback(Vec<PlaybackEvent>),
    Interaction(Vec<InteractionEvent>),
}

impl Typed {
    pub fn new(table: Table) -> Typed {
        match table {
            Table::Playback => Typed::Playback(Vec::new()),
            Table::Interaction => Typed::Interaction(Vec::new()),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Typed::Playback(v) => v.len(),
            Typed::Interaction(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Parses one JSON text into this table's event type and appends it.
    pub fn push_json(&mut self, text: &str) -> Result<(), serde_json::Error> {
        match self {
            Typed::Playback(v) => v.push(serde_json::from_str(text)?),
            Typed::Interaction(v) => v.push(serde_json::from_str(text)?),
        }
        Ok(())
    }

    pub fn to_batch(&self) -> Result<RecordBatch, ArrowError> {
        match self {
            Typed::Playback(v) => playback_batch(v),
            Typed::Interaction(v) => interaction_batch(v),
        }
    }
}
