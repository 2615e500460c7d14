//! The models against the shared benchmark split of HetRec Last.fm 2K (skipped without ../shared).

// tests print the figures they measured
#![allow(clippy::print_stderr)]

mod artifact;
mod hetrec;
