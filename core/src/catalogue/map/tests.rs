#![allow(
    clippy::indexing_slicing,
    clippy::too_many_lines,
    reason = "test code: one scenario, read top to bottom"
)]

use serde_json::json;

use super::*;

/// A lake line: an enriched event arriving at `day` (of May 2024) at `hour`.
fn line(
    kind: &str,
    name: &str,
    library: &str,
    day: u32,
    hour: u32,
    body: &serde_json::Value,
) -> String {
    let at = format!("2024-05-{day:02}T{hour:02}:00:00.000Z");
    let mut event = json!({
        "type": kind,
        "messageId": format!("m-{kind}-{name}-{day}-{hour}-{}", body),
        "anonymousId": "a1",
        "receivedAt": at,
        "timestamp": at,
        "context": {"library": {"name": library, "version": "1.0"}},
    });
    if kind == "track" {
        event["event"] = json!(name);
    }
    for (field, value) in body.as_object().unwrap() {
        event[field] = value.clone();
    }
    event.to_string()
}

fn observe_all(map: &mut DataMap, lines: &[String]) {
    for line in lines {
        map.observe(&Event::from_lake_line(line).unwrap());
    }
}

fn entry<'m>(map: &'m DataMap, source: &str, kind: &str, name: &str) -> &'m EventEntry {
    &map.events[&EventKey {
        source: source.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }]
}

/// A realistic mix: a shop's web SDK and server library, drifting types, near-duplicate
/// names, an email in a note, a card number, a broken clock.
fn shop_lines() -> Vec<String> {
    let mut lines = Vec::new();
    for i in 0..100u32 {
        let day = 1 + i % 20;
        let total = if i % 25 == 0 {
            json!(format!("{}.50", i))
        } else {
            json!(f64::from(i) + 0.5)
        };
        let mut properties = json!({
            "order_id": format!("o-{i}"),
            "total": total,
            "currency": if i % 2 == 0 { "EUR" } else { "USD" },
            "products": [{"sku": format!("sku-{}", i % 7), "price": 10}, {"sku": "sku-x", "price": 5}],
            "coupon": if i % 4 == 0 { json!(null) } else { json!("SPRING") },
        });
        if i == 7 {
            properties["note"] = json!("please call jane.doe@mail.example before delivery");
        } else if i % 10 == 0 {
            properties["note"] = json!("leave at the door");
        }
        if i == 9 {
            properties["payment"] = json!("4111 1111 1111 1111");
        }
        let name = if i % 10 == 3 {
            "order_completed"
        } else {
            "Order Completed"
        };
        lines.push(line(
            "track",
            name,
            "analytics-node",
            day,
            i % 24,
            &json!({ "properties": properties }),
        ));
        lines.push(line(
            "identify",
            "",
            "braid-sdk",
            day,
            i % 24,
            &json!({"traits": {"email": format!("user{}@mail.example", i % 40), "plan": if i % 3 == 0 { "pro" } else { "free" }, "age": 20 + i % 50}}),
        ));
    }
    lines.push(line(
        "track",
        "Order Complete",
        "analytics-node",
        21,
        0,
        &json!({"properties": {"total": 3}}),
    ));
    // A device with its clock two years behind.
    let mut old = serde_json::from_str::<serde_json::Value>(&line(
        "page",
        "Home",
        "braid-sdk",
        21,
        1,
        &json!({"name": "Home", "properties": {"url": "https://shop.example/"}}),
    ))
    .unwrap();
    old["timestamp"] = json!("2022-05-21T01:00:00.000Z");
    lines.push(old.to_string());
    lines
}

