//! The event bus role: a durable, ordered log of messages by subject that several nodes write
//! to and read from, each reader through a named durable consumer that remembers what it has
//! acknowledged. An ingest node publishes the rows it accepted and acknowledges its client once
//! the bus has them durably; workers and serving nodes consume them at their own pace. The
//! embedded backend keeps the log in a redb file ([`local::LocalBus`]); the server backend is
//! NATS JetStream ([`nats::NatsBus`]); both pass the same suite.
//!
//! Delivery is at least once: a message fetched and not acknowledged within the consumer's ack
//! wait is delivered again (its `deliveries` count says how often). Publishing is idempotent by
//! message id within the deduplication window (two minutes, JetStream's default), so a
//! publisher that retries after a lost answer does not append twice.

pub mod local;
pub mod nats;
#[cfg(feature = "testsuite")]
pub mod testsuite;

use crate::StorageError;
use std::time::Duration;

/// How long a publish's message id is remembered for deduplication.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// the message's position in the log (the first one's, for a duplicate)
    pub seq: u64,
    /// the id was published within the window: nothing was appended
    pub duplicate: bool,
}

/// One message as a consumer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub seq: u64,
    pub subject: String,
    pub id: String,
    pub payload: Vec<u8>,
    /// 1 the first time it is delivered to this consumer, more when it comes back
    pub deliveries: u64,
}

pub trait EventBus: Send + Sync + std::fmt::Debug {
    /// Appends `payload` under `subject` (dot-separated tokens of letters, digits, `-` and
    /// `_`), durably: once this returns the message survives a crash of this process (and,
    /// for a server, of the node it ran on). A message whose `id` was published within the
    /// [`DUPLICATE_WINDOW`] is not appended again.
    fn publish(&self, subject: &str, id: &str, payload: &[u8]) -> Result<Published, StorageError>;

    /// Up to `max` messages matching `filter` (a subject, where `*` matches one token and a
    /// final `>` the rest) that the durable consumer `consumer` has not acknowledged and that
    /// are not out with it (delivered less than its ack wait ago), oldest first; waits up to
    /// `wait` for the first. A consumer is created on first use with its filter.
    fn fetch(
        &self,
        consumer: &str,
        filter: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, StorageError>;

    /// Acknowledges message `seq` (fetched by `consumer`): it is not delivered to it again.
    fn ack(&self, consumer: &str, seq: u64) -> Result<(), StorageError>;
}

/// Where a data directory's bus is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Backend {
    /// a redb file in the data directory (one machine)
    #[default]
    Local,
    /// `nats://host:port`: the JetStream stream `stream`, shared by every node that names it
    Nats { url: String, stream: String },
}

impl Backend {
    /// `""` (in the data directory) or `nats://host[:port]` with the stream's name.
    pub fn parse(url: &str, stream: &str) -> Result<Backend, StorageError> {
        if url.is_empty() {
            return Ok(Backend::Local);
        }
        nats::parse_url(url)?;
        check_consumer(stream).map_err(|_| StorageError::BadAddress {
            what: format!("bus stream {stream:?}"),
            message: "expected 1 to 128 letters, digits, '-' or '_'".into(),
        })?;
        Ok(Backend::Nats {
            url: url.to_owned(),
            stream: stream.to_owned(),
        })
    }
}

static BOUND: crate::binding::Bound<Backend> = crate::binding::Bound::new();

/// Keeps the bus of the data directory `root` in `backend` for the rest of the process (what
/// the binary does once `[storage] bus` is read).
pub fn bind(root: &std::path::Path, backend: Backend) {
    BOUND.set(root, (backend != Backend::Local).then_some(backend));
}

