//! Scenario tests with exact expected profiles, and the batch-split/redelivery property.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::*;
use crate::event::Event;

/// A seeded xorshift generator: `next(n)` is in `0..n`.
fn xorshift(seed: u64) -> impl FnMut(usize) -> usize {
    let mut state = seed;
    move |n| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state >> 33).unwrap() % n
    }
}

/// A graph fed with JSON events; `at` is minutes after a fixed start.
struct Scenario {
    graph: IdentityGraph,
    next: usize,
}

fn minutes(at: i64) -> OffsetDateTime {
    crate::timestamp::parse("2024-05-01T10:00:00Z").unwrap() + time::Duration::minutes(at)
}

impl Scenario {
    fn new() -> Scenario {
        Scenario::with(IdentityRules::default())
    }

    fn with(rules: IdentityRules) -> Scenario {
        Scenario {
            graph: IdentityGraph::new(rules),
            next: 0,
        }
    }

    #[expect(clippy::needless_pass_by_value, reason = "callers pass json! literals")]
    fn send(&mut self, at: i64, event: Value) -> Applied {
        self.next += 1;
        let id = format!("m{}", self.next);
        self.send_id(&id, at, &event)
    }

    fn send_id(&mut self, message_id: &str, at: i64, event: &Value) -> Applied {
        let line = event.to_string();
        let extracted = extract(&Event::from_lake_line(&line).unwrap(), self.graph.rules());
        self.graph
            .apply(message_id, minutes(at), minutes(at), extracted)
    }

    /// Every profile as its sorted `type:value` identifiers, sorted.
    fn profiles(&self) -> BTreeSet<Vec<String>> {
        self.graph
            .profiles()
            .map(|p| {
                let mut ids: Vec<String> = p.identifiers.keys().map(ToString::to_string).collect();
                ids.sort();
                ids
            })
            .collect()
    }

    fn profile_of(&self, id: &str) -> ProfileId {
        self.graph
            .profile_of(&Identifier::parse(id).unwrap())
            .unwrap()
            .id
            .clone()
    }
}

fn profiles(expected: &[&[&str]]) -> BTreeSet<Vec<String>> {
    expected
        .iter()
        .map(|ids| {
            let mut ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
            ids.sort();
            ids
        })
        .collect()
}

#[test]
fn anonymous_browsing_then_login_on_two_devices() {
    let mut s = Scenario::new();
    s.send(0, json!({"type": "page", "anonymousId": "laptop"}));
    s.send(
        1,
        json!({"type": "track", "event": "Viewed", "anonymousId": "laptop"}),
    );
    let first = s.profile_of("anonymous_id:laptop");
    s.send(
        5,
        json!({"type": "identify", "anonymousId": "laptop", "userId": "u1",
                     "traits": {"email": "Jane@Shop.example"}}),
    );
    s.send(60, json!({"type": "page", "anonymousId": "phone"}));
    s.send(
        61,
        json!({"type": "identify", "anonymousId": "phone", "userId": "u1"}),
    );
    assert_eq!(
        s.profiles(),
        profiles(&[&[
            "anonymous_id:laptop",
            "anonymous_id:phone",
            "email:jane@shop.example",
            "user_id:u1"
        ]])
    );
    assert_eq!(
        s.profile_of("user_id:u1"),
        first,
        "the oldest profile's id survives"
    );
    let history = s.graph.history(&first);
    let merges = history
        .iter()
        .filter(|e| matches!(e.change, Change::Merged { .. }))
        .count();
    assert_eq!(merges, 1, "the phone's profile merged in: {history:#?}");
}

