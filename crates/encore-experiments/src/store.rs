//! Experiment definitions and their lifecycle, in the metadata store (embedded: the SQLite file
//! `<data dir>/experiments.sqlite`):
//! draft → running → stopped. A draft can be edited freely; a running experiment's allocation
//! (domain, traffic, variants and weights) cannot, because listeners already exposed would
//! change arms mid-run; stop it and start a new run instead. Starting checks that every running
//! experiment still fits its domain.

use crate::analysis::MetricSpec;
use crate::assignment::{ExperimentSpec, Plan};
use encore_storage::metadata::{Durability, Metadata, Row, Sql};
use encore_storage::params;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

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
    #[error(transparent)]
    Metadata(#[from] encore_storage::metadata::MetadataError),
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
            StoreError::Metadata(e) => e.code(),
            StoreError::Json(_) => ErrorCode::DataLoss,
        }
    }
}

/// Experiments in the metadata store (the data directory's `experiments` component).
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<dyn Metadata>,
}

const MIGRATIONS: &[&str] = &["CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    started_ms INTEGER,
    stopped_ms INTEGER
);"];

const COLUMNS: &str = "definition, state, created_ms, started_ms, stopped_ms";

fn experiment(r: &Row) -> Result<Experiment, StoreError> {
    Ok(Experiment {
        definition: serde_json::from_str(&r.get::<String>(0)?)?,
        state: State::parse(&r.get::<String>(1)?),
        created_ms: r.get(2)?,
        started_ms: r.get(3)?,
        stopped_ms: r.get(4)?,
    })
}

fn get_in(q: &mut dyn Sql, id: &str) -> Result<Experiment, StoreError> {
    let row = q.query_opt(
        &format!("SELECT {COLUMNS} FROM experiments WHERE id = ?1"),
        params![id],
    )?;
    experiment(&row.ok_or_else(|| StoreError::NotFound(id.into()))?)
}

fn running_in(q: &mut dyn Sql) -> Result<Vec<Definition>, StoreError> {
    q.query(
        "SELECT definition FROM experiments WHERE state = 'running' ORDER BY started_ms, id",
        &[],
    )?
    .iter()
    .map(|r| Ok(serde_json::from_str::<Definition>(&r.get::<String>(0)?)?))
    .collect()
}

