//! Files on disk: manifest counts match the files, same seed gives identical bytes, every line is
//! a canonical event, Parquet is readable by a plain Arrow reader.

use encore_core::event::{InteractionEvent, PlaybackEvent};
use encore_sim::{Format, Manifest, SimConfig, generate, verify};
use std::path::Path;

fn world(dir: &Path, seed: u64, format: Format) -> Manifest {
    generate(&SimConfig::new(300, 4, seed), dir, format, &mut |_, _| {}).unwrap()
}

fn all_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    world(&a, 7, Format::Jsonl);
    world(&b, 7, Format::Jsonl);
    world(&c, 8, Format::Jsonl);
    let (fa, fb, fc) = (all_files(&a), all_files(&b), all_files(&c));
    assert!(fa.len() > 10);
    assert_eq!(fa, fb, "same seed must give byte-identical files");
    let events = |files: &[(String, Vec<u8>)]| {
        files
            .iter()
            .find(|(p, _)| p.ends_with("events-0000.jsonl"))
            .unwrap()
            .1
            .clone()
    };
    assert_ne!(
        events(&fa),
        events(&fc),
        "a different seed must give different events"
    );
}

#[test]
fn manifest_counts_match_jsonl_files_and_lines_are_canonical() {
    let tmp = tempfile::tempdir().unwrap();
    let m = world(tmp.path(), 3, Format::Jsonl);
    assert_eq!(verify(tmp.path()).unwrap(), Vec::<String>::new());
    assert_eq!(m.files.iter().filter(|f| f.kind == "playback").count(), 4);

    let mut playback = 0;
    let mut streams = 0;
    for f in m.files.iter().filter(|f| f.kind == "playback") {
        let text = std::fs::read_to_string(tmp.path().join(&f.path)).unwrap();
        let mut last_ts = i64::MIN;
        for line in text.lines() {
            let e: PlaybackEvent = serde_json::from_str(line).unwrap();
            assert!(e.ts_start_ms >= last_ts, "events are sorted by start time");
            last_ts = e.ts_start_ms;
            assert!(e.ms_played <= e.item_duration_ms && e.ts_end_ms >= e.ts_start_ms);
            playback += 1;
            streams += usize::from(e.is_stream());
        }
        assert!(f.path.starts_with("events/events-") && f.path.ends_with(".jsonl"));
    }
    assert_eq!(playback, m.counts.playback_events);
    assert_eq!(streams as u64, m.counts.streams);

    let mut interactions = 0;
    for f in m.files.iter().filter(|f| f.kind == "interaction") {
        let text = std::fs::read_to_string(tmp.path().join(&f.path)).unwrap();
        for line in text.lines() {
            let _: InteractionEvent = serde_json::from_str(line).unwrap();
            interactions += 1;
        }
    }
    assert_eq!(interactions, m.counts.interaction_events);
    assert!(interactions > 0);

    let tracks = std::fs::read_to_string(tmp.path().join("catalog/tracks.jsonl")).unwrap();
    assert_eq!(tracks.lines().count() as u64, m.counts.tracks);
    let manifest_text = std::fs::read_to_string(tmp.path().join("manifest.json")).unwrap();
    let reread: Manifest = serde_json::from_str(&manifest_text).unwrap();
    assert_eq!(reread, m);
}

#[test]
fn parquet_output_matches_jsonl_and_manifest() {
    use arrow::array::{Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let tmp = tempfile::tempdir().unwrap();
    let (pq, js) = (tmp.path().join("pq"), tmp.path().join("js"));
    let m = world(&pq, 5, Format::Parquet);
    world(&js, 5, Format::Jsonl);
    assert_eq!(verify(&pq).unwrap(), Vec::<String>::new());

    let file = std::fs::File::open(pq.join("events/events-0001.parquet")).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = batch.column_by_name("event_id").unwrap();
        let col = col.as_any().downcast_ref::<StringArray>().unwrap();
        ids.extend((0..col.len()).map(|i| col.value(i).to_owned()));
    }
    let text = std::fs::read_to_string(js.join("events/events-0001.jsonl")).unwrap();
    let json_ids: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<PlaybackEvent>(l).unwrap().event_id.0)
        .collect();
    assert_eq!(
        ids, json_ids,
        "both formats hold the same events in the same order"
    );
    let rows: u64 = m
        .files
        .iter()
        .filter(|f| f.kind == "playback")
        .map(|f| f.rows)
        .sum();
    assert_eq!(rows, m.counts.playback_events);
}

#[test]
fn verify_detects_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    world(tmp.path(), 1, Format::Jsonl);
    let path = tmp.path().join("events/events-0002.jsonl");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&path, bytes).unwrap();
    let problems = verify(tmp.path()).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("events/events-0002.jsonl: "),
        "{problems:?}"
    );
}
