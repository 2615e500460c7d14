//! Integration tests of ingestion: contracts on a corpus of bad rows, dedup across restarts,
//! every file format, request bodies, dataset importers, the interaction matrix.

// tests print why they skip
#![allow(clippy::print_stderr)]

mod contracts;
mod imports;