#[test]
fn a_shared_device_never_merges_two_users() {
    let mut s = Scenario::new();
    s.send(
        0,
        json!({"type": "identify", "anonymousId": "family-laptop", "userId": "mum"}),
    );
    s.send(
        10,
        json!({"type": "identify", "anonymousId": "family-laptop", "userId": "son"}),
    );
    s.send(
        11,
        json!({"type": "track", "event": "E", "anonymousId": "family-laptop", "userId": "son"}),
    );
    assert_eq!(
        s.profiles(),
        profiles(&[
            &["anonymous_id:family-laptop", "user_id:mum"],
            &["user_id:son"]
        ])
    );
    let dropped: Vec<&Dropped> = s
        .graph
        .log()
        .iter()
        .filter_map(|e| match &e.change {
            Change::Dropped(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(dropped.len(), 2);
    assert!(
        dropped
            .iter()
            .all(|d| d.reason == DropReason::Unique && d.kind == IdType::AnonymousId)
    );
}

#[test]
fn an_email_on_two_accounts_does_not_merge_them() {
    let mut s = Scenario::new();
    s.send(
        0,
        json!({"type": "identify", "userId": "u1", "traits": {"email": "shared@office.example"}}),
    );
    s.send(
        1,
        json!({"type": "identify", "userId": "u2", "traits": {"email": "shared@office.example"}}),
    );
    assert_eq!(
        s.profiles(),
        profiles(&[
            &["email:shared@office.example", "user_id:u1"],
            &["user_id:u2"]
        ])
    );
}

#[test]
fn alias_chains_link_every_step() {
    let mut s = Scenario::new();
    s.send(0, json!({"type": "page", "anonymousId": "a1"}));
    s.send(
        1,
        json!({"type": "alias", "anonymousId": "a2", "previousId": "a1"}),
    );
    s.send(
        2,
        json!({"type": "alias", "userId": "u", "previousId": "a2"}),
    );
    s.send(
        3,
        json!({"type": "alias", "userId": "v", "previousId": "u"}),
    );
    assert_eq!(
        s.profiles(),
        profiles(&[
            &["anonymous_id:a1", "anonymous_id:a2", "user_id:u"],
            &["user_id:v"]
        ]),
        "a user id cannot be renamed into another by alias: user_id is unique"
    );
}

#[test]
fn blocked_values_link_nothing() {
    let mut s = Scenario::new();
    s.send(
        0,
        json!({"type": "identify", "anonymousId": "a", "userId": "null"}),
    );
    s.send(
        1,
        json!({"type": "identify", "anonymousId": "b", "userId": "null"}),
    );
    assert_eq!(
        s.profiles(),
        profiles(&[&["anonymous_id:a"], &["anonymous_id:b"]])
    );
    assert_eq!(
        s.send(
            2,
            json!({"type": "track", "event": "E", "userId": "undefined"})
        ),
        Applied::NoIdentity
    );
}

#[test]
fn a_late_event_joins_the_merged_profile() {
    let mut s = Scenario::new();
    s.send(10, json!({"type": "page", "anonymousId": "a"}));
    s.send(
        20,
        json!({"type": "identify", "anonymousId": "a", "userId": "u"}),
    );
    let profile = s.profile_of("user_id:u");
    // Sent at minute 5 from an offline device, delivered after the merge.
    let late = s.send(
        5,
        json!({"type": "track", "event": "Offline", "anonymousId": "a"}),
    );
    assert_eq!(late, Applied::Profile(profile.clone()));
    assert_eq!(s.graph.len(), 1);
    assert_eq!(s.profile_of("anonymous_id:a"), profile);
}

#[test]
fn the_same_batch_twice_changes_nothing() {
    let events = [
        json!({"type": "identify", "anonymousId": "a", "userId": "u"}),
        json!({"type": "track", "event": "E", "anonymousId": "b", "userId": "u"}),
    ];
    let mut s = Scenario::new();
    for (i, event) in events.iter().enumerate() {
        s.send_id(&format!("batch-{i}"), 0, event);
    }
    let before = (s.profiles(), s.graph.log().len());
    for (i, event) in events.iter().enumerate() {
        assert_eq!(
            s.send_id(&format!("batch-{i}"), 0, event),
            Applied::Duplicate
        );
    }
    assert_eq!((s.profiles(), s.graph.log().len()), before);
}

#[test]
fn a_rule_change_splits_a_profile_on_rebuild() {
    let events = [
        json!({"type": "identify", "anonymousId": "a", "traits": {"email": "test@shop.example"}}),
        json!({"type": "identify", "anonymousId": "b", "traits": {"email": "test@shop.example"}}),
        json!({"type": "identify", "anonymousId": "b", "userId": "u"}),
    ];
    let run = |rules: IdentityRules| {
        let mut s = Scenario::with(rules);
        for event in &events {
            s.send(0, event.clone());
        }
        s
    };
    let before = run(IdentityRules::default());
    assert_eq!(before.graph.len(), 1);
    let mut rules = IdentityRules::default();
    rules.types.get_mut("email").unwrap().blocked = vec![r"test@.*".into()];
    let after = run(rules.compiled().unwrap());
    assert_eq!(
        after.profiles(),
        profiles(&[&["anonymous_id:a"], &["anonymous_id:b", "user_id:u"]])
    );
    assert_eq!(
        after.profile_of("anonymous_id:a"),
        before.profile_of("anonymous_id:a"),
        "the oldest profile keeps its id"
    );
}

#[test]
fn limits_cap_the_values_of_a_type() {
    let mut rules = IdentityRules::default();
    rules.types.get_mut("email").unwrap().limit = 2;
    let mut s = Scenario::with(rules);
    for (i, email) in ["a@x.example", "b@x.example", "c@x.example"]
        .iter()
        .enumerate()
    {
        s.send(
            i64::try_from(i).unwrap(),
            json!({"type": "identify", "userId": "u", "traits": {"email": email}}),
        );
    }
    assert_eq!(
        s.profiles(),
        profiles(&[&["email:a@x.example", "email:b@x.example", "user_id:u"]]),
        "the third email was dropped; the event still joined the profile"
    );
}

#[test]
fn known_ids_of_one_profile_link_nothing_and_log_nothing() {
    let mut s = Scenario::new();
    s.send(
        0,
        json!({"type": "identify", "anonymousId": "a-1", "userId": "u"}),
    );
    let log = s.graph.log().len();
    let profile = s.profile_of("user_id:u");
    // The fast path: both ids already in the one profile.
    assert_eq!(
        s.send(
            1,
            json!({"type": "track", "anonymousId": "a-1", "userId": "u"})
        ),
        Applied::Profile(profile.clone())
    );
    assert_eq!(s.graph.log().len(), log, "nothing new to record");
    // A new id still goes the full way and is linked.
    s.send(
        2,
        json!({"type": "track", "anonymousId": "a-2", "userId": "u"}),
    );
    assert_eq!(s.profile_of("anonymous_id:a-2"), profile);
    assert_eq!(s.graph.log().len(), log + 1);
}

#[test]
fn windowed_limits_still_check_known_ids() {
    // With a window, an old id no longer counts: the full check runs even for known ids.
    let mut rules = IdentityRules::default();
    let email = rules.types.get_mut("email").unwrap();
    email.limit = 1;
    email.limit_window_days = Some(1);
    let mut s = Scenario::with(rules);
    s.send(
        0,
        json!({"type": "identify", "userId": "u", "traits": {"email": "a@x.example"}}),
    );
    // Two days later a second email arrives, and the old one no longer counts toward the
    // limit, so it may join; the known first email is then checked as usual.
    s.send(
        3 * 24 * 60,
        json!({"type": "identify", "userId": "u", "traits": {"email": "b@x.example"}}),
    );
    assert_eq!(
        s.profiles(),
        profiles(&[&["email:a@x.example", "email:b@x.example", "user_id:u"]])
    );
    let before = s.graph.log().len();
    s.send(
        3 * 24 * 60 + 1,
        json!({"type": "identify", "userId": "u", "traits": {"email": "a@x.example"}}),
    );
    assert_eq!(
        s.graph.log().len(),
        before + 1,
        "the re-sent old email breaks the 1-per-day limit and its drop is recorded"
    );
}

/// Processing the same events in any batch split, with any redeliveries, gives the same
/// profiles (and the same log).
#[test]
fn batch_splits_and_redeliveries_do_not_change_the_result() {
    let mut next = xorshift(0x2545_F491_4F6C_DD1D);
    let mut events = Vec::new();
    for i in 0..400 {
        let mut event = json!({"type": "identify", "anonymousId": format!("a{}", next(120))});
        if next(3) == 0 {
            event["userId"] = json!(format!("u{}", next(40)));
        }
        if next(5) == 0 {
            event["traits"] = json!({"email": format!("e{}@x.example", next(30))});
        }
        events.push((format!("m{i}"), i64::from(i), event));
    }
    let reference = {
        let mut s = Scenario::new();
        for (id, at, event) in &events {
            s.send_id(id, *at, event);
        }
        (s.profiles(), s.graph.log().to_vec())
    };
    for _ in 0..20 {
        let mut s = Scenario::new();
        let mut position = 0;
        while position < events.len() {
            let batch = 1 + next(50);
            let end = (position + batch).min(events.len());
            for (id, at, event) in &events[position..end] {
                s.send_id(id, *at, event);
            }
            // Redeliver a few earlier events, anywhere in the past.
            for _ in 0..next(4) {
                let (id, at, event) = &events[next(end)];
                assert_eq!(s.send_id(id, *at, event), Applied::Duplicate);
            }
            position = end;
        }
        assert_eq!((s.profiles(), s.graph.log().to_vec()), reference);
    }
}

/// A lake event for a unifier; `at` is minutes after the fixed start.
fn lake_event(message_id: &str, at: i64, mut event: Value) -> Value {
    event["messageId"] = json!(message_id);
    event["timestamp"] = json!(crate::timestamp::format(minutes(at)));
    event
}

/// Applies a lake event, as a lake line.
fn apply(unifier: &mut Unifier, event: &Value) -> Applied {
    let line = event.to_string();
    unifier.apply(&Event::from_lake_line(&line).unwrap())
}

fn unifier(config: ProfileConfig) -> Unifier {
    Unifier::new(IdentityRules::default(), config)
}

fn profile_of<'a>(u: &'a Unifier, id: &str) -> &'a Profile {
    let profile = u
        .graph()
        .profile_of(&Identifier::parse(id).unwrap())
        .unwrap();
    u.profile(&profile.id).unwrap()
}

#[test]
fn traits_follow_their_survivorship_rules() {
    let config: ProfileConfig = serde_json::from_value(json!({
        "traits": {
            "signup_channel": {"rule": "first_seen"},
            "favourite_colour": {"rule": "most_frequent"},
            "plan": {"rule": "source_priority", "sources": ["crm", "analytics.js"]}
        }
    }))
    .unwrap();
    let mut u = unifier(config);
    let identify = |traits: Value, library: &str| {
        json!({"type": "identify", "userId": "u", "traits": traits,
               "context": {"library": {"name": library}}})
    };
    let events = [
        (
            1,
            identify(
                json!({"name": "Jane", "signup_channel": "ads", "favourite_colour": "blue", "plan": "pro", "tags": ["a"]}),
                "crm",
            ),
        ),
        (
            2,
            identify(
                json!({"name": "Jane D.", "signup_channel": "email", "favourite_colour": "blue", "plan": "free", "tags": ["b", "a"]}),
                "analytics.js",
            ),
        ),
        (
            3,
            identify(json!({"favourite_colour": "red"}), "analytics.js"),
        ),
        // Sent earlier, delivered later: most recent is by event time, not arrival.
        (
            0,
            identify(
                json!({"name": "J.", "favourite_colour": "blue"}),
                "analytics.js",
            ),
        ),
        (
            4,
            identify(json!({"favourite_colour": "red"}), "analytics.js"),
        ),
    ];
    for (i, (at, event)) in events.into_iter().enumerate() {
        apply(&mut u, &lake_event(&format!("t{i}"), at, event));
    }
    let p = profile_of(&u, "user_id:u");
    let value = |key: &str| p.traits.get(key).unwrap().value.clone();
    assert_eq!(value("name"), json!("Jane D."), "most recent by event time");
    assert_eq!(value("signup_channel"), json!("ads"), "first seen");
    assert_eq!(
        value("favourite_colour"),
        json!("blue"),
        "blue 3 times, red twice (last)"
    );
    assert_eq!(value("plan"), json!("pro"), "the CRM outranks the website");
    assert_eq!(p.traits.get("plan").unwrap().source.as_deref(), Some("crm"));
    assert_eq!(value("tags"), json!(["a", "b"]), "lists are unioned");
    assert_eq!(p.traits.get("name").unwrap().message_id, "t1");
}

#[test]
fn sequence_numbers_order_events_with_the_same_time() {
    let mut u = unifier(ProfileConfig::default());
    let event = |name: &str, sequence: i64| {
        json!({"type": "identify", "anonymousId": "a", "traits": {"step": name},
               "context": {"sequence": sequence}})
    };
    apply(&mut u, &lake_event("s2", 5, event("second", 2)));
    apply(&mut u, &lake_event("s1", 5, event("first", 1)));
    assert_eq!(
        profile_of(&u, "anonymous_id:a")
            .traits
            .get("step")
            .unwrap()
            .value,
        json!("second")
    );
}

#[test]
fn computed_fields_and_aggregates() {
    let config: ProfileConfig = serde_json::from_value(json!({
        "aggregates": [
            {"name": "revenue", "event": "Order Completed", "property": "revenue", "op": "sum"},
            {"name": "orders", "event": "Order Completed", "op": "count"},
            {"name": "largest_order", "event": "Order Completed", "property": "revenue", "op": "max"},
            {"name": "last_order", "event": "Order Completed", "property": "order_id", "op": "last"}
        ]
    }))
    .unwrap();
    let mut u = unifier(config);
    let order = |id: &str, revenue: f64| {
        json!({"type": "track", "event": "Order Completed", "userId": "u",
               "properties": {"order_id": id, "revenue": revenue}})
    };
    apply(
        &mut u,
        &lake_event("e1", 0, json!({"type": "page", "userId": "u"})),
    );
    apply(&mut u, &lake_event("e2", 10, order("o1", 20.0)));
    apply(&mut u, &lake_event("e3", 100, order("o2", 35.5)));
    apply(&mut u, &lake_event("e4", 50, order("o0", 5.0)));
    let p = profile_of(&u, "user_id:u");
    assert_eq!(p.first_seen, minutes(0));
    assert_eq!(p.last_seen, minutes(100));
    assert_eq!(p.event_counts.get("page").copied().unwrap(), 1);
    assert_eq!(p.event_counts.get("Order Completed").copied().unwrap(), 3);
    assert_eq!(
        p.sessions, 2,
        "0–10, then 100 after a gap over 30 minutes (50 is late, within)"
    );
    assert_eq!(p.aggregates["revenue"], json!(60.5));
    assert_eq!(p.aggregates["orders"], json!(3));
    assert_eq!(p.aggregates["largest_order"], json!(35.5));
    assert_eq!(
        p.aggregates["last_order"],
        json!("o2"),
        "last by event time"
    );
}

#[test]
fn merged_profiles_combine_their_state() {
    let config: ProfileConfig = serde_json::from_value(json!({
        "aggregates": [{"name": "revenue", "event": "Order Completed", "property": "revenue", "op": "sum"}]
    }))
    .unwrap();
    let mut u = unifier(config);
    apply(
        &mut u,
        &lake_event(
            "l1",
            0,
            json!({"type": "track", "event": "Order Completed", "anonymousId": "laptop",
                                        "properties": {"revenue": 10}}),
        ),
    );
    apply(
        &mut u,
        &lake_event(
            "l2",
            1,
            json!({"type": "identify", "anonymousId": "laptop", "traits": {"city": "Lyon"}}),
        ),
    );
    apply(
        &mut u,
        &lake_event(
            "p1",
            200,
            json!({"type": "track", "event": "Order Completed", "anonymousId": "phone",
                                          "properties": {"revenue": 5}}),
        ),
    );
    apply(
        &mut u,
        &lake_event(
            "p2",
            201,
            json!({"type": "identify", "anonymousId": "phone", "traits": {"city": "Paris"}}),
        ),
    );
    assert_eq!(u.profiles().count(), 2);
    apply(
        &mut u,
        &lake_event(
            "login",
            300,
            json!({"type": "identify", "anonymousId": "phone", "userId": "u",
                                             "context": {"traits": {}}}),
        ),
    );
    apply(
        &mut u,
        &lake_event(
            "login2",
            301,
            json!({"type": "identify", "anonymousId": "laptop", "userId": "u"}),
        ),
    );
    assert_eq!(u.profiles().count(), 1);
    let p = profile_of(&u, "user_id:u");
    assert_eq!(p.aggregates["revenue"], json!(15.0));
    assert_eq!(p.event_counts.get("Order Completed").copied().unwrap(), 2);
    assert_eq!(
        p.traits.get("city").unwrap().value,
        json!("Paris"),
        "most recent across both profiles"
    );
    assert_eq!(p.first_seen, minutes(0));
    assert_eq!(p.id, profile_of(&u, "anonymous_id:laptop").id);
}

/// Profiles too: any batch split and any redeliveries give the same result.
#[test]
fn profiles_do_not_depend_on_batches_or_redeliveries() {
    let config: ProfileConfig = serde_json::from_value(json!({
        "aggregates": [{"name": "spent", "event": "Buy", "property": "amount", "op": "sum"}]
    }))
    .unwrap();
    let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
    let mut events = Vec::new();
    for i in 0..300 {
        let mut event = json!({"type": "track", "event": "Buy", "anonymousId": format!("a{}", next(60)),
                               "properties": {"amount": next(100)}});
        if next(4) == 0 {
            event = json!({"type": "identify", "anonymousId": format!("a{}", next(60)),
                           "userId": format!("u{}", next(20)), "traits": {"tier": next(3)}});
        }
        events.push(lake_event(&format!("m{i}"), i64::from(i), event));
    }
    let snapshot = |u: &Unifier| {
        let mut profiles: Vec<Profile> = u.profiles().cloned().collect();
        profiles.sort_by(|a, b| a.id.cmp(&b.id));
        profiles
    };
    let mut one = unifier(config.clone());
    for event in &events {
        apply(&mut one, event);
    }
    let reference = snapshot(&one);
    for _ in 0..10 {
        let mut u = unifier(config.clone());
        let mut position = 0;
        while position < events.len() {
            let end = (position + 1 + next(40)).min(events.len());
            for event in &events[position..end] {
                apply(&mut u, event);
            }
            for _ in 0..next(3) {
                assert_eq!(apply(&mut u, &events[next(end)]), Applied::Duplicate);
            }
            position = end;
        }
        assert_eq!(snapshot(&u), reference);
    }
}

#[test]
fn the_profile_api_view_explains_the_profile() {
    let mut u = unifier(ProfileConfig::default());
    apply(
        &mut u,
        &lake_event("a1", 0, json!({"type": "page", "anonymousId": "laptop"})),
    );
    apply(
        &mut u,
        &lake_event("a2", 5, json!({"type": "page", "anonymousId": "phone"})),
    );
    apply(
        &mut u,
        &lake_event(
            "a3",
            9,
            json!({"type": "identify", "anonymousId": "phone", "userId": "u",
                                         "traits": {"plan": "pro"}}),
        ),
    );
    apply(
        &mut u,
        &lake_event(
            "a4",
            10,
            json!({"type": "identify", "anonymousId": "laptop", "userId": "u"}),
        ),
    );
    let view = u
        .profile_json(&Identifier::parse("user_id:u").unwrap())
        .unwrap();
    assert_eq!(view["identifiers"].as_array().unwrap().len(), 3);
    assert_eq!(view["traits"]["plan"]["value"], "pro");
    assert_eq!(view["traits"]["plan"]["messageId"], "a3");
    assert_eq!(view["eventCounts"]["identify"], 2);
    let changes: Vec<&str> = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["created", "created", "linked", "merged"]);
    let merge = &view["history"][3];
    assert_eq!(merge["messageId"], "a4", "the event that caused the merge");
    assert_eq!(merge["via"], json!(["user_id:u", "anonymous_id:laptop"]));
    assert!(
        u.profile_json(&Identifier::parse("user_id:nobody").unwrap())
            .is_none()
    );
}