#[test]
fn the_map_describes_a_shop_s_events() {
    let mut map = DataMap::default();
    observe_all(&mut map, &shop_lines());
    let orders = entry(&map, "analytics-node", "track", "Order Completed");
    assert_eq!(orders.count, 90);
    // Days 4 and 14 had only `order_completed` events.
    assert_eq!(orders.days.len(), 18);
    let total = &orders.paths["properties.total"];
    // 4 of the 90 totals are strings ("0.50", "25.50", ...; i % 25 == 0 and i % 10 != 3).
    assert_eq!(total.types[JsonType::Number.index()], 86);
    assert_eq!(total.types[JsonType::String.index()], 4);
    assert_eq!(total.semantic[&Semantic::NumberString], 4);
    let sku = &orders.paths["properties.products[].sku"];
    assert_eq!(sku.count, 90, "counted once per event, not per item");
    assert_eq!(sku.types[JsonType::String.index()], 180);
    assert_eq!(sku.distinct.estimate(), 8);
    assert_eq!(
        orders.paths["properties.products"].types[JsonType::Array.index()],
        90
    );
    let coupon = &orders.paths["properties.coupon"];
    assert_eq!(coupon.types[JsonType::Null.index()], 25);
    let identify = entry(&map, "braid-sdk", "identify", "");
    assert_eq!(
        identify.paths["traits.email"].semantic[&Semantic::Email],
        100
    );
    assert_eq!(identify.paths["traits.email"].distinct.estimate(), 40);
    assert_eq!(identify.paths["traits.plan"].top.values["pro"], 34);
    let page = entry(&map, "braid-sdk", "page", "Home");
    assert_eq!(page.past, 1);
    assert_eq!(
        page.skew_example.as_deref(),
        Some("2022-05-21T01:00:00.000Z")
    );

    let shown = view(&map);
    let event = |name: &str| shown.events.iter().find(|e| e.name == name).unwrap();
    let property = |e: &EventView, path: &str| {
        e.properties
            .iter()
            .find(|p| p.path == path)
            .unwrap()
            .clone()
    };
    let orders = event("Order Completed");
    assert_eq!(orders.per_day.len(), 18);
    assert_eq!(orders.per_day["2024-05-01"], 5);
    let total = property(orders, "properties.total");
    assert!(
        (total.types["number"] - 0.956).abs() < 1e-9,
        "{:?}",
        total.types
    );
    assert!((total.fill_rate - 1.0).abs() < 1e-9);
    let note = property(orders, "properties.note");
    assert!(
        (note.fill_rate - 11.0 / 90.0).abs() < 0.001,
        "{}",
        note.fill_rate
    );
    assert_eq!(note.pii.class, PiiClass::Yellow);
    assert!(
        note.examples
            .iter()
            .any(|e| e == "please call j***@mail.example before delivery"),
        "{:?}",
        note.examples
    );
    let currency = property(orders, "properties.currency");
    assert_eq!(currency.semantic_type, Some("currency"));
    let identify = shown.events.iter().find(|e| e.kind == "identify").unwrap();
    let email = property(identify, "traits.email");
    assert_eq!(email.semantic_type, Some("email"));
    assert_eq!(email.pii.class, PiiClass::Yellow);
    assert!(
        email.examples.iter().all(|e| e.starts_with("u***@")),
        "{:?}",
        email.examples
    );
    assert_eq!(
        property(identify, "traits.plan").semantic_type,
        Some("enum")
    );
    assert_eq!(
        property(identify, "traits.plan").top_values.unwrap()["free"],
        66
    );
    let text = serde_json::to_string(&shown).unwrap();
    assert!(!text.contains("jane.doe@"), "an email shown unmasked");
    assert!(!text.contains("user1@"), "an email shown unmasked");
    assert!(!text.contains("4111 1111"), "a card number shown unmasked");
    assert_eq!(shown.sources.len(), 2);

    let kinds: Vec<(FlagKind, Option<&str>)> = shown
        .flags
        .iter()
        .map(|f| (f.kind, f.path.as_deref()))
        .collect();
    assert_eq!(shown.flags[0].kind, FlagKind::RedPii, "{kinds:?}");
    assert!(
        kinds.contains(&(FlagKind::RedPii, Some("properties.payment"))),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(FlagKind::UnexpectedPii, Some("properties.note"))),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(FlagKind::TypeDrift, Some("properties.total"))),
        "{kinds:?}"
    );
    assert!(
        !kinds.contains(&(FlagKind::TypeDrift, Some("properties.coupon"))),
        "nulls are no drift"
    );
    assert!(
        kinds.contains(&(FlagKind::PastTimestamp, Some("timestamp"))),
        "{kinds:?}"
    );
    let near: Vec<&Flag> = shown
        .flags
        .iter()
        .filter(|f| f.kind == FlagKind::NearDuplicateName)
        .collect();
    let pairs: Vec<(&str, &str)> = near
        .iter()
        .map(|f| {
            (
                f.event.as_ref().unwrap().name.as_str(),
                f.example.as_deref().unwrap(),
            )
        })
        .collect();
    assert!(
        pairs.contains(&("Order Complete", "Order Completed")),
        "{pairs:?}"
    );
    assert!(
        pairs.contains(&("Order Complete", "order_completed")),
        "{pairs:?}"
    );
    assert!(
        pairs.contains(&("Order Completed", "order_completed")),
        "{pairs:?}"
    );
    assert_eq!(near.len(), 3, "{pairs:?}");
    let drift = shown
        .flags
        .iter()
        .find(|f| f.kind == FlagKind::TypeDrift)
        .unwrap();
    assert_eq!(drift.count, 4);
    assert_eq!(drift.example.as_deref(), Some("0.50"));
    assert!(
        drift.message.contains("96 % number, 4 % string"),
        "{}",
        drift.message
    );
}

