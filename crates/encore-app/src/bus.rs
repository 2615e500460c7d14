//! Nodes of one deployment talk through the event bus ([`encore_storage::bus`]): an ingest node
//! publishes the rows it stores, a worker writes them into its event log (the lake: dedup by
//! event id, Parquet segments), and serving nodes follow them for recent activity and online
//! features. Rows travel as Arrow IPC streams in the table's canonical schema, one message per
//! stored batch, under the subject `events.<table>`.
//!
//! An ingest node sends every request's rows that passed the contract to the shared bus (those
//! it stored and those it had stored before: an attempt may have stored rows and died before
//! the bus had them, and its client, never answered, retries); the client is answered once the
//! shared bus has them. When the bus cannot be reached the request fails (503) and a durable
//! outbox in the node's data directory (an embedded bus) keeps the batch; a forwarder hands it
//! on when the bus is back. Publishing is idempotent by message id within the bus's window,
//! and the worker deduplicates by event id: each event is in the lake once.

use crate::AppError;
use crate::ingest::Pipeline;
use arrow::array::RecordBatch;
use encore_core::ErrorCode;
use encore_ingest::{Ingestor, Table};
use encore_storage::StorageError;
use encore_storage::bus::{Delivery, EventBus, local::LocalBus};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The subject of a table's rows.
pub fn subject(table: Table) -> String {
    format!("events.{}", table.name())
}

fn table_of(subject: &str) -> Option<Table> {
    let name = subject.strip_prefix("events.")?;
    Table::ALL.into_iter().find(|t| t.name() == name)
}

/// `rows` as an Arrow IPC stream.
pub fn encode(rows: &RecordBatch) -> Result<Vec<u8>, StorageError> {
    let mut buf = Vec::new();
    let bad = StorageError::arrow;
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &rows.schema()).map_err(bad)?;
    w.write(rows).map_err(bad)?;
    w.finish().map_err(bad)?;
    drop(w);
    Ok(buf)
}

/// The batches of an Arrow IPC stream.
pub fn decode(bytes: &[u8]) -> Result<Vec<RecordBatch>, AppError> {
    let bad = |e: arrow::error::ArrowError| {
        AppError::new(
            ErrorCode::InvalidArgument,
            format!("a bus message is not Arrow IPC: {e}"),
        )
    };
    arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(bad)?
        .map(|b| b.map_err(bad))
        .collect()
}

/// A message id for `payload` published by `node`: the same batch gets the same id.
fn message_id(node: &str, payload: &[u8]) -> String {
    // FNV-1a over the bytes, two lanes: collisions within the dedup window are not a concern
    let (mut a, mut b) = (0xcbf2_9ce4_8422_2325u64, 0x8422_2325_cbf2_9ce4u64);
    for &x in payload {
        a = (a ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3);
        b = (b ^ u64::from(x))
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(5);
    }
    format!("{node}-{a:016x}{b:016x}")
}

/// An ingest node's way to the shared bus: its durable outbox and the bus.
#[derive(Debug)]
pub struct Outbox {
    node: String,
    outbox: LocalBus,
    bus: Arc<dyn EventBus>,
}

const FORWARD: &str = "forward";

impl Outbox {
    /// The outbox `<root>/outbox.redb` of the ingest node `node`, in front of `bus`.
    pub fn open(root: &Path, node: &str, bus: Arc<dyn EventBus>) -> Result<Arc<Outbox>, AppError> {
        Ok(Arc::new(Outbox {
            node: node.to_owned(),
            outbox: LocalBus::open(&root.join("outbox.redb"), Duration::from_secs(5))?,
            bus,
        }))
    }

    /// Hands on what the outbox still holds (batches whose publish failed, or that a crash
    /// interrupted); returns how many went.
    pub fn forward(&self, wait: Duration) -> Result<usize, AppError> {
        let pending = self.outbox.fetch(FORWARD, ">", 256, wait)?;
        let mut sent = 0;
        for d in &pending {
            self.bus.publish(&d.subject, &d.id, &d.payload)?;
            self.outbox.ack(FORWARD, d.seq)?;
            sent += 1;
        }
        Ok(sent)
    }
}

