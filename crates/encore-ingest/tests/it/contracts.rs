use encore_core::event::PlaybackEvent;
use encore_ingest::{IngestOptions, Ingestor, Table};
use encore_sim::{SimConfig, World};
use std::io::Write;
use std::path::{Path, PathBuf};

/// 2026-06-01: after the simulated January.
const NOW: i64 = 1_780_272_000_000;

fn events(n: usize) -> Vec<PlaybackEvent> {
    let mut world = World::new(SimConfig::new(40, 1, 3));
    let day = world.simulate_day();
    day.plays
        .iter()
        .take(n)
        .map(|p| world.playback_event(p))
        .collect()
}

fn open(dir: &Path) -> Ingestor {
    Ingestor::open_with_clock(dir, IngestOptions::default(), Box::new(|| NOW)).unwrap()
}

fn json(e: &PlaybackEvent) -> serde_json::Value {
    serde_json::to_value(e).unwrap()
}

/// The corpus: valid rows and one row of every kind of bad row, with the rule each must break.
fn corpus(path: &Path) -> Vec<(u64, &'static str, &'static str)> {
    let ev = events(8);
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut expect = Vec::new();
    let mut push =
        |line: Vec<u8>, field: &'static str, rule: &'static str, lines: &mut Vec<Vec<u8>>| {
            lines.push(line);
            if !rule.is_empty() {
                expect.push((lines.len() as u64, field, rule));
            }
        };
    for e in &ev[..5] {
        push(json(e).to_string().into_bytes(), "", "", &mut lines);
    }
    push(
        b"{\"event_id\": \"oops\", ".to_vec(),
        "",
        "json",
        &mut lines,
    );
    let mut v = json(&ev[5]);
    v.as_object_mut().unwrap().remove("user_id");
    push(
        v.to_string().into_bytes(),
        "user_id",
        "required",
        &mut lines,
    );
    let mut v = json(&ev[5]);
    v["ms_played"] = "long".into();
    push(v.to_string().into_bytes(), "ms_played", "type", &mut lines);
    let mut v = json(&ev[5]);
    v["reason_end"] = "bored".into();
    push(v.to_string().into_bytes(), "reason_end", "enum", &mut lines);
    let mut v = json(&ev[5]);
    v["item_duration_ms"] = 0.into();
    push(
        v.to_string().into_bytes(),
        "item_duration_ms",
        "range",
        &mut lines,
    );
    let mut v = json(&ev[5]);
    v["ts_start_ms"] = (NOW + 3_600_000).into();
    v["ts_end_ms"] = (NOW + 3_700_000).into();
    push(
        v.to_string().into_bytes(),
        "ts_start_ms",
        "not_in_future",
        &mut lines,
    );
    let mut v = json(&ev[5]);
    v["ms_played"] = (ev[5].item_duration_ms + 10_000).into();
    v["ts_end_ms"] = (ev[5].ts_start_ms + i64::from(ev[5].item_duration_ms) + 10_000).into();
    push(
        v.to_string().into_bytes(),
        "ms_played",
        "ms_played_within_duration",
        &mut lines,
    );
    // a duplicate of line 2: not a reject, counted apart
    push(json(&ev[1]).to_string().into_bytes(), "", "", &mut lines);
    let mut bad_utf8 = json(&ev[6]).to_string().into_bytes();
    let at = bad_utf8.windows(2).position(|w| w == b"\"u").unwrap() + 1;
    bad_utf8.insert(at, 0xE9); // a Latin-1 e-acute
    push(bad_utf8, "", "encoding", &mut lines);
    let mut v = json(&ev[6]);
    v["country"] = "XX".into();
    push(v.to_string().into_bytes(), "country", "country", &mut lines);
    push(Vec::new(), "", "", &mut lines); // blank lines are skipped
    push(json(&ev[7]).to_string().into_bytes(), "", "", &mut lines);
    let mut f = std::fs::File::create(path).unwrap();
    for l in &lines {
        f.write_all(l).unwrap();
        f.write_all(b"\r\n").unwrap(); // CRLF line ends are fine
    }
    expect
}

