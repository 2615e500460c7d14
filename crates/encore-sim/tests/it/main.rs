//! Integration tests of the simulator: distributions, determinism, output files, planted structure.

// tests print the figures they measured, for whoever reads the log
#![allow(clippy::print_stderr)]

mod distributions;
mod output;
mod shifts;
mod structure;
