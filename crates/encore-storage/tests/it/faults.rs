//! The event log under the faults of a real disk, injected through the file-system seam: disk
//! full at every byte, failed fsyncs and truncations, I/O errors, short writes, crashes at every
//! operation, and bytes flipped at rest. For each: every acknowledged row is readable after a
//! restart, nothing that failed is reported as stored, and reads keep working.

use crate::event_log::{contents, rows, spec};
use encore_storage::fs::FaultyFs;
use encore_storage::{EventLog, Ids, LogOptions, StorageError};
use std::collections::BTreeSet;
use std::path::Path;

fn open_with(dir: &Path, fs: &FaultyFs, seal_rows: usize) -> Result<EventLog, StorageError> {
    EventLog::open(
        dir,
        spec(),
        LogOptions {
            seal_rows,
            fs: fs.shared(),
            ..LogOptions::default()
        },
    )
}

fn reopen(dir: &Path) -> EventLog {
    EventLog::open(dir, spec(), LogOptions::default()).unwrap()
}

fn ids(log: &EventLog) -> BTreeSet<i64> {
    contents(log).into_values().collect()
}

fn range(from: i64, to: i64) -> BTreeSet<i64> {
    (from..to).collect()
}

/// The file written by the log's newest group commit, with data in it.
fn wal_with_data(dir: &Path) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).unwrap().len() > 8)
        .collect();
    files.sort();
    files.pop().expect("a WAL file with records")
}

/// Disk full at every byte of a group commit, then space again, then a crash: the failed batch
/// is refused and absent, every acknowledged batch (before and after) is there.
#[test]
fn disk_full_at_every_byte_then_space_then_crash_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    // the size of one group commit of 10 rows on disk
    let probe = tmp.path().join("probe");
    let log = open_with(&probe, &FaultyFs::new(), 1_000_000).unwrap();
    log.append(rows(0, 10)).unwrap();
    log.abandon();
    let record = std::fs::metadata(wal_with_data(&probe)).unwrap().len() - 8;

    for space in (0..=record).step_by(7) {
        let dir = tmp.path().join(format!("s{space}"));
        let fs = FaultyFs::new();
        let log = open_with(&dir, &fs, 1_000_000).unwrap();
        log.append(rows(0, 10)).unwrap();
        fs.set_space(Some(space));
        let failed = log.append(rows(10, 20));
        assert_eq!(failed.is_err(), space < record, "space {space}");
        if failed.is_err() {
            assert!(log.health().is_some(), "space {space}: health tells");
            assert_eq!(ids(&log), range(0, 10), "space {space}: reads go on");
        }
        fs.set_space(None);
        log.append(rows(20, 30)).unwrap();
        log.abandon(); // kill -9
        let log = reopen(&dir);
        let mut expected = range(0, 10);
        expected.extend(20..30);
        if failed.is_ok() {
            expected.extend(10..20);
        }
        assert_eq!(ids(&log), expected, "space {space}");
        assert!(log.recovery().repaired.is_empty());
        assert_eq!(log.verify().unwrap(), Vec::<String>::new());
    }
}

#[test]
fn failed_fsync_io_errors_and_short_writes_acknowledge_only_what_is_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let log = open_with(tmp.path(), &fs, 1_000_000).unwrap();
    log.append(rows(0, 10)).unwrap();

    fs.update(|f| f.failing_syncs = 1);
    assert!(log.append(rows(10, 20)).is_err(), "fsync failed");
    fs.update(|f| f.eio = true);
    assert!(log.append(rows(20, 30)).is_err(), "EIO");
    fs.heal();
    fs.update(|f| f.short_writes = Some(5));
    log.append(rows(30, 40)).unwrap();

    // the cut-back fails too: the log refuses writes until the file is cut, then resumes
    fs.update(|f| {
        f.short_writes = None;
        f.failing_syncs = 1;
        f.failing_truncate = true;
    });
    assert!(log.append(rows(40, 50)).is_err());
    assert!(
        log.append(rows(50, 60)).is_err(),
        "refused while not cut back"
    );
    assert!(log.health().is_some());
    fs.heal();
    log.append(rows(60, 70)).unwrap();
    assert_eq!(log.health(), None, "a successful write clears the health");
    log.abandon();

    let log = reopen(tmp.path());
    let mut expected = range(0, 10);
    expected.extend(30..40);
    expected.extend(60..70);
    assert_eq!(ids(&log), expected);
}