#[test]
fn bad_row_corpus_yields_exact_counts_and_named_rejects() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("corpus.jsonl");
    let expect = corpus(&file);
    let ingestor = open(&tmp.path().join("data"));
    let s = ingestor
        .ingest_files(std::slice::from_ref(&file), None, false, &|_, _| {})
        .unwrap();
    assert_eq!((s.accepted, s.rejected, s.duplicates), (6, 9, 1), "{s:#?}");
    assert_eq!(s.first_rejects.len(), 9);
    for ((line, field, rule), message) in expect.iter().zip(&s.first_rejects) {
        let location = format!("{}:{line}: ", file.display());
        assert!(
            message.starts_with(&location),
            "{message} should start with {location}"
        );
        if !field.is_empty() {
            assert!(
                message.contains(&format!("field `{field}`")),
                "{message} names {field}"
            );
        }
        assert!(
            message.contains(&format!("(rule {rule})")),
            "{message} names rule {rule}"
        );
    }
    assert_eq!(s.rejects_by_rule.values().sum::<u64>(), 9);

    // rejects are kept with their reasons and the raw text where there was one
    let q = ingestor.quarantine().list(100).unwrap();
    assert_eq!(q.len(), 9);
    assert!(
        q.iter().any(|e| e.violations[0].rule == "json"
            && e.raw.as_deref() == Some("{\"event_id\": \"oops\", "))
    );

    // the log holds each accepted row once
    let log = ingestor.log(Table::Playback);
    log.seal().unwrap();
    assert_eq!(log.stats().sealed_rows, 6);
    assert_eq!(log.verify().unwrap(), Vec::<String>::new());
}

/// A data directory under `dir` that has ingested the bad-row corpus once; and the corpus file.
fn corpus_ingested_once(dir: &Path) -> (PathBuf, PathBuf) {
    let file = dir.join("corpus.jsonl");
    corpus(&file);
    let data = dir.join("data");
    drop(
        open(&data)
            .ingest_files(std::slice::from_ref(&file), None, false, &|_, _| {})
            .unwrap(),
    );
    (data, file)
}

#[test]
fn dedup_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, file) = corpus_ingested_once(tmp.path());
    let again = open(&data)
        .ingest_files(&[file], None, false, &|_, _| {})
        .unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 7), "{again:#?}");
    let ingestor = open(&data);
    assert_eq!(ingestor.counters().accepted, 6);
    assert_eq!(ingestor.counters().duplicates, 8);
}

#[test]
fn strict_rejects_the_whole_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("corpus.jsonl");
    corpus(&file);
    let ingestor = open(&tmp.path().join("data"));
    let s = ingestor
        .ingest_files(&[file], None, true, &|_, _| {})
        .unwrap();
    assert!(s.aborted);
    assert_eq!((s.accepted, s.rejected), (0, 9));
    ingestor.log(Table::Playback).seal().unwrap();
    assert_eq!(ingestor.log(Table::Playback).stats().sealed_rows, 0);
}

fn write_world(dir: &Path, format: encore_sim::Format) -> encore_sim::Manifest {
    encore_sim::generate(&SimConfig::new(60, 2, 9), dir, format, &mut |_, _| {}).unwrap()
}

fn event_files(dir: &Path, m: &encore_sim::Manifest) -> Vec<PathBuf> {
    m.files
        .iter()
        .filter(|f| f.kind == "playback" || f.kind == "interaction")
        .map(|f| dir.join(&f.path))
        .collect()
}

#[test]
fn parquet_jsonl_and_compressed_files_ingest_the_same_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (pq, js) = (tmp.path().join("pq"), tmp.path().join("js"));
    let m = write_world(&pq, encore_sim::Format::Parquet);
    let mj = write_world(&js, encore_sim::Format::Jsonl);
    let total = m.counts.playback_events + m.counts.interaction_events;

    let a = open(&tmp.path().join("a"));
    let s = a
        .ingest_files(&event_files(&pq, &m), None, false, &|_, _| {})
        .unwrap();
    assert_eq!(
        (s.accepted, s.rejected, s.duplicates),
        (total, 0, 0),
        "{:?}",
        s.first_rejects
    );

    // the same world as JSON lines, one file gzip'd and one zstd'd
    let files = event_files(&js, &mj);
    let gz = tmp.path().join("events-0000.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(&std::fs::read(&files[0]).unwrap()).unwrap();
    enc.finish().unwrap();
    let zst = tmp.path().join("events-0001.jsonl.zst");
    std::fs::write(
        &zst,
        zstd::encode_all(std::fs::read(&files[2]).unwrap().as_slice(), 3).unwrap(),
    )
    .unwrap();
    let mut inputs = vec![gz, zst];
    inputs.extend([files[1].clone(), files[3].clone()]);
    let b = open(&tmp.path().join("b"));
    let s = b.ingest_files(&inputs, None, false, &|_, _| {}).unwrap();
    assert_eq!(
        (s.accepted, s.rejected),
        (total, 0),
        "{:?}",
        s.first_rejects
    );

    // the logs hold the same event ids
    let ids = |ing: &Ingestor| {
        let mut out = Vec::new();
        ing.log(Table::Playback)
            .scan(Some(&["event_id"]), |b| {
                let col = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::StringArray>()
                    .unwrap();
                out.extend(col.iter().flatten().map(str::to_owned));
                Ok(())
            })
            .unwrap();
        out.sort();
        out
    };
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(ids(&a).len() as u64, m.counts.playback_events);
}

