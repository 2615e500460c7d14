//! Recovery's reading of a WAL file: any bytes give records, damage and a torn tail that cover
//! the file exactly, in order.
#![no_main]
use encore_storage::wal::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let c = parse(data.to_vec());
    assert!(c.valid_len + c.torn_bytes == data.len() as u64);
    let mut end = 0u64;
    for d in &c.damage {
        assert!(d.offset >= end && d.bytes > 0);
        end = d.offset + d.bytes;
    }
    assert!(end <= c.valid_len);
    let _ = c.records().map(<[u8]>::len).sum::<usize>();
});
