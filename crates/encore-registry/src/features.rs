//! Feature definitions, versioned in the registry beside the models they feed: each applied
//! definitions file is kept whole (its text and where it was applied from, which relative
//! source paths are taken from), numbered from 1; the newest is current.

use crate::{Registry, RegistryError};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS feature_definitions (
    version     INTEGER PRIMARY KEY,
    created_ms  INTEGER NOT NULL,
    origin      TEXT NOT NULL,
    text        TEXT NOT NULL
);
";

/// One applied version of the feature definitions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeatureDefinitions {
    pub version: u32,
    pub created_ms: i64,
    /// the file it was applied from
    pub origin: String,
    pub text: String,
}

impl Registry {
    /// The current feature definitions, if any were applied.
    pub fn feature_definitions(&self) -> Result<Option<FeatureDefinitions>, RegistryError> {
        Ok(self
            .conn
            .query_row(
                "SELECT version, created_ms, origin, text FROM feature_definitions ORDER BY version DESC LIMIT 1",
                [],
                |r| {
                    Ok(FeatureDefinitions {
                        version: r.get(0)?,
                        created_ms: r.get(1)?,
                        origin: r.get(2)?,
                        text: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Every version's number, time and origin, oldest first.
    pub fn feature_definition_versions(&self) -> Result<Vec<(u32, i64, String)>, RegistryError> {
        let mut st = self.conn.prepare(
            "SELECT version, created_ms, origin FROM feature_definitions ORDER BY version",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Makes `text` (applied from `origin`) the current definitions: a new version unless it is
    /// the current one already. Returns the current version and whether it is new.
    pub fn put_feature_definitions(
        &mut self,
        text: &str,
        origin: &str,
    ) -> Result<(FeatureDefinitions, bool), RegistryError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<(u32, i64, String, String)> = tx
            .query_row(
                "SELECT version, created_ms, origin, text FROM feature_definitions ORDER BY version DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        if let Some((version, created_ms, o, t)) = &current
            && t == text
            && o == origin
        {
            return Ok((
                FeatureDefinitions {
                    version: *version,
                    created_ms: *created_ms,
                    origin: o.clone(),
                    text: t.clone(),
                },
                false,
            ));
        }
        let version = current.map_or(1, |c| c.0 + 1);
        let now = encore_core::time::now_ms();
        tx.execute(
            "INSERT INTO feature_definitions (version, created_ms, origin, text) VALUES (?1, ?2, ?3, ?4)",
            params![version, now, origin, text],
        )?;
        tx.commit()?;
        Ok((
            FeatureDefinitions {
                version,
                created_ms: now,
                origin: origin.to_owned(),
                text: text.to_owned(),
            },
            true,
        ))
    }
}
