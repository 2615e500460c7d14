//! encore-evals integration tests: one binary.

mod halueval;
mod judge;
mod outbound;
