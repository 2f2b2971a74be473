//! Scenario tests with exact memberships and change logs, and the property that streaming
//! evaluation with timers equals an evaluation from scratch.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::*;
use crate::Config;
use crate::event::Event;
use crate::timestamp;
use crate::unify::computed::{DAY_MILLIS, HOUR_MILLIS};
use crate::unify::{IdType, Identifier, Unifier};

/// 2026-03-02T00:00:00Z, a midnight.
const T0: i64 = 1_772_409_600_000;

fn time(ms: i64) -> String {
    timestamp::format(timestamp::from_unix_millis(ms).unwrap())
}

/// A unifier with segmentation, fed JSON events.
struct Stream {
    unifier: Unifier,
    segments: Segments,
    log: Vec<Logged>,
    next: usize,
}

impl Stream {
    fn new(toml: &str) -> Stream {
        let config = Config::parse(toml).unwrap().check().unwrap();
        Stream {
            unifier: Unifier::new(config.unify.identity.clone(), config.unify.profiles.clone()),
            segments: config.segments().unwrap(),
            log: Vec::new(),
            next: 0,
        }
    }

    /// Sends `event` happening at `at` and received at `received` (ms).
    fn send_at(&mut self, at: i64, received: i64, mut event: Value) {
        self.next += 1;
        let fields = event.as_object_mut().unwrap();
        fields
            .entry("messageId")
            .or_insert_with(|| json!(format!("m{}", self.next)));
        fields.insert("timestamp".into(), json!(time(at)));
        fields.insert("receivedAt".into(), json!(time(received)));
        fields.entry("type").or_insert_with(|| json!("track"));
        let line = event.to_string();
        let event = Event::from_lake_line(&line).unwrap();
        self.segments
            .apply(&mut self.unifier, &event, 0, &mut self.log);
    }

    fn send(&mut self, at: i64, event: Value) {
        self.send_at(at, at, event);
    }

    /// Fires every timer due up to `until`.
    fn sweep(&mut self, until: i64) {
        let ids: Vec<String> = self.unifier.profiles().map(|p| p.id.clone()).collect();
        for id in ids {
            self.segments
                .fire_due(&mut self.unifier, &id, until, &mut self.log);
        }
    }

    fn profile_with(&self, id: &Identifier) -> String {
        self.unifier.graph().profile_of(id).unwrap().id.clone()
    }

    fn profile_of(&self, user: &str) -> String {
        let id = Identifier::new(IdType::UserId, user.to_owned());
        self.unifier.graph().profile_of(&id).unwrap().id.clone()
    }

    fn members(&self, user: &str) -> BTreeMap<String, i64> {
        self.members_of(&self.profile_of(user))
    }

    fn members_of(&self, profile: &str) -> BTreeMap<String, i64> {
        let audiences = &self.unifier.profile(profile).unwrap().segment.audiences;
        audiences
            .iter()
            .map(|(k, at)| (k.to_string(), *at))
            .collect()
    }

    /// The log as `(kind, key, at)` for one profile id.
    fn changes(&self, profile: &str) -> Vec<(&'static str, String, i64)> {
        self.log
            .iter()
            .filter(|l| *l.profile == *profile)
            .map(|l| match &l.change {
                LoggedChange::Entered { audience, .. } => {
                    ("entered", audience.key.to_string(), l.at)
                }
                LoggedChange::Exited { audience, .. } => ("exited", audience.key.to_string(), l.at),
                LoggedChange::Computed { name, .. } => ("computed", name.to_string(), l.at),
                LoggedChange::Updated => ("updated", String::new(), l.at),
                LoggedChange::Merged { into } => ("merged", into.to_string(), l.at),
            })
            .collect()
    }
}

impl Stream {
    /// The computed values logged for one profile id: `(name, at, value)`.
    fn computed_log(&self, profile: &str) -> Vec<(String, i64, Value)> {
        self.log
            .iter()
            .filter(|l| *l.profile == *profile)
            .filter_map(|l| match &l.change {
                LoggedChange::Computed { name, value, .. } => {
                    Some((name.to_string(), l.at, value.clone()))
                }
                _ => None,
            })
            .collect()
    }
}

fn order(user: &str) -> Value {
    json!({"event": "Order Completed", "userId": user, "properties": {"total": 20}})
}

#[test]
fn a_recent_buyer_leaves_at_the_midnight_the_window_moves() {
    let mut s = Stream::new(
        r#"
[segment.audiences.recent_buyers]
name = "Recent buyers"
when = {performed = "Order Completed", window = "7d"}
"#,
    );
    let at = T0 + 10 * HOUR_MILLIS;
    s.send(at, order("u1"));
    let p = s.profile_of("u1");
    assert_eq!(
        s.members("u1"),
        BTreeMap::from([("recent_buyers".into(), at)])
    );
    assert_eq!(
        s.unifier.profile(&p).unwrap().segment.next_check,
        Some(T0 + 7 * DAY_MILLIS)
    );
    s.sweep(T0 + 7 * DAY_MILLIS - 1);
    assert_eq!(s.members("u1").len(), 1);
    s.sweep(T0 + 10 * DAY_MILLIS);
    assert!(s.members("u1").is_empty());
    assert_eq!(
        s.changes(&p),
        [
            ("entered", "recent_buyers".into(), at),
            ("exited", "recent_buyers".into(), T0 + 7 * DAY_MILLIS),
        ]
    );
    let LoggedChange::Exited { reasons, audience } = &s.log[1].change else {
        panic!("{:?}", s.log);
    };
    assert_eq!(audience.name, "Recent buyers");
    assert_eq!(
        reasons.words(audience),
        ["not (performed Order Completed in the last 7 days)"]
    );
    // Nothing left to wait for.
    assert_eq!(s.unifier.profile(&p).unwrap().segment.next_check, None);
}

