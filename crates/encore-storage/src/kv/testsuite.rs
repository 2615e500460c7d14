//! The conformance suite of [`KvStore`]: written once, run against every backend. `open(name)`
//! gives a handle on the store `name` (the same name: the same store; a second call comes after
//! the first handle is dropped).

use super::{KvRead, KvStore};
use crate::StorageError;

type Open<'a> = &'a dyn Fn(&str) -> Box<dyn KvStore>;

/// A key prefix of this run's own on the Redis test server (`ENCORE_TEST_REDIS`, default
/// `redis://127.0.0.1:6379/0`); its keys are deleted when it is dropped.
#[derive(Debug)]
pub struct RedisScratch {
    pub url: String,
    pub prefix: String,
}

impl RedisScratch {
    /// `None` (with the reason on stderr) when no server answers, which fails instead when
    /// `ENCORE_REQUIRE_SERVICES` is set (as CI sets it).
    #[allow(clippy::print_stderr, reason = "a skipped test says why")]
    pub fn new(test: &str) -> Option<RedisScratch> {
        let url = std::env::var("ENCORE_TEST_REDIS")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
        if let Err(e) = super::redis::RedisKv::open(&url, "probe") {
            assert!(
                std::env::var_os("ENCORE_REQUIRE_SERVICES").is_none(),
                "ENCORE_REQUIRE_SERVICES is set but no Redis server answers at {url}: {e}"
            );
            eprintln!("skipped on Redis: none at {url} ({e}); set ENCORE_TEST_REDIS");
            return None;
        }
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        // letters, digits and dashes: what `[storage] online_prefix` accepts
        let prefix = format!("encore-test-{test}-{}-{nonce}", std::process::id());
        Some(RedisScratch { url, prefix })
    }
}

impl Drop for RedisScratch {
    fn drop(&mut self) {
        use ::redis::Commands;
        let Ok(mut c) = ::redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection())
        else {
            return;
        };
        let keys: Vec<Vec<u8>> = match c.scan_match::<_, Vec<u8>>(format!("{}:*", self.prefix)) {
            Ok(it) => it.filter_map(Result::ok).collect(),
            Err(_) => return,
        };
        for k in keys.chunks(500) {
            let _: Result<(), _> = c.del(k);
        }
    }
}

/// Every case, in order; panics on the first that fails, naming it.
pub fn run(open: Open<'_>) {
    values_round_trip_by_table(open);
    ranges_are_ordered_and_bounded(open);
    a_failed_write_leaves_nothing(open);
    a_snapshot_does_not_see_later_writes(open);
    concurrent_writers_lose_no_update(open);
    deletions_survive_compaction_and_a_reopen(open);
    prefetched_reads_are_the_values(open);
    watchers_hear_of_commits(open);
}

fn get(r: &dyn KvRead, table: &str, key: &str) -> Option<Vec<u8>> {
    let mut out = None;
    r.get(table, key, &mut |v| out = v.map(<[u8]>::to_vec))
        .unwrap();
    out
}

fn keys(r: &dyn KvRead, table: &str, lo: &str, hi: &str) -> Vec<String> {
    let mut out = Vec::new();
    r.range(table, lo, hi, &mut |k, _| {
        out.push(k.to_owned());
        true
    })
    .unwrap();
    out
}

fn values_round_trip_by_table(open: Open<'_>) {
    let s = open("values");
    let big = vec![7u8; 1 << 20];
    s.write(|tx| {
        tx.put("a", "k", b"in a")?;
        tx.put("b", "k", b"in b")?;
        tx.put("a", "empty", b"")?;
        tx.put("a", "big", &big)?;
        tx.put("a", "\u{0}odd\u{1f}key\u{10ffff}", b"x")?;
        Ok::<_, StorageError>(())
    })
    .unwrap();
    let r = s.reader().unwrap();
    assert_eq!(get(r.as_ref(), "a", "k").as_deref(), Some(&b"in a"[..]));
    assert_eq!(get(r.as_ref(), "b", "k").as_deref(), Some(&b"in b"[..]));
    assert_eq!(get(r.as_ref(), "a", "empty").as_deref(), Some(&b""[..]));
    assert_eq!(get(r.as_ref(), "a", "big"), Some(big));
    assert_eq!(
        get(r.as_ref(), "a", "\u{0}odd\u{1f}key\u{10ffff}").as_deref(),
        Some(&b"x"[..])
    );
    assert_eq!(get(r.as_ref(), "a", "missing"), None);
    assert_eq!(get(r.as_ref(), "no-such-table", "k"), None);
    assert!(keys(r.as_ref(), "no-such-table", "", "\u{10ffff}").is_empty());
    drop(r);
    // an overwrite replaces; a delete says whether the key was there
    let (was, again) = s
        .write(|tx| {
            tx.put("a", "k", b"new")?;
            Ok::<_, StorageError>((tx.delete("b", "k")?, tx.delete("b", "k")?))
        })
        .unwrap();
    assert!(was && !again);
    let r = s.reader().unwrap();
    assert_eq!(get(r.as_ref(), "a", "k").as_deref(), Some(&b"new"[..]));
    assert_eq!(get(r.as_ref(), "b", "k"), None);
}