#[test]
fn lookups_normalise_like_events() {
    let mut rules = IdentityRules::default();
    rules.default_country = Some("33".into());
    let mut s = Scenario::with(rules);
    s.send(
        0,
        json!({"type": "identify", "userId": "u",
                     "traits": {"email": "jane@shop.example", "phone": "+33612345678"}}),
    );
    let profile = s.profile_of("user_id:u");
    for lookup in ["email:Jane@Shop.EXAMPLE", "phone:06 12 34 56 78"] {
        assert_eq!(s.profile_of(lookup), profile, "{lookup}");
    }
}

/// A store in memory, as a platform keeps one: records, the identifier index, the dedupe
/// entries and the counters.
#[derive(Default)]
struct MemoryStore {
    ids: std::collections::BTreeMap<Identifier, ProfileId>,
    records: std::collections::BTreeMap<ProfileId, Vec<u8>>,
    seen: std::collections::BTreeMap<String, Vec<(u64, i64, u64)>>,
    counters: StoredCounters,
}

impl MemoryStore {
    /// Loads into the working set every key the batch reads, as a platform does.
    fn load(&self, u: &mut Unifier, batch: &[Value]) {
        u.load_counters(&self.counters);
        for event in batch {
            let line = event.to_string();
            let lookups = u.lookups(&Event::from_lake_line(&line).unwrap());
            if let Some(message_id) = lookups.message_id
                && !u.graph().holds_message(&message_id)
                && let Some(received) = self.seen.get(&message_id)
            {
                u.load_seen(&message_id, received);
            }
            for id in lookups.identifiers {
                if u.graph().holds(&id) {
                    continue;
                }
                if let Some(profile) = self.ids.get(&id) {
                    u.load_record(&self.records[profile]).unwrap();
                }
            }
        }
    }

