//! An OTLP/JSON export request, decoded and normalized into spans.
#![no_main]
use encore_telemetry::Normalizer;
use encore_telemetry::otlp::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = decode(data, "application/json", false, 1 << 24) {
        let mut counts = Default::default();
        let _ = Normalizer::default().spans(&req, &mut counts);
    }
});
