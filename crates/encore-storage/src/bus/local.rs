//! The embedded bus: the log and every consumer's acknowledgements in one redb file (through
//! the key-value role), so both survive a restart; messages out with a consumer (delivered,
//! not yet acknowledged) are held in memory, so a restart delivers them again at once.

use super::{
    Delivery, EventBus, Published, check_consumer, check_filter, check_id, check_subject, matches,
};
use crate::StorageError;
use crate::kv::{KvStore, redb::RedbKv};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MESSAGES: &str = "bus_messages";
const IDS: &str = "bus_ids";
const FLOORS: &str = "bus_floors";
const ACKED: &str = "bus_acked";
const META: &str = "bus_meta";
const CONSUMERS: &str = "bus_consumers";

fn seq_key(seq: u64) -> String {
    format!("{seq:020}")
}

#[derive(Debug)]
pub struct LocalBus {
    kv: Box<dyn KvStore>,
    ack_wait: Duration,
    /// serializes publishers (the sequence and the id check are one step)
    publish: Mutex<()>,
    /// (consumer, seq) out with a consumer: when it may be delivered again, and how often it was
    out: Mutex<HashMap<(String, u64), (Instant, u64)>>,
}

impl LocalBus {
    /// The bus in the redb file `path`; a message not acknowledged within `ack_wait` of its
    /// delivery is delivered again.
    pub fn open(path: &Path, ack_wait: Duration) -> Result<LocalBus, StorageError> {
        Ok(LocalBus {
            kv: Box::new(RedbKv::open(path)?),
            ack_wait,
            publish: Mutex::new(()),
            out: Mutex::new(HashMap::new()),
        })
    }

    fn floor(&self, consumer: &str) -> Result<u64, StorageError> {
        let mut floor = 0;
        self.kv.reader()?.get(FLOORS, consumer, &mut |v| {
            floor = v
                .and_then(|v| v.try_into().ok())
                .map_or(0, u64::from_be_bytes);
        })?;
        Ok(floor)
    }
}

