//! End-to-end tests of the `encore` binary: real processes, real files, temp directories.

mod cli;
mod ecosystem;
mod evals;
mod experiments;
mod features;
mod hostile;
mod monitors;
mod privacy;
mod readme;
mod scale;
mod serve;
mod sim;
mod traces;