#[test]
fn lapsed_customers_enter_when_their_last_order_ages_past_30_days() {
    let mut s = Stream::new(
        r#"
[segment.audiences.lapsed]
when = {and = [{performed = "Order Completed", window = "30d..90d"},
               {not_performed = "Order Completed", window = "30d"}]}
"#,
    );
    s.send(T0 + HOUR_MILLIS, order("u1"));
    s.sweep(T0 + 29 * DAY_MILLIS);
    assert!(s.members("u1").is_empty());
    s.sweep(T0 + 30 * DAY_MILLIS);
    assert_eq!(
        s.members("u1"),
        BTreeMap::from([("lapsed".into(), T0 + 30 * DAY_MILLIS)])
    );
    // Another order brings them back: out at once.
    let back = T0 + 40 * DAY_MILLIS;
    s.send(back, order("u1"));
    assert!(s.members("u1").is_empty());
    let p = s.profile_of("u1");
    assert_eq!(
        s.changes(&p),
        [
            ("entered", "lapsed".into(), T0 + 30 * DAY_MILLIS),
            ("exited", "lapsed".into(), back),
        ]
    );
}

#[test]
fn a_date_trait_ages_out_at_the_exact_millisecond() {
    let mut s = Stream::new(
        r#"
[segment.audiences.new_signups]
when = {trait = "signed_up_at", op = "within_last_days", value = 7}
"#,
    );
    let signed = T0 + 5 * HOUR_MILLIS + 1_234;
    s.send(
        signed + 60_000,
        json!({"type": "identify", "userId": "u1", "traits": {"signed_up_at": time(signed)}}),
    );
    let p = s.profile_of("u1");
    s.sweep(signed + 7 * DAY_MILLIS - 1);
    assert_eq!(s.members("u1").len(), 1);
    s.sweep(signed + 7 * DAY_MILLIS);
    assert_eq!(
        s.changes(&p),
        [
            ("entered", "new_signups".into(), signed + 60_000),
            ("exited", "new_signups".into(), signed + 7 * DAY_MILLIS),
        ]
    );
}

#[test]
fn days_start_at_midnight_in_the_workspace_time_zone() {
    let toml = r#"
[unify.profiles]
utc_offset_minutes = 60
[segment.audiences.today]
when = {performed = "Order Completed", window = "1d"}
"#;
    let mut s = Stream::new(toml);
    // 23:30 UTC is 00:30 the next day in the workspace: the window lasts that local day, to
    // 23:00 UTC.
    let late = T0 - 30 * 60_000;
    s.send(late, order("u1"));
    s.sweep(T0 + 22 * HOUR_MILLIS);
    assert_eq!(s.members("u1").len(), 1);
    s.sweep(T0 + 23 * HOUR_MILLIS);
    let p = s.profile_of("u1");
    assert_eq!(
        s.changes(&p),
        [
            ("entered", "today".into(), late),
            ("exited", "today".into(), T0 + 23 * HOUR_MILLIS),
        ]
    );
    // In UTC the same order's day ends at T0.
    let mut utc = Stream::new(&toml.replace("utc_offset_minutes = 60", ""));
    utc.send(late, order("u1"));
    utc.sweep(T0 + 23 * HOUR_MILLIS);
    let p = utc.profile_of("u1");
    assert_eq!(utc.changes(&p)[1], ("exited", "today".into(), T0));
}

#[test]
fn a_late_event_outside_the_window_does_not_count() {
    let mut s = Stream::new(
        r#"
[segment.audiences.buyers_30d]
when = {performed = "Order Completed", window = "30d"}
"#,
    );
    let now = T0 + 100 * DAY_MILLIS;
    s.send_at(now - 40 * DAY_MILLIS, now, order("u1"));
    assert!(s.members("u1").is_empty());
    // Late but inside the window: it counts, and leaves when its own day does.
    let when = now - 20 * DAY_MILLIS;
    s.send_at(when, now, order("u1"));
    assert_eq!(s.members("u1").len(), 1);
    let p = s.profile_of("u1");
    let day = when.div_euclid(DAY_MILLIS) * DAY_MILLIS;
    assert_eq!(
        s.unifier.profile(&p).unwrap().segment.next_check,
        Some(day + 30 * DAY_MILLIS)
    );
}

