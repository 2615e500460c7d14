//! Leases on a deployment's background jobs, in the metadata store (the `jobs` component: a
//! PostgreSQL schema every node shares, or SQLite on one machine): a job runs on the one worker
//! holding its lease, so two workers never run the same job. A holder renews well before the
//! lease runs out; a worker that dies stops renewing, and another takes the lease once it has
//! expired. Each change of holder raises the lease's epoch (a fencing number, logged).
//!
//! Expiry is judged by the clock of the node asking, so the lease outlasts the clock skew
//! between workers by a wide margin (15 s leases renewed every 5 s).

use crate::AppError;
use encore_storage::metadata::{Durability, Metadata, MetadataError};
use std::path::Path;
use std::time::Duration;

const SCHEMA: &[&str] = &["CREATE TABLE leases (\
     job TEXT PRIMARY KEY, \
     holder TEXT NOT NULL, \
     expires_ms BIGINT NOT NULL, \
     epoch BIGINT NOT NULL)"];

/// The lease on one job, as one holder asks for it.
#[derive(Debug)]
pub struct Lease {
    db: std::sync::Arc<dyn Metadata>,
    job: String,
    holder: String,
    ttl: Duration,
}

/// Who holds a job's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub holder: String,
    pub expires_ms: i64,
    pub epoch: i64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Lease {
    /// The lease on `job` of the deployment whose metadata the data directory `root` names,
    /// asked for by `holder` (a node name), held `ttl` from each renewal.
    pub fn open(root: &Path, job: &str, holder: &str, ttl: Duration) -> Result<Lease, AppError> {
        let db = encore_storage::metadata::open(root, "jobs", Durability::Full)?;
        db.migrate("jobs", SCHEMA)?;
        Ok(Lease {
            db,
            job: job.to_owned(),
            holder: holder.to_owned(),
            ttl,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes the lease (free, expired, or already ours) or renews it; its epoch when this
    /// holder has it for the next `ttl`, `None` when another holds it.
    pub fn hold(&self) -> Result<Option<i64>, AppError> {
        let now = now_ms();
        let until = now + self.ttl.as_millis() as i64;
        let got = self.db.write(|tx| {
            let row = tx.query_opt(
                "SELECT holder, expires_ms, epoch FROM leases WHERE job = ?1",
                &[self.job.as_str().into()],
            )?;
            let Some(row) = row else {
                tx.execute(
                    "INSERT INTO leases (job, holder, expires_ms, epoch) VALUES (?1, ?2, ?3, 1)",
                    &[
                        self.job.as_str().into(),
                        self.holder.as_str().into(),
                        until.into(),
                    ],
                )?;
                return Ok::<_, MetadataError>(Some(1));
            };
            let holder: String = row.get(0)?;
            let expires: i64 = row.get(1)?;
            let epoch: i64 = row.get(2)?;
            if holder != self.holder && expires > now {
                return Ok(None);
            }
            let epoch = if holder == self.holder {
                epoch
            } else {
                epoch + 1
            };
            tx.execute(
                "UPDATE leases SET holder = ?2, expires_ms = ?3, epoch = ?4 WHERE job = ?1",
                &[
                    self.job.as_str().into(),
                    self.holder.as_str().into(),
                    until.into(),
                    epoch.into(),
                ],
            )?;
            Ok(Some(epoch))
        })?;
        Ok(got)
    }

    /// Gives the lease up, if this holder has it (a clean stop: another worker need not wait
    /// for it to expire).
    pub fn release(&self) -> Result<(), AppError> {
        self.db.write(|tx| {
            tx.execute(
                "UPDATE leases SET expires_ms = 0 WHERE job = ?1 AND holder = ?2",
                &[self.job.as_str().into(), self.holder.as_str().into()],
            )
        })?;
        Ok(())
    }

    /// Who holds the lease now, if anyone ever did.
    pub fn holder(&self) -> Result<Option<Holder>, AppError> {
        let row = self.db.read(|q| {
            q.query_opt(
                "SELECT holder, expires_ms, epoch FROM leases WHERE job = ?1",
                &[self.job.as_str().into()],
            )
        })?;
        Ok(match row {
            None => None,
            Some(r) => Some(Holder {
                holder: r.get(0)?,
                expires_ms: r.get(1)?,
                epoch: r.get(2)?,
            }),
        })
    }
}

/// Keeps a lease while a job runs: [`Keeper::held`] renews it every third of its time to live
/// and says whether this holder may work now.
#[derive(Debug)]
pub struct Keeper {
    lease: Lease,
    /// when the lease was last confirmed ours, and its epoch
    confirmed: Option<(std::time::Instant, i64)>,
    /// when another holder was last seen (so a waiting worker asks once a second)
    refused: Option<std::time::Instant>,
}

impl Keeper {
    pub fn new(lease: Lease) -> Keeper {
        Keeper {
            lease,
            confirmed: None,
            refused: None,
        }
    }

    /// Whether this holder has the lease for at least the next two thirds of its time to
    /// live (renewing it when a third has passed); a store error counts as not held once the
    /// last confirmation is too old.
    pub fn held(&mut self) -> bool {
        let ttl = self.lease.ttl;
        if let Some((at, _)) = self.confirmed
            && at.elapsed() < ttl / 3
        {
            return true;
        }
        if self.confirmed.is_none()
            && self
                .refused
                .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return false;
        }
        let asked = std::time::Instant::now();
        match self.lease.hold() {
            Ok(Some(epoch)) => {
                if self.confirmed.is_none_or(|(_, e)| e != epoch) {
                    tracing::info!(job = self.lease.job, epoch, "lease taken");
                }
                self.confirmed = Some((asked, epoch));
                self.refused = None;
                true
            }
            Ok(None) => {
                if self.confirmed.take().is_some() {
                    tracing::warn!(job = self.lease.job, "lease lost to another worker");
                }
                self.refused = Some(asked);
                false
            }
            Err(e) => {
                tracing::warn!(job = self.lease.job, "lease: {e}");
                // still ours while two thirds of the time to live remain since the last renewal
                match self.confirmed {
                    Some((at, _)) if at.elapsed() < ttl * 2 / 3 => true,
                    _ => {
                        self.confirmed = None;
                        self.refused = Some(asked);
                        false
                    }
                }
            }
        }
    }

    /// Gives the lease up (a clean stop).
    pub fn release(&mut self) {
        if self.confirmed.take().is_some()
            && let Err(e) = self.lease.release()
        {
            tracing::warn!(job = self.lease.job, "lease not released: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use encore_storage::metadata::testsuite::on_every_backend;

    #[test]
    fn one_holder_at_a_time_and_another_after_expiry() {
        on_every_backend("jobs", &one_holder_at_a_time);
    }

    fn one_holder_at_a_time(root: &Path) {
        let ttl = Duration::from_millis(300);
        let a = Lease::open(root, "lake", "w1", ttl).unwrap();
        let b = Lease::open(root, "lake", "w2", ttl).unwrap();
        assert_eq!(a.hold().unwrap(), Some(1));
        assert_eq!(b.hold().unwrap(), None, "held by w1");
        assert_eq!(a.hold().unwrap(), Some(1), "a renewal keeps the epoch");
        // w1 stops renewing (it died): w2 takes over once the lease expired
        std::thread::sleep(ttl + Duration::from_millis(50));
        assert_eq!(b.hold().unwrap(), Some(2));
        assert_eq!(a.hold().unwrap(), None, "w1 came back: w2 holds it");
        let h = a.holder().unwrap().unwrap();
        assert_eq!((h.holder.as_str(), h.epoch), ("w2", 2));
        // a clean stop hands over at once
        b.release().unwrap();
        assert_eq!(a.hold().unwrap(), Some(3));
        // other jobs are leased apart
        let c = Lease::open(root, "monitors", "w2", ttl).unwrap();
        assert_eq!(c.hold().unwrap(), Some(1));
    }

    #[test]
    fn racing_workers_never_hold_a_lease_together() {
        on_every_backend("jobs", &racing_workers);
    }

    fn racing_workers(root: &Path) {
        let held = std::sync::Mutex::new(Vec::new());
        // opened one after another (a first open makes the store), then raced
        let leases: Vec<Lease> = (0..4)
            .map(|w| Lease::open(root, "lake", &format!("w{w}"), Duration::from_secs(60)).unwrap())
            .collect();
        std::thread::scope(|s| {
            for (w, l) in leases.into_iter().enumerate() {
                let held = &held;
                s.spawn(move || {
                    for _ in 0..20 {
                        if let Some(e) = l.hold().unwrap() {
                            held.lock().unwrap().push((w, e));
                        }
                    }
                });
            }
        });
        let held = held.into_inner().unwrap();
        assert!(!held.is_empty());
        assert!(
            held.iter().all(|(w, e)| *w == held[0].0 && *e == 1),
            "{held:?}"
        );
    }
}
