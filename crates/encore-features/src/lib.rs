//! `encore-features`: the feature store.
//!
//! - [`def`]: feature definitions in TOML (entities, views of windowed aggregations over the
//!   playback log with filters and a TTL, services grouping views), checked with the file, line
//!   and reason of every error.
//! - [`compute`]: a feature's value as of a time, point-in-time correct: one value by binary
//!   search (online), or a column of values in one sweep (offline).
//! - [`offline`]: training sets: every feature of a service as of each entity row's time,
//!   written as Parquet.
//! - [`online`]: the online store (redb): recent events per view and entity with the view's
//!   compiled prefix columns ([`columns`]), updated by materialization and by ingestion, read as
//!   of now with TTL enforced, hot entities cached in memory ([`cache`]).
//! - [`attrs`]: attribute views, from the catalog or a Parquet or CSV file.
//! - [`versions`]: applied definitions, versioned in the model registry.

pub mod attrs;
pub mod cache;
pub mod columns;
pub mod compute;
pub mod def;
pub mod event;
pub mod offline;
pub mod online;
pub mod versions;

pub use def::Definitions;