#[test]
fn a_fill_rate_that_drops_is_flagged() {
    let mut lines = Vec::new();
    for day in 1..=28u32 {
        for hour in 0..10 {
            // `coupon` is on every event until the 22nd, then on one in ten.
            let body = if day < 22 || hour == 0 {
                json!({"properties": {"coupon": "X", "total": 1}})
            } else {
                json!({"properties": {"total": 1}})
            };
            lines.push(line("track", "Checkout", "web", day, hour, &body));
        }
    }
    let mut map = DataMap::default();
    observe_all(&mut map, &lines);
    let flags = flags(&map);
    let drops: Vec<&Flag> = flags
        .iter()
        .filter(|f| f.kind == FlagKind::FillRateDrop)
        .collect();
    assert_eq!(drops.len(), 1, "{flags:?}");
    assert_eq!(drops[0].path.as_deref(), Some("properties.coupon"));
    assert!(
        drops[0].message.contains("100 %") && drops[0].message.contains("10 %"),
        "{}",
        drops[0].message
    );
}

#[test]
fn the_map_is_bounded_and_counts_what_it_leaves_out() {
    let mut map = DataMap::default();
    let mut properties = serde_json::Map::new();
    for i in 0..(MAX_PATHS_PER_EVENT + 10) {
        properties.insert(format!("p{i}"), json!(i));
    }
    let wide = line(
        "track",
        "Wide",
        "web",
        1,
        0,
        &json!({ "properties": properties }),
    );
    observe_all(&mut map, &[wide.clone(), wide]);
    let wide = entry(&map, "web", "track", "Wide");
    assert_eq!(wide.paths.len(), MAX_PATHS_PER_EVENT);
    assert_eq!(wide.other_paths, 20);
    for i in 0..(MAX_EVENTS + 5) {
        let event = line("track", &format!("e{i}"), "web", 1, 0, &json!({}));
        map.observe(&Event::from_lake_line(&event).unwrap());
    }
    assert_eq!(map.events.len(), MAX_EVENTS);
    assert_eq!(map.other_events, 6);
    let flags = flags(&map);
    assert!(
        flags
            .iter()
            .any(|f| f.kind == FlagKind::OverCapacity && f.event.is_none())
    );
    assert!(
        flags
            .iter()
            .any(|f| f.kind == FlagKind::OverCapacity && f.event.is_some())
    );
    // Deep nesting stops at its depth; long arrays at their first items.
    let mut deep = json!(1);
    for _ in 0..20 {
        deep = json!({ "a": deep });
    }
    let items: Vec<u32> = (0..500).collect();
    let mut map = DataMap::default();
    observe_all(
        &mut map,
        &[line(
            "track",
            "Deep",
            "web",
            1,
            0,
            &json!({"properties": {"deep": deep, "items": items}}),
        )],
    );
    let deep = entry(&map, "web", "track", "Deep");
    assert!(
        deep.paths
            .keys()
            .all(|p| p.matches('.').count() <= MAX_DEPTH + 1),
        "{:?}",
        deep.paths.keys()
    );
    assert_eq!(
        deep.paths["properties.items[]"].types[JsonType::Number.index()],
        50
    );
}

