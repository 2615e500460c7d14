//! The `monitors` component of the metadata store: each sealed playback segment's hourly
//! profiles (kept while the log holds the segment), the monitors' definitions and their
//! results.

use super::eval::{Hours, MonitorResult};
use super::profiling::HourProfile;
use super::spec::Monitor;
use crate::AppError;
use encore_stats::profile::Profile;
use encore_storage::metadata::{Durability, Metadata, MetadataError};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

const SCHEMA: &[&str] = &["CREATE TABLE segment_profiles (\
       log TEXT NOT NULL, \
       node TEXT NOT NULL, \
       segment BIGINT NOT NULL, \
       hour_ms BIGINT NOT NULL, \
       slice TEXT NOT NULL, \
       profile TEXT NOT NULL, \
       PRIMARY KEY (log, node, segment, hour_ms, slice)); \
     CREATE INDEX segment_profiles_hour ON segment_profiles (hour_ms); \
     CREATE TABLE profiled (\
       log TEXT NOT NULL, \
       node TEXT NOT NULL, \
       segment BIGINT NOT NULL, \
       PRIMARY KEY (log, node, segment)); \
     CREATE TABLE monitors (\
       name TEXT PRIMARY KEY, \
       spec TEXT NOT NULL, \
       updated_ms BIGINT NOT NULL); \
     CREATE TABLE results (\
       monitor TEXT NOT NULL, \
       window_ms BIGINT NOT NULL, \
       slice TEXT NOT NULL, \
       attribute TEXT NOT NULL, \
       fired BIGINT NOT NULL, \
       result TEXT NOT NULL, \
       PRIMARY KEY (monitor, window_ms, slice, attribute)); \
     CREATE TABLE evaluated (\
       monitor TEXT PRIMARY KEY, \
       through_ms BIGINT NOT NULL); \
     CREATE TABLE refs (\
       model TEXT NOT NULL, \
       version BIGINT NOT NULL, \
       profile TEXT NOT NULL, \
       PRIMARY KEY (model, version)); \
     CREATE TABLE windows (\
       monitor TEXT NOT NULL, \
       window_ms BIGINT NOT NULL, \
       rows BIGINT NOT NULL, \
       PRIMARY KEY (monitor, window_ms))"];

/// The monitors component of a deployment's metadata store.
#[derive(Debug, Clone)]
pub struct MonitorStore {
    db: Arc<dyn Metadata>,
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, AppError> {
    serde_json::to_string(v)
        .map_err(|e| AppError::new(encore_core::ErrorCode::Internal, e.to_string()))
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> AppError {
    AppError::new(
        encore_core::ErrorCode::DataLoss,
        format!("the monitors store holds an unreadable {what}: {e}"),
    )
}

/// The JSON documents of the first column of `rows` (a `what` the store holds).
fn documents<T: serde::de::DeserializeOwned>(
    rows: &[encore_storage::metadata::Row],
    what: &str,
) -> Result<Vec<T>, AppError> {
    rows.iter()
        .map(|r| {
            let text: String = r.get(0)?;
            serde_json::from_str(&text).map_err(|e| corrupt(what, e))
        })
        .collect()
}

/// A window judged, and the rows it had then (more rows later: judged again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judged {
    pub window_ms: i64,
    pub rows: u64,
}

/// Filters on stored results.
#[derive(Debug, Clone, Default)]
pub struct ResultFilter {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub fired_only: bool,
    pub slice: Option<String>,
    pub limit: usize,
}

impl MonitorStore {
    pub fn open(root: &Path) -> Result<MonitorStore, AppError> {
        let db = encore_storage::metadata::open(root, "monitors", Durability::Full)?;
        db.migrate("monitors", SCHEMA)?;
        Ok(MonitorStore { db })
    }

    /// The segments of `node`'s event log `log` (`playback`, `interaction`) profiled so far.
    pub fn profiled_segments(&self, log: &str, node: &str) -> Result<BTreeSet<u64>, AppError> {
        let rows = self.db.read(|q| {
            q.query(
                "SELECT segment FROM profiled WHERE log = ?1 AND node = ?2",
                &[log.into(), node.into()],
            )
        })?;
        rows.iter()
            .map(|r| Ok(r.get::<i64>(0)? as u64))
            .collect::<Result<_, MetadataError>>()
            .map_err(AppError::from)
    }