#[test]
fn csv_rows_are_typed_by_the_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = events(2);
    let mut csv = String::from(
        "event_id,schema_version,user_id,session_id,ts_start_ms,ts_end_ms,item_id,item_type,item_duration_ms,ms_played,reason_start,reason_end,context_type,shuffle,platform,country,tier,consent.personalization,consent.analytics\n",
    );
    for e in &ev {
        csv.push_str(&format!(
            "{},1,{},{},{},{},{},track,{},{},{},{},{},{},{},{},{},true,false\n",
            e.event_id,
            e.user_id,
            e.session_id,
            e.ts_start_ms,
            e.ts_end_ms,
            e.item_id,
            e.item_duration_ms,
            e.ms_played,
            e.reason_start,
            e.reason_end,
            e.context_type,
            e.shuffle,
            e.platform,
            e.country,
            e.tier
        ));
    }
    csv.push_str(
        "not-a-uuid,1,u1,s1,1,2,t1,track,100,5,clickrow,trackdone,album,false,ios,SE,free,,\n",
    );
    let path = tmp.path().join("plays.csv");
    std::fs::write(&path, csv).unwrap();
    let ingestor = open(&tmp.path().join("data"));
    let s = ingestor
        .ingest_files(std::slice::from_ref(&path), None, false, &|_, _| {})
        .unwrap();
    assert_eq!((s.accepted, s.rejected), (2, 1), "{:?}", s.first_rejects);
    assert!(
        s.first_rejects[0].starts_with(&format!("{}:4: field `event_id`", path.display())),
        "{:?}",
        s.first_rejects
    );
}

#[test]
fn request_bodies_are_arrays_or_json_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let ingestor = open(&tmp.path().join("data"));
    let ev = events(3);
    let mut bad = json(&ev[2]);
    bad["tier"] = "platinum".into();
    let array = serde_json::Value::Array(vec![json(&ev[0]), bad, json(&ev[1])]).to_string();
    let chunk = ingestor.parse_body(array.as_bytes(), 1_000).unwrap();
    let out = ingestor.submit_body(&chunk, false).unwrap().wait().unwrap();
    assert_eq!(out.accepted, 2);
    assert_eq!(out.rejects.len(), 1);
    assert_eq!(out.rejects[0].location, "batch index 1");
    assert_eq!(out.rejects[0].violations[0].rule, "enum");

    let ndjson = format!("{}\n{}\n", json(&ev[0]), json(&ev[2]));
    let chunk = ingestor.parse_body(ndjson.as_bytes(), 1_000).unwrap();
    let out = ingestor.submit_body(&chunk, false).unwrap().wait().unwrap();
    assert_eq!((out.accepted, out.duplicates), (1, 1));

    assert!(matches!(
        ingestor.parse_body(b"hello", 10),
        Err(encore_ingest::IngestError::BadBody { .. })
    ));
    assert!(matches!(
        ingestor.parse_body(b"   ", 10),
        Err(encore_ingest::IngestError::BadBody { .. })
    ));
    let big = serde_json::Value::Array(vec![json(&ev[0]); 11]).to_string();
    assert!(matches!(
        ingestor.parse_body(big.as_bytes(), 10),
        Err(encore_ingest::IngestError::TooLarge { .. })
    ));
}