fn ranges_are_ordered_and_bounded(open: Open<'_>) {
    let s = open("ranges");
    s.write(|tx| {
        for k in [
            "v\u{0}u2",
            "v\u{0}u1\u{1f}a9",
            "v\u{0}u1",
            "v\u{0}u1\u{1f}a1",
            "w\u{0}u1",
            "u",
        ] {
            tx.put("t", k, k.as_bytes())?;
        }
        Ok::<_, StorageError>(())
    })
    .unwrap();
    let r = s.reader().unwrap();
    assert_eq!(
        keys(r.as_ref(), "t", "v\u{0}", "v\u{1}"),
        [
            "v\u{0}u1",
            "v\u{0}u1\u{1f}a1",
            "v\u{0}u1\u{1f}a9",
            "v\u{0}u2"
        ]
    );
    assert_eq!(
        keys(r.as_ref(), "t", "v\u{0}u1\u{1f}", "v\u{0}u1\u{20}"),
        ["v\u{0}u1\u{1f}a1", "v\u{0}u1\u{1f}a9"],
        "a prefix scan"
    );
    assert!(keys(r.as_ref(), "t", "z", "a").is_empty(), "an empty range");
    let mut first = Vec::new();
    r.range("t", "", "\u{10ffff}", &mut |k, v| {
        assert_eq!(k.as_bytes(), v);
        first.push(k.to_owned());
        first.len() < 2
    })
    .unwrap();
    assert_eq!(first, ["u", "v\u{0}u1"], "stops when told");
}

#[derive(Debug)]
enum Mine {
    Refused,
    Store(StorageError),
}

impl From<StorageError> for Mine {
    fn from(e: StorageError) -> Mine {
        Mine::Store(e)
    }
}

fn a_failed_write_leaves_nothing(open: Open<'_>) {
    let s = open("atomic");
    let r: Result<(), Mine> = s.write(|tx| {
        tx.put("t", "a", b"1")?;
        // the transaction reads its own write
        let mut seen = None;
        tx.get("t", "a", &mut |v| seen = v.map(<[u8]>::to_vec))?;
        assert_eq!(seen.as_deref(), Some(&b"1"[..]));
        Err(Mine::Refused)
    });
    assert!(matches!(r, Err(Mine::Refused)), "{r:?}");
    // an error of the store's own reaches the caller through the caller's type
    let r: Result<(), Mine> = s.write(|tx| {
        tx.put("t", "b", b"2")?;
        Err(StorageError::Closed)?
    });
    assert!(matches!(r, Err(Mine::Store(StorageError::Closed))), "{r:?}");
    assert_eq!(
        get(s.reader().unwrap().as_ref(), "t", "a"),
        None,
        "rolled back"
    );
}

fn a_snapshot_does_not_see_later_writes(open: Open<'_>) {
    let s = open("snapshot");
    s.write(|tx| tx.put("t", "k", b"old")).unwrap();
    let before = s.reader().unwrap();
    s.write(|tx| tx.put("t", "k", b"new")).unwrap();
    // a backend without snapshots reads committed values, each whole
    let expected: &[u8] = if s.snapshots() { b"old" } else { b"new" };
    assert_eq!(get(before.as_ref(), "t", "k").as_deref(), Some(expected));
    assert_eq!(
        get(s.reader().unwrap().as_ref(), "t", "k").as_deref(),
        Some(&b"new"[..])
    );
}

fn concurrent_writers_lose_no_update(open: Open<'_>) {
    let s = open("concurrent");
    s.write(|tx| tx.put("t", "n", &0u64.to_le_bytes())).unwrap();
    std::thread::scope(|sc| {
        for _ in 0..4 {
            let s = &s;
            sc.spawn(move || {
                for _ in 0..100 {
                    s.write(|tx| {
                        let mut n = 0u64;
                        tx.get("t", "n", &mut |v| {
                            n = v.map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
                        })?;
                        tx.put("t", "n", &(n + 1).to_le_bytes())
                    })
                    .unwrap();
                }
            });
        }
    });
    let v = get(s.reader().unwrap().as_ref(), "t", "n").unwrap();
    assert_eq!(u64::from_le_bytes(v.try_into().unwrap()), 400);
}