    fn save(&mut self, u: &mut Unifier) {
        let changes = u.take_changes();
        for (id, record) in changes.profiles {
            self.records.insert(id, record);
        }
        for id in changes.removed {
            self.records.remove(&id);
        }
        for (id, profile) in changes.identifiers {
            self.ids.insert(id, profile);
        }
        self.seen.extend(changes.seen);
        self.counters = changes.counters;
    }

    fn views(&self) -> Vec<Value> {
        self.records
            .values()
            .map(|record| {
                let (ids, profile) = decode_record(record, &stored_config()).unwrap();
                profile_view(&ids, &profile)
            })
            .collect()
    }
}

fn random_lake_events(seed: u64, count: usize) -> Vec<Value> {
    let mut next = xorshift(seed);
    let mut events = Vec::new();
    for i in 0..count {
        let anonymous = format!("a{}", next(150));
        let mut event = match next(6) {
            0 => json!({"type": "identify", "anonymousId": anonymous,
                        "userId": format!("u{}", next(50)),
                        "traits": {"tier": next(3), "email": format!("e{}@x.example", next(40)),
                                   "tags": [format!("t{}", next(4))]}}),
            1 => json!({"type": "alias", "anonymousId": anonymous,
                        "previousId": format!("a{}", next(150))}),
            2 => json!({"type": "track", "event": "Buy", "anonymousId": anonymous,
                        "userId": "null", "properties": {"amount": f64::from(u32::try_from(next(100)).unwrap()) / 3.0}}),
            3 => json!({"type": "identify", "anonymousId": anonymous,
                        "context": {"device": {"id": format!("d{}", next(30))},
                                    "traits": {"phone": format!("+3361234{:04}", next(60))}}}),
            _ => json!({"type": "page", "anonymousId": anonymous}),
        };
        let at = i64::try_from(i).unwrap() - i64::try_from(next(30)).unwrap();
        event["context"]["sequence"] = json!(i);
        events.push(lake_event(&format!("m{i}"), at, event));
    }
    events
}