/// Regression: the counters were saved after the rows were acknowledged, so a SIGKILL in between
/// left `accepted` behind the log for good (545,745 counted, 546,745 stored). On open they catch
/// up with the log.
#[test]
fn counters_behind_the_log_after_a_crash_catch_up_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = corpus_ingested_once(tmp.path());
    // as if the process died after the acknowledgement, before the counters were saved
    let path = data.join("events/ingest-counters.json");
    let mut saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    saved["accepted"] = serde_json::json!(2);
    std::fs::write(&path, saved.to_string()).unwrap();
    assert_eq!(open(&data).counters().accepted, 6);
}

/// Experiment analysis leaves out listeners whose newest event withholds analytics consent.
#[test]
fn listeners_without_analytics_consent_are_not_analysed() {
    let dir = tempfile::tempdir().unwrap();
    let ingestor = Ingestor::open(dir.path(), IngestOptions::default()).unwrap();
    let body = |rows: Vec<serde_json::Value>| {
        let text = rows
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        let chunk = ingestor.parse_body(text.as_bytes(), 1_000).unwrap();
        let out = ingestor.submit_body(&chunk, false).unwrap().wait().unwrap();
        assert!(out.rejects.is_empty(), "{:?}", out.rejects);
    };
    let t0 = 1_790_000_000_000i64;
    // exposures are written by the server and carry no consent; the listener's own events do
    let event = |n: u32, user: &str, kind: &str, analytics: bool| {
        serde_json::json!({"event_id": format!("6b0f6c1e-9d2a-4c8e-8f3a-2d1e5b6a{n:04x}"),
            "schema_version": 1, "user_id": user, "ts_ms": t0 + i64::from(n), "kind": kind,
            "item_id": "t1", "platform": "ios", "country": "SE", "tier": "premium",
            "experiments": if kind == "exposure" { serde_json::json!([{"id": "home", "variant": "treatment"}]) } else { serde_json::json!([]) },
            "consent": {"personalization": true, "analytics": analytics}})
    };
    body(vec![
        event(1, "consenting", "exposure", false),
        event(2, "consenting", "save", true),
        event(3, "withheld", "exposure", false),
        event(4, "withheld", "save", false),
        // granted once, withdrawn later: the newest of their own events decides
        event(5, "withdrew", "exposure", false),
        event(6, "withdrew", "save", true),
        event(9, "withdrew", "save", false),
        // nothing of their own yet: analysed (a server-written exposure says nothing)
        event(10, "quiet", "exposure", false),
    ]);
    let outcomes = encore_ingest::exposure::outcomes(&ingestor, "home", 7).unwrap();
    let mut users: Vec<&str> = outcomes.keys().map(String::as_str).collect();
    users.sort_unstable();
    assert_eq!(users, ["consenting", "quiet"]);
}

/// Reads the first record batch of the Parquet file at `path`.
fn first_batch(path: &Path) -> arrow::array::RecordBatch {
    let file = std::fs::File::open(path).unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .with_batch_size(200)
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
}

fn write_parquet(path: &Path, batch: &arrow::array::RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// `batch` with column `name` replaced by `column` (same name, the new column's type).
fn with_column(
    batch: &arrow::array::RecordBatch,
    name: &str,
    column: arrow::array::ArrayRef,
) -> arrow::array::RecordBatch {
    use arrow::datatypes::{Field, Schema};
    let schema = batch.schema();
    let at = schema.index_of(name).unwrap();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[at] = Field::new(
        name,
        column.data_type().clone(),
        schema.field(at).is_nullable(),
    );
    let mut columns = batch.columns().to_vec();
    columns[at] = column;
    arrow::array::RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns).unwrap()
}