impl Store {
    /// The experiments of the data directory `root`.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        Store::with_store(encore_storage::metadata::open(
            root,
            "experiments",
            Durability::Full,
        )?)
    }

    /// The experiments kept in `db`.
    pub fn with_store(db: Arc<dyn Metadata>) -> Result<Store, StoreError> {
        db.migrate("experiments", MIGRATIONS)?;
        Ok(Store { db })
    }

    /// A new draft; its allocation is checked on its own.
    pub fn create(&mut self, d: &Definition) -> Result<(), StoreError> {
        // a draft has no place in its domain yet: it gets one when it starts
        let mut d = d.clone();
        d.allocation.stretch.clear();
        d.allocation.ramps.clear();
        Plan::new(
            std::slice::from_ref(&d.allocation),
            &HashMap::new(),
            0.0,
            "check",
        )?;
        let json = serde_json::to_string(&d)?;
        self.db.write(|tx| {
            let exists = tx
                .query_opt("SELECT 1 FROM experiments WHERE id = ?1", params![d.id()])?
                .is_some();
            if exists {
                return Err(StoreError::Exists(d.id().into()));
            }
            tx.execute(
                "INSERT INTO experiments (id, definition, state, created_ms) \
                 VALUES (?1, ?2, 'draft', ?3)",
                params![d.id(), json, encore_core::time::now_ms()],
            )?;
            Ok(())
        })
    }

    pub fn get(&self, id: &str) -> Result<Experiment, StoreError> {
        self.db.read(|q| get_in(q, id))
    }

    pub fn list(&self) -> Result<Vec<Experiment>, StoreError> {
        self.db.read(|q| {
            q.query(
                &format!("SELECT {COLUMNS} FROM experiments ORDER BY created_ms, id"),
                &[],
            )?
            .iter()
            .map(experiment)
            .collect()
        })
    }

    /// Replaces a definition. A running experiment keeps its allocation: only its hypothesis,
    /// treatments, metrics and plan may change, and its traffic may rise (a ramp: the extra
    /// listeners join, nobody already in it moves; see [`crate::assignment::ramp`]).
    pub fn update(&mut self, d: &Definition) -> Result<(), StoreError> {
        self.db.write(|tx| {
            let current = get_in(tx, d.id())?;
            // where it sits in its domain is the store's to keep, not the caller's to move
            let mut d = d.clone();
            d.allocation.stretch = current.definition.allocation.stretch.clone();
            d.allocation.ramps = current.definition.allocation.ramps.clone();
            let ramped = ExperimentSpec {
                traffic: current.definition.allocation.traffic,
                ..d.allocation.clone()
            } == current.definition.allocation
                && d.allocation.traffic != current.definition.allocation.traffic;
            if current.state == State::Running && ramped {
                let mut specs: Vec<ExperimentSpec> = running_in(tx)?
                    .into_iter()
                    .map(|r| r.allocation)
                    .collect();
                crate::assignment::ramp(&mut specs, d.id(), d.allocation.traffic)?;
                Plan::new(&specs, &HashMap::new(), 0.0, "check")?;
                if let Some(spec) = specs.into_iter().find(|s| s.id == d.id()) {
                    d.allocation = spec;
                }
            }
            let json = serde_json::to_string(&d)?;
            match current.state {
                State::Stopped => {
                    return Err(StoreError::State {
                        id: d.id().into(),
                        state: "stopped",
                        message: "a stopped run cannot change; create a new experiment".into(),
                    });
                }
                State::Running if !ramped && current.definition.allocation != d.allocation => {
                    return Err(StoreError::State {
                        id: d.id().into(),
                        state: "running",
                        message: "its allocation (domain, variants, weights, targeting) cannot change while it runs, and its traffic can only rise; stop it and start a new run".into(),
                    });
                }
                _ => {}
            }
            tx.execute(
                "UPDATE experiments SET definition = ?2 WHERE id = ?1",
                params![d.id(), json],
            )?;
            Ok(())
        })
    }

    /// Draft → running, if it fits beside every running experiment (checked and started in
    /// one transaction: two experiments that fit alone but not together cannot both start).
    pub fn start(&mut self, id: &str) -> Result<(), StoreError> {
        self.db.write(|tx| {
            let e = get_in(tx, id)?;
            if e.state != State::Draft {
                return Err(StoreError::State {
                    id: id.into(),
                    state: e.state.as_str(),
                    message: "only a draft can start".into(),
                });
            }
            // its place in the domain: the highest gap the running experiments leave, kept for
            // as long as it runs (so nothing starting or stopping beside it moves a listener)
            let mut running = running_in(tx)?;
            let mut started = e.definition;
            started.allocation.stretch.clear();
            started.allocation.ramps.clear();
            running.push(started);
            let mut specs: Vec<ExperimentSpec> =
                running.iter().map(|d| d.allocation.clone()).collect();
            crate::assignment::place(&mut specs)?;
            Plan::new(&specs, &HashMap::new(), 0.0, "check")?;
            for (d, spec) in running.iter_mut().zip(specs) {
                if d.allocation.stretch != spec.stretch {
                    d.allocation.stretch = spec.stretch;
                    tx.execute(
                        "UPDATE experiments SET definition = ?2 WHERE id = ?1",
                        params![d.id(), serde_json::to_string(d)?],
                    )?;
                }
            }
            tx.execute(
                "UPDATE experiments SET state = 'running', started_ms = ?2 \
                 WHERE id = ?1 AND state = 'draft'",
                params![id, encore_core::time::now_ms()],
            )?;
            Ok(())
        })
    }

    /// Running → stopped.
    pub fn stop(&mut self, id: &str) -> Result<(), StoreError> {
        self.db.write(|tx| {
            let e = get_in(tx, id)?;
            if e.state != State::Running {
                return Err(StoreError::State {
                    id: id.into(),
                    state: e.state.as_str(),
                    message: "only a running experiment can stop".into(),
                });
            }
            tx.execute(
                "UPDATE experiments SET state = 'stopped', stopped_ms = ?2 WHERE id = ?1",
                params![id, encore_core::time::now_ms()],
            )?;
            Ok(())
        })
    }

    /// The definitions of running experiments, in start order.
    pub fn running_definitions(&self) -> Result<Vec<Definition>, StoreError> {
        self.db.read(running_in)
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