/// A configuration with a counted trait and aggregates of both kinds (sums, last values):
/// the state a store must keep exactly.
fn stored_config() -> ProfileConfig {
    serde_json::from_value(json!({
        "traits": {"tier": {"rule": "most_frequent"}},
        "aggregates": [{"name": "spent", "event": "Buy", "property": "amount", "op": "sum"},
                       {"name": "last_amount", "event": "Buy", "property": "amount", "op": "last"}]
    }))
    .unwrap()
}

/// The working set over a store gives what one unifier holding everything gives, however
/// the events are batched, whatever is redelivered, and however little the working set keeps
/// between batches (down to nothing): every key an event reads is loaded before it.
#[test]
fn a_working_set_over_a_store_gives_the_same_profiles() {
    let config = stored_config();
    let events = random_lake_events(0x5DEE_CE66_D1CE_4E5B, 1_500);
    let mut whole = unifier(config.clone());
    for event in &events {
        apply(&mut whole, event);
    }
    let reference = whole.snapshot();
    assert!(reference.len() > 40, "{} profiles", reference.len());
    assert!(
        reference
            .iter()
            .any(|p| p["history"].as_array().unwrap().len() > 4),
        "some profiles merged"
    );
    let mut next = xorshift(0x0123_4567_89AB_CDEF);
    for keep in [0, 3, 40, usize::MAX] {
        let mut store = MemoryStore::default();
        let mut u = unifier(config.clone());
        let mut position = 0;
        while position < events.len() {
            let end = (position + 1 + next(60)).min(events.len());
            let mut batch = events[position..end].to_vec();
            for _ in 0..next(3) {
                batch.push(events[next(end)].clone());
            }
            store.load(&mut u, &batch);
            for event in &batch {
                apply(&mut u, event);
            }
            store.save(&mut u);
            u.forget_seen();
            u.take_log();
            u.evict_to(keep);
            position = end;
        }
        assert!(
            store.views() == reference,
            "keeping {keep} profiles between batches changed the result"
        );
        assert_eq!(store.counters, whole.counters());
    }
}

#[test]
fn records_read_back_as_written() {
    let config = stored_config();
    let mut u = unifier(config);
    for event in random_lake_events(7, 600) {
        apply(&mut u, &event);
    }
    let mut checked = 0;
    for ids in u.graph().profiles() {
        let profile = u.profile(&ids.id).unwrap();
        let (ids_back, profile_back) =
            decode_record(&encode_record(ids, profile, u.config()), u.config()).unwrap();
        assert_eq!(&ids_back, ids);
        assert_eq!(&profile_back, profile);
        checked += 1;
    }
    assert!(checked > 40);
    let error = decode_record(br#"{"v": 9}"#, u.config())
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("not a profile record"), "{error}");
}

#[test]
fn the_dedupe_window_counts_from_when_events_were_received() {
    let mut u = unifier(ProfileConfig::default());
    let event = |received: &str| {
        let mut e = lake_event(
            "same-id",
            0,
            json!({"type": "track", "event": "E", "userId": "u"}),
        );
        e["receivedAt"] = json!(received);
        e
    };
    assert!(matches!(
        apply(&mut u, &event("2024-05-01T10:00:00.000Z")),
        Applied::Profile(_)
    ));
    assert_eq!(
        apply(&mut u, &event("2024-05-08T09:59:59.000Z")),
        Applied::Duplicate,
        "a redelivery within 7 days"
    );
    assert!(
        matches!(
            apply(&mut u, &event("2024-05-08T10:00:01.000Z")),
            Applied::Profile(_)
        ),
        "past the window the id counts again"
    );
    assert_eq!(
        profile_of(&u, "user_id:u")
            .event_counts
            .get("E")
            .copied()
            .unwrap(),
        2
    );
}

