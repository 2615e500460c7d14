//! Feature definitions in TOML (`encore features apply`).
#![no_main]
use encore_features::Definitions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Definitions::parse(text, "features.toml");
    }
});
