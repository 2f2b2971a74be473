//! Lake content as unify and rebuild read it: a line is an event by one rule
//! (`Event::from_lake_line`), which agrees with serde_json, and unify applies whatever that
//! rule takes without panicking; the records it writes read back.
#![no_main]

use braid_core::event::lake_lines;
use braid_core::unify::{IdentityRules, ProfileConfig, Unifier, decode_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut unifier = Unifier::new(IdentityRules::default(), ProfileConfig::default());
    for line in lake_lines(data) {
        if let Ok(event) = &line.event {
            let value: serde_json::Value = serde_json::from_slice(line.text)
                .expect("an event to Braid, not JSON to serde_json");
            assert!(value.is_object());
            unifier.apply(event);
        }
    }
    for (_, record) in unifier.take_changes().profiles {
        decode_record(&record, unifier.config()).expect("a record Braid wrote reads back");
    }
});
