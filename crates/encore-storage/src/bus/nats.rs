//! The bus on NATS JetStream: one stream (file storage) whose subjects are `<stream>.<subject>`,
//! publishes with a `Nats-Msg-Id` (the stream's duplicate window deduplicates them) that return
//! once the server has stored the message, and durable pull consumers with explicit
//! acknowledgement. The client runs on a runtime of its own (one thread), so its connection
//! keeps its heartbeats between calls; calls block on it off any runtime the caller is on.

use super::{
    DUPLICATE_WINDOW, Delivery, EventBus, Published, check_consumer, check_filter, check_id,
    check_subject,
};
use crate::StorageError;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How long the stream keeps messages (a worker that is down longer loses its backlog).
pub const RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// Checks `nats://host[:port]`.
pub fn parse_url(url: &str) -> Result<(), StorageError> {
    let bad = |message: &str| StorageError::BadAddress {
        what: format!("bus {url:?}"),
        message: message.into(),
    };
    let rest = url
        .strip_prefix("nats://")
        .ok_or_else(|| bad("expected nats://host[:port]"))?;
    let host = rest.split(':').next().unwrap_or_default();
    if host.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err(bad(
            "expected nats://host[:port] (no path, no credentials in the URL)",
        ));
    }
    if let Some(port) = rest.split(':').nth(1)
        && port.parse::<u16>().is_err()
    {
        return Err(bad("the port is not a number"));
    }
    Ok(())
}

pub struct NatsBus {
    js: jetstream::Context,
    stream: stream::Stream,
    /// subjects are `<prefix>.<subject>`
    prefix: String,
    ack_wait: Duration,
    consumers: Mutex<HashMap<String, consumer::PullConsumer>>,
    /// messages out with a consumer, by (consumer, stream sequence): acknowledged through them
    out: Mutex<HashMap<(String, u64), jetstream::Message>>,
    runtime: tokio::runtime::Runtime,
    url: String,
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable {
        what: what.into(),
        message: e.to_string(),
    }
}