    /// Stores the profiles of one segment of `node`'s event log `log` (replacing any kept for
    /// it).
    pub fn put_segment(
        &self,
        log: &str,
        node: &str,
        segment: u64,
        profiles: &[HourProfile],
    ) -> Result<(), AppError> {
        let rows: Vec<(i64, String, String)> = profiles
            .iter()
            .map(|p| Ok((p.hour_ms, p.slice.clone(), json(&p.profile)?)))
            .collect::<Result<_, AppError>>()?;
        self.db.write(|tx| {
            tx.execute(
                "DELETE FROM segment_profiles WHERE log = ?1 AND node = ?2 AND segment = ?3",
                &[log.into(), node.into(), (segment as i64).into()],
            )?;
            tx.execute(
                "INSERT INTO profiled (log, node, segment) VALUES (?1, ?2, ?3) \
                 ON CONFLICT DO NOTHING",
                &[log.into(), node.into(), (segment as i64).into()],
            )?;
            for (hour, slice, profile) in &rows {
                tx.execute(
                    "INSERT INTO segment_profiles (log, node, segment, hour_ms, slice, profile) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    &[
                        log.into(),
                        node.into(),
                        (segment as i64).into(),
                        (*hour).into(),
                        slice.as_str().into(),
                        profile.as_str().into(),
                    ],
                )?;
            }
            Ok::<_, MetadataError>(())
        })?;
        Ok(())
    }

    /// Forgets the profiles of segments `node`'s event log `log` no longer holds.
    pub fn drop_segments(&self, log: &str, node: &str, gone: &[u64]) -> Result<(), AppError> {
        if gone.is_empty() {
            return Ok(());
        }
        self.db.write(|tx| {
            for s in gone {
                tx.execute(
                    "DELETE FROM segment_profiles WHERE log = ?1 AND node = ?2 AND segment = ?3",
                    &[log.into(), node.into(), (*s as i64).into()],
                )?;
                tx.execute(
                    "DELETE FROM profiled WHERE log = ?1 AND node = ?2 AND segment = ?3",
                    &[log.into(), node.into(), (*s as i64).into()],
                )?;
            }
            Ok::<_, MetadataError>(())
        })?;
        Ok(())
    }

    /// The hourly profiles of `[from_ms, to_ms)`, every segment's added up.
    pub fn hours(&self, from_ms: i64, to_ms: i64) -> Result<Hours, AppError> {
        let rows = self.db.read(|q| {
            q.query(
                "SELECT hour_ms, slice, profile FROM segment_profiles \
                 WHERE hour_ms >= ?1 AND hour_ms < ?2",
                &[from_ms.into(), to_ms.into()],
            )
        })?;
        let mut hours = Hours::default();
        for r in &rows {
            let hour: i64 = r.get(0)?;
            let slice: String = r.get(1)?;
            let text: String = r.get(2)?;
            let p: Profile = serde_json::from_str(&text).map_err(|e| corrupt("profile", e))?;
            hours
                .add(hour, &slice, &p)
                .map_err(|e| corrupt("profile", e))?;
        }
        Ok(hours)
    }

    /// The first and last profiled hour.
    pub fn span(&self) -> Result<Option<(i64, i64)>, AppError> {
        let row = self.db.read(|q| {
            q.query_one(
                "SELECT MIN(hour_ms), MAX(hour_ms) FROM segment_profiles",
                &[],
            )
        })?;
        let first: Option<i64> = row.get(0)?;
        let last: Option<i64> = row.get(1)?;
        Ok(first.zip(last))
    }

