//! Each enrichment step, on and off.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::*;
use crate::catalogue::validate::{Limits, validate_event};
use crate::timestamp;

const CHROME_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

fn run(event: &Value, config: &EnrichConfig, ip: Option<&str>, user_agent: Option<&str>) -> Value {
    let raw = event.to_string();
    let mut valid = validate_event(0, &raw, None, &Limits::default()).unwrap();
    let received = timestamp::parse("2024-05-01T10:00:00Z").unwrap();
    let ip = ip.map(|ip| ip.parse::<IpAddr>().unwrap());
    let input = EnrichInput::new("shop", received, ip, user_agent);
    enrich(&mut valid, &raw, &input, config, &mut AgentCache::new());
    Value::Object(valid.to_map())
}

fn track() -> Value {
    json!({"type": "track", "event": "E", "userId": "u", "messageId": "m1"})
}

#[test]
fn sets_received_at() {
    let out = run(&track(), &EnrichConfig::default(), None, None);
    assert_eq!(out["receivedAt"], "2024-05-01T10:00:00.000Z");
    let off = EnrichConfig {
        received_at: false,
        ..EnrichConfig::default()
    };
    assert!(run(&track(), &off, None, None).get("receivedAt").is_none());
}

#[test]
fn corrects_clock_skew() {
    // The client's clock is 1 hour fast: it says it sent at 11:00 an event of 10:59:50.
    let mut event = track();
    event["originalTimestamp"] = json!("2024-05-01T10:59:50Z");
    event["sentAt"] = json!("2024-05-01T11:00:00Z");
    let out = run(&event, &EnrichConfig::default(), None, None);
    assert_eq!(out["timestamp"], "2024-05-01T09:59:50.000Z");
    assert_eq!(out["originalTimestamp"], "2024-05-01T10:59:50Z");
}

#[test]
fn client_timestamp_becomes_original_timestamp() {
    let mut event = track();
    event["timestamp"] = json!("2024-05-01T09:00:00Z");
    event["sentAt"] = json!("2024-05-01T09:00:05Z");
    let out = run(&event, &EnrichConfig::default(), None, None);
    assert_eq!(out["originalTimestamp"], "2024-05-01T09:00:00Z");
    assert_eq!(out["timestamp"], "2024-05-01T09:59:55.000Z");
}

#[test]
fn clamps_future_timestamps_to_received_at() {
    let mut event = track();
    event["timestamp"] = json!("2030-01-01T00:00:00Z");
    let out = run(&event, &EnrichConfig::default(), None, None);
    assert_eq!(out["timestamp"], "2024-05-01T10:00:00.000Z");
}

#[test]
fn missing_timestamp_is_received_at() {
    let out = run(&track(), &EnrichConfig::default(), None, None);
    assert_eq!(out["timestamp"], "2024-05-01T10:00:00.000Z");
}

#[test]
fn skew_correction_off_keeps_client_time() {
    let mut event = track();
    event["timestamp"] = json!("2024-05-01T09:00:00Z");
    event["sentAt"] = json!("2024-05-01T09:30:00Z");
    let off = EnrichConfig {
        skew_correction: false,
        ..EnrichConfig::default()
    };
    assert_eq!(
        run(&event, &off, None, None)["timestamp"],
        "2024-05-01T09:00:00Z"
    );
}

#[test]
fn anonymises_ips() {
    let out = run(
        &track(),
        &EnrichConfig::default(),
        Some("203.0.113.77"),
        None,
    );
    assert_eq!(out["context"]["ip"], "203.0.113.0");
    let out = run(
        &track(),
        &EnrichConfig::default(),
        Some("2001:db8:abcd:1234::1"),
        None,
    );
    assert_eq!(out["context"]["ip"], "2001:db8:abcd::");
    let mut event = track();
    event["context"] = json!({"ip": "198.51.100.9"});
    assert_eq!(
        run(&event, &EnrichConfig::default(), Some("203.0.113.77"), None)["context"]["ip"],
        "198.51.100.0"
    );
    let keep = EnrichConfig {
        ip: IpPolicy::Keep,
        ..EnrichConfig::default()
    };
    assert_eq!(
        run(&track(), &keep, Some("203.0.113.77"), None)["context"]["ip"],
        "203.0.113.77"
    );
    let drop = EnrichConfig {
        ip: IpPolicy::Drop,
        ..EnrichConfig::default()
    };
    assert!(
        run(&event, &drop, Some("203.0.113.77"), None)["context"]
            .get("ip")
            .is_none()
    );
}

