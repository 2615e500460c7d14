//! JSON lines of events through the data contracts of both tables (what `POST /v1/events` and
//! `encore ingest FILE.jsonl` parse).
#![no_main]
use encore_ingest::Table;
use encore_ingest::source::parse_json_texts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let texts: Vec<(u64, Vec<u8>)> = data
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| (i as u64 + 1, line.to_vec()))
        .collect();
    for table in Table::ALL {
        let _ = parse_json_texts(table, &texts, &|i| format!("line {i}"), 1_800_000_000_000);
    }
});
