//! An OTLP/HTTP protobuf export request, decoded (plain and gzip) and normalized into spans.
#![no_main]
use encore_telemetry::Normalizer;
use encore_telemetry::otlp::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for gzip in [false, true] {
        if let Ok(req) = decode(data, "application/x-protobuf", gzip, 1 << 24) {
            let mut counts = Default::default();
            let _ = Normalizer::default().spans(&req, &mut counts);
        }
    }
});
