//! `encore-app`: the application layer. It owns the platform's operations and how the domains
//! are joined, with no transport: the HTTP server (`encore-server`) and the CLI (`encore-cli`)
//! are adapters that parse a request, call one operation here, and render the result.
//!
//! - [`ingest`]: the ingest pipeline; stored rows (never rejected ones, never duplicates) fan
//!   out, typed, to [`ingest::Subscriber`]s;
//! - [`serving`]: every recommendation surface (assignment, alias, treatments, features, rules,
//!   impressions as typed events, self-tracing), fold-in, loading a version and the hot swap;
//! - [`experiments`]: running experiments for serving, and their analysis on the event log;
//! - [`features`]: online features fed by stored plays;
//! - [`telemetry`]: OTLP exports in, newly stored spans to online evaluation;
//! - [`training`]: snapshot, fit, evaluate, register, promote;
//! - [`evals`]: online evaluation and alerting on a node;
//! - [`privacy`]: erasure of a listener from every store;
//! - [`node`]: a running node's parts composed from the configuration, and its background work;
//! - [`setup`]: what nodes and commands build from the configuration (outbound client, keys,
//!   prices, span normalizer, the catalog as features and grounding read it);
//! - [`worker`]: the one shape of background work (a batching writer, a periodic task);
//! - [`admission`]: bounded work in flight;
//! - [`bus`]: how the nodes of a deployment pass stored rows on (ingest node to the shared bus,
//!   the bus to a worker's event log and to serving nodes);
//! - [`lease`]: leases on background jobs, so two workers never run the same one;
//! - [`lake`]: a node's sealed segments mirrored to the object store, Hive-partitioned;
//! - [`monitors`]: profiles of the playback log and the monitors that judge them.

pub mod admission;
pub mod bus;
mod error;
pub mod evals;
pub mod experiments;
pub mod features;
pub mod ingest;
pub mod lake;
pub mod lease;
pub mod monitors;
pub mod node;
pub mod privacy;
pub mod serving;
pub mod setup;
pub mod telemetry;
pub mod training;
pub mod worker;

pub use error::AppError;