impl crate::ingest::Sender for Outbox {
    /// Hands `rows` of `table` to the bus; when it cannot take them, keeps them in the outbox
    /// for the forwarder and fails (the client is not answered 200).
    fn send(&self, table: Table, rows: &RecordBatch) -> Result<(), StorageError> {
        let payload = encode(rows)?;
        let subject = subject(table);
        let id = message_id(&self.node, &payload);
        match self.bus.publish(&subject, &id, &payload) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.outbox.publish(&subject, &id, &payload)?;
                Err(e)
            }
        }
    }
}

/// Runs `each` over the bus messages of `consumer` (subjects `events.>`), acknowledging each
/// once `each` succeeds; a message `each` fails on comes back after the ack wait. Stops when
/// `stop` is set or the node it serves is gone.
fn follow(
    bus: Arc<dyn EventBus>,
    consumer: String,
    stop: Arc<AtomicBool>,
    mut lease: Option<crate::lease::Keeper>,
    each: impl Fn(Table, &RecordBatch) -> Result<(), AppError> + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, AppError> {
    let name = format!("bus-{consumer}");
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // a leased job waits while another worker holds it
                if let Some(k) = lease.as_mut()
                    && !k.held()
                {
                    std::thread::sleep(Duration::from_millis(250));
                    continue;
                }
                let got: Result<Vec<Delivery>, StorageError> =
                    bus.fetch(&consumer, "events.>", 64, Duration::from_millis(200));
                let messages = match got {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(consumer, "bus: {e}");
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                };
                for m in messages {
                    let done = match (table_of(&m.subject), decode(&m.payload)) {
                        (Some(table), Ok(batches)) => {
                            batches.iter().try_for_each(|b| each(table, b))
                        }
                        // a message no node of this build can use is acknowledged, not retried
                        (None, _) | (_, Err(_)) => {
                            tracing::warn!(
                                consumer,
                                subject = m.subject,
                                "bus: unreadable message skipped"
                            );
                            Ok(())
                        }
                    };
                    match done {
                        Ok(()) => {
                            if let Err(e) = bus.ack(&consumer, m.seq) {
                                tracing::warn!(consumer, "bus: {e}");
                            }
                        }
                        Err(e) => tracing::warn!(consumer, seq = m.seq, "bus: {e} (it comes back)"),
                    }
                }
            }
            if let Some(k) = lease.as_mut() {
                k.release();
            }
        })
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("{name}: {e}")))
}

/// Background work a node runs on the bus; stops when dropped.
#[derive(Debug)]
pub struct Following {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Following {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Following {
    /// A worker: every batch on the bus into `ingestor`'s event log (its contract, dedup by
    /// event id, its Parquet segments), acknowledged once durable there, then to `pipeline`'s
    /// subscribers (the online store, when it is shared, is written here). Runs while this
    /// worker holds `lease` (one worker of a deployment writes the lake).
    pub fn lake(
        bus: Arc<dyn EventBus>,
        ingestor: &Arc<Ingestor>,
        pipeline: &Arc<Pipeline>,
        lease: crate::lease::Lease,
    ) -> Result<Following, AppError> {
        let stop = Arc::new(AtomicBool::new(false));
        let ingestor: Weak<Ingestor> = Arc::downgrade(ingestor);
        let pipeline: Weak<Pipeline> = Arc::downgrade(pipeline);
        let keeper = Some(crate::lease::Keeper::new(lease));
        let t = follow(
            bus,
            "lake".into(),
            Arc::clone(&stop),
            keeper,
            move |table, rows| {
                let (Some(ingestor), Some(pipeline)) = (ingestor.upgrade(), pipeline.upgrade())
                else {
                    return Err(AppError::new(
                        ErrorCode::Unavailable,
                        "the node is stopping",
                    ));
                };
                ingestor.submit_batch(table, rows)?.wait()?;
                pipeline.announce(table, rows);
                Ok(())
            },
        )?;
        Ok(Following {
            stop,
            threads: vec![t],
        })
    }