#[test]
fn a_funnel_enters_on_the_second_step_and_leaves_with_the_window() {
    let mut s = Stream::new(
        r#"
[segment.audiences.converted]
when = {performed = "Product Viewed", where = [{property = "category", op = "=", value = "shoes"}], then = "Order Completed", then_where = [{property = "total", op = ">=", value = 10}], within = "1h", window = "7d"}
"#,
    );
    let view = |category: &str| json!({"event": "Product Viewed", "userId": "u1", "properties": {"category": category}});
    let at = T0 + 10 * HOUR_MILLIS;
    // A hat viewed, then an order: not the shoes the funnel starts with.
    s.send(at, view("hats"));
    s.send(at + 60_000, order("u1"));
    assert!(s.members("u1").is_empty());
    // Shoes viewed, an order of 5 (filtered out), then one of 20 after 61 minutes: too late.
    s.send(at + 2 * HOUR_MILLIS, view("shoes"));
    s.send(
        at + 2 * HOUR_MILLIS + 60_000,
        json!({"event": "Order Completed", "userId": "u1", "properties": {"total": 5}}),
    );
    s.send(at + 3 * HOUR_MILLIS + 60_000, order("u1"));
    assert!(s.members("u1").is_empty());
    // A late view arrives, 50 minutes before that order: the order becomes a completion.
    let bought = at + 3 * HOUR_MILLIS + 60_000;
    s.send_at(bought - 50 * 60_000, bought + HOUR_MILLIS, view("shoes"));
    assert_eq!(
        s.members("u1"),
        BTreeMap::from([("converted".into(), bought + HOUR_MILLIS)])
    );
    let p = s.profile_of("u1");
    let (ids, profile) = s.unifier.profile_and_ids(&p).unwrap();
    let explained = s.segments.explain(
        ids,
        profile,
        s.unifier.config(),
        "converted",
        bought + HOUR_MILLIS,
    );
    let explained = explained.unwrap();
    let text = explained["explanation"]["condition"].as_str().unwrap();
    assert_eq!(explained["explanation"]["count"], 1);
    assert!(
        text.contains("performed Product Viewed where category = \"shoes\" then Order Completed where total >= 10 within 1 hour in the last 7 days"),
        "{text}"
    );
    // Out at the midnight the order's day leaves the 7 days.
    s.sweep(T0 + 8 * DAY_MILLIS);
    assert!(s.members("u1").is_empty());
    assert_eq!(
        s.changes(&p),
        [
            ("entered", "converted".to_owned(), bought + HOUR_MILLIS),
            ("exited", "converted".to_owned(), T0 + 7 * DAY_MILLIS),
        ]
    );
}

#[test]
fn duplicate_deliveries_change_nothing() {
    let mut s = Stream::new(
        r#"
[[unify.profiles.computed]]
name = "orders"
event = "Order Completed"
op = "count"
[segment.audiences.repeat]
when = {performed = "Order Completed", at_least = 2}
"#,
    );
    let mut event = order("u1");
    event["messageId"] = json!("same");
    s.send(T0, event.clone());
    s.send(T0 + 1_000, event.clone());
    s.send(T0 + 2_000, event);
    let p = s.profile_of("u1");
    assert!(s.members("u1").is_empty());
    assert_eq!(s.changes(&p), [("computed", "orders".into(), T0)]);
    s.send(T0 + 3_000, order("u1"));
    assert_eq!(s.members("u1").len(), 1);
}

#[test]
fn a_merge_exits_the_absorbed_profile_and_evaluates_the_survivor() {
    let mut s = Stream::new(
        r#"
[segment.audiences.one_order]
when = {performed = "Order Completed"}
[segment.audiences.two_orders]
when = {performed = "Order Completed", at_least = 2}
"#,
    );
    s.send(T0, json!({"event": "Order Completed", "anonymousId": "a1"}));
    s.send(T0 + 1_000, order("u1"));
    let anonymous = s
        .unifier
        .graph()
        .profile_of(&Identifier::new(IdType::AnonymousId, "a1".to_owned()))
        .unwrap()
        .id
        .clone();
    let known = s.profile_of("u1");
    assert_ne!(anonymous, known);
    // The anonymous visitor logs in: the two profiles are one, with two orders.
    s.send(
        T0 + 2_000,
        json!({"type": "identify", "anonymousId": "a1", "userId": "u1"}),
    );
    let survivor = s.profile_of("u1");
    let gone = if survivor == anonymous {
        &known
    } else {
        &anonymous
    };
    assert_eq!(
        s.changes(gone),
        [
            (
                "entered",
                "one_order".into(),
                T0.max(if gone == &known { T0 + 1_000 } else { T0 })
            ),
            ("exited", "one_order".into(), T0 + 2_000),
        ]
    );
    assert_eq!(
        s.members("u1").keys().collect::<Vec<_>>(),
        ["one_order", "two_orders"]
    );
    let LoggedChange::Exited { reasons, audience } = &s
        .log
        .iter()
        .find(|l| *l.profile == **gone && matches!(l.change, LoggedChange::Exited { .. }))
        .unwrap()
        .change
    else {
        unreachable!()
    };
    assert_eq!(reasons.words(audience), [format!("merged into {survivor}")]);
}

