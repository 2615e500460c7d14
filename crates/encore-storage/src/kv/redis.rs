//! The key-value role on Redis, shared by every node that names the same server and prefix.
//!
//! Layout under the prefix `p` (one per store: `<[storage] online_prefix>:<store name>`):
//!
//! ```text
//! p:v:<table>:<key>   the value (a string; an expiring one carries Redis' own TTL)
//! p:i:<table>         the table's keys, a sorted set with every score 0 (ranges by ZRANGEBYLEX)
//! p:lock              the writers' lock: a random token, with an expiry
//! p:changed           the channel every commit publishes its written keys on
//! ```
//!
//! Writers are serialized by the lock (`SET NX PX`); a transaction's writes are buffered and
//! committed in one `MULTI`/`EXEC` guarded by `WATCH` of the lock, so a writer whose lock
//! expired under it (another took it) commits nothing and fails. Reads are read-committed, not
//! snapshots: each value is read whole, a reader sees commits made while it reads
//! ([`KvStore::snapshots`] is false), which the online store's per-entity values allow.
//! [`KvRead::prefetch`] reads many keys in one round trip (`MGET`). Other processes' commits
//! reach [`KvStore::watch`]ers over the change channel; a subscriber that lost its connection
//! is told that it may have missed some.

use super::{Change, KvRead, KvStore, KvWrite, Watch};
use crate::StorageError;
use redis::{Commands, Connection};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a writer may hold the lock before another may take it.
const LOCK_TTL: Duration = Duration::from_secs(30);
/// How long a writer waits for the lock before failing.
const LOCK_WAIT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// keys read or written per round trip in ranges and table drops
const CHUNK: isize = 512;

/// Releases the lock only if it is still the holder's.
const UNLOCK: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

pub struct RedisKv {
    client: redis::Client,
    /// the server's address without credentials, for messages
    shown: String,
    prefix: String,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKv")
            .field("server", &self.shown)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A pooled connection, returned to the pool unless it failed.
struct Pooled<'a> {
    kv: &'a RedisKv,
    con: Option<Connection>,
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.con.take() {
            let mut idle = self.kv.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < 32 {
                idle.push(c);
            }
        }
    }
}

impl Pooled<'_> {
    fn con(&mut self) -> &mut Connection {
        self.con.as_mut().expect("present until dropped")
    }

    /// Runs `f` on the connection; a failed connection is not returned to the pool.
    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StorageError> {
        let r = f(self.con());
        r.map_err(|e| {
            if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                self.con = None;
            }
            self.kv.unavailable(&e)
        })
    }
}

impl RedisKv {
    /// The store under `prefix` on the Redis server `url` (`redis://[:password@]host[:port][/db]`);
    /// fails when the server cannot be reached.
    pub fn open(url: &str, prefix: &str) -> Result<RedisKv, StorageError> {
        let shown = shown(url);
        let client = redis::Client::open(url).map_err(|e| StorageError::BadAddress {
            what: format!("Redis {shown}"),
            message: format!("{e} (expected redis://host:port/db)"),
        })?;
        let kv = RedisKv {
            client,
            shown,
            prefix: prefix.to_owned(),
            idle: Mutex::new(Vec::new()),
        };
        kv.pooled()?
            .run(|c| redis::cmd("PING").query::<String>(c))?;
        Ok(kv)
    }

    fn unavailable(&self, e: &redis::RedisError) -> StorageError {
        StorageError::Unavailable {
            what: format!("Redis {}", self.shown),
            message: e.to_string(),
        }
    }