impl NatsBus {
    /// The JetStream stream `stream` (letters, digits, `-`, `_`; created when missing) on the
    /// server at `url`; its consumers redeliver what is not acknowledged within `ack_wait`.
    pub fn open(url: &str, stream: &str, ack_wait: Duration) -> Result<NatsBus, StorageError> {
        parse_url(url)?;
        check_consumer(stream).map_err(|_| StorageError::BadAddress {
            what: format!("bus stream {stream:?}"),
            message: "expected 1 to 128 letters, digits, '-' or '_'".into(),
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("encore-nats")
            .enable_all()
            .build()
            .map_err(|e| failed("the NATS client's runtime", e))?;
        let what = format!("NATS at {url}");
        let prefix = stream.to_owned();
        let (js, handle) = crate::binding::blocking(|| {
            runtime.block_on(async {
                let options = async_nats::ConnectOptions::new()
                    .connection_timeout(Duration::from_secs(5))
                    .retry_on_initial_connect();
                let client = tokio::time::timeout(Duration::from_secs(10), options.connect(url))
                    .await
                    .map_err(|_| failed(&what, "no answer within 10 s"))?
                    .map_err(|e| failed(&what, e))?;
                let js = jetstream::new(client);
                let handle = js
                    .get_or_create_stream(stream::Config {
                        name: stream.to_owned(),
                        subjects: vec![format!("{prefix}.>")],
                        storage: stream::StorageType::File,
                        max_age: RETENTION,
                        duplicate_window: DUPLICATE_WINDOW,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| failed(&what, e))?;
                Ok::<_, StorageError>((js, handle))
            })
        })?;
        Ok(NatsBus {
            js,
            stream: handle,
            prefix,
            ack_wait,
            consumers: Mutex::new(HashMap::new()),
            out: Mutex::new(HashMap::new()),
            runtime,
            url: url.to_owned(),
        })
    }

    fn block<T>(&self, f: impl Future<Output = T>) -> T {
        crate::binding::blocking(|| self.runtime.block_on(f))
    }

    fn what(&self) -> String {
        format!("NATS at {} (stream {})", self.url, self.prefix)
    }

    /// The durable consumer `name`, made with `filter` when missing.
    async fn consumer(
        &self,
        name: &str,
        filter: &str,
    ) -> Result<consumer::PullConsumer, StorageError> {
        let known = self
            .consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned();
        let mut c = match known {
            Some(c) => c,
            None => self
                .stream
                .get_or_create_consumer(
                    name,
                    consumer::pull::Config {
                        durable_name: Some(name.to_owned()),
                        filter_subject: format!("{}.{filter}", self.prefix),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ack_wait: self.ack_wait,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| failed(&self.what(), e))?,
        };
        let kept = c
            .info()
            .await
            .map_err(|e| failed(&self.what(), e))?
            .config
            .filter_subject
            .clone();
        let wanted = format!("{}.{filter}", self.prefix);
        if kept != wanted {
            return Err(StorageError::BadAddress {
                what: format!("consumer {name:?}"),
                message: format!(
                    "it was made with the filter {:?}, not {filter:?}",
                    kept.strip_prefix(&format!("{}.", self.prefix))
                        .unwrap_or(&kept)
                ),
            });
        }
        self.consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), c.clone());
        Ok(c)
    }

    /// Up to `max` messages of `c`: what is there now, or (none yet) the first to come
    /// within `wait` and what is there after it.
    async fn pull(
        &self,
        c: &consumer::PullConsumer,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<jetstream::Message>, StorageError> {
        let what = self.what();
        let mut got = Vec::new();
        async fn take(
            mut batch: consumer::pull::Batch,
            got: &mut Vec<jetstream::Message>,
            what: &str,
        ) -> Result<(), StorageError> {
            while let Some(m) = batch.next().await {
                got.push(m.map_err(|e| failed(what, e))?);
            }
            Ok(())
        }
        let now = c
            .fetch()
            .max_messages(max)
            .messages()
            .await
            .map_err(|e| failed(&what, e))?;
        take(now, &mut got, &what).await?;
        if got.is_empty() && !wait.is_zero() {
            let first = c
                .batch()
                .max_messages(1)
                .expires(wait.max(Duration::from_millis(10)))
                .messages()
                .await
                .map_err(|e| failed(&what, e))?;
            take(first, &mut got, &what).await?;
            if !got.is_empty() && max > 1 {
                let rest = c
                    .fetch()
                    .max_messages(max - 1)
                    .messages()
                    .await
                    .map_err(|e| failed(&what, e))?;
                take(rest, &mut got, &what).await?;
            }
        }
        Ok(got)
    }
}

impl EventBus for NatsBus {
    fn publish(&self, subject: &str, id: &str, payload: &[u8]) -> Result<Published, StorageError> {
        check_subject(subject)?;
        check_id(id)?;
        let full = format!("{}.{subject}", self.prefix);
        let publish = jetstream::message::PublishMessage::build()
            .payload(bytes::Bytes::copy_from_slice(payload))
            .message_id(id);
        self.block(async {
            let ack = self
                .js
                .send_publish(full, publish)
                .await
                .map_err(|e| failed(&self.what(), e))?
                .await
                .map_err(|e| failed(&self.what(), e))?;
            Ok(Published {
                seq: ack.sequence,
                duplicate: ack.duplicate,
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
        let messages = self.block(async {
            let c = self.consumer(consumer, filter).await?;
            self.pull(&c, max.max(1), wait).await
        })?;
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let mut got = Vec::with_capacity(messages.len());
        for m in messages {
            let info = m.info().map_err(|e| failed(&self.what(), e))?;
            let (seq, deliveries) = (info.stream_sequence, info.delivered as u64);
            let subject = m
                .subject
                .as_str()
                .strip_prefix(&format!("{}.", self.prefix))
                .unwrap_or(m.subject.as_str())
                .to_owned();
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            got.push(Delivery {
                seq,
                subject,
                id,
                payload: m.payload.to_vec(),
                deliveries,
            });
            out.insert((consumer.to_owned(), seq), m);
        }
        Ok(got)
    }

    fn ack(&self, consumer: &str, seq: u64) -> Result<(), StorageError> {
        check_consumer(consumer)?;
        let m = self
            .out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(consumer.to_owned(), seq));
        // a message this handle did not deliver (or already acknowledged) has nothing to do
        let Some(m) = m else {
            return Ok(());
        };
        self.block(async { m.double_ack().await.map_err(|e| failed(&self.what(), e)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        parse_url("nats://127.0.0.1:4222").unwrap();
        parse_url("nats://nats.internal").unwrap();
        for bad in [
            "",
            "127.0.0.1:4222",
            "nats://",
            "nats://h:x",
            "nats://u:p@h:4222",
            "nats://h/x",
        ] {
            let e = parse_url(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    /// The suite on the NATS server named by `ENCORE_TEST_NATS` (default `nats://127.0.0.1:4222`),
    /// each bus a stream of this run's own (deleted afterwards).
    #[test]
    #[allow(clippy::print_stderr, reason = "a skipped test says why")]
    fn nats_passes_the_bus_conformance_suite() {
        let url =
            std::env::var("ENCORE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let host = url.trim_start_matches("nats://");
        if let Err(e) = std::net::TcpStream::connect(host) {
            assert!(
                std::env::var_os("ENCORE_REQUIRE_SERVICES").is_none(),
                "ENCORE_REQUIRE_SERVICES is set but no NATS server answers at {url}: {e}"
            );
            eprintln!("skipped: no NATS server at {url} ({e}); set ENCORE_TEST_NATS");
            return;
        }
        let run = format!(
            "t{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        let streams = Mutex::new(Vec::new());
        super::super::testsuite::run(&|name: &str| {
            let stream = format!("{run}_{name}");
            streams.lock().unwrap().push(stream.clone());
            Box::new(NatsBus::open(&url, &stream, super::super::testsuite::ACK_WAIT).unwrap())
        });
        // the run's streams go
        let bus = NatsBus::open(&url, &format!("{run}_cleanup"), Duration::from_secs(1)).unwrap();
        let mut names = streams.into_inner().unwrap();
        names.push(format!("{run}_cleanup"));
        names.dedup();
        bus.block(async {
            for s in names {
                let _ = bus.js.delete_stream(&s).await;
            }
        });
    }
}
