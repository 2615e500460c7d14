//! The ingest pipeline: a body is parsed, checked against its contract, deduplicated and made
//! durable by the [`Ingestor`]; then the rows that were stored (and only those: never a
//! rejected row, never a duplicate) are handed, typed, to every [`Subscriber`] (recent
//! activity for fold-in, the online feature store, ...). Nothing downstream parses a body again.

use arrow::array::RecordBatch;
use encore_ingest::{BatchOutcome, IngestError, Ingestor, Table};
use std::sync::{Arc, RwLock};

/// Something that acts on stored events: called after the rows are durable, with the rows in
/// the table's canonical schema (`encore_core::arrow`). It must not block for long (hand work
/// to a [`crate::worker::BatchWriter`]).
pub trait Subscriber: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;
    fn stored(&self, table: Table, rows: &RecordBatch);
}

/// Where an ingest node sends the rows it stores before the client is answered (the shared
/// bus, through [`crate::bus::Outbox`]); an error fails the request.
pub trait Sender: Send + Sync + std::fmt::Debug {
    fn send(&self, table: Table, rows: &RecordBatch) -> Result<(), encore_storage::StorageError>;
}

/// The ingestor and who hears of what it stores.
#[derive(Debug)]
pub struct Pipeline {
    pub ingestor: Arc<Ingestor>,
    subscribers: RwLock<Vec<Arc<dyn Subscriber>>>,
    /// on an ingest node: where stored rows go before the client is answered
    sender: RwLock<Option<Arc<dyn Sender>>>,
}

impl Pipeline {
    pub fn new(ingestor: Arc<Ingestor>) -> Pipeline {
        Pipeline {
            ingestor,
            subscribers: RwLock::default(),
            sender: RwLock::default(),
        }
    }

    /// Every batch stored from now on also goes to `sender` before the client is answered
    /// (an ingest node: to the shared bus).
    pub fn send_to(&self, sender: Arc<dyn Sender>) {
        *self.sender.write().unwrap_or_else(|e| e.into_inner()) = Some(sender);
    }

    /// `s` hears of every batch stored from now on.
    pub fn subscribe(&self, s: Arc<dyn Subscriber>) {
        self.subscribers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(s);
    }

    /// Ingests one request body (a JSON array or JSON lines) of at most `max_rows` rows;
    /// returns once the accepted rows are durable and the subscribers have them. With `strict`,
    /// a body with any bad row is refused whole (an `invalid_argument` naming each).
    pub fn ingest_body(
        &self,
        body: &[u8],
        max_rows: usize,
        strict: bool,
    ) -> Result<BatchOutcome, IngestError> {
        let chunk = self.ingestor.parse_body(body, max_rows)?;
        let outcome = self.ingestor.submit_body(&chunk, strict)?.wait()?;
        self.publish(&outcome)?;
        Ok(outcome)
    }

    /// Ingests rows built in process (impressions, exposures; a batch of
    /// `encore_core::arrow`): the same contract, dedup, log and fan-out as a body.
    pub fn ingest_rows(
        &self,
        table: Table,
        rows: &RecordBatch,
    ) -> Result<BatchOutcome, IngestError> {
        let outcome = self.ingestor.submit_batch(table, rows)?.wait()?;
        self.publish(&outcome)?;
        Ok(outcome)
    }

    /// The rows of `outcome` to the shared bus (an ingest node: the stored rows and the
    /// duplicates, which an earlier attempt may have stored without reaching the bus), then
    /// the stored ones to the subscribers.
    fn publish(&self, outcome: &BatchOutcome) -> Result<(), IngestError> {
        let some = |b: &Option<RecordBatch>| b.clone().filter(|r| r.num_rows() > 0);
        let (rows, resent) = (some(&outcome.rows), some(&outcome.resent));
        let sender = self
            .sender
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(sender) = sender {
            let all = match (&rows, resent) {
                (Some(a), Some(b)) => Some(
                    arrow::compute::concat_batches(&a.schema(), [a, &b]).map_err(|e| {
                        IngestError::Internal {
                            message: e.to_string(),
                        }
                    })?,
                ),
                (Some(a), None) => Some(a.clone()),
                (None, b) => b,
            };
            if let Some(all) = all {
                sender.send(outcome.table, &all)?;
            }
        }
        if let Some(rows) = rows {
            self.announce(outcome.table, &rows);
        }
        Ok(())
    }

    /// Tells every subscriber of `rows` stored (here, or by another node: a serving node
    /// following the bus).
    pub fn announce(&self, table: Table, rows: &RecordBatch) {
        let subscribers = self
            .subscribers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for s in subscribers {
            s.stored(table, rows);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use encore_ingest::IngestOptions;
    use encore_storage::StorageError;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A shared bus that fails its first send (the node dies before the bus has the batch),
    /// then keeps the row counts it is sent.
    #[derive(Debug)]
    struct FailsOnce {
        fail: AtomicBool,
        got: Mutex<Vec<usize>>,
    }

    impl Sender for FailsOnce {
        fn send(&self, _: Table, rows: &RecordBatch) -> Result<(), StorageError> {
            if self.fail.swap(false, Ordering::SeqCst) {
                return Err(StorageError::Unavailable {
                    what: "the bus".into(),
                    message: "down".into(),
                });
            }
            self.got.lock().unwrap().push(rows.num_rows());
            Ok(())
        }
    }

    fn play(i: u32) -> String {
        format!(
            r#"{{"event_id":"0b7f6c1e-9d2a-4c8e-8f3a-{i:012x}","schema_version":1,"user_id":"u1","session_id":"s1","ts_start_ms":1767225600000,"ts_end_ms":1767225630000,"item_id":"t1","item_type":"track","item_duration_ms":200000,"ms_played":30000,"reason_start":"clickrow","reason_end":"trackdone","context_type":"album","platform":"ios","country":"SE","tier":"premium","consent":{{"personalization":true,"analytics":true}}}}"#
        )
    }

    /// Rows an attempt stored before the bus had them (its client got no 200) reach the bus
    /// with the retry, which finds them stored; a retry adding a new row sends both.
    #[test]
    fn a_retry_sends_on_what_an_unanswered_attempt_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let ingestor = Arc::new(Ingestor::open(tmp.path(), IngestOptions::default()).unwrap());
        let pipeline = Pipeline::new(ingestor);
        let bus = Arc::new(FailsOnce {
            fail: AtomicBool::new(true),
            got: Mutex::new(Vec::new()),
        });
        pipeline.send_to(Arc::clone(&bus) as _);
        let body = format!("{}\n{}\n", play(1), play(2));
        assert!(pipeline.ingest_body(body.as_bytes(), 100, false).is_err());
        assert!(bus.got.lock().unwrap().is_empty());
        let retry = pipeline.ingest_body(body.as_bytes(), 100, false).unwrap();
        assert_eq!((retry.accepted, retry.duplicates), (0, 2));
        assert_eq!(*bus.got.lock().unwrap(), [2]);
        let more = format!("{}\n{}\n", play(2), play(3));
        let o = pipeline.ingest_body(more.as_bytes(), 100, false).unwrap();
        assert_eq!((o.accepted, o.duplicates), (1, 1));
        assert_eq!(*bus.got.lock().unwrap(), [2, 2]);
    }
}
