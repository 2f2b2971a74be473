use super::*;

const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn config(extra: &str) -> DestinationConfig {
    let text = format!(
        "key = \"crm\"\ntype = \"webhook\"\nurl = \"https://hooks.example.com/braid\"\n\
         secret = \"{KEY}\"\n{extra}"
    );
    toml::from_str(&text).unwrap()
}

fn destination(extra: &str) -> Destination {
    Destination::check(0, &config(extra), &["default"]).unwrap()
}

fn problem(extra: &str, workspaces: &[&str]) -> String {
    Destination::check(0, &config(extra), workspaces)
        .unwrap_err()
        .to_string()
}

fn entered(audience: &str) -> Value {
    json!({"id": "0a1b", "number": 7, "profile": "p-1", "at": "2026-12-07T10:00:00.000Z",
           "event": "Audience Entered", "type": "audience_entered", "audience": audience,
           "name": "Big spenders", "reasons": ["spent > 100"]})
}

fn view(consent: &[(&str, bool)]) -> ProfileView {
    ProfileView {
        identifiers: json!({"email": ["ada@example.com"], "user_id": ["u1"]})
            .as_object()
            .cloned()
            .unwrap(),
        traits: [
            ("plan".to_owned(), json!("pro")),
            ("name".to_owned(), json!("Ada")),
        ]
        .into_iter()
        .collect(),
        consent: consent.iter().map(|(c, g)| ((*c).to_owned(), *g)).collect(),
        profile: None,
    }
}

#[test]
fn a_destination_checks_its_settings_naming_each() {
    let d = destination("");
    assert_eq!(d.workspace, "default", "the only workspace when left out");
    assert_eq!(d.schedule, webhook::RETRY_SCHEDULE.to_vec());
    assert_eq!(d.keys.len(), 1);
    for (extra, workspaces, says) in [
        (
            "",
            &["a", "b"][..],
            "destinations[0].workspace: name the workspace",
        ),
        (
            "workspace = \"nope\"",
            &["default"][..],
            "\"nope\" is not a configured workspace",
        ),
        (
            "batch = 0",
            &["default"],
            "destinations[0].batch: 0 messages per request: 1 to 100",
        ),
        ("batch = 101", &["default"], "1 to 100"),
        (
            "timeout_seconds = 31",
            &["default"],
            "timeout_seconds: 31 seconds: 1 to 30",
        ),
        (
            "receives = []",
            &["default"],
            "receives: name what it receives",
        ),
        (
            "retry_seconds = [90000]",
            &["default"],
            "retry_seconds: at most 20 waits",
        ),
        (
            "disable_after_hours = 0",
            &["default"],
            "disable_after_hours: 0 hours",
        ),
        (
            "allow_addresses = [\"localhost\"]",
            &["default"],
            "allow_addresses[0]: \"localhost\"",
        ),
        (
            "allow_addresses = [\"10.0.0.0/33\"]",
            &["default"],
            "allow_addresses[0]",
        ),
        (
            "previous_secrets = [\"whsec_AAAA\"]",
            &["default"],
            "previous_secrets[0]: a key of 3 bytes",
        ),
        (
            "[mapping]\nselect = [\"email\"]",
            &["default"],
            "mapping.select[0]: \"email\" is not a field",
        ),
        (
            "[mapping]\nselect = [\"traits.plan\"]",
            &["default"],
            "mapping.select[0]",
        ),
        (
            "[mapping.templates]\nx = \"{profile\"",
            &["default"],
            "mapping.x: \"{profile\" has a '{' without",
        ),
        (
            "[mapping.templates]\nx = \"{nope}\"",
            &["default"],
            "mapping.templates.x: \"nope\"",
        ),
        (
            "[mapping.rename]\nprofile = \"a..b\"",
            &["default"],
            "mapping.rename.profile: \"a..b\"",
        ),
    ] {
        let error = problem(extra, workspaces);
        assert!(error.contains(says), "{extra}: {error}");
        assert!(error.starts_with("activate.destinations[0]."), "{error}");
    }
}