    fn pooled(&self) -> Result<Pooled<'_>, StorageError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let con = match idle {
            Some(c) => c,
            None => {
                let c = self
                    .client
                    .get_connection_with_timeout(IO_TIMEOUT)
                    .map_err(|e| self.unavailable(&e))?;
                c.set_read_timeout(Some(IO_TIMEOUT))
                    .and_then(|()| c.set_write_timeout(Some(IO_TIMEOUT)))
                    .map_err(|e| self.unavailable(&e))?;
                c
            }
        };
        Ok(Pooled {
            kv: self,
            con: Some(con),
        })
    }

    fn value_key(&self, table: &str, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + table.len() + key.len() + 4);
        k.extend_from_slice(self.prefix.as_bytes());
        k.extend_from_slice(b":v:");
        k.extend_from_slice(table.as_bytes());
        k.push(b':');
        k.extend_from_slice(key.as_bytes());
        k
    }

    fn index_key(&self, table: &str) -> String {
        format!("{}:i:{table}", self.prefix)
    }

    fn lock_key(&self) -> String {
        format!("{}:lock", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}:changed", self.prefix)
    }

    fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let k = self.value_key(table, key);
        self.pooled()?.run(|c| c.get(k))
    }

    /// The values of `keys` of `table`, `CHUNK` keys a round trip.
    fn mget(&self, table: &str, keys: &[&str]) -> Result<Vec<Fetched>, StorageError> {
        let mut out = Vec::with_capacity(keys.len());
        if keys.is_empty() {
            return Ok(out);
        }
        let mut p = self.pooled()?;
        for chunk in keys.chunks(CHUNK as usize) {
            let names: Vec<Vec<u8>> = chunk.iter().map(|k| self.value_key(table, k)).collect();
            let values: Vec<Option<Vec<u8>>> =
                p.run(|c| redis::cmd("MGET").arg(&names).query(c))?;
            for (k, v) in chunk.iter().zip(values) {
                out.push(((table.to_owned(), (*k).to_owned()), v));
            }
        }
        Ok(out)
    }

    /// Reads `keys` of `table` into `fetched`, one `MGET` per `CHUNK` keys.
    fn read_ahead(
        &self,
        fetched: &Mutex<HashMap<Name, Option<Vec<u8>>>>,
        table: &str,
        keys: &[&str],
    ) -> Result<(), StorageError> {
        let got = self.mget(table, keys)?;
        fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(got);
        Ok(())
    }

    /// The keys of `table` in `[lo, hi)` with their values, `CHUNK` at a time, until `f`
    /// returns false; keys whose value expired are skipped.
    fn range(
        &self,
        table: &str,
        lo: &str,
        hi: &str,
        f: &mut dyn FnMut(&str, &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        if lo >= hi {
            return Ok(());
        }
        let index = self.index_key(table);
        let mut from = format!("[{lo}");
        let to = format!("({hi}");
        let mut p = self.pooled()?;
        loop {
            let keys: Vec<String> = p.run(|c| c.zrangebylex_limit(&index, &from, &to, 0, CHUNK))?;
            if keys.is_empty() {
                return Ok(());
            }
            let names: Vec<Vec<u8>> = keys.iter().map(|k| self.value_key(table, k)).collect();
            let values: Vec<Option<Vec<u8>>> =
                p.run(|c| redis::cmd("MGET").arg(&names).query(c))?;
            for (k, v) in keys.iter().zip(&values) {
                if let Some(v) = v
                    && !f(k, v)
                {
                    return Ok(());
                }
            }
            if keys.len() < CHUNK as usize {
                return Ok(());
            }
            from = format!("({}", keys.last().expect("not empty"));
        }
    }

    /// Takes the writers' lock; its token.
    fn lock(&self, p: &mut Pooled<'_>) -> Result<String, StorageError> {
        let token = format!(
            "{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
                ^ (&raw const *p as usize as u128)
        );
        let key = self.lock_key();
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            let got: Option<String> = p.run(|c| {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(LOCK_TTL.as_millis() as u64)
                    .query(c)
            })?;
            if got.is_some() {
                return Ok(token);
            }
            if start.elapsed() > LOCK_WAIT {
                return Err(StorageError::Unavailable {
                    what: format!("Redis {}", self.shown),
                    message: format!(
                        "another writer has held {key} for over {} s",
                        LOCK_WAIT.as_secs()
                    ),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    fn unlock(&self, p: &mut Pooled<'_>, token: &str) {
        let key = self.lock_key();
        let _ = p.run(|c| {
            redis::cmd("EVAL")
                .arg(UNLOCK)
                .arg(1)
                .arg(&key)
                .arg(token)
                .query::<i64>(c)
        });
    }

    /// Commits `tx`'s buffered writes atomically, if the lock is still `token`'s.
    fn commit(
        &self,
        p: &mut Pooled<'_>,
        token: &str,
        tx: &RedisWrite<'_>,
    ) -> Result<(), StorageError> {
        // the keys of dropped tables, read while the lock keeps writers out
        let mut dropped: Vec<(String, Vec<String>)> = Vec::new();
        for t in &tx.dropped {
            let index = self.index_key(t);
            let keys: Vec<String> = p.run(|c| c.zrange(&index, 0, -1))?;
            dropped.push((t.clone(), keys));
        }
        let lock = self.lock_key();
        p.run(|c| redis::cmd("WATCH").arg(&lock).query::<()>(c))?;
        let holder: Option<String> = p.run(|c| c.get(&lock))?;
        if holder.as_deref() != Some(token) {
            let _ = p.run(|c| redis::cmd("UNWATCH").query::<()>(c));
            return Err(self.lost_lock());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut changed: Vec<u8> = Vec::new();
        let mut note = |table: &str, key: &str| {
            changed.extend_from_slice(table.as_bytes());
            changed.push(0xff);
            changed.extend_from_slice(key.as_bytes());
            changed.push(0xfe);
        };
        for (table, keys) in &dropped {
            for chunk in keys.chunks(CHUNK as usize) {
                let names: Vec<Vec<u8>> = chunk.iter().map(|k| self.value_key(table, k)).collect();
                pipe.del(names).ignore();
            }
            pipe.del(self.index_key(table)).ignore();
            for k in keys {
                note(table, k);
            }
        }
        for ((table, key), w) in &tx.overlay {
            let name = self.value_key(table, key);
            let index = self.index_key(table);
            match w {
                Some((v, ttl)) => {
                    let mut set = redis::cmd("SET");
                    set.arg(&name).arg(v.as_slice());
                    if let Some(ttl) = ttl {
                        set.arg("PX").arg(ttl.as_millis().max(1) as u64);
                    }
                    pipe.add_command(set).ignore();
                    pipe.zadd(&index, key, 0).ignore();
                }
                None => {
                    pipe.del(&name).ignore();
                    pipe.zrem(&index, key).ignore();
                }
            }
            note(table, key);
        }
        if !changed.is_empty() {
            pipe.publish(self.channel(), changed).ignore();
        }
        pipe.del(&lock).ignore();
        let done: Option<()> = p.run(|c| pipe.query(c))?;
        done.ok_or_else(|| self.lost_lock())
    }

    fn lost_lock(&self) -> StorageError {
        StorageError::WriteFailed {
            message: format!(
                "Redis {}: the writers' lock {} expired before the commit (a transaction ran \
                 over {} s); nothing was written",
                self.shown,
                self.lock_key(),
                LOCK_TTL.as_secs()
            ),
        }
    }
}

/// `url` without its password.
fn shown(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

/// (table, key)
type Name = (String, String);
/// a value read ahead, or `None`: no such key
type Fetched = (Name, Option<Vec<u8>>);
/// a buffered write: the new value and its time to live, or `None`: deleted
type Pending = Option<(Vec<u8>, Option<Duration>)>;

/// Reads of the store as it is now, with what [`KvRead::prefetch`] fetched.
struct RedisRead<'a> {
    kv: &'a RedisKv,
    fetched: Mutex<HashMap<Name, Option<Vec<u8>>>>,
}

impl KvRead for RedisRead<'_> {
    fn get(
        &self,
        table: &str,
        key: &str,
        f: &mut dyn FnMut(Option<&[u8]>),
    ) -> Result<(), StorageError> {
        let held = self
            .fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(table.to_owned(), key.to_owned()))
            .cloned();
        let v = match held {
            Some(v) => v,
            None => self.kv.get(table, key)?,
        };
        f(v.as_deref());
        Ok(())
    }

    fn range(
        &self,
        table: &str,
        lo: &str,
        hi: &str,
        f: &mut dyn FnMut(&str, &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        self.kv.range(table, lo, hi, f)
    }

    fn prefetch(&self, table: &str, keys: &[&str]) -> Result<(), StorageError> {
        self.kv.read_ahead(&self.fetched, table, keys)
    }
}

/// A write transaction: its writes buffered until the commit, read back by its own reads.
struct RedisWrite<'a> {
    kv: &'a RedisKv,
    /// (table, key) → the new value and its time to live, or `None`: deleted
    overlay: BTreeMap<Name, Pending>,
    /// tables dropped in this transaction (before the overlay's writes)
    dropped: HashSet<String>,
    /// stored values read ahead ([`KvRead::prefetch`]): the lock keeps other writers out, so
    /// they stay current for the transaction
    fetched: Mutex<HashMap<Name, Option<Vec<u8>>>>,
}

impl RedisWrite<'_> {
    fn current(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let name = (table.to_owned(), key.to_owned());
        if let Some(w) = self.overlay.get(&name) {
            return Ok(w.as_ref().map(|(v, _)| v.clone()));
        }
        if self.dropped.contains(table) {
            return Ok(None);
        }
        let held = self
            .fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
            .cloned();
        match held {
            Some(v) => Ok(v),
            None => self.kv.get(table, key),
        }
    }
}

impl KvRead for RedisWrite<'_> {
    fn get(
        &self,
        table: &str,
        key: &str,
        f: &mut dyn FnMut(Option<&[u8]>),
    ) -> Result<(), StorageError> {
        f(self.current(table, key)?.as_deref());
        Ok(())
    }

    fn range(
        &self,
        table: &str,
        lo: &str,
        hi: &str,
        f: &mut dyn FnMut(&str, &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        if lo >= hi {
            return Ok(());
        }
        let mut merged: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        if !self.dropped.contains(table) {
            self.kv.range(table, lo, hi, &mut |k, v| {
                merged.insert(k.to_owned(), v.to_vec());
                true
            })?;
        }
        let from = (table.to_owned(), lo.to_owned());
        for ((t, k), w) in self.overlay.range(from..) {
            if t != table || k.as_str() >= hi {
                break;
            }
            match w {
                Some((v, _)) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        for (k, v) in &merged {
            if !f(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn prefetch(&self, table: &str, keys: &[&str]) -> Result<(), StorageError> {
        self.kv.read_ahead(&self.fetched, table, keys)
    }
}

impl KvWrite for RedisWrite<'_> {
    fn put(&mut self, table: &str, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.overlay.insert(
            (table.to_owned(), key.to_owned()),
            Some((value.to_vec(), None)),
        );
        Ok(())
    }

    fn put_expiring(
        &mut self,
        table: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StorageError> {
        self.overlay.insert(
            (table.to_owned(), key.to_owned()),
            Some((value.to_vec(), Some(ttl))),
        );
        Ok(())
    }

    fn delete(&mut self, table: &str, key: &str) -> Result<bool, StorageError> {
        let was = self.current(table, key)?.is_some();
        self.overlay
            .insert((table.to_owned(), key.to_owned()), None);
        Ok(was)
    }

    fn drop_table(&mut self, table: &str) -> Result<bool, StorageError> {
        let mut was = false;
        self.range(table, "", "\u{10ffff}", &mut |_, _| {
            was = true;
            false
        })?;
        self.overlay.retain(|(t, _), _| t != table);
        self.dropped.insert(table.to_owned());
        Ok(was)
    }
}

impl KvStore for RedisKv {
    fn reader(&self) -> Result<Box<dyn KvRead + '_>, StorageError> {
        Ok(Box::new(RedisRead {
            kv: self,
            fetched: Mutex::new(HashMap::new()),
        }))
    }

    fn run_write(
        &self,
        f: &mut dyn FnMut(&mut dyn KvWrite) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let mut p = self.pooled()?;
        let token = self.lock(&mut p)?;
        let mut tx = RedisWrite {
            kv: self,
            overlay: BTreeMap::new(),
            dropped: HashSet::new(),
            fetched: Mutex::new(HashMap::new()),
        };
        let r = f(&mut tx).and_then(|()| self.commit(&mut p, &token, &tx));
        if r.is_err() {
            // the commit deletes the lock; after a failure it is released if still held
            match self.pooled() {
                Ok(mut q) => self.unlock(&mut q, &token),
                Err(e) => tracing::warn!("the Redis writers' lock is left to expire: {e}"),
            }
        }
        r
    }

    fn compact(&self) -> Result<(), StorageError> {
        // deleted keys are gone from Redis' memory; its append-only file keeps them until
        // rewritten, which is asked for here (an error: persistence is off or the command is
        // not allowed, and the server's own rewrite schedule applies)
        let r = self
            .pooled()?
            .run(|c| redis::cmd("BGREWRITEAOF").query::<String>(c));
        if let Err(e) = r {
            tracing::info!("Redis AOF rewrite not started: {e}");
        }
        Ok(())
    }

    fn snapshots(&self) -> bool {
        false
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn watch(
        &self,
        on_change: Box<dyn Fn(Change<'_>) + Send + Sync>,
    ) -> Result<Option<Watch>, StorageError> {
        let client = self.client.clone();
        let channel = self.channel();
        let shown = self.shown.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let (ready_tx, ready) = std::sync::mpsc::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name("redis-watch".into())
            .spawn(move || {
                let mut ready_tx = Some(ready_tx);
                while !flag.load(Ordering::Relaxed) {
                    if let Err(e) = subscribe(&client, &channel, &flag, &*on_change, &mut ready_tx)
                    {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                        tracing::warn!("Redis {shown}: change feed: {e} (reconnecting)");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    // whatever was published while not subscribed is unknown
                    on_change(Change::Missed);
                }
            })
            .map_err(|e| StorageError::Unavailable {
                what: "redis-watch".into(),
                message: e.to_string(),
            })?;
        let w = Watch::new(stop, thread);
        match ready.recv() {
            Ok(Ok(())) => Ok(Some(w)),
            Ok(Err(message)) => Err(StorageError::Unavailable {
                what: format!("Redis {}", self.shown),
                message: format!("subscribing to {}: {message}", self.channel()),
            }),
            Err(_) => Err(StorageError::Unavailable {
                what: format!("Redis {}", self.shown),
                message: "the change feed's thread ended".into(),
            }),
        }
    }
}

/// Follows `channel` until `stop` is set (`Ok`) or the connection fails; says on `ready` once
/// subscribed.
fn subscribe(
    client: &redis::Client,
    channel: &str,
    stop: &AtomicBool,
    on_change: &(dyn Fn(Change<'_>) + Send + Sync),
    ready: &mut Option<std::sync::mpsc::Sender<Result<(), String>>>,
) -> redis::RedisResult<()> {
    let mut con = client.get_connection_with_timeout(IO_TIMEOUT)?;
    let mut ps = con.as_pubsub();
    ps.subscribe(channel)?;
    ps.set_read_timeout(Some(Duration::from_millis(200)))?;
    if let Some(tx) = ready.take() {
        let _ = tx.send(Ok(()));
    }
    while !stop.load(Ordering::Relaxed) {
        let msg = match ps.get_message() {
            Ok(m) => m,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(e),
        };
        let payload: Vec<u8> = msg.get_payload()?;
        for entry in payload.split(|b| *b == 0xfe).filter(|e| !e.is_empty()) {
            let Some(at) = entry.iter().position(|b| *b == 0xff) else {
                continue;
            };
            if let (Ok(table), Ok(key)) = (
                std::str::from_utf8(&entry[..at]),
                std::str::from_utf8(&entry[at + 1..]),
            ) {
                on_change(Change::Written { table, key });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::testsuite::RedisScratch;

    #[test]
    fn redis_passes_the_key_value_conformance_suite() {
        let Some(scratch) = RedisScratch::new("suite") else {
            return;
        };
        let (url, run) = (scratch.url.clone(), scratch.prefix.clone());
        crate::kv::testsuite::run(&|name| {
            Box::new(RedisKv::open(&url, &format!("{run}:{name}")).unwrap())
        });
    }

    #[test]
    fn expiring_values_are_forgotten_and_ranges_skip_them() {
        let Some(scratch) = RedisScratch::new("ttl") else {
            return;
        };
        let (url, run) = (scratch.url.clone(), scratch.prefix.clone());
        let s: Box<dyn KvStore> = Box::new(RedisKv::open(&url, &run).unwrap());
        s.write(|tx| {
            tx.put_expiring("t", "short", b"x", Duration::from_millis(200))?;
            tx.put("t", "kept", b"y")
        })
        .unwrap();
        let r = s.reader().unwrap();
        assert_eq!(
            r.get_owned("t", "short").unwrap().as_deref(),
            Some(&b"x"[..])
        );
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(r.get_owned("t", "short").unwrap(), None);
        let mut keys = Vec::new();
        r.range("t", "", "\u{10ffff}", &mut |k, _| {
            keys.push(k.to_owned());
            true
        })
        .unwrap();
        assert_eq!(keys, ["kept"]);
    }

    /// A writer whose lock expired and went to another commits nothing, and says so.
    #[test]
    fn a_writer_that_lost_the_lock_writes_nothing() {
        let Some(scratch) = RedisScratch::new("lock") else {
            return;
        };
        let (url, run) = (scratch.url.clone(), scratch.prefix.clone());
        let kv = RedisKv::open(&url, &run).unwrap();
        let lock = kv.lock_key();
        let s: &dyn KvStore = &kv;
        let e = s
            .write(|tx| {
                tx.put("t", "k", b"late")?;
                // the lock goes to another writer meanwhile
                let mut c = redis::Client::open(url.as_str())
                    .unwrap()
                    .get_connection()
                    .unwrap();
                let _: () = c.set(&lock, "someone-else").unwrap();
                Ok::<_, StorageError>(())
            })
            .unwrap_err();
        assert!(e.to_string().contains("nothing was written"), "{e}");
        assert_eq!(s.reader().unwrap().get_owned("t", "k").unwrap(), None);
        // the other writer's lock was left alone
        let mut c = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let holder: Option<String> = c.get(&lock).unwrap();
        assert_eq!(holder.as_deref(), Some("someone-else"));
    }

    #[test]
    fn unreachable_and_malformed_servers_are_named() {
        let e = RedisKv::open("redis://:secret@127.0.0.1:1/0", "p").unwrap_err();
        let m = e.to_string();
        assert!(m.contains("Redis redis://***@127.0.0.1:1/0"), "{m}");
        assert!(!m.contains("secret"), "{m}");
        let e = crate::kv::Backend::parse("http://127.0.0.1:6379", "p").unwrap_err();
        assert!(
            e.to_string().contains("expected redis://host:port/db"),
            "{e}"
        );
        let e = crate::kv::Backend::parse("redis://127.0.0.1:notaport", "p").unwrap_err();
        assert!(e.to_string().contains("the online store"), "{e}");
        assert_eq!(
            crate::kv::Backend::parse("", "p").unwrap(),
            crate::kv::Backend::Embedded
        );
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(shown("redis://:hunter2@db:6379/0"), "redis://***@db:6379/0");
        assert_eq!(shown("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
