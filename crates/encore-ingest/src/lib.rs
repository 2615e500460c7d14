//! `encore-ingest`: the path from "a client sends events" to "they are durable, validated and
//! queryable".
//!
//! - [`contract`]: declarative data contracts per event type; every rejected row names its
//!   location, field, value and rule;
//! - [`source`]: JSON lines, CSV and Parquet files (optionally .gz/.zst) read in chunks;
//! - [`ingest::Ingestor`]: contract check, deduplication by event id within a window, catalog
//!   look-ups, quarantine of rejects, and appends to the durable event log of `encore-storage`;
//! - [`catalog`]: tracks, artists, albums, tags;
//! - [`import`]: adapters for public datasets (HetRec Last.fm, MovieLens, Spotify histories);
//! - [`matrix`]: the user x item interaction matrix (CSR) that training reads;
//! - [`stats`]: what the log holds.

pub mod batch;
pub mod catalog;
pub mod contract;
pub use encore_storage::dedup;
mod error;
pub mod exposure;
pub mod import;
pub mod ingest;
pub mod matrix;
pub mod quarantine;
pub mod source;
pub mod spotify;
pub mod stats;
pub mod table;

pub use error::IngestError;
pub use ingest::{BatchOutcome, Counters, IngestOptions, IngestSummary, Ingestor};
pub use source::Reject;
pub use table::Table;