/// A small deterministic generator of split points.
fn splits(seed: u64, len: usize) -> Vec<usize> {
    let mut state = seed;
    let mut points = vec![0];
    let mut at = 0;
    while at < len {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        at = (at + 1 + usize::try_from(state >> 58).unwrap_or(0)).min(len);
        points.push(at);
    }
    points
}

#[test]
fn the_map_kept_batch_by_batch_through_its_store_equals_one_pass() {
    let lines = shop_lines();
    let mut whole = DataMap::default();
    observe_all(&mut whole, &lines);
    for seed in 0..20 {
        // Each batch: the stored entries are read back, the batch observed, the changed
        // entries written (as the unify step keeps the map beside the profiles).
        let mut stored: BTreeMap<EventKey, String> = BTreeMap::new();
        let mut other_events = 0;
        for window in splits(seed, lines.len()).windows(2) {
            let entries = stored
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::from_str::<EventEntry>(v).unwrap()));
            let mut map = DataMap::from_entries(entries);
            map.other_events = other_events;
            observe_all(&mut map, &lines[window[0]..window[1]]);
            for (key, entry) in map.take_changed() {
                stored.insert(key, serde_json::to_string(entry).unwrap());
            }
            other_events = map.other_events;
        }
        let entries = stored
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::from_str::<EventEntry>(v).unwrap()));
        let rebuilt = DataMap::from_entries(entries);
        assert_eq!(rebuilt.events, whole.events, "split seed {seed}");
        assert_eq!(rebuilt.path_count(), whole.path_count());
    }
}

