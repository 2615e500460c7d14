//! `encore-sim`: a deterministic music-streaming world for demos, tests and benchmarks.
//!
//! A seeded catalog (genres with a few hundred long-tailed tags, artists, albums, tracks), a
//! population of listeners with hidden taste (a sparse mixture over genre clusters, artist loyalty,
//! activity and daily habits), and a listening model that turns them into canonical
//! [`PlaybackEvent`](encore_core::event::PlaybackEvent)s and
//! [`InteractionEvent`](encore_core::event::InteractionEvent)s, with skips and completions driven
//! by the hidden affinity of listener and track. [`World::respond`] simulates reactions to a served
//! slate from the same affinities, for A/B tests and off-policy checks.
//!
//! ```
//! use encore_sim::{SimConfig, World};
//! let mut world = World::new(SimConfig::new(50, 1, 7));
//! let day = world.simulate_day();
//! assert!(!day.plays.is_empty());
//! let event = world.playback_event(&day.plays[0]);
//! assert_eq!(event.user_id.as_str(), format!("u{}", day.plays[0].user));
//! ```

pub mod catalog;
mod error;
pub mod listen;
pub mod output;
pub mod rng;
pub mod users;
mod vocab;
mod world;

pub use error::SimError;
pub use output::{Format, Manifest, generate, verify};
pub use rng::Rng;
pub use world::{DayLog, Shift, ShiftAt, SimConfig, SlateResponse, World, examination_probability};