/// `[subject len: u16][subject][id len: u16][id][unix ms: i64][payload]`
fn encode(subject: &str, id: &str, ts_ms: i64, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + subject.len() + id.len() + payload.len());
    for s in [subject, id] {
        v.extend_from_slice(&(s.len() as u16).to_be_bytes());
        v.extend_from_slice(s.as_bytes());
    }
    v.extend_from_slice(&ts_ms.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// (subject, id, payload) of an encoded message.
fn decode(v: &[u8]) -> Option<(&str, &str, &[u8])> {
    fn text(v: &[u8], at: usize) -> Option<(&str, usize)> {
        let n = u16::from_be_bytes(v.get(at..at + 2)?.try_into().ok()?) as usize;
        let s = std::str::from_utf8(v.get(at + 2..at + 2 + n)?).ok()?;
        Some((s, at + 2 + n))
    }
    let (subject, at) = text(v, 0)?;
    let (id, at) = text(v, at)?;
    Some((subject, id, v.get(at + 8..)?))
}

fn now_ms() -> i64 {
    encore_core::time::now_ms()
}

impl EventBus for LocalBus {
    fn publish(&self, subject: &str, id: &str, payload: &[u8]) -> Result<Published, StorageError> {
        check_subject(subject)?;
        check_id(id)?;
        let _one = self.publish.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let window = super::DUPLICATE_WINDOW.as_millis() as i64;
        self.kv.write(|tx| {
            let mut seen = None;
            tx.get(IDS, id, &mut |v| {
                seen = v.and_then(|v| {
                    let seq = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
                    let ts = i64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
                    Some((seq, ts))
                });
            })?;
            if let Some((seq, ts)) = seen
                && now - ts < window
            {
                return Ok(Published {
                    seq,
                    duplicate: true,
                });
            }
            let mut last = 0;
            tx.get(META, "last", &mut |v| {
                last = v
                    .and_then(|v| v.try_into().ok())
                    .map_or(0, u64::from_be_bytes);
            })?;
            let seq = last + 1;
            tx.put(MESSAGES, &seq_key(seq), &encode(subject, id, now, payload))?;
            tx.put(META, "last", &seq.to_be_bytes())?;
            let mut entry = seq.to_be_bytes().to_vec();
            entry.extend_from_slice(&now.to_be_bytes());
            tx.put(IDS, id, &entry)?;
            Ok(Published {
                seq,
                duplicate: false,
            })
        })
    }

    fn fetch(
        &self,
        consumer: &str,
        filter: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, StorageError> {
        check_consumer(consumer)?;
        check_filter(filter)?;
        // a consumer keeps the filter it was made with (as a JetStream consumer does)
        let mut kept: Option<String> = None;
        self.kv.reader()?.get(CONSUMERS, consumer, &mut |v| {
            kept = v.map(|v| String::from_utf8_lossy(v).into_owned());
        })?;
        match kept {
            Some(kept) if kept != filter => {
                return Err(StorageError::BadAddress {
                    what: format!("consumer {consumer:?}"),
                    message: format!("it was made with the filter {kept:?}, not {filter:?}"),
                });
            }
            Some(_) => {}
            None => self
                .kv
                .write(|tx| tx.put(CONSUMERS, consumer, filter.as_bytes()))?,
        }
        let deadline = Instant::now() + wait;
        loop {
            let floor = self.floor(consumer)?;
            let mut acked = std::collections::HashSet::new();
            let lo = format!("{consumer}\0");
            let hi = format!("{consumer}\u{1}");
            let reader = self.kv.reader()?;
            reader.range(ACKED, &lo, &hi, &mut |k, _| {
                if let Some(seq) = k.rsplit('\0').next().and_then(|s| s.parse::<u64>().ok()) {
                    acked.insert(seq);
                }
                true
            })?;
            let now = Instant::now();
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            let mut got = Vec::new();
            reader.range(MESSAGES, &seq_key(floor + 1), "~", &mut |k, v| {
                let Ok(seq) = k.parse::<u64>() else {
                    return true;
                };
                let Some((subject, id, payload)) = decode(v) else {
                    return true;
                };
                if acked.contains(&seq) || !matches(filter, subject) {
                    return true;
                }
                let key = (consumer.to_owned(), seq);
                let deliveries = match out.get(&key) {
                    Some(&(again, _)) if again > now => return true,
                    Some(&(_, n)) => n + 1,
                    None => 1,
                };
                out.insert(key, (now + self.ack_wait, deliveries));
                got.push(Delivery {
                    seq,
                    subject: subject.to_owned(),
                    id: id.to_owned(),
                    payload: payload.to_vec(),
                    deliveries,
                });
                got.len() < max
            })?;
            drop(out);
            if !got.is_empty() || Instant::now() >= deadline {
                return Ok(got);
            }
            std::thread::sleep(Duration::from_millis(20).min(deadline - Instant::now()));
        }
    }

    /// Unlike JetStream's, an acknowledgement here need not follow a delivery: a message
    /// acknowledged before the consumer fetched it is never delivered to it (an outbox marks
    /// what it sent on by itself this way).
    fn ack(&self, consumer: &str, seq: u64) -> Result<(), StorageError> {
        check_consumer(consumer)?;
        self.kv.write(|tx| {
            let mut floor = 0;
            tx.get(FLOORS, consumer, &mut |v| {
                floor = v
                    .and_then(|v| v.try_into().ok())
                    .map_or(0, u64::from_be_bytes);
            })?;
            if seq <= floor {
                return Ok(());
            }
            // (a consumer acknowledging before its first fetch has no filter yet: every
            // message is its own)
            let mut filter: Option<String> = None;
            tx.get(CONSUMERS, consumer, &mut |v| {
                filter = v.map(|v| String::from_utf8_lossy(v).into_owned());
            })?;
            tx.put(ACKED, &format!("{consumer}\0{}", seq_key(seq)), &[])?;
            // the floor moves over every message right above it that is acknowledged or not
            // the consumer's
            let mut next = floor;
            loop {
                let key = format!("{consumer}\0{}", seq_key(next + 1));
                let mut acked = false;
                tx.get(ACKED, &key, &mut |v| acked = v.is_some())?;
                if acked {
                    tx.delete(ACKED, &key)?;
                    next += 1;
                    continue;
                }
                let mut other = false;
                tx.get(MESSAGES, &seq_key(next + 1), &mut |v| {
                    other = v.and_then(decode).is_some_and(|(subject, _, _)| {
                        filter.as_deref().is_some_and(|f| !matches(f, subject))
                    });
                })?;
                if !other {
                    break;
                }
                next += 1;
            }
            if next > floor {
                tx.put(FLOORS, consumer, &next.to_be_bytes())?;
            }
            Ok::<_, StorageError>(())
        })?;
        self.out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(consumer.to_owned(), seq));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_bus_passes_the_bus_conformance_suite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        super::super::testsuite::run(&|name: &str| {
            Box::new(
                LocalBus::open(
                    &dir.join(format!("{name}.redb")),
                    super::super::testsuite::ACK_WAIT,
                )
                .unwrap(),
            )
        });
    }
}
