//! The conformance suite of [`ObjectStore`]: written once, run against every backend.
//! `open(name)` gives a handle on the store `name` (the same name: the same store).

use super::ObjectStore;
use crate::StorageError;

type Open<'a> = &'a dyn Fn(&str) -> Box<dyn ObjectStore>;

/// Every case, in order; panics on the first that fails, naming it.
pub fn run(open: Open<'_>) {
    objects_round_trip(open);
    listing_is_by_prefix_and_sorted(open);
    hostile_keys_are_refused(open);
    a_replacement_is_never_torn(open);
    objects_survive_a_reopen(open);
}

fn objects_round_trip(open: Open<'_>) {
    let s = open("round");
    assert_eq!(s.get("models/a.bin").unwrap(), None);
    let big: Vec<u8> = (0..9_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
    for (k, v) in [
        ("models/a.bin", b"alpha".to_vec()),
        ("models/empty", Vec::new()),
        ("indexes/big.usearch", big.clone()),
    ] {
        s.put(k, &v).unwrap();
        assert_eq!(s.get(k).unwrap().as_deref(), Some(v.as_slice()), "{k}");
    }
    s.put("models/a.bin", b"beta").unwrap();
    assert_eq!(
        s.get("models/a.bin").unwrap().as_deref(),
        Some(&b"beta"[..])
    );
    let local = s
        .local_path("indexes/big.usearch")
        .unwrap()
        .expect("a local file");
    assert_eq!(std::fs::read(local).unwrap(), big);
    assert!(s.delete("models/a.bin").unwrap());
    assert!(
        !s.delete("models/a.bin").unwrap(),
        "a second delete finds nothing"
    );
    assert_eq!(s.get("models/a.bin").unwrap(), None);
    assert_eq!(s.local_path("models/a.bin").unwrap(), None);
    // exists is exact: neither a prefix nor a longer key answers for a key
    assert!(!s.exists("models/a.bin").unwrap());
    assert!(s.exists("models/empty").unwrap());
    assert!(!s.exists("models/empt").unwrap());
    assert!(!s.exists("models").unwrap());
}

fn listing_is_by_prefix_and_sorted(open: Open<'_>) {
    let s = open("listing");
    for k in [
        "b/2",
        "a/1",
        "b/1",
        "b/10/x",
        "c",
        "lake/t/day=2026-01-05/n-1.parquet",
    ] {
        s.put(k, k.as_bytes()).unwrap();
    }
    let keys = |p: &str| -> Vec<String> { s.list(p).unwrap().into_iter().map(|m| m.key).collect() };
    assert_eq!(keys("b/"), ["b/1", "b/10/x", "b/2"]);
    assert_eq!(
        keys(""),
        [
            "a/1",
            "b/1",
            "b/10/x",
            "b/2",
            "c",
            "lake/t/day=2026-01-05/n-1.parquet"
        ]
    );
    // Hive partitions, as the lake lays segments out
    assert_eq!(keys("lake/t/day="), ["lake/t/day=2026-01-05/n-1.parquet"]);
    assert!(keys("zzz").is_empty());
    // a prefix is a string prefix, not a directory
    assert_eq!(keys("b/1"), ["b/1", "b/10/x"]);
    assert_eq!(keys("b"), ["b/1", "b/10/x", "b/2"]);
    assert_eq!(keys("b/10/"), ["b/10/x"]);
    assert!(keys("b/10/x/none/").is_empty());
    let sizes: Vec<u64> = s.list("a/").unwrap().into_iter().map(|m| m.size).collect();
    assert_eq!(sizes, [3]);
}

fn hostile_keys_are_refused(open: Open<'_>) {
    let s = open("hostile");
    for k in [
        "",
        "../escape",
        "a/../../b",
        "/abs",
        "a//b",
        "a/./b",
        "nul\0byte",
        "new\nline",
        "back\\slash",
        &"x".repeat(2_000),
    ] {
        let e = s.put(k, b"x").unwrap_err();
        assert!(matches!(e, StorageError::BadKey { .. }), "{k:?}: {e}");
        assert!(s.get(k).is_err(), "{k:?}");
        assert!(s.delete(k).is_err(), "{k:?}");
    }
    assert!(s.list("").unwrap().is_empty(), "nothing was written");
}

fn a_replacement_is_never_torn(open: Open<'_>) {
    let s = open("torn");
    let a = vec![b'a'; 2_000_000];
    let b = vec![b'b'; 1_000_000];
    s.put("k", &a).unwrap();
    std::thread::scope(|sc| {
        let s = &s;
        let (a, b) = (&a, &b);
        sc.spawn(move || {
            for i in 0..20 {
                s.put("k", if i % 2 == 0 { b } else { a }).unwrap();
            }
        });
        sc.spawn(move || {
            for _ in 0..200 {
                let v = s.get("k").unwrap().expect("the key always holds an object");
                assert!(v == *a || v == *b, "a torn object of {} bytes", v.len());
            }
        });
    });
}

fn objects_survive_a_reopen(open: Open<'_>) {
    open("reopen").put("kept/one", b"1").unwrap();
    let s = open("reopen");
    assert_eq!(s.get("kept/one").unwrap().as_deref(), Some(&b"1"[..]));
}