#[test]
fn audiences_of_audiences_and_the_other_conditions() {
    let mut s = Stream::new(
        r#"
[[unify.profiles.computed]]
name = "spend"
event = "Order Completed"
op = "sum"
property = "total"
[segment.audiences.big]
when = {computed = "spend", op = ">=", value = 50}
[segment.audiences.big_reachable]
when = {and = [{member = "big"}, {consent = "marketing"}, {has_identifier = "email"},
               {trait = "plan", op = "in", value = ["pro", "team"]}]}
"#,
    );
    for i in 0..3 {
        s.send(T0 + i, order("u1"));
    }
    assert_eq!(s.members("u1").keys().collect::<Vec<_>>(), ["big"]);
    s.send(
        T0 + 10,
        json!({"type": "identify", "userId": "u1",
               "traits": {"email": "U1@example.com", "plan": "pro"},
               "context": {"consent": {"categoryPreferences": {"marketing": true}}}}),
    );
    assert_eq!(
        s.members("u1").keys().collect::<Vec<_>>(),
        ["big", "big_reachable"]
    );
    // Consent withdrawn: out of the reachable audience only.
    s.send(
        T0 + 20,
        json!({"event": "Consent Changed", "userId": "u1",
               "context": {"consent": {"categoryPreferences": {"marketing": false}}}}),
    );
    assert_eq!(s.members("u1").keys().collect::<Vec<_>>(), ["big"]);
    let p = s.profile_of("u1");
    let LoggedChange::Exited { reasons, audience } = &s.log.last().unwrap().change else {
        panic!("{:?}", s.log.last());
    };
    assert_eq!(reasons.words(audience), ["not (consents to marketing)"]);
    // The explanation says why, condition by condition.
    let (ids, profile) = s.unifier.profile_and_ids(&p).unwrap();
    let members = BTreeMap::from([("big".to_owned(), (true, None))]);
    let ctx = Ctx {
        ids,
        profile,
        config: s.unifier.config(),
        segments: &s.segments,
        now: T0 + 30,
        members: &members,
    };
    let explained = ctx.explain(&s.segments.audience("big_reachable").unwrap().when);
    assert_eq!(explained["holds"], json!(false));
    assert_eq!(
        explained["conditions"][1]["condition"],
        json!("consents to marketing")
    );
    assert_eq!(explained["conditions"][1]["value"], json!(false));
    assert_eq!(explained["conditions"][3]["value"], json!("pro"));
}

#[test]
fn computed_traits_are_logged_only_when_their_value_changes() {
    let mut s = Stream::new(
        r#"
[[unify.profiles.computed]]
name = "views_7d"
event = "page"
op = "count"
window = "7d"
[[unify.profiles.computed]]
name = "top_category"
event = "Product Viewed"
op = "most_frequent"
property = "category"
"#,
    );
    s.send(T0, json!({"type": "page", "userId": "u1"}));
    s.send(T0 + 1, json!({"type": "page", "userId": "u1"}));
    s.send(
        T0 + 2,
        json!({"type": "identify", "userId": "u1", "traits": {"a": 1}}),
    );
    for (i, category) in ["shoes", "hats", "shoes"].iter().enumerate() {
        let at = T0 + 10 + i64::try_from(i).unwrap();
        s.send(
            at,
            json!({"event": "Product Viewed", "userId": "u1", "properties": {"category": category}}),
        );
    }
    s.sweep(T0 + 8 * DAY_MILLIS);
    let p = s.profile_of("u1");
    let values: Vec<(String, Value)> = s
        .computed_log(&p)
        .into_iter()
        .map(|(name, _, value)| (name, value))
        .collect();
    assert_eq!(
        values,
        [
            // Nothing counted yet (top_category null on the first page) is not a change.
            ("views_7d".into(), json!(1)),
            ("views_7d".into(), json!(2)),
            ("top_category".into(), json!("shoes")),
            // One each: the tie goes to the smallest text.
            ("top_category".into(), json!("hats")),
            ("top_category".into(), json!("shoes")),
            ("views_7d".into(), json!(0)),
        ]
    );
    // The last change happened when the window left the views' day behind.
    assert_eq!(s.log.last().unwrap().at, T0 + 7 * DAY_MILLIS);
}

#[test]
fn a_funnel_computed_trait_changes_on_its_second_step() {
    let mut s = Stream::new(
        r#"
[[unify.profiles.computed]]
name = "quick_buys_30d"
event = "Product Viewed"
op = "count"
window = "30d"
then = { event = "Order Completed", within = "1h" }
"#,
    );
    s.send(T0, json!({"event": "Product Viewed", "userId": "u1"}));
    s.send(T0 + 60_000, order("u1"));
    s.send(T0 + 2 * 60_000, order("u1"));
    s.send(T0 + 2 * HOUR_MILLIS, order("u1"));
    let p = s.profile_of("u1");
    let values: Vec<(i64, Value)> = s
        .computed_log(&p)
        .into_iter()
        .map(|(_, at, value)| (at, value))
        .collect();
    // Each order within the hour of the view completes it; the later one does not.
    assert_eq!(
        values,
        [(T0 + 60_000, json!(1)), (T0 + 2 * 60_000, json!(2))]
    );
    let profile = s.unifier.profile(&p).unwrap();
    assert_eq!(
        profile.segment.values.get("quick_buys_30d"),
        Some(&(json!(2), false))
    );
}

