//! Feature definitions, versioned in the registry beside the models they feed: each applied
//! definitions file is kept whole (its text and where it was applied from, which relative
//! source paths are taken from), numbered from 1; the newest is current.

use crate::{Registry, RegistryError};
use encore_storage::metadata::Row;
use encore_storage::params;

/// One applied version of the feature definitions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeatureDefinitions {
    pub version: u32,
    pub created_ms: i64,
    /// the file it was applied from
    pub origin: String,
    pub text: String,
}

fn definitions(r: &Row) -> Result<FeatureDefinitions, RegistryError> {
    Ok(FeatureDefinitions {
        version: r.get(0)?,
        created_ms: r.get(1)?,
        origin: r.get(2)?,
        text: r.get(3)?,
    })
}

const CURRENT: &str = "SELECT version, created_ms, origin, text FROM feature_definitions \
                       ORDER BY version DESC LIMIT 1";

impl Registry {
    /// The current feature definitions, if any were applied.
    pub fn feature_definitions(&self) -> Result<Option<FeatureDefinitions>, RegistryError> {
        self.db.read(|q| {
            q.query_opt(CURRENT, &[])?
                .map(|r| definitions(&r))
                .transpose()
        })
    }

    /// Every version's number, time and origin, oldest first.
    pub fn feature_definition_versions(&self) -> Result<Vec<(u32, i64, String)>, RegistryError> {
        self.db.read(|q| {
            q.query(
                "SELECT version, created_ms, origin FROM feature_definitions ORDER BY version",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .collect()
        })
    }

    /// Makes `text` (applied from `origin`) the current definitions: a new version unless it is
    /// the current one already. Returns the current version and whether it is new.
    pub fn put_feature_definitions(
        &mut self,
        text: &str,
        origin: &str,
    ) -> Result<(FeatureDefinitions, bool), RegistryError> {
        self.db.write(|tx| {
            let current = tx
                .query_opt(CURRENT, &[])?
                .map(|r| definitions(&r))
                .transpose()?;
            if let Some(c) = &current
                && c.text == text
                && c.origin == origin
            {
                return Ok((c.clone(), false));
            }
            let version = current.map_or(1, |c| c.version + 1);
            let now = encore_core::time::now_ms();
            tx.execute(
                "INSERT INTO feature_definitions (version, created_ms, origin, text) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![version, now, origin, text],
            )?;
            Ok((
                FeatureDefinitions {
                    version,
                    created_ms: now,
                    origin: origin.to_owned(),
                    text: text.to_owned(),
                },
                true,
            ))
        })
    }
}