#[test]
fn left_out_identifiers_are_explained_once_in_the_profile() {
    let mut s = Scenario::new();
    s.send(
        0,
        json!({"type": "identify", "anonymousId": "family-laptop", "userId": "mum"}),
    );
    for at in 1..5 {
        s.send(
            at,
            json!({"type": "track", "event": "E", "anonymousId": "family-laptop", "userId": "son"}),
        );
    }
    let son = s.profile_of("user_id:son");
    let drops: Vec<&LogEntry> = s
        .graph
        .history(&son)
        .iter()
        .filter(|e| matches!(e.change, Change::Dropped(_)))
        .collect();
    assert_eq!(drops.len(), 1, "{drops:#?}");
    assert_eq!(
        drops[0].message_id, "m2",
        "the first event that left it out"
    );
    let unifier_view = {
        let mut u = unifier(ProfileConfig::default());
        apply(
            &mut u,
            &lake_event(
                "x1",
                0,
                json!({"type": "identify", "anonymousId": "l", "userId": "mum"}),
            ),
        );
        apply(
            &mut u,
            &lake_event(
                "x2",
                1,
                json!({"type": "identify", "anonymousId": "l", "userId": "son"}),
            ),
        );
        u.profile_json(&Identifier::parse("user_id:son").unwrap())
            .unwrap()
    };
    assert_eq!(
        unifier_view["history"][1],
        json!({"change": "dropped", "identifier": "anonymous_id:l",
               "reason": "linking it would put two values of a unique type in one profile",
               "messageId": "x2", "at": "2024-05-01T10:01:00.000Z"})
    );
}

/// The attack of a public write key on one profile: a new anonymous id on every event (past
/// the type's limit), a new trait and a new event name on every event, a list trait and a
/// most-frequent trait with a new value each time. Every structure of the profile stays
/// bounded, what was kept out is counted, and the record reads back as written.
#[test]
fn a_hot_profile_stays_bounded_and_counts_what_it_kept_out() {
    let config: ProfileConfig = serde_json::from_value(json!({
        "traits": {"colour": {"rule": "most_frequent"}},
        "max_traits": 50, "max_event_names": 20
    }))
    .unwrap();
    let mut u = unifier(config);
    let events = 3_000;
    for i in 0..events {
        let event = json!({
            "type": "identify", "event": format!("E{i}"), "userId": "victim",
            "anonymousId": format!("visitor-{i}"),
            "traits": {format!("t{i}"): i, "tags": [format!("tag-{i}")], "colour": format!("c{i}"),
                       "blob": "x".repeat(if i == 7 { 5_000 } else { 1 })},
        });
        apply(&mut u, &lake_event(&format!("m{i}"), i, event));
        let track = json!({"type": "track", "event": format!("E{i}"), "userId": "victim"});
        apply(&mut u, &lake_event(&format!("t{i}"), i, track));
    }
    let ids = u
        .graph()
        .profile_of(&Identifier::parse("user_id:victim").unwrap())
        .unwrap();
    let profile = u.profile(&ids.id).unwrap();
    // Identity: the type's limit of 5 anonymous ids, the first 100 drops listed, the rest
    // counted.
    assert_eq!(ids.identifiers.len(), 6);
    let listed = ids
        .history
        .iter()
        .filter(|e| matches!(e.change, Change::Dropped(_)))
        .count();
    assert_eq!(listed, MAX_LISTED_DROPS);
    assert_eq!(ids.unlisted_drops, u64::try_from(events).unwrap() - 5 - 100);
    assert!(ids.history.len() < 120, "{}", ids.history.len());
    // Profile: 50 traits, 20 event names, lists and counts capped.
    assert_eq!(profile.traits.len(), 50);
    // t0..t46 and three more fill the 50; every later t{i} and the 5 KB value were refused.
    assert_eq!(
        profile.refused_traits,
        u64::try_from(events).unwrap() - 47 + 1
    );
    assert_eq!(profile.event_counts.len(), 20);
    let counted: u64 = profile.event_counts.values().sum();
    assert_eq!(
        counted + profile.other_events,
        2 * u64::try_from(events).unwrap()
    );
    assert_eq!(
        profile
            .traits
            .get("tags")
            .unwrap()
            .value
            .as_array()
            .unwrap()
            .len(),
        MAX_LIST_ITEMS
    );
    assert_eq!(
        profile.traits.get("tags").unwrap().value[MAX_LIST_ITEMS - 1],
        json!(format!("tag-{}", events - 1)),
        "the newest items"
    );
    assert_eq!(
        profile.traits.get("colour").unwrap().counts.len(),
        MAX_COUNTED_VALUES
    );
    assert_eq!(
        profile.traits.get("blob").unwrap().value,
        json!("x"),
        "the 5 KB value was not kept"
    );
    let record = encode_record(ids, profile, u.config());
    assert!(record.len() < 64 * 1024, "{} bytes", record.len());
    let (ids_back, profile_back) = decode_record(&record, u.config()).unwrap();
    assert_eq!((&ids_back, &profile_back), (ids, profile));
    let view = u
        .profile_json(&Identifier::parse("user_id:victim").unwrap())
        .unwrap();
    assert_eq!(view["overLimits"]["unlistedDrops"], ids.unlisted_drops);
    assert_eq!(
        view["overLimits"]["eventsOfUncountedNames"],
        profile.other_events
    );
}

/// Space-Saving keeps a stream's most frequent value counted once the counts are full.
#[test]
fn a_most_frequent_trait_finds_the_most_frequent_value_in_bounded_space() {
    let config: ProfileConfig =
        serde_json::from_value(json!({"traits": {"colour": {"rule": "most_frequent"}}})).unwrap();
    let mut u = unifier(config);
    let mut next = xorshift(11);
    for i in 0..5_000_i64 {
        // "blue" one time in four, else one of 2,000 other values.
        let colour = if next(4) == 0 {
            "blue".to_owned()
        } else {
            format!("c{}", next(2_000))
        };
        let event = json!({"type": "identify", "userId": "u", "traits": {"colour": colour}});
        apply(&mut u, &lake_event(&format!("m{i}"), i, event));
    }
    let profile = profile_of(&u, "user_id:u");
    assert_eq!(profile.traits.get("colour").unwrap().value, json!("blue"));
    assert!(profile.traits.get("colour").unwrap().counts.len() <= MAX_COUNTED_VALUES);
}