#[test]
fn configurations_that_cannot_work_are_refused_by_name() {
    let cases = [
        (
            "[segment.audiences.a]\nwhen = {member = \"b\"}\n[segment.audiences.b]\nwhen = {member = \"a\"}",
            "a cycle of audiences: a → b → a",
        ),
        (
            "[segment.audiences.a]\nwhen = {member = \"zz\"}",
            "\"zz\", which is not an audience",
        ),
        (
            "[segment.audiences.a]\nwhen = {computed = \"zz\", op = \">\", value = 1}",
            "computed trait \"zz\" is not in unify.profiles.computed",
        ),
        (
            "[segment.audiences.A]\nwhen = {member = \"A\"}",
            "key \"A\" must be",
        ),
        (
            "[segment.audiences.a]\nwhen = {performed = \"X\", window = \"1y\"}",
            "segment.audiences.a: segment.audiences.a.when.window: window \"1y\"",
        ),
        (
            "[[unify.profiles.computed]]\nname = \"x\"\nevent = \"E\"\nop = \"sum\"",
            "x: property: Sum reads a property",
        ),
        (
            "[unify.profiles]\nutc_offset_minutes = 900",
            "past 14 hours",
        ),
        (
            "[segment.audiences.a]\nwhen = 'plan = \"pro\" and performed \"X\" in 400d'",
            "segment.audiences.a.when.and[1].window: window \"400d\"",
        ),
        (
            "[segment.audiences.a]\nwhen = 'plan = \"pro\" and'",
            "segment.audiences.a.when: at byte 16 of the condition's text: expected a condition",
        ),
    ];
    for (toml, expected) in cases {
        let error = Config::parse(toml)
            .unwrap()
            .check()
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{toml}\n→ {error}");
    }
}

#[test]
fn a_text_and_its_tree_are_one_audience() {
    let text = Stream::new(
        r#"
[segment.audiences.a]
when = 'performed "Product Viewed" then "Order Completed" within 2h in the last 30 days and not (member b or plan in ["free", "trial"])'
[segment.audiences.b]
when = "has identifier email"
"#,
    );
    let tree = Stream::new(
        r#"
[segment.audiences.a]
when = {and = [{performed = "Product Viewed", then = "Order Completed", within = "2h", window = "30d"},
               {not = {or = [{member = "b"}, {trait = "plan", op = "in", value = ["free", "trial"]}]}}]}
[segment.audiences.b]
when = {has_identifier = "email"}
"#,
    );
    assert_eq!(text.segments, tree.segments);
}

#[test]
fn an_audience_event_condition_changes_the_rules_fingerprint() {
    let plain = Config::parse("").unwrap().check().unwrap();
    let with = Config::parse("[segment.audiences.a]\nwhen = {performed = \"X\", window = \"7d\"}")
        .unwrap()
        .check()
        .unwrap();
    let threshold = Config::parse(
        "[segment.audiences.a]\nwhen = {performed = \"X\", window = \"7d\", at_least = 3}",
    )
    .unwrap()
    .check()
    .unwrap();
    let print = |c: &Config| crate::unify::fingerprint(&c.unify.identity, &c.unify.profiles);
    assert_ne!(print(&plain), print(&with));
    // What is counted is the same: only the threshold moved, which needs no rebuild.
    assert_eq!(print(&with), print(&threshold));
}

/// A seeded xorshift generator: `next(n)` is in `0..n`.
fn xorshift(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut state = seed;
    move |n| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) % n
    }
}

const PROPERTY_CONFIG: &str = r#"
[unify.profiles]
utc_offset_minutes = -300
[[unify.profiles.computed]]
name = "spend_30d"
event = "Order Completed"
op = "sum"
property = "total"
window = "30d"
[segment.audiences.active]
when = {performed = "Order Completed", window = "10d"}
[segment.audiences.lapsed]
when = {and = [{performed = "Order Completed", window = "10d..40d"}, {not_performed = "Order Completed", window = "10d"}]}
[segment.audiences.frequent]
when = {performed = "Order Completed", at_least = 3, window = "72h"}
[segment.audiences.big]
when = {or = [{computed = "spend_30d", op = ">=", value = 100}, {trait = "vip", op = "=", value = true}]}
[segment.audiences.new]
when = {trait = "signed_up_at", op = "within_last_days", value = 5}
[segment.audiences.big_not_active]
when = {and = [{member = "big"}, {not = {member = "active"}}]}
[segment.audiences.converted]
when = {performed = "Product Viewed", then = "Order Completed", within = "2d", window = "10d"}
[segment.audiences.stopped]
when = {not_performed = "Product Viewed", window = "3d"}
[segment.audiences.not_vip]
when = {trait = "vip", op = "!=", value = true}
[segment.audiences.quiet]
when = {not = {member = "active"}}
[segment.audiences.small_spender]
when = {and = [{computed = "spend_30d", op = "<", value = 50}, {not = {has_identifier = "user_id"}}]}
"#;