/// A disk that stays full while nobody writes: the log probes it and reports healthy again once
/// space is back, without a client write.
#[test]
fn health_recovers_by_itself_once_space_is_back() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let log = open_with(tmp.path(), &fs, 1_000_000).unwrap();
    fs.set_space(Some(0));
    assert!(log.append(rows(0, 10)).is_err());
    let why = log.health().unwrap();
    assert!(why.contains("No space left on device"), "{why}");
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    assert!(log.health().is_some(), "still full: still unhealthy");
    fs.set_space(None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.health().is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(log.health(), None);
    log.append(rows(0, 10)).unwrap();
}

/// Sealing on a full disk: rows stay in the WAL and readable, the health says why, appends are
/// refused once twice a seal waits in memory, and the seal succeeds once space is back.
#[test]
fn seals_failing_on_a_full_disk_keep_rows_and_bound_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let log = open_with(tmp.path(), &fs, 100).unwrap();
    fs.update(|f| {
        f.scope = Some("segments".into());
        f.space = Some(0);
    });
    let mut acked = BTreeSet::new();
    for k in 0..10 {
        if log.append(rows(k * 50, (k + 1) * 50)).is_ok() {
            acked.extend(k * 50..(k + 1) * 50);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(log.seal().is_err());
    assert!(
        log.health().unwrap().contains("sealing"),
        "{:?}",
        log.health()
    );
    assert!(acked.len() < 500, "appends refused past twice a seal");
    assert!(acked.len() >= 200);
    assert_eq!(ids(&log), acked, "reads go on");
    fs.heal();
    log.seal().unwrap();
    assert_eq!(log.health(), None);
    log.append(rows(1000, 1010)).unwrap();
    acked.extend(1000..1010);
    log.abandon();
    let log = reopen(tmp.path());
    assert_eq!(ids(&log), acked);
    assert_eq!(log.verify().unwrap(), Vec::<String>::new());
}

/// A crash at every file operation of appends, seals and rotations (the disk is gone from the
/// k-th operation on): after a restart on a good disk, every acknowledged row is there, no row is
/// there twice, and the log verifies.
#[test]
fn a_crash_at_every_operation_keeps_every_acknowledged_row() {
    let tmp = tempfile::tempdir().unwrap();
    let mut k = 0u64;
    loop {
        let dir = tmp.path().join(format!("k{k}"));
        let fs = FaultyFs::new();
        let log = open_with(&dir, &fs, 30).unwrap();
        fs.update(|f| f.fail_after_ops = Some(k));
        let mut acked = BTreeSet::new();
        for b in 0..6 {
            if log.append(rows(b * 20, (b + 1) * 20)).is_ok() {
                acked.extend(b * 20..(b + 1) * 20);
            }
        }
        let sealed = log.seal().is_ok();
        log.abandon();
        let reached_end = fs.ops() <= k;
        let log = reopen(&dir);
        let stored = ids(&log);
        assert!(stored.is_superset(&acked), "crash after {k} operations");
        assert!(
            stored.is_subset(&range(0, 120)),
            "crash after {k} operations"
        );
        assert_eq!(log.verify().unwrap(), Vec::<String>::new(), "k {k}");
        drop(log);
        if reached_end {
            assert!(sealed && acked.len() == 120);
            break;
        }
        k += 1;
    }
    assert!(k > 20, "the scenario has {k} operations");
}

/// A byte flipped in the middle of the WAL: the log refuses to open (data_loss, with file and
/// offset), `inspect` reports it without changing a byte, and repair keeps every intact record
/// after the damage and moves the original into quarantine.
#[test]
fn a_flipped_wal_byte_is_reported_and_repair_keeps_everything_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = open_with(&dir, &FaultyFs::new(), 1_000_000).unwrap();
    for b in 0..5 {
        log.append(rows(b * 10, (b + 1) * 10)).unwrap();
    }
    log.abandon();
    let wal = wal_with_data(&dir);
    let mut bytes = std::fs::read(&wal).unwrap();
    let at = bytes.len() * 2 / 5; // inside the second of five records
    bytes[at] ^= 0x40;
    std::fs::write(&wal, &bytes).unwrap();

    let err = EventLog::open(&dir, spec(), LogOptions::default()).unwrap_err();
    assert_eq!(
        encore_core::Coded::code(&err),
        encore_core::ErrorCode::DataLoss
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&wal.display().to_string()) && msg.contains("at offset"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(&wal).unwrap(),
        bytes,
        "refusing changed nothing"
    );

    let found = encore_storage::inspect(&dir, &spec(), Ids::Once).unwrap();
    assert_eq!(found.problems.len(), 1, "{found:?}");
    assert!(found.problems[0].contains("damaged"), "{found:?}");
    assert_eq!(found.unsealed_rows, 40);
    assert_eq!(
        std::fs::read(&wal).unwrap(),
        bytes,
        "inspect changed nothing"
    );

    let quarantine = tmp.path().join("quarantine");
    let report = EventLog::repair(&dir, &spec(), &quarantine, &encore_storage::fs::RealFs).unwrap();
    assert_eq!(report.wal.len(), 1);
    let r = &report.wal[0];
    assert_eq!(r.rows_kept, 40);
    assert_eq!(r.wal.damage.len(), 1);
    assert_eq!(std::fs::read(&r.wal.quarantined).unwrap(), bytes);
    let log = reopen(&dir);
    let stored = ids(&log);
    assert_eq!(stored.len(), 40);
    let lost: Vec<i64> = range(0, 50).difference(&stored).copied().collect();
    assert_eq!(lost.len(), 10);
    assert_eq!(lost[9] - lost[0], 9, "one whole record lost: {lost:?}");
    if r.damaged_rows_readable > 0 {
        assert!(r.damaged_ids.iter().any(|id| id.starts_with("id-")));
    }
}