/// The column screen behind the 1.1M rows/s Parquet figure: bad values in typed columns are
/// caught row by row (the rest of the file is kept), and a column of the wrong type rejects
/// every row, naming the field.
#[test]
fn parquet_with_bad_values_and_a_mistyped_column_rejects_exactly_those_rows() {
    use arrow::array::{Array, ArrayRef, StringArray, UInt32Array};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let pq = tmp.path().join("pq");
    let m = write_world(&pq, encore_sim::Format::Parquet);
    let playback = event_files(&pq, &m)
        .into_iter()
        .find(|f| {
            first_batch(f)
                .schema()
                .column_with_name("ms_played")
                .is_some()
        })
        .unwrap();
    let batch = first_batch(&playback);
    let n = batch.num_rows();
    assert!(n >= 50, "{n} rows");
    let strings = |name: &str| -> Vec<String> {
        let c = batch.column_by_name(name).unwrap();
        let c = c.as_any().downcast_ref::<StringArray>().unwrap();
        (0..c.len()).map(|i| c.value(i).to_owned()).collect()
    };
    // row 3: a country that is not ISO 3166; row 7: a platform outside the enum; row 11: an
    // item duration of 0 (out of range)
    let mut country = strings("country");
    country[3] = "XX".into();
    let mut platform = strings("platform");
    platform[7] = "toaster".into();
    let dur = batch.column_by_name("item_duration_ms").unwrap();
    let dur = dur.as_any().downcast_ref::<UInt32Array>().unwrap();
    let mut durations: Vec<u32> = (0..n).map(|i| dur.value(i)).collect();
    durations[11] = 0;
    let mut bad = with_column(
        &batch,
        "country",
        Arc::new(StringArray::from(country)) as ArrayRef,
    );
    bad = with_column(
        &bad,
        "platform",
        Arc::new(StringArray::from(platform)) as ArrayRef,
    );
    bad = with_column(
        &bad,
        "item_duration_ms",
        Arc::new(UInt32Array::from(durations)) as ArrayRef,
    );
    let values = tmp.path().join("bad-values.parquet");
    write_parquet(&values, &bad);
    let ingestor = open(&tmp.path().join("data"));
    let s = ingestor
        .ingest_files(std::slice::from_ref(&values), None, false, &|_, _| {})
        .unwrap();
    assert_eq!(
        (s.accepted, s.rejected),
        (n as u64 - 3, 3),
        "{:?}",
        s.first_rejects
    );
    // Parquet rows are named by their index in the file
    for (row, field) in [(3, "country"), (7, "platform"), (11, "item_duration_ms")] {
        let location = format!("{} row {row}: ", values.display());
        assert!(
            s.first_rejects
                .iter()
                .any(|r| r.starts_with(&location) && r.contains(&format!("field `{field}`"))),
            "no reject of row {row} naming {field}: {:?}",
            s.first_rejects
        );
    }

    // ms_played written as text: no row can be stored, each reject names the field
    let texts: Vec<String> = (0..n).map(|i| format!("{i} ms")).collect();
    let mistyped = with_column(
        &batch,
        "ms_played",
        Arc::new(StringArray::from(texts)) as ArrayRef,
    );
    let typed = tmp.path().join("mistyped.parquet");
    write_parquet(&typed, &mistyped);
    let other = open(&tmp.path().join("other"));
    let s = other
        .ingest_files(std::slice::from_ref(&typed), None, false, &|_, _| {})
        .unwrap();
    assert_eq!(
        (s.accepted, s.rejected),
        (0, n as u64),
        "{:?}",
        s.first_rejects
    );
    assert!(
        s.first_rejects
            .iter()
            .all(|r| r.contains("field `ms_played`")),
        "{:?}",
        s.first_rejects
    );
}

#[test]
fn a_dirty_feed_keeps_its_good_rows_and_names_each_broken_one() {
    // a world whose files carry 2 % broken rows and 2 % sent twice, in both formats: every
    // broken row is rejected by the rule it breaks, every resend is a duplicate, the rest kept
    for format in [encore_sim::Format::Parquet, encore_sim::Format::Jsonl] {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = SimConfig::new(200, 3, 4);
        config.faults = 0.02;
        let m = encore_sim::generate(&config, tmp.path(), format, &mut |_, _| {}).unwrap();
        let c = &m.counts;
        assert!(c.broken_rows > 100 && c.duplicate_rows > 100, "{c:?}");
        let ingestor = open(&tmp.path().join("data"));
        let s = ingestor
            .ingest_files(&event_files(tmp.path(), &m), None, false, &|_, _| {})
            .unwrap();
        assert_eq!(
            (s.accepted, s.rejected, s.duplicates),
            (
                c.playback_events + c.interaction_events - c.broken_rows,
                c.broken_rows,
                c.duplicate_rows
            ),
            "{format:?}: {:?}",
            s.first_rejects
        );
        let rules: std::collections::BTreeSet<&str> =
            s.rejects_by_rule.keys().map(String::as_str).collect();
        assert_eq!(
            rules,
            [
                "country",
                "ms_played_within_duration",
                "range",
                "ts_end_after_start",
                "uuid"
            ]
            .into(),
            "{format:?}"
        );
    }
}