/// Random events of a few users, in time order of receipt, some late.
fn random_stream(seed: u64) -> Vec<(i64, i64, Value)> {
    let mut next = xorshift(seed);
    let mut received = T0;
    let mut out = Vec::new();
    for _ in 0..60 {
        received += i64::try_from(next(3 * DAY_MILLIS as u64)).unwrap();
        let user = format!("u{}", next(4));
        // A fifth of the events come from browsers not logged in (new profiles, some of them
        // joined to a user later: a merge).
        let browser = (next(5) == 0).then(|| format!("a{}", next(6)));
        let late = if next(5) == 0 {
            i64::try_from(next(20 * DAY_MILLIS as u64)).unwrap()
        } else {
            0
        };
        let at = received - late;
        let mut event = match next(5) {
            0 => json!({"type": "identify", "userId": user, "traits": {
                "vip": next(3) == 0, "signed_up_at": time(at - i64::try_from(next(3 * DAY_MILLIS as u64)).unwrap())}}),
            1 => json!({"event": "Product Viewed", "userId": user}),
            _ => json!({"event": "Order Completed", "userId": user,
                        "properties": {"total": next(80)}}),
        };
        if let Some(browser) = browser {
            event["anonymousId"] = json!(browser);
            if event["type"] != "identify" {
                event.as_object_mut().unwrap().remove("userId");
            }
        }
        out.push((at, received, event));
    }
    out
}

/// The profiles of `events` with no segmentation, and the compiled audiences.
fn without_segmentation(events: &[(i64, i64, Value)]) -> (Unifier, Segments) {
    let config = Config::parse(PROPERTY_CONFIG).unwrap().check().unwrap();
    let segments = config.segments().unwrap();
    let mut plain = Unifier::new(config.unify.identity.clone(), config.unify.profiles.clone());
    for (n, (at, received, event)) in events.iter().enumerate() {
        let mut event = event.clone();
        event["messageId"] = json!(format!("m{}", n + 1));
        event["timestamp"] = json!(time(*at));
        event["receivedAt"] = json!(time(*received));
        if event.get("type").is_none() {
            event["type"] = json!("track");
        }
        let line = event.to_string();
        plain.apply(&Event::from_lake_line(&line).unwrap());
    }
    (plain, segments)
}

/// The audiences a profile is in at `end`, evaluated once from its state.
fn from_scratch(
    plain: &Unifier,
    segments: &Segments,
    ids: &crate::unify::ProfileIds,
    end: i64,
) -> BTreeSet<String> {
    let profile = plain.profile(&ids.id).unwrap();
    let mut members = BTreeMap::new();
    for audience in segments.audiences() {
        let ctx = Ctx {
            ids,
            profile,
            config: plain.config(),
            segments,
            now: end,
            members: &members,
        };
        let outcome = ctx.evaluate(&audience.when);
        members.insert(audience.key.clone(), (outcome.holds, outcome.next));
    }
    members
        .into_iter()
        .filter(|(_, (holds, _))| *holds)
        .map(|(key, _)| key)
        .collect()
}

#[test]
fn streaming_with_timers_equals_evaluation_from_scratch() {
    let mut seen = BTreeMap::new();
    let mut entered = BTreeMap::new();
    let mut converted = 0_u32;
    for seed in 1..=40_u64 {
        let events = random_stream(seed);
        let end = events.last().unwrap().1
            + i64::try_from(xorshift(seed)(50 * DAY_MILLIS as u64)).unwrap();
        // Streaming, with sweeps at random times between events.
        let mut streamed = Stream::new(PROPERTY_CONFIG);
        let mut coin = xorshift(seed + 1000);
        for (at, received, event) in &events {
            if coin(2) == 0 {
                streamed.sweep(*received - i64::try_from(coin(DAY_MILLIS as u64)).unwrap());
            }
            streamed.send_at(*at, *received, event.clone());
        }
        streamed.sweep(end);
        // The same events with no sweep until the end.
        let mut batch = Stream::new(PROPERTY_CONFIG);
        for (at, received, event) in &events {
            batch.send_at(*at, *received, event.clone());
        }
        batch.sweep(end);
        // From scratch: the profiles' state with no segmentation, evaluated once at the end.
        let (plain, segments) = without_segmentation(&events);
        for ids in plain.graph().profiles() {
            let expected = from_scratch(&plain, &segments, ids, end);
            // The same person's profile in the streams: by one of its identifiers.
            let (identifier, _) = ids.identifiers.first().unwrap();
            let p = streamed.profile_with(identifier);
            let q = batch.profile_with(identifier);
            let streamed_members = streamed.members_of(&p);
            let streamed_keys: BTreeSet<String> = streamed_members.keys().cloned().collect();
            assert_eq!(streamed_keys, expected, "seed {seed}, {identifier}");
            // Entered at the same times, and the same changes, whenever the sweeps ran.
            assert_eq!(
                streamed_members,
                batch.members_of(&q),
                "seed {seed}, {identifier}"
            );
            assert_eq!(
                streamed.changes(&p),
                batch.changes(&q),
                "seed {seed}, {identifier}"
            );
            for (kind, key, _) in streamed.changes(&p) {
                *seen.entry(kind).or_insert(0_u32) += 1;
                converted += u32::from(kind == "entered" && key == "converted");
                *entered.entry(key).or_insert(0_u32) += u32::from(kind == "entered");
            }
        }
    }
    // The streams were varied enough to enter and leave audiences many times, the funnel too.
    assert!(seen["entered"] > 100 && seen["exited"] > 100, "{seen:?}");
    assert!(converted > 10, "{converted} entered the funnel's audience");
    // Each audience was entered, those a profile holding nothing is in among them.
    for key in [
        "stopped",
        "not_vip",
        "quiet",
        "small_spender",
        "new",
        "lapsed",
    ] {
        assert!(
            entered.get(key).copied().unwrap_or(0) > 10,
            "{key}: {entered:?}"
        );
    }
}