#[test]
fn a_destination_url_is_http_without_credentials() {
    for (url, says) in [
        ("ftp://x", "must start with https://"),
        ("https:///path", "has no host"),
        ("https://user:pw@x.com/", "carries credentials"),
        ("https://x.com/a b", "a space"),
    ] {
        let mut bad = config("");
        bad.url = url.to_owned();
        let error = Destination::check(0, &bad, &["default"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("destinations[0].url") && error.contains(says),
            "{error}"
        );
    }
    let mut bad = config("");
    bad.key = "CRM".to_owned();
    let error = Destination::check(0, &bad, &["default"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("destinations[0].key: \"CRM\""), "{error}");
    let error = check_all(&[config(""), config("")], &["default"])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("destinations[1].key: \"crm\" is the key of an earlier"),
        "{error}"
    );
}

#[test]
fn a_destination_without_its_key_checks_but_is_not_delivered_to() {
    let mut keyless = config("");
    keyless.secret = String::new();
    let checked = Destination::check(0, &keyless, &["default"]).unwrap();
    let error = checked.require_key().unwrap_err().to_string();
    assert!(
        error.contains("destinations[0].secret") && error.contains("BRAID_DESTINATION_CRM_SECRET"),
        "{error}"
    );
    assert!(destination("").require_key().is_ok());
    assert_eq!(
        secret_variable("crm-eu_2"),
        "BRAID_DESTINATION_CRM_EU_2_SECRET"
    );
}

#[test]
fn private_addresses_are_refused_unless_allowed() {
    let open = destination("");
    let local = destination("allow_addresses = [\"127.0.0.1\", \"10.1.0.0/16\", \"::1\"]");
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();
    assert_eq!(open.address_refused(ip("127.0.0.1")), Some("loopback"));
    assert_eq!(open.address_refused(ip("93.184.216.34")), None);
    assert_eq!(local.address_refused(ip("127.0.0.1")), None);
    assert_eq!(local.address_refused(ip("::ffff:127.0.0.1")), None);
    assert_eq!(local.address_refused(ip("::1")), None);
    assert_eq!(local.address_refused(ip("127.0.0.2")), Some("loopback"));
    assert_eq!(local.address_refused(ip("10.1.200.3")), None);
    assert_eq!(local.address_refused(ip("10.2.0.1")), Some("private"));
    assert_eq!(
        local.address_refused(ip("169.254.169.254")),
        Some("link-local")
    );
}

#[test]
fn an_entry_becomes_a_message_with_the_profile_as_it_is() {
    let d = destination("traits = [\"plan\", \"missing\"]");
    let message = d.message(&entered("big"), Some(&view(&[]))).unwrap();
    assert_eq!((message.id.as_str(), message.number), ("0a1b", 7));
    assert_eq!(message.at, Some(1_796_637_600_000));
    assert_eq!(
        message.body,
        json!({"id": "0a1b", "type": "audience.entered", "event": "Audience Entered",
               "timestamp": "2026-12-07T10:00:00.000Z", "workspace": "default",
               "destination": "crm", "profile": "p-1", "number": 7, "audience": "big",
               "audience_name": "Big spenders", "reasons": ["spent > 100"],
               "identifiers": {"email": ["ada@example.com"], "user_id": ["u1"]},
               "traits": {"plan": "pro"}})
    );
    // A profile merged away has no identifiers or traits left to carry.
    let gone = d.message(&entered("big"), None).unwrap().body;
    assert_eq!(gone["identifiers"], json!({}));
    assert_eq!(gone["traits"], json!({}));
    let computed = json!({"id": "ff", "number": 8, "profile": "p-1", "at": "2026-12-07T10:00:00.000Z",
                          "type": "computed_trait", "trait": "orders_30d", "value": 3,
                          "approximate": false});
    let message = destination("identifiers = false")
        .message(&computed, None)
        .unwrap()
        .body;
    assert_eq!(message["type"], "computed_trait.changed");
    assert_eq!(message["trait"], "orders_30d");
    assert_eq!(message["value"], 3);
    assert!(message.get("identifiers").is_none() && message.get("event").is_none());
}

#[test]
fn a_destination_receives_only_what_it_chose_and_what_consent_allows() {
    let only_exits = destination("receives = [\"audience_exited\"]");
    assert!(only_exits.message(&entered("big"), None).is_none());
    let mut exited = entered("big");
    exited["type"] = json!("audience_exited");
    assert!(only_exits.message(&exited, None).is_some());
    let some = destination("audiences = [\"vip\"]");
    assert!(some.message(&entered("big"), None).is_none());
    assert!(some.message(&entered("vip"), None).is_some());
    let unknown = json!({"type": "something_else", "id": "x"});
    assert!(destination("").message(&unknown, None).is_none());
    let consent = destination("consent = [\"marketing\", \"analytics\"]");
    let entry = entered("big");
    assert!(
        consent.message(&entry, None).is_none(),
        "no profile, no consent"
    );
    assert!(consent.message(&entry, Some(&view(&[]))).is_none());
    let partly = view(&[("marketing", true), ("analytics", false)]);
    assert!(consent.message(&entry, Some(&partly)).is_none());
    let both = view(&[("marketing", true), ("analytics", true)]);
    assert!(consent.message(&entry, Some(&both)).is_some());
}

#[test]
fn a_mapping_selects_renames_sets_and_fills_fields() {
    let d = destination(
        "traits = [\"name\"]\n[mapping]\nselect = [\"id\", \"profile\", \"audience\", \"traits.name\", \"identifiers.email\"]\n\
         [mapping.rename]\nprofile = \"user.id\"\n\"traits.name\" = \"user.name\"\n\
         [mapping.constants]\nsource = \"braid\"\nversion = 2\n\
         [mapping.templates]\nlabel = \"{traits.name} joined {audience_name} ({number}) {{ok}}\"",
    );
    let message = d.message(&entered("big"), Some(&view(&[]))).unwrap().body;
    assert_eq!(
        message,
        json!({"id": "0a1b", "audience": "big", "user": {"id": "p-1", "name": "Ada"},
               "traits": {}, "identifiers": {"email": ["ada@example.com"]},
               "source": "braid", "version": 2,
               "label": "Ada joined Big spenders (7) {ok}"})
    );
}

fn message(id: &str, body: Value) -> Message {
    Message {
        id: id.to_owned(),
        number: 1,
        at: None,
        body,
    }
}

#[test]
fn a_body_is_one_message_or_a_batch_with_an_id_of_its_messages() {
    let single = destination("");
    let body_of = json!({"id": "0a1b", "type": "audience.entered"});
    let one = message("0a1b", body_of.clone());
    let (id, body) = single.body(std::slice::from_ref(&one));
    assert_eq!(id, "msg_0a1b");
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), body_of);
    let batched = destination("batch = 10");
    let other = message("ffff", json!({"id": "ffff"}));
    let (first, body) = batched.body(&[one.clone(), other.clone()]);
    assert!(first.starts_with("batch_") && first.len() == 38, "{first}");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"batch": [body_of, {"id": "ffff"}]})
    );
    assert_eq!(
        batched.body(&[one.clone(), other.clone()]).0,
        first,
        "the same messages"
    );
    assert_ne!(batched.body(&[other, one]).0, first);
}

