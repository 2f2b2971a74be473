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
    let value = |key: &str| p.traits[key].value.clone();
    assert_eq!(value("name"), json!("Jane D."), "most recent by event time");
    assert_eq!(value("signup_channel"), json!("ads"), "first seen");
    assert_eq!(
        value("favourite_colour"),
        json!("blue"),
        "blue 3 times, red twice (last)"
    );
    assert_eq!(value("plan"), json!("pro"), "the CRM outranks the website");
    assert_eq!(p.traits["plan"].source.as_deref(), Some("crm"));
    assert_eq!(value("tags"), json!(["a", "b"]), "lists are unioned");
    assert_eq!(p.traits["name"].message_id, "t1");
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
        profile_of(&u, "anonymous_id:a").traits["step"].value,
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
    assert_eq!(p.event_counts["page"], 1);
    assert_eq!(p.event_counts["Order Completed"], 3);
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
    assert_eq!(p.event_counts["Order Completed"], 2);
    assert_eq!(
        p.traits["city"].value,
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
    seen: std::collections::BTreeMap<String, i64>,
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
                u.load_seen(&message_id, *received);
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
                let (ids, profile) = decode_record(record).unwrap();
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
        let (ids_back, profile_back) = decode_record(&encode_record(ids, profile)).unwrap();
        assert_eq!(&ids_back, ids);
        assert_eq!(&profile_back, profile);
        checked += 1;
    }
    assert!(checked > 40);
    let error = decode_record(br#"{"v": 9}"#).unwrap_err().to_string();
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
    assert_eq!(profile_of(&u, "user_id:u").event_counts["E"], 2);
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
