use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use encore_core::time::MS_PER_DAY;
use encore_storage::{EventLog, LogOptions, TableSpec};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub(crate) fn spec() -> TableSpec {
    TableSpec {
        name: "t",
        schema: Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ])),
        ts_column: "ts",
        id_column: "id",
        high_cardinality: &["id"],
        times: &[("ts", encore_storage::lake::MILLIS)],
        lake_names: &[],
    }
}

/// Rows `from..to`; row i falls on day i % 3 (of 2026-01-01 onwards).
pub(crate) fn rows(from: i64, to: i64) -> RecordBatch {
    let ids: StringArray = (from..to).map(|i| Some(format!("id-{i}"))).collect();
    let base = 20_454 * MS_PER_DAY;
    let ts: Int64Array = (from..to)
        .map(|i| Some(base + (i % 3) * MS_PER_DAY + i))
        .collect();
    let v: Int64Array = (from..to).map(Some).collect();
    RecordBatch::try_new(
        spec().schema,
        vec![Arc::new(ids), Arc::new(ts), Arc::new(v)],
    )
    .unwrap()
}

pub(crate) fn contents(log: &EventLog) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    log.scan(Some(&["id", "v"]), |b| {
        let ids = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let v = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..b.num_rows() {
            assert!(
                out.insert(ids.value(i).to_owned(), v.value(i)).is_none(),
                "duplicate row"
            );
        }
        Ok(())
    })
    .unwrap();
    out
}

fn open(dir: &Path) -> EventLog {
    EventLog::open(
        dir,
        spec(),
        LogOptions {
            seal_rows: 1_000,
            ..LogOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn appends_are_sealed_by_day_and_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    for k in 0..5 {
        log.append(rows(k * 700, (k + 1) * 700)).unwrap();
    }
    assert_eq!(contents(&log).len(), 3_500);
    log.close().unwrap();

    let log = open(tmp.path());
    assert_eq!(
        log.recovery().rows_replayed,
        0,
        "everything was sealed on close"
    );
    let segs = log.segments();
    assert!(segs.len() >= 3);
    for s in &segs {
        assert!(
            s.path.starts_with(&format!("segments/day={}/", s.day)),
            "{s:?}"
        );
    }
    let days: std::collections::BTreeSet<_> = segs.iter().map(|s| s.day.clone()).collect();
    assert_eq!(
        days.into_iter().collect::<Vec<_>>(),
        ["2026-01-01", "2026-01-02", "2026-01-03"]
    );
    let c = contents(&log);
    assert_eq!(c.len(), 3_500);
    assert_eq!(c["id-1234"], 1234);
    assert_eq!(log.verify().unwrap(), Vec::<String>::new());
    assert_eq!(log.stats().sealed_rows, 3_500);
}

/// With a seal interval, rows reach Parquet segments that far after they arrived with no
/// seal asked for and `seal_rows` far away; the segments hold the time as a UTC TIMESTAMP.
#[test]
fn rows_are_sealed_within_the_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let log = EventLog::open(
        tmp.path(),
        spec(),
        LogOptions {
            seal_rows: 1_000_000,
            seal_interval: Some(std::time::Duration::from_millis(300)),
            ..LogOptions::default()
        },
    )
    .unwrap();
    log.append(rows(0, 10)).unwrap();
    assert_eq!(log.stats().sealed_rows, 0);
    let started = std::time::Instant::now();
    while log.stats().sealed_rows < 10 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "not sealed: {:?}",
            log.stats()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    assert_eq!(log.stats().unsealed_rows, 0);
    // more rows later: a second round, then nothing more to do (no empty segments)
    log.append(rows(10, 12)).unwrap();
    while log.stats().sealed_rows < 12 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let segments = log.segments().len();
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert_eq!(log.segments().len(), segments);
    assert_eq!(contents(&log).len(), 12);
    // what an outside reader finds in a segment: ts as TIMESTAMP(MILLIS, UTC)
    let seg = &log.segments()[0];
    let file = std::fs::File::open(tmp.path().join(&seg.path)).unwrap();
    let builder =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    assert_eq!(
        builder.schema().field_with_name("ts").unwrap().data_type(),
        &DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, Some("UTC".into()))
    );
    let ts = builder.parquet_schema().column(1);
    assert!(
        format!("{:?}", ts.logical_type_ref()).contains("Timestamp"),
        "{:?}",
        ts.logical_type_ref()
    );
}

#[test]
fn acknowledged_rows_survive_a_crash_through_the_wal() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    log.append(rows(0, 600)).unwrap();
    log.append(rows(600, 900)).unwrap();
    // a crash: the writer stops without sealing
    log.abandon();

    let log = open(tmp.path());
    assert_eq!(log.recovery().rows_replayed, 900);
    assert_eq!(log.recovery().wal_files_replayed, 1);
    assert_eq!(contents(&log).len(), 900);
    log.append(rows(900, 1_200)).unwrap();
    log.abandon();

    // a second crash: both WAL files (the replayed one and the new one) are read
    let log = open(tmp.path());
    assert_eq!(contents(&log).len(), 1_200);
    log.close().unwrap();
    let log = open(tmp.path());
    assert_eq!(contents(&log).len(), 1_200);
    assert_eq!(log.verify().unwrap(), Vec::<String>::new());
}

#[test]
fn torn_wal_tail_is_truncated_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    log.append(rows(0, 100)).unwrap();
    log.abandon();
    // half a record: a header promising more bytes than were written before the crash
    let wal = std::fs::read_dir(tmp.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let wal = if std::fs::metadata(&wal).unwrap().len() > 8 {
        wal
    } else {
        // the newest file is the empty one the crashed process opened; tear the one with data
        let mut files: Vec<_> = std::fs::read_dir(tmp.path().join("wal"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files[0].clone()
    };
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9]);
    std::fs::write(&wal, &bytes).unwrap();

    let log = open(tmp.path());
    assert_eq!(log.recovery().torn_bytes_truncated, 11);
    assert_eq!(contents(&log).len(), 100);
}

#[test]
fn orphan_segments_of_a_crashed_seal_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    log.append(rows(0, 50)).unwrap();
    log.abandon();
    let orphan_dir = tmp.path().join("segments/day=2026-01-01");
    std::fs::create_dir_all(&orphan_dir).unwrap();
    std::fs::write(orphan_dir.join("000000000001.parquet.tmp"), b"half written").unwrap();
    let log = open(tmp.path());
    assert_eq!(log.recovery().orphan_segments_removed, 1);
    assert_eq!(contents(&log).len(), 50);
    log.close().unwrap();
    let log = open(tmp.path());
    assert_eq!(log.verify().unwrap(), Vec::<String>::new());
}

#[test]
fn wrong_schema_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    let other = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![1]))],
    )
    .unwrap();
    let err = log.append(other).unwrap_err();
    assert_eq!(
        err.to_string(),
        "batch does not have the schema of table `t`"
    );
}

#[test]
fn verify_reports_a_damaged_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    log.append(rows(0, 30)).unwrap();
    log.seal().unwrap();
    let seg = log.segments()[0].clone();
    std::fs::write(tmp.path().join(&seg.path), b"not parquet").unwrap();
    let problems = log.verify().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with(&seg.path), "{problems:?}");
}
