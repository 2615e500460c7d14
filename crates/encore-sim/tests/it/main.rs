//! Integration tests of the simulator: distributions, determinism, output files, planted structure.

mod distributions;
mod output;
mod structure;
