//! `encore-experiments`: A/B experiments on recommendations.
//!
//! [`assignment`] places listeners by bucket reuse, as Spotify describes its experimentation
//! platform: a listener's bucket is `hash(user, salt) mod 1,000,000`, fixed per exclusivity
//! domain (each domain its own salt); experiments in a domain own disjoint, randomly sampled
//! sets of buckets (so they never share a listener), and each owned bucket belongs to one
//! variant in proportion to the variants' weights. A global holdout, drawn with its own salt,
//! is never enrolled anywhere. Assignment is deterministic and sticky: the same listener and
//! configuration always give the same answer, with no state per listener.

pub mod analysis;
pub mod assignment;
pub mod store;