/// A byte flipped in a sealed segment: reads fail with data_loss naming the file, inspect and
/// verify report it, and repair keeps the intact row groups and reports the lost rows.
#[test]
fn a_flipped_segment_byte_is_detected_and_repair_keeps_the_intact_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = open_with(&dir, &FaultyFs::new(), 1_000_000).unwrap();
    log.append(rows(0, 3_000)).unwrap();
    log.close().unwrap();

    let log = reopen(&dir);
    let seg = log.segments()[0].clone();
    let rg = seg.row_groups[0].clone();
    let path = dir.join(&seg.path);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(rg.offset + rg.bytes / 2) as usize] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let err = log.scan(None, |_| Ok(())).unwrap_err();
    assert!(err.to_string().contains(&seg.path), "{err}");
    assert_eq!(log.verify().unwrap().len(), 1);
    drop(log);
    let found = encore_storage::inspect(&dir, &spec(), Ids::Once).unwrap();
    assert!(found.problems[0].contains("checksum mismatch"), "{found:?}");

    let report = EventLog::repair(
        &dir,
        &spec(),
        &tmp.path().join("quarantine"),
        &encore_storage::fs::RealFs,
    )
    .unwrap();
    assert_eq!(report.segments.len(), 1);
    let r = &report.segments[0];
    assert_eq!(r.rows_kept + r.rows_lost, seg.rows);
    assert_eq!(r.rows_lost, rg.rows);
    assert_eq!(std::fs::read(&r.quarantined).unwrap(), bytes);
    let log = reopen(&dir);
    assert_eq!(ids(&log).len() as u64, 3_000 - r.rows_lost);
    assert_eq!(log.verify().unwrap(), Vec::<String>::new());
}

/// An id that comes back after the deduplication window is allowed by the contract: `inspect`
/// with the window notes it and passes; within the window it is a problem.
#[test]
fn ids_reused_after_the_window_are_a_note_not_a_problem() {
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    let tmp = tempfile::tempdir().unwrap();
    let log = open_with(tmp.path(), &FaultyFs::new(), 1_000_000).unwrap();
    let first = rows(0, 10);
    let later = |days: i64| {
        let ts = first
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let shifted: Int64Array = ts
            .values()
            .iter()
            .map(|t| Some(t + days * encore_core::time::MS_PER_DAY))
            .collect();
        RecordBatch::try_new(
            first.schema(),
            vec![
                first.column(0).clone(),
                std::sync::Arc::new(shifted),
                first.column(2).clone(),
            ],
        )
        .unwrap()
    };
    let _: &StringArray = first.column(0).as_any().downcast_ref().unwrap();
    log.append(first.clone()).unwrap();
    log.append(later(30)).unwrap();
    log.close().unwrap();
    let week = 7 * encore_core::time::MS_PER_DAY;
    let found = encore_storage::inspect(tmp.path(), &spec(), Ids::OnceWithin(week)).unwrap();
    assert!(found.problems.is_empty(), "{found:?}");
    assert!(found.notes[0].contains("10 rows reuse"), "{found:?}");
    let strict = encore_storage::inspect(tmp.path(), &spec(), Ids::Once).unwrap();
    assert_eq!(strict.problems.len(), 1, "{strict:?}");

    let log = reopen(tmp.path());
    log.append(later(2)).unwrap();
    log.close().unwrap();
    let found = encore_storage::inspect(tmp.path(), &spec(), Ids::OnceWithin(week)).unwrap();
    assert_eq!(found.problems.len(), 1, "{found:?}");
    assert!(
        found.problems[0].contains("within the deduplication window"),
        "{found:?}"
    );
}
