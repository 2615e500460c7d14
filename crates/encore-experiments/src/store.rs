//! Experiment definitions and their lifecycle, in SQLite (`<data dir>/experiments.sqlite`):
//! draft → running → stopped. A draft can be edited freely; a running experiment's allocation
//! (domain, traffic, variants and weights) cannot, because listeners already exposed would
//! change arms mid-run; stop it and start a new run instead. Starting checks that every running
//! experiment still fits its domain.

use crate::analysis::MetricSpec;
use crate::assignment::{ExperimentSpec, Plan};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// What a variant serves: a model alias, and rule parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Treatment {
    /// e.g. `production` or `candidate`
    #[serde(default)]
    pub model_alias: Option<String>,
    /// the MMR relevance weight
    #[serde(default)]
    pub diversity: Option<f32>,
    #[serde(default)]
    pub artist_cap: Option<usize>,
}

/// An experiment as its owner writes it (its id, domain, traffic, variants and targeting are
/// the allocation's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    pub hypothesis: String,
    #[serde(flatten)]
    pub allocation: ExperimentSpec,
    /// per variant name
    #[serde(default)]
    pub treatments: HashMap<String, Treatment>,
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    /// the planned sample (listeners), for sequential designs and power
    #[serde(default)]
    pub planned_users: Option<u64>,
}

impl Definition {
    pub fn id(&self) -> &str {
        &self.allocation.id
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Draft,
    Running,
    Stopped,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Draft => "draft",
            State::Running => "running",
            State::Stopped => "stopped",
        }
    }

    fn parse(s: &str) -> State {
        match s {
            "running" => State::Running,
            "stopped" => State::Stopped,
            _ => State::Draft,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Experiment {
    pub definition: Definition,
    pub state: State,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub stopped_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("experiment {0} does not exist")]
    NotFound(String),
    #[error("experiment {0} already exists")]
    Exists(String),
    #[error("experiment {id} is {state}: {message}")]
    State {
        id: String,
        state: &'static str,
        message: String,
    },
    #[error(transparent)]
    Assignment(#[from] crate::assignment::AssignmentError),
    #[error("experiment store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("experiment record: {0}")]
    Json(#[from] serde_json::Error),
}

impl encore_core::Coded for StoreError {
    fn code(&self) -> encore_core::ErrorCode {
        use encore_core::ErrorCode;
        match self {
            StoreError::NotFound(_) => ErrorCode::NotFound,
            StoreError::Exists(_) => ErrorCode::Conflict,
            StoreError::State { .. } => ErrorCode::FailedPrecondition,
            StoreError::Assignment(_) => ErrorCode::InvalidArgument,
            StoreError::Sqlite(_) => ErrorCode::Unavailable,
            StoreError::Json(_) => ErrorCode::DataLoss,
        }
    }
}

#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(root.join("experiments.sqlite"))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS experiments (
                id TEXT PRIMARY KEY,
                definition TEXT NOT NULL,
                state TEXT NOT NULL,
                created_ms INTEGER NOT NULL,
                started_ms INTEGER,
                stopped_ms INTEGER
            );",
        )?;
        Ok(Store { conn })
    }

    /// A new draft; its allocation is checked on its own.
    pub fn create(&mut self, d: &Definition) -> Result<(), StoreError> {
        Plan::new(
            std::slice::from_ref(&d.allocation),
            &HashMap::new(),
            0.0,
            "check",
        )?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM experiments WHERE id = ?1",
                params![d.id()],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_some() {
            return Err(StoreError::Exists(d.id().into()));
        }
        tx.execute(
            "INSERT INTO experiments (id, definition, state, created_ms) VALUES (?1, ?2, 'draft', ?3)",
            params![d.id(), serde_json::to_string(d)?, encore_core::time::now_ms()],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Experiment, StoreError> {
        self.conn
            .query_row(
                "SELECT definition, state, created_ms, started_ms, stopped_ms FROM experiments WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                    ))
                },
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(id.into()))
            .and_then(|(d, s, c, st, sp)| {
                Ok(Experiment {
                    definition: serde_json::from_str(&d)?,
                    state: State::parse(&s),
                    created_ms: c,
                    started_ms: st,
                    stopped_ms: sp,
                })
            })
    }

    pub fn list(&self) -> Result<Vec<Experiment>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM experiments ORDER BY created_ms, id")?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        ids.iter().map(|id| self.get(id)).collect()
    }

    /// Replaces a definition. A running experiment keeps its allocation: only its hypothesis,
    /// treatments, metrics and plan may change.
    pub fn update(&mut self, d: &Definition) -> Result<(), StoreError> {
        let current = self.get(d.id())?;
        match current.state {
            State::Stopped => {
                return Err(StoreError::State {
                    id: d.id().into(),
                    state: "stopped",
                    message: "a stopped run cannot change; create a new experiment".into(),
                });
            }
            State::Running if current.definition.allocation != d.allocation => {
                return Err(StoreError::State {
                    id: d.id().into(),
                    state: "running",
                    message: "its allocation (domain, traffic, variants, weights, targeting) cannot change while it runs; stop it and start a new run".into(),
                });
            }
            _ => {}
        }
        self.conn.execute(
            "UPDATE experiments SET definition = ?2 WHERE id = ?1",
            params![d.id(), serde_json::to_string(d)?],
        )?;
        Ok(())
    }

    /// Draft → running, if it fits beside every running experiment.
    pub fn start(&mut self, id: &str) -> Result<(), StoreError> {
        let e = self.get(id)?;
        if e.state != State::Draft {
            return Err(StoreError::State {
                id: id.into(),
                state: e.state.as_str(),
                message: "only a draft can start".into(),
            });
        }
        let mut running = self.running()?;
        running.push(e.definition.allocation);
        Plan::new(&running, &HashMap::new(), 0.0, "check")?;
        self.conn.execute(
            "UPDATE experiments SET state = 'running', started_ms = ?2 WHERE id = ?1 AND state = 'draft'",
            params![id, encore_core::time::now_ms()],
        )?;
        Ok(())
    }

    /// Running → stopped.
    pub fn stop(&mut self, id: &str) -> Result<(), StoreError> {
        let e = self.get(id)?;
        if e.state != State::Running {
            return Err(StoreError::State {
                id: id.into(),
                state: e.state.as_str(),
                message: "only a running experiment can stop".into(),
            });
        }
        self.conn.execute(
            "UPDATE experiments SET state = 'stopped', stopped_ms = ?2 WHERE id = ?1",
            params![id, encore_core::time::now_ms()],
        )?;
        Ok(())
    }

    /// The definitions of running experiments, in start order.
    pub fn running_definitions(&self) -> Result<Vec<Definition>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT definition FROM experiments WHERE state = 'running' ORDER BY started_ms, id",
        )?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        rows.iter()
            .map(|d| Ok(serde_json::from_str::<Definition>(d)?))
            .collect()
    }

    /// The allocations of running experiments, in start order (the order the plan lays them
    /// out in, so assignments stay put as others start).
    pub fn running(&self) -> Result<Vec<ExperimentSpec>, StoreError> {
        Ok(self
            .running_definitions()?
            .into_iter()
            .map(|d| d.allocation)
            .collect())
    }
}