/// The limits on identifiers and merges per profile hold whatever the types' limits say: an
/// event that would pass one drops its weakest identifiers, and says why.
#[test]
fn identifiers_and_merges_per_profile_are_bounded() {
    let mut rules = IdentityRules::default();
    rules.types.get_mut("anonymous_id").unwrap().limit = 10_000;
    rules.max_identifiers = 30;
    rules.max_merges = 3;
    let mut s = Scenario::with(rules.compiled().unwrap());
    s.send(
        0,
        json!({"type": "identify", "userId": "u", "anonymousId": "a0"}),
    );
    for i in 1..60 {
        s.send(
            i,
            json!({"type": "track", "event": "E", "userId": "u", "anonymousId": format!("a{i}")}),
        );
    }
    let u = s.graph.profile(&s.profile_of("user_id:u")).unwrap().clone();
    assert_eq!(u.identifiers.len(), 30);
    assert!(u.history.iter().any(|e| matches!(
        &e.change,
        Change::Dropped(d) if d.reason == DropReason::TooManyIdentifiers(30)
    )));
    // Merges: an email links one anonymous profile after another into one profile.
    for i in 0..6 {
        s.send(
            100 + i,
            json!({"type": "track", "event": "E", "anonymousId": format!("b{i}")}),
        );
        s.send(
            200 + i,
            json!({"type": "identify", "anonymousId": format!("b{i}"), "traits": {"email": "x@mail.example"}}),
        );
    }
    let joined = s
        .graph
        .profile(&s.profile_of("email:x@mail.example"))
        .unwrap();
    assert_eq!(joined.merges, 3);
    assert!(joined.history.iter().any(|e| matches!(
        &e.change,
        Change::Dropped(d) if d.reason == DropReason::TooManyMerges(3)
    )));
    // The anonymous profiles past the limit stay apart.
    assert_ne!(s.profile_of("anonymous_id:b5"), joined.id);
}

/// Identity injection (`docs/trust.md`): events as collection stamps them from request bodies,
/// unified, and the edge entries personalization reads.
mod trust {
    use serde_json::{Value, json};

    use super::{lake_event, minutes};
    use crate::activate::personalize::{answers, edge_entries, edge_key};
    use crate::catalogue::CatalogueConfig;
    use crate::catalogue::validate::Limits;
    use crate::collect::{
        ParsedBody, RequestInfo, Trust, browser_id, identity_hash, process_batch,
    };
    use crate::event::{Event, EventType};
    use crate::unify::{
        Change, DropReason, IdType, Identifier, IdentityRules, ProfileConfig, Unifier,
    };

    const SECRET: &[u8] = b"identity-secret";

    /// The lake line collection writes for `event` sent with `trust`.
    fn collected(event: &Value, trust: Trust<'_>) -> Value {
        let body = event.to_string();
        let kind = EventType::parse(event["type"].as_str().unwrap());
        let parsed = ParsedBody::parse(body.as_bytes(), kind, &Limits::default()).unwrap();
        let info = RequestInfo {
            workspace: "w",
            received_at: minutes(0),
            client_ip: None,
            user_agent: None,
            anonymous_id: None,
            location: None,
            edge: None,
            trust,
        };
        let outcome = process_batch(parsed, &info, &CatalogueConfig::default());
        assert_eq!(outcome.accepted_count, 1, "{:?}", outcome.failed);
        serde_json::from_slice(&outcome.accepted).unwrap()
    }

    struct Site {
        unifier: Unifier,
        next: i64,
    }

    impl Site {
        fn new(strict: bool) -> Site {
            let mut rules = IdentityRules::default();
            rules.verify_identity = strict;
            Site {
                unifier: Unifier::new(rules, ProfileConfig::default()),
                next: 0,
            }
        }

        /// Sends `event` from the browser whose credential cookie is `credential`.
        fn browser(&mut self, credential: &str, event: &Value) {
            let browser = browser_id(credential);
            let trust = Trust::Client {
                secret: Some(SECRET),
                browser: Some(&browser),
            };
            self.unify(collected(event, trust));
        }

        fn server(&mut self, event: &Value) {
            self.unify(collected(event, Trust::Server));
        }

        fn unify(&mut self, line: Value) {
            self.next += 1;
            let line = lake_event(&format!("m{}", self.next), self.next, line);
            self.unifier
                .apply(&Event::from_lake_line(&line.to_string()).unwrap());
        }

        /// What personalization answers the browser `credential`: its entry's traits.
        fn personalized(&self, credential: &str) -> Option<Value> {
            let id = Identifier::new(IdType::Browser, browser_id(credential));
            let key = edge_key(b"kv", &id);
            edge_entries(&self.unifier, b"kv", &["plan".to_owned()])
                .into_iter()
                .find(|(k, _)| *k == key)
                .map(|(_, value)| serde_json::from_str::<Value>(&value).unwrap()["traits"].clone())
        }

        fn plan(&self, id: &str) -> Value {
            let profile = self
                .unifier
                .graph()
                .profile_of(&Identifier::parse(id).unwrap())
                .unwrap();
            let traits = &self.unifier.profile(&profile.id).unwrap().traits;
            traits.get("plan").map_or(Value::Null, |t| t.value.clone())
        }
    }

    fn hash(kind: &IdType, value: &str) -> String {
        identity_hash(SECRET, kind, value).unwrap()
    }

    /// The victim logs in on their browser with a proof; the attacker, on theirs, claims the
    /// victim's user id and email without one.
    fn attack(site: &mut Site) {
        site.browser(
            "victim-browser-credential",
            &json!({"type": "identify", "userId": "victim", "anonymousId": "victim-anon",
                "traits": {"email": "Victim@Example.com", "plan": "pro"},
                "context": {"braid": {"userHash": hash(&IdType::UserId, "victim"),
                    "emailHash": hash(&IdType::Email, "victim@example.com")}}}),
        );
        site.browser(
            "attacker-browser-credential",
            &json!({"type": "identify", "userId": "victim", "anonymousId": "attacker-anon",
                "traits": {"email": "victim@example.com", "plan": "free-HIJACKED"},
                "context": {"braid": {"trusted": true, "verified": ["user_id", "email"],
                    "browser": browser_id("victim-browser-credential"), "userHash": "00"}}}),
        );
    }

