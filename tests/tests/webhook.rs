//! Webhook deliveries' signatures, checked by the Standard Webhooks reference library
//! (`standardwebhooks` on PyPI), not by code Braid wrote: each key of a rotation verifies, and a
//! changed body, id or time, another key or an old delivery does not.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::doc_markdown,
    reason = "test code"
)]

use std::process::Command;

use braid_core::activate::webhook::{SigningKey, signed_headers};
use serde_json::{Value, json};

/// Each delivery's verdict from the reference library: "ok" or its error.
fn verify(deliveries: &Value) -> Vec<String> {
    let script = braid_tests::repo_root().join("tests/clients/verify_webhook.py");
    let out =
        braid_tests::run_with_json(Command::new(braid_tests::python()).arg(script), deliveries);
    assert!(
        out.status.success(),
        "the verifier failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn headers(list: &[(&str, String)]) -> Value {
    list.iter()
        .map(|(name, value)| ((*name).to_owned(), json!(value)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[test]
fn the_reference_library_verifies_what_braid_signs() {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let current = SigningKey::from_bytes(&[0x5a; 32]).unwrap();
    let next = SigningKey::from_bytes(b"a key of twenty-four byte").unwrap();
    let stranger = SigningKey::from_bytes(&[1; 64]).unwrap();
    let body = r#"{"type":"audience_entered","audience":"lapsing","reasons":["é \" ✓"]}"#;
    let signed = signed_headers(
        &[current.clone(), next.clone()],
        "msg_42",
        now,
        body.as_bytes(),
    );
    let old = signed_headers(
        std::slice::from_ref(&current),
        "msg_42",
        now - 3600,
        body.as_bytes(),
    );
    let mut changed_id = signed.clone();
    changed_id[0].1 = "msg_43".to_owned();
    let mut changed_time = signed.clone();
    changed_time[1].1 = (now + 1).to_string();
    let cases = json!([
        {"secret": current.text(), "headers": headers(&signed), "body": body},
        {"secret": next.text(), "headers": headers(&signed), "body": body},
        {"secret": stranger.text(), "headers": headers(&signed), "body": body},
        {"secret": current.text(), "headers": headers(&signed), "body": body.replace("lapsing", "lapsed")},
        {"secret": current.text(), "headers": headers(&changed_id), "body": body},
        {"secret": current.text(), "headers": headers(&changed_time), "body": body},
        {"secret": current.text(), "headers": headers(&old), "body": body},
    ]);
    let verdicts = verify(&cases);
    assert_eq!(verdicts.len(), 7, "{verdicts:?}");
    assert_eq!(verdicts[0], "ok", "the current key");
    assert_eq!(verdicts[1], "ok", "the next key, during a rotation");
    for (i, why) in [
        (2, "another key"),
        (3, "a changed body"),
        (4, "a changed id"),
        (5, "a changed time"),
        (6, "a delivery an hour old"),
    ] {
        assert!(
            verdicts[i].starts_with("WebhookVerificationError"),
            "{why}: {}",
            verdicts[i]
        );
    }
}
