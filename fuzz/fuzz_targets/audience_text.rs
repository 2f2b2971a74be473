//! Audience conditions in their text form, as the preview route and `braid.toml` take them:
//! reading never panics, and a text that reads gives a condition that describes itself.
#![no_main]

use braid_core::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(segments) = Config::default().segments() else {
        return;
    };
    if let Ok(condition) = segments.preview_condition(&serde_json::Value::String(text.to_owned())) {
        assert!(!condition.text().is_empty());
    }
});
