//! A CSV file of events through `encore ingest`'s reader and the data contracts.
#![no_main]
use encore_ingest::source::FileSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("encore-fuzz-{}.csv", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(mut source) = FileSource::open(&path, None, 1_800_000_000_000) {
        while let Ok(Some(_)) = source.next_chunk() {}
    }
});