    #[test]
    fn collection_keeps_only_what_the_request_proves() {
        let claims = json!({"braid": {"trusted": true, "verified": ["user_id"], "browser": "b",
            "userHash": hash(&IdType::UserId, "u")}});
        let sent = json!({"type": "identify", "userId": "u", "context": claims});
        // A public key without a secret proves nothing, and what the client wrote is gone.
        let line = collected(&sent, Trust::default());
        assert_eq!(line["context"].get("braid"), None, "{line}");
        // With the secret, the user hash proves the user id; the hash itself is not kept.
        let trust = Trust::Client {
            secret: Some(SECRET),
            browser: Some("b1"),
        };
        let line = collected(&sent, trust);
        assert_eq!(
            line["context"]["braid"],
            json!({"verified": ["user_id"], "browser": "b1"})
        );
        // A hash of another id, or under another secret, proves nothing.
        for wrong in [
            hash(&IdType::UserId, "v"),
            identity_hash(b"other", &IdType::UserId, "u").unwrap(),
        ] {
            let event = json!({"type": "identify", "userId": "u",
                "context": {"braid": {"userHash": wrong}}});
            assert_eq!(
                collected(&event, trust)["context"]["braid"],
                json!({"browser": "b1"})
            );
        }
        // An email proof holds for the value as unify normalises it, and only when every email
        // of the event is that one.
        let proof = hash(&IdType::Email, "jane@example.com");
        let event = |context_email: &str| {
            json!({"type": "identify", "userId": "u", "traits": {"email": " Jane@Example.COM "},
                "context": {"traits": {"email": context_email}, "braid": {"emailHash": proof}}})
        };
        assert_eq!(
            collected(&event("jane@example.com"), trust)["context"]["braid"]["verified"],
            json!(["email"])
        );
        assert_eq!(
            collected(&event("other@example.com"), trust)["context"]["braid"].get("verified"),
            None
        );
        // A server key's events are trusted.
        assert_eq!(
            collected(&sent, Trust::Server)["context"]["braid"],
            json!({"trusted": true})
        );
    }

    #[test]
    fn a_claimed_identity_never_reads_the_profile_it_claims() {
        let mut site = Site::new(false);
        attack(&mut site);
        // By default the claim links (the graph trusts what it is told), but only the browser
        // that proved the link reads the profile.
        let victim = site
            .unifier
            .graph()
            .profile_of(&Identifier::parse("user_id:victim").unwrap())
            .unwrap();
        let attacker = Identifier::new(IdType::Browser, browser_id("attacker-browser-credential"));
        assert!(victim.identifiers.contains_key(&attacker));
        assert!(!answers(victim, &attacker));
        assert_eq!(site.personalized("attacker-browser-credential"), None);
        assert!(site.personalized("victim-browser-credential").is_some());
        // Nor does the attacker's anonymous id, for a token naming it.
        let anon = Identifier::new(IdType::AnonymousId, "attacker-anon");
        assert!(!answers(victim, &anon));
        assert!(answers(
            victim,
            &Identifier::new(IdType::AnonymousId, "victim-anon")
        ));
    }

    #[test]
    fn an_unproven_merge_does_not_open_one_persons_profile_to_another() {
        let mut site = Site::new(false);
        // The victim is known from a CRM import (a server key): an email and a plan.
        site.server(&json!({"type": "identify", "anonymousId": "crm-row-7",
            "traits": {"email": "victim@example.com", "plan": "pro"}}));
        // The attacker logs in to their own account, proven, then claims the victim's email.
        site.browser(
            "attacker-browser-credential",
            &json!({"type": "identify", "userId": "attacker",
                "context": {"braid": {"userHash": hash(&IdType::UserId, "attacker")}}}),
        );
        assert_eq!(
            site.personalized("attacker-browser-credential"),
            Some(json!({}))
        );
        site.browser(
            "attacker-browser-credential",
            &json!({"type": "identify", "anonymousId": "attacker-anon",
                "traits": {"email": "victim@example.com"}}),
        );
        // The claim merged the two profiles (the default graph believes it), yet the
        // attacker's browser is proven to its own account only, not to the victim's email.
        let merged = site
            .unifier
            .graph()
            .profile_of(&Identifier::parse("email:victim@example.com").unwrap())
            .unwrap();
        assert!(
            merged
                .identifiers
                .contains_key(&Identifier::parse("user_id:attacker").unwrap())
        );
        assert_eq!(site.personalized("attacker-browser-credential"), None);
    }

    #[test]
    fn strict_identity_links_only_what_is_proven() {
        let mut site = Site::new(true);
        attack(&mut site);
        let graph = site.unifier.graph();
        let victim = graph
            .profile_of(&Identifier::parse("user_id:victim").unwrap())
            .unwrap();
        let attacker = Identifier::new(IdType::Browser, browser_id("attacker-browser-credential"));
        assert!(!victim.identifiers.contains_key(&attacker));
        let theirs = graph.profile_of(&attacker).unwrap();
        assert_ne!(theirs.id, victim.id);
        assert!(theirs.history.iter().any(|e| matches!(&e.change,
            Change::Dropped(d) if d.reason == DropReason::Unverified && d.value == "victim")));
        // The victim's traits stand; the claim is kept where it belongs, on the attacker's own
        // anonymous profile.
        assert_eq!(site.plan("user_id:victim"), json!("pro"));
        assert_eq!(
            site.plan("anonymous_id:attacker-anon"),
            json!("free-HIJACKED")
        );
        // The victim's own browser goes on without a proof on every event: its link is proven.
        site.browser(
            "victim-browser-credential",
            &json!({"type": "identify", "userId": "victim", "traits": {"plan": "team"}}),
        );
        assert_eq!(site.plan("user_id:victim"), json!("team"));
        assert_eq!(
            site.personalized("victim-browser-credential"),
            Some(json!({"plan": "team"}))
        );
    }
}

/// A `messageId` is scoped by its sender: a retry is applied once, another user's event that
/// reuses the id is applied too (and counted), and its own retry is not applied again.
#[test]
fn a_message_id_reused_by_another_sender_is_not_dropped() {
    let mut u = unifier(ProfileConfig::default());
    let track = |user: &str| json!({"type": "track", "event": "Bought", "userId": user});
    for (id, user) in [
        ("m1", "u1"),
        ("m1", "u1"),
        ("m1", "u2"),
        ("m1", "u2"),
        ("m2", "u2"),
    ] {
        apply(&mut u, &lake_event(id, 0, track(user)));
    }
    assert_eq!(
        profile_of(&u, "user_id:u1")
            .event_counts
            .get("Bought")
            .copied()
            .unwrap(),
        1
    );
    assert_eq!(
        profile_of(&u, "user_id:u2")
            .event_counts
            .get("Bought")
            .copied()
            .unwrap(),
        2
    );
    assert_eq!(u.counters().collisions, 1);
    // The store's dedupe entry keeps both senders, and reads back as written.
    let changes = u.take_changes();
    let (_, senders) = changes.seen.iter().find(|(id, _)| id == "m1").unwrap();
    assert_eq!(senders.len(), 2);
    assert_eq!(decode_seen(&encode_seen(senders)).unwrap(), *senders);
}