#[test]
fn the_stored_change_log_reads_back_as_its_entries_from_any_number() {
    let mut s = Stream::new(
        r#"
[[unify.profiles.computed]]
name = "orders"
event = "Order Completed"
op = "count"
[segment.audiences.buyers]
when = {performed = "Order Completed"}
[segment.audiences.quiet]
when = {not_performed = "Product Viewed", window = "7d"}
"#,
    );
    s.send(T0, order("u1"));
    s.send(T0 + HOUR_MILLIS, order("u2"));
    s.send(
        T0 + 2 * HOUR_MILLIS,
        json!({"event": "Product Viewed", "userId": "u1"}),
    );
    let entries: Vec<Value> = s.log.iter().map(Logged::to_json).collect();
    let groups = log::stored_groups(&s.log);
    // One group per evaluation: each first order logs a value and two entries, the view an
    // exit.
    assert_eq!(groups.len(), 3, "{entries:?}");
    assert_eq!(
        groups.iter().map(|(last, _)| *last).collect::<Vec<_>>(),
        [3, 6, 7]
    );
    for after in 0..=7 {
        let read: Vec<Value> = groups
            .iter()
            .filter(|(last, _)| *last > after)
            .flat_map(|(_, bytes)| log::read_group(bytes, after).unwrap())
            .collect();
        let expected: Vec<Value> = entries
            .iter()
            .filter(|e| e["number"].as_u64().unwrap() > after)
            .cloned()
            .collect();
        assert_eq!(read, expected, "after {after}");
    }
    assert_eq!(entries[1]["event"], json!("Audience Entered"));
    assert_eq!(entries[1]["id"], json!(s.log[1].id()));
    // An entry stored alone, as before groups, reads as it is.
    let alone = entries[6].to_string();
    assert_eq!(
        log::read_group(alone.as_bytes(), 0).unwrap(),
        [entries[6].clone()]
    );
    assert!(log::read_group(alone.as_bytes(), 7).unwrap().is_empty());
    assert!(log::read_group(b"[1]", 0).is_err());
    // A group stored before compression (its JSON) reads as the same entries.
    let (last, compressed) = &groups[0];
    let json = lz4_flex::decompress_size_prepended(&compressed[1..]).unwrap();
    assert!(json.len() > compressed.len(), "compressed");
    assert_eq!(
        log::read_group(&json, 0).unwrap(),
        log::read_group(compressed, 0).unwrap()
    );
    assert_eq!(*last, 3);
    // A damaged one, or one claiming a size past the bound, is an error, not a panic.
    let mut damaged = compressed.clone();
    damaged.truncate(damaged.len() / 2);
    assert!(log::read_group(&damaged, 0).is_err());
    let mut huge = compressed.clone();
    huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
    let error = log::read_group(&huge, 0).unwrap_err().to_string();
    assert!(error.contains("past"), "{error}");
}

/// A preview reads profiles from their preview rows: every condition gives there what it gives
/// on the whole profile.
#[test]
fn preview_rows_answer_as_the_profiles_do() {
    let mut compared = 0;
    let mut held = 0;
    let mut partial = 0;
    for seed in 1..=10_u64 {
        let events = random_stream(seed);
        let end = events.last().unwrap().1 + 3 * DAY_MILLIS;
        let mut s = Stream::new(PROPERTY_CONFIG);
        for (at, received, event) in &events {
            s.send_at(*at, *received, event.clone());
        }
        let config = s.unifier.config().clone();
        let mut conditions: Vec<Condition> = s
            .segments
            .audiences()
            .iter()
            .map(|a| a.when.clone())
            .collect();
        for extra in [
            json!({"has_identifier": "anonymous_id"}),
            json!({"member": "big"}),
            json!({"performed": "Order Completed", "at_least": 2}),
            json!({"trait": "vip", "op": "=", "value": true}),
        ] {
            conditions.push(s.segments.preview_condition(&extra).unwrap());
        }
        for ids in s.unifier.graph().profiles() {
            let profile = s.unifier.profile(&ids.id).unwrap();
            let row = crate::unify::encode_preview_row(ids, profile, &config);
            let (row_ids, row_profile) = crate::unify::decode_preview_row(&row, &config).unwrap();
            for condition in &conditions {
                let whole = s.segments.meets(condition, ids, profile, &config, end);
                let from_row = s
                    .segments
                    .meets(condition, &row_ids, &row_profile, &config, end);
                assert_eq!(whole, from_row, "seed {seed}, {}: {condition:?}", ids.id);
                // Decoding only what the condition reads gives the same answer.
                let reads = s.segments.row_reads(condition, &config, None);
                let (read_ids, read_profile) =
                    crate::unify::decode_preview_row_reading(&row, &config, &reads).unwrap();
                let from_reads =
                    s.segments
                        .meets(condition, &read_ids, &read_profile, &config, end);
                assert_eq!(whole, from_reads, "seed {seed}, {}: {reads:?}", ids.id);
                partial += u32::from(read_profile.series.len() < row_profile.series.len());
                compared += 1;
                held += u32::from(whole);
            }
        }
    }
    assert!(
        compared > 500 && held > 100 && partial > 100,
        "{compared} compared, {held} held, {partial} read in part"
    );
    // A row that is not one is refused whatever is read.
    let reads = crate::unify::RowReads::default();
    let config = crate::unify::ProfileConfig::default();
    for bad in [&b"[1]"[..], b"{\"id\": 1}", b"{\"id\": \"p\"} x"] {
        assert!(crate::unify::decode_preview_row_reading(bad, &config, &reads).is_err());
    }
}

