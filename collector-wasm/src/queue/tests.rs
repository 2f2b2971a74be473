#![allow(
    clippy::float_cmp,
    reason = "the delays compared are exact sums of whole milliseconds"
)]

use super::*;
use serde_json::Value;
use std::format;
use std::prelude::rust_2024::*;

const T0: f64 = 1_780_000_000_000.0;

fn collector(config: Config) -> Collector {
    let mut collector = Collector::new(config, [7, 7, 7, 7]);
    collector.set_ids("anon-1", "");
    collector
}

fn track(collector: &mut Collector, name: &str, now: f64) -> Value {
    let body = serde_json::json!({"type": "track", "event": name}).to_string();
    serde_json::from_str(
        collector
            .enqueue(&body, r#"{"page":{"path":"/"}}"#, now)
            .unwrap(),
    )
    .unwrap()
}

fn batch_events(body: &str) -> Vec<Value> {
    let body: Value = serde_json::from_str(body).unwrap();
    body["batch"].as_array().unwrap().clone()
}

#[test]
fn events_are_stamped_with_ids_time_sequence_and_session() {
    let mut c = collector(Config::default());
    let first = track(&mut c, "A", T0);
    assert_eq!(first["type"], "track");
    assert_eq!(first["event"], "A");
    assert_eq!(first["anonymousId"], "anon-1");
    assert!(first.get("userId").is_none());
    assert_eq!(first["timestamp"], "2026-05-28T20:26:40.000Z");
    assert_eq!(first["messageId"].as_str().unwrap().len(), 36);
    assert_eq!(first["context"]["page"]["path"], "/");
    assert_eq!(first["context"]["sequence"], 1);
    assert_eq!(first["context"]["sessionId"], 1_780_000_000_000_u64);
    assert_eq!(first["context"]["sessionStart"], true);
    assert_eq!(
        c.last_key(),
        format!("1.{}", first["messageId"].as_str().unwrap())
    );

    c.set_ids("anon-1", "user-9");
    let second = track(&mut c, "B", T0 + 1_000.0);
    assert_eq!(second["userId"], "user-9");
    assert_eq!(second["context"]["sequence"], 2);
    assert_eq!(
        second["context"]["sessionId"],
        first["context"]["sessionId"]
    );
    assert!(second["context"].get("sessionStart").is_none());
    assert_ne!(second["messageId"], first["messageId"]);
}

#[test]
fn values_the_caller_sets_win_over_the_stamps() {
    let mut c = collector(Config::default());
    let json = c
        .enqueue(
            r#"{"type":"track","event":"A","messageId":"mine","timestamp":"2020-01-01T00:00:00Z"}"#,
            r#"{"sessionId":5}"#,
            T0,
        )
        .unwrap();
    // Duplicate keys keep the last value (serde_json and the server both read it so).
    let event: Value = serde_json::from_str(json).unwrap();
    assert_eq!(event["messageId"], "mine");
    assert_eq!(event["timestamp"], "2020-01-01T00:00:00Z");
    assert_eq!(event["context"]["sessionId"], 5);
}

#[test]
fn a_session_ends_after_thirty_minutes_of_inactivity() {
    let mut c = collector(Config::default());
    let first = track(&mut c, "A", T0);
    let within = track(&mut c, "B", T0 + 29.0 * 60_000.0);
    let after = track(&mut c, "C", T0 + 29.0 * 60_000.0 + 30.0 * 60_000.0 + 1.0);
    assert_eq!(
        within["context"]["sessionId"],
        first["context"]["sessionId"]
    );
    assert_eq!(after["context"]["sessionId"], 1_780_003_540_001_u64);
    assert_eq!(after["context"]["sessionStart"], true);
}

#[test]
fn state_from_another_tab_moves_sequence_and_session_forward_only() {
    let mut c = collector(Config::default());
    track(&mut c, "A", T0);
    c.set_state(40, 123, T0 + 10.0);
    let event = track(&mut c, "B", T0 + 20.0);
    assert_eq!(event["context"]["sequence"], 41);
    assert_eq!(event["context"]["sessionId"], 123);
    c.set_state(3, 99, T0 - 5.0);
    let event = track(&mut c, "C", T0 + 30.0);
    assert_eq!(event["context"]["sequence"], 42);
    assert_eq!(event["context"]["sessionId"], 123);
}

#[test]
fn bad_events_are_refused_without_using_a_sequence_number() {
    let mut c = collector(Config {
        max_event_bytes: 400,
        ..Config::default()
    });
    assert_eq!(c.enqueue("[1]", "{}", T0), Err(Rejected::NotAnObject));
    assert_eq!(c.enqueue("{}", "null", T0), Err(Rejected::NotAnObject));
    let big = format!(r#"{{"type":"track","event":"{}"}}"#, "x".repeat(400));
    assert_eq!(c.enqueue(&big, "{}", T0), Err(Rejected::TooLarge));
    assert!(c.is_empty());
    assert_eq!(track(&mut c, "A", T0)["context"]["sequence"], 1);
}

#[test]
fn a_full_queue_drops_the_oldest_and_reports_the_count_once_delivered() {
    let mut c = collector(Config {
        max_queue: 3,
        ..Config::default()
    });
    let keys: Vec<String> = (0..5)
        .map(|n| {
            track(&mut c, &n.to_string(), T0);
            c.last_key().to_string()
        })
        .collect();
    assert_eq!(c.len(), 3);
    assert_eq!(c.take_evicted(), keys[..2].to_vec());
    assert!(c.take_evicted().is_empty());

    let body = c.take_batch(T0, 64_000).unwrap();
    let parsed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed["context"]["droppedEvents"], 2);
    let names: Vec<&str> = parsed["batch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["2", "3", "4"]);
    // Failed: the count is reported again on the retry.
    assert_eq!(c.settle(503, -1.0, T0), Settled::Retry);
    let body = c.take_batch(T0 + 600_000.0, 64_000).unwrap();
    assert!(body.contains(r#""droppedEvents":2"#));
    assert_eq!(c.settle(200, -1.0, T0 + 600_000.0), Settled::Delivered);
    track(&mut c, "5", T0);
    assert!(!c.take_batch(T0, 64_000).unwrap().contains("droppedEvents"));
}

#[test]
fn events_in_flight_are_never_evicted() {
    let mut c = collector(Config {
        max_queue: 2,
        ..Config::default()
    });
    track(&mut c, "A", T0);
    track(&mut c, "B", T0);
    c.take_batch(T0, 64_000).unwrap();
    track(&mut c, "C", T0);
    track(&mut c, "D", T0);
    // A and B are in flight; C is the oldest that can go, then D stays as the newest... but the
    // bound wins only over events not in flight.
    assert_eq!(c.take_evicted().len(), 2);
    assert_eq!(c.settle(200, -1.0, T0), Settled::Delivered);
    assert!(c.is_empty());
}

#[test]
fn batches_respect_the_byte_budget_and_keep_order() {
    let mut c = collector(Config::default());
    for n in 0..50 {
        track(&mut c, &format!("event {n:02}"), T0);
    }
    let mut seen = Vec::new();
    while let Some(body) = c.take_batch(T0, 4_000) {
        assert!(body.len() <= 4_000, "{}", body.len());
        let events = batch_events(&body);
        assert!(!events.is_empty());
        let keys = c.in_flight().to_vec();
        assert_eq!(keys.len(), events.len());
        for (key, event) in keys.iter().zip(&events) {
            assert!(key.ends_with(event["messageId"].as_str().unwrap()));
            seen.push(event["event"].as_str().unwrap().to_string());
        }
        assert_eq!(c.settle(200, -1.0, T0), Settled::Delivered);
    }
    let expected: Vec<String> = (0..50).map(|n| format!("event {n:02}")).collect();
    assert_eq!(seen, expected);
    assert!(c.is_empty());
}

#[test]
fn one_event_larger_than_the_budget_still_goes_alone() {
    let mut c = collector(Config::default());
    let body = format!(
        r#"{{"type":"track","event":"big","properties":{{"p":"{}"}}}}"#,
        "x".repeat(5_000)
    );
    c.enqueue(&body, "{}", T0).unwrap();
    track(&mut c, "small", T0);
    let first = c.take_batch(T0, 4_000).unwrap();
    assert_eq!(batch_events(&first).len(), 1);
}

#[test]
fn responses_decide_between_delivered_retry_and_dropped() {
    for (status, expected) in [
        (200, Settled::Delivered),
        (204, Settled::Delivered),
        (0, Settled::Retry),
        (408, Settled::Retry),
        (429, Settled::Retry),
        (500, Settled::Retry),
        (503, Settled::Retry),
        (400, Settled::Dropped),
        (401, Settled::Dropped),
        (413, Settled::Dropped),
    ] {
        let mut c = collector(Config::default());
        track(&mut c, "A", T0);
        c.take_batch(T0, 64_000).unwrap();
        assert_eq!(c.settle(status, -1.0, T0), expected, "{status}");
        let left = usize::from(expected == Settled::Retry);
        assert_eq!(c.len(), left, "{status}");
        assert!(c.in_flight().is_empty());
    }
    let mut c = collector(Config::default());
    assert_eq!(c.settle(200, -1.0, T0), Settled::Nothing);
}

#[test]
fn retries_back_off_exponentially_with_jitter_and_honour_retry_after() {
    let mut c = collector(Config {
        flush_at: 1,
        ..Config::default()
    });
    track(&mut c, "A", T0);
    let mut now = T0;
    let mut ceilings = Vec::new();
    for attempt in 1..=12u32 {
        assert!(c.due(now));
        c.take_batch(now, 64_000).unwrap();
        assert_eq!(c.settle(503, -1.0, now), Settled::Retry);
        let wait = c.next_wake(now);
        let ceiling = (1_000.0 * f64::from(1u32 << (attempt - 1))).min(300_000.0);
        assert!(
            wait >= ceiling * 0.5 && wait < ceiling,
            "attempt {attempt}: {wait}"
        );
        assert!(!c.due(now + wait - 1.0));
        ceilings.push(ceiling);
        now += wait;
    }
    assert_eq!(ceilings.last(), Some(&300_000.0));

    c.take_batch(now, 64_000).unwrap();
    assert_eq!(c.settle(429, 7_000.0, now), Settled::Retry);
    assert_eq!(c.next_wake(now), 7_000.0);
    assert!(!c.due(now + 6_999.0));
    assert!(c.due(now + 7_000.0));
    c.take_batch(now + 7_000.0, 64_000).unwrap();
    assert_eq!(c.settle(200, -1.0, now + 7_000.0), Settled::Delivered);
    // Success resets the backoff.
    track(&mut c, "B", now + 8_000.0);
    assert!(c.due(now + 8_000.0));
}

#[test]
fn flushes_at_a_count_or_after_the_interval() {
    let mut c = collector(Config {
        flush_at: 3,
        flush_interval_ms: 5_000.0,
        ..Config::default()
    });
    assert!(!c.due(T0));
    assert_eq!(c.next_wake(T0), -1.0);
    track(&mut c, "A", T0);
    track(&mut c, "B", T0 + 1_000.0);
    assert!(!c.due(T0 + 1_000.0));
    assert_eq!(c.next_wake(T0 + 1_000.0), 4_000.0);
    assert!(c.due(T0 + 5_000.0));
    track(&mut c, "C", T0 + 2_000.0);
    assert!(c.due(T0 + 2_000.0));
    c.take_batch(T0 + 2_000.0, 64_000).unwrap();
    assert!(
        !c.due(T0 + 60_000.0),
        "nothing is due while a batch is in flight"
    );
    assert_eq!(c.next_wake(T0), -1.0);
}

#[test]
fn restored_events_keep_sequence_order_and_are_due_at_once() {
    let mut first = collector(Config::default());
    let stored: Vec<(String, String)> = (0..4)
        .map(|n| {
            let json = first
                .enqueue(&format!(r#"{{"type":"track","event":"{n}"}}"#), "{}", T0)
                .unwrap()
                .to_string();
            (first.last_key().to_string(), json)
        })
        .collect();
    let mut page = collector(Config::default());
    for (key, json) in stored.iter().rev() {
        assert!(page.restore(key, json.clone()));
    }
    assert!(!page.restore("not-a-key", "{}".into()));
    assert!(
        page.restore(&stored[0].0, stored[0].1.clone()),
        "a known key is accepted once"
    );
    assert_eq!(page.len(), 4);
    assert!(page.due(T0));
    let events = batch_events(&page.take_batch(T0, 64_000).unwrap());
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["0", "1", "2", "3"]);
    page.settle(200, -1.0, T0);
    // New events continue the sequence.
    assert_eq!(track(&mut page, "4", T0)["context"]["sequence"], 5);
}

#[test]
fn a_sync_forgets_what_another_tab_delivered() {
    let mut tab = collector(Config::default());
    track(&mut tab, "A", T0);
    let a = tab.last_key().to_string();
    track(&mut tab, "B", T0);
    // Another tab delivered A and B and queued C.
    let mut other = collector(Config::default());
    other.set_state(2, 0, 0.0);
    let c_json = other
        .enqueue(r#"{"type":"track","event":"C"}"#, "{}", T0)
        .unwrap()
        .to_string();
    let c_key = other.last_key().to_string();
    assert!(tab.begin_sync());
    tab.restore(&c_key, c_json);
    tab.end_sync();
    assert_eq!(
        tab.entries()
            .map(|(key, _)| key.to_string())
            .collect::<Vec<_>>(),
        [c_key]
    );
    assert!(!tab.entries().any(|(key, _)| key == a));

    tab.take_batch(T0, 64_000).unwrap();
    assert!(!tab.begin_sync(), "no sync while a batch is in flight");
}

#[test]
fn forget_removes_only_the_named_events() {
    let mut c = collector(Config::default());
    track(&mut c, "A", T0);
    let a = c.last_key().to_string();
    track(&mut c, "B", T0);
    c.take_batch(T0, 64_000).unwrap();
    c.abandon_in_flight();
    c.forget([a.as_str()]);
    let events = batch_events(&c.take_batch(T0, 64_000).unwrap());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"], "B");
}

#[test]
fn clear_forgets_everything() {
    let mut c = collector(Config::default());
    track(&mut c, "A", T0);
    track(&mut c, "B", T0);
    assert_eq!(c.clear().len(), 2);
    assert!(c.is_empty());
    assert!(c.take_batch(T0, 64_000).is_none());
}