#[test]
fn values_that_are_their_profile_s_identifiers_make_identity_candidates() {
    let skip: BTreeSet<String> = ["traits.email".to_owned()].into();
    let ids = [
        ("email", "jane@shop.example"),
        ("phone", "+442079460000"),
        ("user_id", "u-17"),
    ];
    let known = KnownIds::new(ids, &skip);
    let mut map = DataMap::default();
    for day in 1..=5 {
        let identify = line(
            "identify",
            "",
            "analytics.js",
            day,
            10,
            &json!({"traits": {"email": "jane@shop.example", "customer_email": " Jane@Shop.example ",
                               "landline": "020 7946 0000", "plan": "gold"}}),
        );
        map.observe_known(&Event::from_lake_line(&identify).unwrap(), Some(&known));
        let order = line(
            "track",
            "Order Completed",
            "analytics-node",
            day,
            11,
            &json!({"properties": {"buyer": if day < 3 { "u-17" } else { "u-99" }, "total": 5}}),
        );
        map.observe_known(&Event::from_lake_line(&order).unwrap(), Some(&known));
    }
    // Observed without identifiers (an event with no profile): counted as values, not known.
    observe_all(
        &mut map,
        &[line(
            "identify",
            "",
            "analytics.js",
            6,
            10,
            &json!({"traits": {"customer_email": "x@y.example"}}),
        )],
    );
    let identify = entry(&map, "analytics.js", "identify", "");
    assert_eq!(
        identify.paths["traits.customer_email"].known_ids,
        [("email".to_owned(), 5)].into()
    );
    assert_eq!(
        identify.paths["traits.landline"].known_ids,
        [("phone".to_owned(), 5)].into(),
        "a national number is the international one"
    );
    assert!(
        identify.paths["traits.email"].known_ids.is_empty(),
        "an identifier already"
    );
    assert!(identify.paths["traits.plan"].known_ids.is_empty());

    let candidates = view(&map).identity_candidates;
    let shown: Vec<(&str, u64, u64, &str, Option<&str>)> = candidates
        .iter()
        .map(|c| {
            (
                c.path.as_str(),
                c.values,
                c.known,
                c.identifier_type.as_str(),
                c.proposal.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (
                "traits.landline",
                5,
                5,
                "phone",
                Some("[unify.identity.trait_identifiers] landline = \"phone\"")
            ),
            (
                "traits.customer_email",
                6,
                5,
                "email",
                Some("[unify.identity.trait_identifiers] customer_email = \"email\"")
            ),
        ],
        "properties.buyer matched twice in five: too little evidence; {candidates:?}"
    );
    // With a third match, a property is a candidate too, with no proposal: unify reads no
    // identifiers from properties.
    let order = line(
        "track",
        "Order Completed",
        "analytics-node",
        7,
        11,
        &json!({"properties": {"buyer": "u-17"}}),
    );
    map.observe_known(&Event::from_lake_line(&order).unwrap(), Some(&known));
    let buyer = view(&map)
        .identity_candidates
        .into_iter()
        .find(|c| c.path == "properties.buyer")
        .unwrap();
    assert_eq!((buyer.values, buyer.known, buyer.share), (6, 3, 0.5));
    assert_eq!(buyer.proposal, None);
}

#[test]
fn failure_records_are_counted_by_reason_and_event() {
    let record = |code: &str, payload: &str| {
        serde_json::to_vec(&json!({"receivedAt": "2024-05-01T10:00:00.000Z", "workspace": "w",
            "index": 0, "code": code, "field": null, "limit": null,
            "message": format!("event 0: {code} (tracking plan rule \"type\")"), "payload": payload}))
        .unwrap()
    };
    let order = r#"{"type":"track","event":"Order Completed","properties":{"total":"5"}}"#;
    let mut map = DataMap::default();
    assert!(map.observe_failure(&record("plan_violation", order)));
    assert!(map.observe_failure(&record("plan_violation", order)));
    assert!(map.observe_failure(&record("missing_field", r#"{"type":"identify"}"#)));
    assert!(map.observe_failure(&record("malformed_json", "{not json")));
    assert!(!map.observe_failure(b"not a record"));
    assert!(
        !map.observe_failure(&record("Not A Code", order)),
        "codes are the server's"
    );
    assert!(map.failures_changed());
    assert_eq!(map.failures.len(), 3);
    let plan = &map.failures["plan_violation"];
    assert_eq!(plan.count, 2);
    assert_eq!(
        plan.events,
        [("track Order Completed".to_owned(), 2)].into()
    );
    assert_eq!(plan.last_seen, 1_714_557_600_000);
    assert!(plan.example.contains("plan_violation"), "{}", plan.example);
    assert_eq!(
        map.failures["missing_field"].events,
        [("identify".to_owned(), 1)].into()
    );
    assert_eq!(map.failures["malformed_json"].other_events, 1);
    // Shown as flags, replayable ones saying so.
    let flags = view(&map).flags;
    let failure = flags
        .iter()
        .find(|f| {
            f.kind == FlagKind::ValidationFailure && f.path.as_deref() == Some("plan_violation")
        })
        .unwrap();
    assert_eq!(failure.count, 2);
    assert!(
        failure.message.contains("2 of them track Order Completed"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("braid replay"),
        "{}",
        failure.message
    );
    let missing = flags
        .iter()
        .find(|f| f.path.as_deref() == Some("missing_field"))
        .unwrap();
    assert!(
        !missing.message.contains("braid replay"),
        "{}",
        missing.message
    );
    // Stored and read back as the store keeps it, then cleared of changes.
    let _ = map.take_changed();
    assert!(!map.failures_changed());
    let bounded: Vec<Vec<u8>> = (0..MAX_FAILURE_EVENTS + 5)
        .map(|i| {
            record(
                "unknown_type",
                &format!(r#"{{"type":"track","event":"E{i}"}}"#),
            )
        })
        .collect();
    for line in &bounded {
        map.observe_failure(line);
    }
    assert_eq!(
        map.failures["unknown_type"].events.len(),
        MAX_FAILURE_EVENTS
    );
    assert_eq!(map.failures["unknown_type"].other_events, 5);
}