/// A destination that receives profile changes (a database), and one audience when `audience`.
fn profile_changes_config(audience: bool) -> String {
    let mut toml = String::from(
        r#"
[[workspaces]]
name = "shop"
write_keys = ["k"]

[[activate.destinations]]
key = "warehouse"
type = "postgres"
url = "postgres://braid@db.example.com/marketing"
"#,
    );
    if audience {
        toml.push_str(
            r#"
[segment.audiences.known]
name = "Known"
when = "has identifier user_id"
"#,
        );
    }
    toml
}

#[test]
fn profile_changes_are_logged_only_for_a_destination_that_receives_them() {
    // Without such a destination, nothing: unify does no work for them.
    let mut quiet = Stream::new("[[workspaces]]\nname = \"shop\"\nwrite_keys = [\"k\"]\n");
    assert!(!quiet.segments.log_profiles);
    quiet.send(
        T0,
        json!({"type": "identify", "userId": "u1", "traits": {"plan": "pro"}}),
    );
    assert!(quiet.log.is_empty());

    let mut s = Stream::new(&profile_changes_config(false));
    assert!(s.segments.log_profiles);
    // New: updated. A track without traits on the same profile changes nothing logged.
    s.send(T0, json!({"event": "Order Completed", "anonymousId": "a1"}));
    let anonymous = s.profile_with(&Identifier::new(IdType::AnonymousId, "a1".to_owned()));
    s.send(
        T0 + 1_000,
        json!({"event": "Order Completed", "anonymousId": "a1"}),
    );
    assert_eq!(s.changes(&anonymous), [("updated", String::new(), T0)]);
    // Traits: updated.
    s.send(
        T0 + 2_000,
        json!({"type": "identify", "userId": "u1", "traits": {"plan": "pro"}}),
    );
    let known = s.profile_of("u1");
    assert_eq!(s.changes(&known), [("updated", String::new(), T0 + 2_000)]);
    // The visitor logs in: the profile that goes is merged into the one that stays, which
    // is updated.
    s.send(
        T0 + 3_000,
        json!({"type": "identify", "anonymousId": "a1", "userId": "u1"}),
    );
    let survivor = s.profile_of("u1");
    let gone = if survivor == anonymous {
        &known
    } else {
        &anonymous
    };
    assert_eq!(
        s.changes(gone).last(),
        Some(&("merged", survivor.clone(), T0 + 3_000))
    );
    assert_eq!(
        s.changes(&survivor).last(),
        Some(&("updated", String::new(), T0 + 3_000))
    );
    // Each change's id is stable and names what it is.
    let ids: BTreeSet<String> = s.log.iter().map(Logged::id).collect();
    assert_eq!(ids.len(), s.log.len());
    let entries: Vec<Value> = s.log.iter().map(Logged::to_json).collect();
    let merged = entries
        .iter()
        .find(|e| e["type"] == "profile_merged")
        .unwrap();
    assert_eq!(merged["into"], json!(survivor));
    assert_eq!(merged["profile"], json!(gone));
}

#[test]
fn a_profile_update_comes_before_the_audience_changes_it_causes() {
    let mut s = Stream::new(&profile_changes_config(true));
    s.send(T0, json!({"type": "identify", "userId": "u1"}));
    let profile = s.profile_of("u1");
    assert_eq!(
        s.changes(&profile),
        [
            ("updated", String::new(), T0),
            ("entered", "known".to_owned(), T0)
        ]
    );
    // One evaluation, one stored group: the update and the entry are written together.
    let groups = log::stored_groups(&s.log);
    assert_eq!(groups.len(), 1);
    let read = log::read_group(&groups[0].1, 0).unwrap();
    assert_eq!(read, s.log.iter().map(Logged::to_json).collect::<Vec<_>>());
}
