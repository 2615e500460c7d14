//! Integration tests of ingestion: contracts on a corpus of bad rows, dedup across restarts,
//! every file format, request bodies.

mod contracts;
