//! End-to-end tests of the `encore` binary: real processes, real files, temp directories.

mod cli;
mod serve;
mod sim;
