//! `encore-models`: recommenders and their offline evaluation.
//!
//! - [`split`]: the shared holdout rule of the benchmark (splitmix64), reproducible anywhere;
//! - [`data`]: datasets as CSR matrices over dense indices;
//! - [`model`]: one typed configuration and one interface over every model;
//! - [`weighting`]: play counts to confidences, and BM25;
//! - [`als`]: implicit-feedback ALS with a conjugate-gradient or exact solver;
//! - [`bpr`]: Bayesian personalized ranking, lock-free parallel SGD;
//! - [`itemknn`]: item-item cosine or BM25 neighbours;
//! - [`popularity`]: items by number of distinct training users;
//! - [`metrics`]: precision, recall, NDCG, MAP, hit rate and coverage at k.

pub mod als;
pub mod artifact;
pub mod bpr;
pub mod data;
pub mod itemknn;
pub mod metrics;
pub mod model;
pub mod popularity;
pub mod recommend;
pub mod scoring;
pub mod split;
pub mod weighting;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("{}:{line}: {message}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

impl encore_core::Coded for ModelError {
    fn code(&self) -> encore_core::ErrorCode {
        match self {
            ModelError::Io { .. } => encore_core::ErrorCode::NotFound,
            ModelError::Malformed { .. } => encore_core::ErrorCode::InvalidArgument,
        }
    }
}