    /// Creates or replaces monitors (each checked first: nothing is stored if one is wrong).
    pub fn apply(&self, monitors: &[Monitor]) -> Result<(), AppError> {
        for m in monitors {
            m.check().map_err(|e| AppError::of(&e))?;
        }
        let now = encore_core::time::now_ms();
        let specs: Vec<(String, String)> = monitors
            .iter()
            .map(|m| Ok((m.name.clone(), json(m)?)))
            .collect::<Result<_, AppError>>()?;
        self.db.write(|tx| {
            for (name, spec) in &specs {
                let old = tx.query_opt(
                    "SELECT spec FROM monitors WHERE name = ?1",
                    &[name.as_str().into()],
                )?;
                let changed = old.map(|r| r.get::<String>(0)).transpose()?.as_ref() != Some(spec);
                tx.execute(
                    "INSERT INTO monitors (name, spec, updated_ms) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, \
                     updated_ms = excluded.updated_ms",
                    &[name.as_str().into(), spec.as_str().into(), now.into()],
                )?;
                // a changed definition judges every window again
                if changed {
                    tx.execute(
                        "DELETE FROM results WHERE monitor = ?1",
                        &[name.as_str().into()],
                    )?;
                    tx.execute(
                        "DELETE FROM evaluated WHERE monitor = ?1",
                        &[name.as_str().into()],
                    )?;
                    tx.execute(
                        "DELETE FROM windows WHERE monitor = ?1",
                        &[name.as_str().into()],
                    )?;
                }
            }
            Ok::<_, MetadataError>(())
        })?;
        Ok(())
    }

    /// Removes a monitor and its results; `false` when there was none.
    pub fn delete(&self, name: &str) -> Result<bool, AppError> {
        let n = self.db.write(|tx| {
            let n = tx.execute("DELETE FROM monitors WHERE name = ?1", &[name.into()])?;
            tx.execute("DELETE FROM results WHERE monitor = ?1", &[name.into()])?;
            tx.execute("DELETE FROM evaluated WHERE monitor = ?1", &[name.into()])?;
            tx.execute("DELETE FROM windows WHERE monitor = ?1", &[name.into()])?;
            Ok::<_, MetadataError>(n)
        })?;
        Ok(n > 0)
    }

    /// Every monitor, by name.
    pub fn list(&self) -> Result<Vec<Monitor>, AppError> {
        let rows = self
            .db
            .read(|q| q.query("SELECT spec FROM monitors ORDER BY name", &[]))?;
        documents(&rows, "monitor")
    }

    /// The monitors, with the defaults stored first on a deployment that has none.
    pub fn list_or_defaults(&self) -> Result<Vec<Monitor>, AppError> {
        let stored = self.list()?;
        if !stored.is_empty() {
            return Ok(stored);
        }
        self.apply(&super::spec::defaults())?;
        self.list()
    }

    /// Keeps `reference` as what its model version was trained on.
    pub fn put_reference(&self, reference: &super::eval::Reference) -> Result<(), AppError> {
        let text = json(reference)?;
        self.db.write(|tx| {
            tx.execute(
                "INSERT INTO refs (model, version, profile) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (model, version) DO UPDATE SET profile = excluded.profile",
                &[
                    reference.model.as_str().into(),
                    i64::from(reference.version).into(),
                    text.as_str().into(),
                ],
            )
        })?;
        Ok(())
    }

    /// What `model`@`version` was trained on, if it was saved.
    pub fn reference(
        &self,
        model: &str,
        version: u32,
    ) -> Result<Option<super::eval::Reference>, AppError> {
        let row = self.db.read(|q| {
            q.query_opt(
                "SELECT profile FROM refs WHERE model = ?1 AND version = ?2",
                &[model.into(), i64::from(version).into()],
            )
        })?;
        row.map(|r| {
            let text: String = r.get(0)?;
            serde_json::from_str(&text).map_err(|e| corrupt("reference profile", e))
        })
        .transpose()
    }