#[test]
fn a_request_keeps_the_change_ids_whatever_the_mapping_keeps() {
    let d = destination("[mapping]\nselect = [\"profile\"]");
    let mapped = d.message(&entered("big"), None).unwrap();
    assert_eq!(mapped.body, json!({"profile": "p-1"}), "no id in the body");
    assert_eq!(d.body(&[mapped]).0, "msg_0a1b");
}

#[test]
fn a_state_says_its_status_and_lag() {
    let mut state = DeliveryState::default();
    assert_eq!(state.status(true), "delivering");
    assert_eq!(state.status(false), "switched off");
    assert_eq!(state.lag_millis(5_000), None);
    state.oldest_pending_at = Some(2_000);
    assert_eq!(state.lag_millis(5_000), Some(3_000));
    state.retrying = Some(Retrying::default());
    assert_eq!(state.status(true), "retrying");
    state.disabled = Some(Disabled::default());
    assert_eq!(state.status(true), "disabled");
}

#[test]
fn failures_are_retried_on_schedule_dead_lettered_or_disable_the_destination() {
    let d = destination("retry_seconds = [1, 2]\ndisable_after_hours = 1");
    let mut state = DeliveryState::default();
    let step = |state: &mut DeliveryState, now, status| {
        state.after_attempt(&d, 10, now, status, None, "boom", 0.0)
    };
    assert_eq!(step(&mut state, 1_000, Some(503)), Step::RetryAt(2_000));
    assert_eq!(state.retrying.as_ref().unwrap().attempts, 1);
    assert_eq!(step(&mut state, 2_000, None), Step::RetryAt(4_000));
    assert_eq!(
        step(&mut state, 4_000, Some(500)),
        Step::DeadLetter {
            class: "retries_exhausted",
            attempts: 3
        }
    );
    assert_eq!(state.failed_attempts, 3);
    assert_eq!(state.last_error.as_deref(), Some("boom"));
    assert_eq!(state.failing_since, Some(1_000));
    // Retry-After is honoured.
    let mut asked = DeliveryState::default();
    let step_after = asked.after_attempt(
        &d,
        11,
        0,
        Some(429),
        Some(Duration::from_secs(30)),
        "slow",
        0.0,
    );
    assert_eq!(step_after, Step::RetryAt(30_000));
    // Another batch starts its own schedule; failing past the bound disables.
    assert_eq!(
        state.after_attempt(&d, 11, 5_000, Some(502), None, "x", 0.0),
        Step::RetryAt(6_000)
    );
    let hour = 3_600_000;
    assert!(matches!(
        state.after_attempt(&d, 11, 1_000 + hour, Some(502), None, "x", 0.0),
        Step::Disable(reason) if reason.starts_with("failing for 1 hours")
    ));
    // A delivery ends the failing.
    let mut fine = DeliveryState::default();
    assert_eq!(step(&mut fine, 0, Some(503)), Step::RetryAt(1_000));
    assert_eq!(step(&mut fine, 1_000, Some(204)), Step::Delivered);
    assert_eq!((fine.retrying.clone(), fine.failing_since), (None, None));
    assert_eq!(
        step(&mut fine, 2_000, Some(400)),
        Step::DeadLetter {
            class: "refused",
            attempts: 1
        }
    );
    assert!(
        matches!(step(&mut fine, 3_000, Some(410)), Step::Disable(r) if r.contains("410 Gone"))
    );
    assert!(FAILURE_CLASSES.contains(&"refused") && FAILURE_CLASSES.contains(&"retries_exhausted"));
}

#[test]
fn the_state_reads_back_as_written() {
    let state = DeliveryState {
        generation: 2,
        after: 41,
        delivered: 40,
        retrying: Some(Retrying {
            through: 42,
            attempts: 2,
            since: 5,
            next_at: 9,
        }),
        ..DeliveryState::default()
    };
    let text = serde_json::to_string(&state).unwrap();
    assert_eq!(serde_json::from_str::<DeliveryState>(&text).unwrap(), state);
    assert_eq!(
        serde_json::from_str::<DeliveryState>("{}").unwrap(),
        DeliveryState::default()
    );
}