fn deletions_survive_compaction_and_a_reopen(open: Open<'_>) {
    {
        let s = open("reopen");
        s.write(|tx| {
            for i in 0..200 {
                tx.put("t", &format!("k{i:03}"), &[i as u8; 100])?;
            }
            tx.put("gone", "x", b"y")?;
            Ok::<_, StorageError>(())
        })
        .unwrap();
        s.write(|tx| {
            for i in 0..100 {
                tx.delete("t", &format!("k{i:03}"))?;
            }
            tx.drop_table("gone")
        })
        .unwrap();
        s.compact().unwrap();
    }
    let s = open("reopen");
    let r = s.reader().unwrap();
    let left = keys(r.as_ref(), "t", "", "\u{10ffff}");
    assert_eq!(left.len(), 100);
    assert_eq!(left[0], "k100");
    assert_eq!(get(r.as_ref(), "t", "k150"), Some(vec![150u8; 100]));
    assert_eq!(get(r.as_ref(), "gone", "x"), None);
}

fn prefetched_reads_are_the_values(open: Open<'_>) {
    let s = open("prefetch");
    s.write(|tx| {
        for i in 0..1_000 {
            tx.put("t", &format!("k{i}"), format!("v{i}").as_bytes())?;
        }
        Ok::<_, StorageError>(())
    })
    .unwrap();
    let r = s.reader().unwrap();
    let names: Vec<String> = (0..1_200).map(|i| format!("k{i}")).collect();
    let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    r.prefetch("t", &wanted).unwrap();
    r.prefetch("no-such-table", &wanted[..3]).unwrap();
    for (i, k) in names.iter().enumerate() {
        let want = (i < 1_000).then(|| format!("v{i}").into_bytes());
        assert_eq!(get(r.as_ref(), "t", k), want, "{k}");
    }
    // a key prefetched again after a write reads as the reader sees the store
    s.write(|tx| tx.put("t", "k1", b"changed")).unwrap();
    r.prefetch("t", &["k1"]).unwrap();
    let expected: &[u8] = if s.snapshots() { b"v1" } else { b"changed" };
    assert_eq!(get(r.as_ref(), "t", "k1").as_deref(), Some(expected));
    assert_eq!(get(r.as_ref(), "no-such-table", "k1"), None);
    drop(r);
    // read ahead inside a write: its own writes still win, a delete reads as absent
    s.write(|tx| {
        tx.prefetch("t", &["k2", "k3", "absent"])?;
        tx.put("t", "k2", b"mine")?;
        tx.delete("t", "k3")?;
        let r: &dyn KvRead = tx;
        assert_eq!(get(r, "t", "k2").as_deref(), Some(&b"mine"[..]));
        assert_eq!(get(r, "t", "k3"), None);
        assert_eq!(get(r, "t", "k4").as_deref(), Some(&b"v4"[..]));
        assert_eq!(get(r, "t", "absent"), None);
        Ok::<_, StorageError>(())
    })
    .unwrap();
    let r = s.reader().unwrap();
    assert_eq!(get(r.as_ref(), "t", "k2").as_deref(), Some(&b"mine"[..]));
    assert_eq!(get(r.as_ref(), "t", "k3"), None);
}

/// A backend whose stores other processes write announces commits; the embedded one has no
/// watch (nothing to hear of).
fn watchers_hear_of_commits(open: Open<'_>) {
    use std::sync::{Arc, Mutex};
    let s = open("watch");
    let heard: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let sink = Arc::clone(&heard);
    let Some(w) = s
        .watch(Box::new(move |c| {
            if let super::Change::Written { table, key } = c {
                sink.lock()
                    .unwrap()
                    .push((table.to_owned(), key.to_owned()));
            }
        }))
        .unwrap()
    else {
        assert!(s.snapshots(), "a shared backend without a change feed");
        return;
    };
    s.write(|tx| {
        tx.put("t", "a", b"1")?;
        tx.put("t", "b\u{0}\u{1f}x", b"2")?;
        tx.delete("t", "c").map(|_| ())
    })
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while heard.lock().unwrap().len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut got = heard.lock().unwrap().clone();
    got.sort();
    let want: Vec<(String, String)> = [("t", "a"), ("t", "b\u{0}\u{1f}x"), ("t", "c")]
        .iter()
        .map(|(t, k)| ((*t).to_owned(), (*k).to_owned()))
        .collect();
    assert_eq!(got, want);
    // a failed write announces nothing
    let _ = s.write(|tx| {
        tx.put("t", "never", b"x")?;
        Err::<(), _>(StorageError::RolledBack)
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(heard.lock().unwrap().len(), 3);
    drop(w);
}