    /// A serving node `node`: every batch on the bus to `pipeline`'s subscribers (recent plays,
    /// online features), not stored in its own log.
    pub fn serving(
        bus: Arc<dyn EventBus>,
        node: &str,
        pipeline: &Arc<Pipeline>,
    ) -> Result<Following, AppError> {
        let stop = Arc::new(AtomicBool::new(false));
        let pipeline: Weak<Pipeline> = Arc::downgrade(pipeline);
        let t = follow(
            bus,
            format!("serve-{node}"),
            Arc::clone(&stop),
            None,
            move |table, rows| {
                if let Some(p) = pipeline.upgrade() {
                    p.announce(table, rows);
                }
                Ok(())
            },
        )?;
        Ok(Following {
            stop,
            threads: vec![t],
        })
    }

    /// An ingest node: what its outbox still holds, handed on every second.
    pub fn forwarder(outbox: &Arc<Outbox>) -> Result<Following, AppError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (outbox, flag) = (Arc::clone(outbox), Arc::clone(&stop));
        let t = std::thread::Builder::new()
            .name("bus-forwarder".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match outbox.forward(Duration::from_millis(500)) {
                        Ok(n) if n > 0 => tracing::info!(batches = n, "outbox forwarded"),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!("outbox: {e}");
                            std::thread::sleep(Duration::from_secs(1));
                        }
                    }
                }
            })
            .map_err(|e| AppError::new(ErrorCode::Internal, format!("bus-forwarder: {e}")))?;
        Ok(Following {
            stop,
            threads: vec![t],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Sender;
    use encore_storage::bus::Published;
    use std::sync::Mutex;

    /// A shared bus that is down while `down` is set (a fault injected), else keeps what it is
    /// sent.
    #[derive(Debug, Default)]
    struct Flaky {
        down: AtomicBool,
        got: Mutex<Vec<(String, String)>>,
    }

    impl EventBus for Flaky {
        fn publish(&self, subject: &str, id: &str, _: &[u8]) -> Result<Published, StorageError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StorageError::Unavailable {
                    what: "the bus".into(),
                    message: "down".into(),
                });
            }
            let mut got = self.got.lock().unwrap();
            got.push((subject.to_owned(), id.to_owned()));
            Ok(Published {
                seq: got.len() as u64,
                duplicate: false,
            })
        }
        fn fetch(
            &self,
            _: &str,
            _: &str,
            _: usize,
            _: Duration,
        ) -> Result<Vec<Delivery>, StorageError> {
            Ok(Vec::new())
        }
        fn ack(&self, _: &str, _: u64) -> Result<(), StorageError> {
            Ok(())
        }
    }

    fn rows(table: Table) -> RecordBatch {
        RecordBatch::new_empty(table.schema())
    }

    #[test]
    fn the_outbox_keeps_what_the_bus_did_not_take_and_forwards_it_once() {
        let tmp = tempfile::tempdir().unwrap();
        let bus = Arc::new(Flaky::default());
        let outbox = Outbox::open(tmp.path(), "n1", Arc::clone(&bus) as _).unwrap();
        outbox
            .send(Table::Playback, &rows(Table::Playback))
            .unwrap();
        assert_eq!(bus.got.lock().unwrap().len(), 1);
        // the bus down: the send fails (the client gets a 503), the outbox keeps the batch
        bus.down.store(true, Ordering::SeqCst);
        assert!(
            outbox
                .send(Table::Interaction, &rows(Table::Interaction))
                .is_err()
        );
        assert!(outbox.forward(Duration::from_millis(50)).is_err());
        // back up: the forwarder hands it on, once
        bus.down.store(false, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5_100));
        assert_eq!(outbox.forward(Duration::from_millis(50)).unwrap(), 1);
        assert_eq!(outbox.forward(Duration::from_millis(50)).unwrap(), 0);
        let got = bus.got.lock().unwrap();
        assert_eq!(
            got.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
            ["events.playback", "events.interaction"]
        );
        // reopened (a restarted node), nothing is left to forward
        drop(got);
        drop(outbox);
        let outbox = Outbox::open(tmp.path(), "n1", Arc::clone(&bus) as _).unwrap();
        assert_eq!(outbox.forward(Duration::from_millis(50)).unwrap(), 0);
    }
}