    /// The rows each of `monitor`'s windows in `[from_ms, to_ms)` had when it was judged.
    pub fn judged(&self, monitor: &str, from_ms: i64, to_ms: i64) -> Result<Vec<Judged>, AppError> {
        let rows = self.db.read(|q| {
            q.query(
                "SELECT window_ms, rows FROM windows WHERE monitor = ?1 AND window_ms >= ?2 \
                 AND window_ms < ?3 ORDER BY window_ms",
                &[monitor.into(), from_ms.into(), to_ms.into()],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(Judged {
                    window_ms: r.get(0)?,
                    rows: r.get::<i64>(1)? as u64,
                })
            })
            .collect::<Result<_, MetadataError>>()
            .map_err(AppError::from)
    }

    /// Up to where `monitor`'s windows were judged.
    pub fn evaluated_through(&self, monitor: &str) -> Result<Option<i64>, AppError> {
        let row = self.db.read(|q| {
            q.query_opt(
                "SELECT through_ms FROM evaluated WHERE monitor = ?1",
                &[monitor.into()],
            )
        })?;
        Ok(row.map(|r| r.get(0)).transpose()?)
    }

    /// Stores `results` (replacing earlier verdicts on the same window, slice and attribute)
    /// and records `monitor` judged through `through_ms`.
    pub fn put_results(
        &self,
        monitor: &str,
        judged: &[Judged],
        results: &[MonitorResult],
        through_ms: i64,
    ) -> Result<(), AppError> {
        let rows: Vec<(i64, String, String, i64, String)> = results
            .iter()
            .map(|r| {
                Ok((
                    r.window_start_ms,
                    r.slice.clone(),
                    r.attribute.clone().unwrap_or_default(),
                    i64::from(r.fired),
                    json(r)?,
                ))
            })
            .collect::<Result<_, AppError>>()?;
        self.db.write(|tx| {
            // a window judged again replaces its verdicts (slices may have come or gone)
            for j in judged {
                tx.execute(
                    "DELETE FROM results WHERE monitor = ?1 AND window_ms = ?2",
                    &[monitor.into(), j.window_ms.into()],
                )?;
                tx.execute(
                    "INSERT INTO windows (monitor, window_ms, rows) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (monitor, window_ms) DO UPDATE SET rows = excluded.rows",
                    &[monitor.into(), j.window_ms.into(), (j.rows as i64).into()],
                )?;
            }
            for (window, slice, attribute, fired, result) in &rows {
                tx.execute(
                    "INSERT INTO results (monitor, window_ms, slice, attribute, fired, result) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (monitor, window_ms, slice, attribute) DO UPDATE SET \
                     fired = excluded.fired, result = excluded.result",
                    &[
                        monitor.into(),
                        (*window).into(),
                        slice.as_str().into(),
                        attribute.as_str().into(),
                        (*fired).into(),
                        result.as_str().into(),
                    ],
                )?;
            }
            tx.execute(
                "INSERT INTO evaluated (monitor, through_ms) VALUES (?1, ?2) \
                 ON CONFLICT (monitor) DO UPDATE SET through_ms = excluded.through_ms",
                &[monitor.into(), through_ms.into()],
            )?;
            Ok::<_, MetadataError>(())
        })?;
        Ok(())
    }

    /// `monitor`'s results, newest window first.
    pub fn results(&self, monitor: &str, f: &ResultFilter) -> Result<Vec<MonitorResult>, AppError> {
        let limit = if f.limit == 0 {
            1_000
        } else {
            f.limit.min(100_000)
        } as i64;
        let rows = self.db.read(|q| {
            q.query(
                "SELECT result FROM results WHERE monitor = ?1 AND window_ms >= ?2 \
                 AND window_ms < ?3 AND fired >= ?4 AND (?5 = '' OR slice = ?5) \
                 ORDER BY window_ms DESC, slice, attribute LIMIT ?6",
                &[
                    monitor.into(),
                    f.from_ms.unwrap_or(i64::MIN).into(),
                    f.to_ms.unwrap_or(i64::MAX).into(),
                    i64::from(f.fired_only).into(),
                    f.slice.clone().unwrap_or_default().into(),
                    limit.into(),
                ],
            )
        })?;
        documents(&rows, "result")
    }

    /// `monitor`'s verdicts on its latest judged window.
    pub fn latest(&self, monitor: &str) -> Result<Vec<MonitorResult>, AppError> {
        let rows = self.db.read(|q| {
            q.query(
                "SELECT result FROM results WHERE monitor = ?1 AND window_ms = \
                 (SELECT MAX(window_ms) FROM results WHERE monitor = ?1) \
                 ORDER BY slice, attribute",
                &[monitor.into()],
            )
        })?;
        documents(&rows, "result")
    }
}