/// The bus of the data directory `root`, its consumers redelivering what is not acknowledged
/// within `ack_wait`: `<root>/bus.redb`, or the NATS stream it is bound to ([`bind`]).
pub fn open(
    root: &std::path::Path,
    ack_wait: Duration,
) -> Result<std::sync::Arc<dyn EventBus>, StorageError> {
    Ok(match BOUND.get(root).unwrap_or_default() {
        Backend::Local => {
            std::sync::Arc::new(local::LocalBus::open(&root.join("bus.redb"), ack_wait)?)
        }
        Backend::Nats { url, stream } => {
            std::sync::Arc::new(nats::NatsBus::open(&url, &stream, ack_wait)?)
        }
    })
}

fn bad_subject(subject: &str, expected: &str) -> StorageError {
    StorageError::BadAddress {
        what: format!("bus subject {subject:?}"),
        message: format!("expected {expected}"),
    }
}

/// Checks a subject to publish to: dot-separated tokens of letters, digits, `-` and `_`.
pub(crate) fn check_subject(subject: &str) -> Result<(), StorageError> {
    let token_ok = |t: &str| {
        !t.is_empty()
            && t.len() <= 64
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if subject.len() > 256 || !subject.split('.').all(token_ok) {
        return Err(bad_subject(
            subject,
            "dot-separated tokens of letters, digits, '-' and '_' (at most 256 bytes)",
        ));
    }
    Ok(())
}

/// Checks a consumer's filter: a subject whose tokens may also be `*`, and whose last may be
/// `>`.
pub(crate) fn check_filter(filter: &str) -> Result<(), StorageError> {
    let tokens: Vec<&str> = filter.split('.').collect();
    let plain: Vec<String> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| match *t {
            "*" => "x".to_string(),
            ">" if i + 1 == tokens.len() => "x".to_string(),
            t => t.to_string(),
        })
        .collect();
    check_subject(&plain.join(".")).map_err(|_| {
        bad_subject(
            filter,
            "a subject whose tokens may be `*` and whose last may be `>`",
        )
    })
}

/// Whether `subject` matches `filter` (NATS rules: `*` one token, a final `>` one or more).
pub(crate) fn matches(filter: &str, subject: &str) -> bool {
    let mut s = subject.split('.');
    for f in filter.split('.') {
        match (f, s.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (f, Some(t)) if f == t => {}
            _ => return false,
        }
    }
    s.next().is_none()
}

/// Checks a message id: 1 to 128 bytes of letters, digits, `-`, `_`, `.` and `:`.
pub(crate) fn check_id(id: &str) -> Result<(), StorageError> {
    check_token("message id", id, b"-_.:")
}

/// Checks a consumer name: 1 to 128 bytes of letters, digits, `-` and `_` (JetStream names
/// allow no dots).
pub(crate) fn check_consumer(name: &str) -> Result<(), StorageError> {
    check_token("consumer", name, b"-_")
}

fn check_token(what: &str, name: &str, punctuation: &[u8]) -> Result<(), StorageError> {
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || punctuation.contains(&b));
    if !ok {
        let allowed: Vec<String> = punctuation
            .iter()
            .map(|&b| format!("'{}'", b as char))
            .collect();
        return Err(StorageError::BadAddress {
            what: format!("{what} {name:?}"),
            message: format!(
                "expected 1 to 128 letters, digits or {}",
                allowed.join(", ")
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_filters() {
        assert!(matches("events.>", "events.playback"));
        assert!(matches("events.>", "events.playback.more"));
        assert!(!matches("events.>", "events"));
        assert!(matches("events.*", "events.playback"));
        assert!(!matches("events.*", "events.playback.more"));
        assert!(matches("events.playback", "events.playback"));
        assert!(!matches("events.playback", "events.interaction"));
        for bad in ["", "a..b", "a.>", "a b", "a.*", ".a", "a."] {
            assert!(check_subject(bad).is_err(), "{bad}");
        }
        for ok in ["events.>", "events.*", "*.playback", "a"] {
            check_filter(ok).unwrap();
        }
        for bad in ["events.>.x", "", "a..b", "a b.>"] {
            assert!(check_filter(bad).is_err(), "{bad}");
        }
    }
}