#[test]
fn parses_user_agents() {
    let out = run(&track(), &EnrichConfig::default(), None, Some(CHROME_MAC));
    let agent = &out["context"]["agent"];
    assert_eq!(agent["browser"], "Chrome");
    assert_eq!(agent["browserVersion"], "120.0.0.0");
    assert_eq!(agent["os"], "Mac OSX");
    assert_eq!(agent["deviceType"], "desktop");
    assert_eq!(agent["bot"], false);

    let mut event = track();
    event["context"] = json!({"userAgent": IPHONE});
    let out = run(&event, &EnrichConfig::default(), None, Some(CHROME_MAC));
    assert_eq!(out["context"]["agent"]["deviceType"], "mobile");
    assert_eq!(out["context"]["agent"]["browser"], "Safari");
}

#[test]
fn flags_bots() {
    let out = run(&track(), &EnrichConfig::default(), None, Some(GOOGLEBOT));
    assert_eq!(out["context"]["agent"]["bot"], true);
    assert_eq!(out["context"]["agent"]["deviceType"], "bot");
    let only_bot = EnrichConfig {
        user_agent: false,
        ..EnrichConfig::default()
    };
    assert_eq!(
        run(&track(), &only_bot, None, Some(GOOGLEBOT))["context"]["agent"],
        json!({"bot": true})
    );
    let none = EnrichConfig {
        user_agent: false,
        bot: false,
        ..EnrichConfig::default()
    };
    assert!(
        run(&track(), &none, None, Some(GOOGLEBOT))
            .get("context")
            .is_none()
    );
}

#[test]
fn fills_campaign_from_utm_parameters() {
    let mut event = track();
    event["context"] = json!({"page": {"url": "https://shop.example/p?utm_source=news&utm_medium=email&utm_campaign=spring%20sale&x=1"}});
    let out = run(&event, &EnrichConfig::default(), None, None);
    assert_eq!(
        out["context"]["campaign"],
        json!({"source": "news", "medium": "email", "name": "spring sale"})
    );
    // The client's own campaign wins.
    event["context"]["campaign"] = json!({"name": "mine"});
    assert_eq!(
        run(&event, &EnrichConfig::default(), None, None)["context"]["campaign"],
        json!({"name": "mine"})
    );
}

#[test]
fn classifies_referrers() {
    let cases = [
        (
            "https://www.google.co.uk/search?q=x",
            "search",
            Some("google"),
        ),
        ("https://mail.google.com/mail/u/0", "email", Some("gmail")),
        ("https://t.co/abc", "social", Some("twitter")),
        ("https://blog.shop.example/post", "internal", None),
        ("https://partner.example/", "internal", None),
        ("https://news.site/article", "other", None),
    ];
    let config = EnrichConfig {
        internal_domains: vec!["partner.example".to_owned()],
        ..EnrichConfig::default()
    };
    for (referrer, class, name) in cases {
        let mut event = json!({"type": "page", "anonymousId": "a", "messageId": "m"});
        event["context"] =
            json!({"page": {"url": "https://www.shop.example/", "referrer": referrer}});
        let out = run(&event, &config, None, None);
        assert_eq!(out["context"]["referrer"]["type"], class, "{referrer}");
        assert_eq!(
            out["context"]["referrer"]
                .get("name")
                .and_then(Value::as_str),
            name,
            "{referrer}"
        );
    }
}

#[test]
fn derives_message_ids_from_content() {
    let event = json!({"type": "track", "event": "E", "userId": "u"});
    let first = run(&event, &EnrichConfig::default(), None, None)["messageId"].clone();
    let again = run(&event, &EnrichConfig::default(), None, None)["messageId"].clone();
    let other = run(
        &json!({"type": "track", "event": "F", "userId": "u"}),
        &EnrichConfig::default(),
        None,
        None,
    );
    assert_eq!(first, again);
    assert_ne!(first, other["messageId"]);
    assert!(first.as_str().unwrap().starts_with("braid-"));
    assert_eq!(
        run(&track(), &EnrichConfig::default(), None, None)["messageId"],
        "m1"
    );
}

#[test]
fn ipv4_mapped_addresses_anonymise_as_ipv4() {
    let mapped: IpAddr = "::ffff:203.0.113.77".parse().unwrap();
    assert_eq!(anonymize(mapped).to_string(), "203.0.113.0");
}
