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

    /// The stored rows of `outcome` to the shared bus (an ingest node), then to the
    /// subscribers.
    fn publish(&self, outcome: &BatchOutcome) -> Result<(), IngestError> {
        let Some(rows) = outcome.rows.as_ref().filter(|r| r.num_rows() > 0) else {
            return Ok(());
        };
        let sender = self
            .sender
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(sender) = sender {
            sender.send(outcome.table, rows)?;
        }
        self.announce(outcome.table, rows);
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
