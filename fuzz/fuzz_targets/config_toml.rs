//! An `encore.toml` through the layered config loader and its validation.
#![no_main]
use encore_config::Layers;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let layers = Layers {
            file: Some(("encore.toml".into(), text.to_owned())),
            env: Vec::new(),
            flags: Vec::new(),
        };
        let _ = layers.load();
    }
});
