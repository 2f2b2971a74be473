//! The model against `braid.example.toml`, strictness, the two formats, secrets and checks.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::*;
use crate::activate::{PersonalizeConfig, ProfileApiConfig};
use crate::catalogue::CompactionConfig;
use crate::catalogue::enrich::EnrichConfig;
use crate::catalogue::validate::Limits;
use crate::collect::{CookieConfig, CorsConfig, RateLimit};
use crate::unify::{Aggregate, AggregateOp, Survivorship};

const EXAMPLE: &str = include_str!("../../../braid.example.toml");

/// Every key path of a JSON value: objects by key, map entries as `*`, array items as `[]`.
fn paths(value: &Value, prefix: &str, maps: &[&str], out: &mut BTreeSet<String>) {
    let join = |key: &str| {
        if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        }
    };
    // A condition tree is a value, not settings.
    if prefix.rsplit('.').next() == Some("when") {
        return;
    }
    match value {
        Value::Object(fields) if maps.contains(&prefix) => {
            for item in fields.values() {
                paths(item, &join("*"), maps, out);
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                let path = join(key);
                out.insert(path.clone());
                paths(item, &path, maps, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                paths(item, &format!("{prefix}[]"), maps, out);
            }
        }
        _ => {}
    }
}

/// Settings shown commented out (`# key = value` under a `[table]` header): those whose
/// default is unset and that an example would turn on.
fn commented_paths(text: &str) -> BTreeSet<String> {
    let mut table = String::new();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            table = header.trim_matches(['[', ']']).to_owned();
            for map in MAPS {
                if let Some(entry) = table.strip_prefix(&format!("{map}.")) {
                    let rest = entry.split_once('.').map_or("", |(_, rest)| rest);
                    table = [map, "*", rest]
                        .into_iter()
                        .filter(|part| !part.is_empty())
                        .collect::<Vec<_>>()
                        .join(".");
                }
            }
        } else if let Some(rest) = line.strip_prefix('#')
            && let Some((key, _)) = rest.trim().split_once('=')
            && key
                .trim()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            out.insert(format!("{table}.{}", key.trim()));
        }
    }
    out
}

/// Map-valued settings: their entries are named by the user.
const MAPS: [&str; 8] = [
    "activate.destinations[].columns",
    "activate.destinations[].mapping.rename",
    "activate.destinations[].mapping.constants",
    "activate.destinations[].mapping.templates",
    "unify.identity.types",
    "unify.identity.trait_identifiers",
    "unify.profiles.traits",
    "segment.audiences",
];

/// A configuration with every optional part present and every list and map holding an item,
/// so that its key paths are every setting of the model.
fn full() -> Config {
    let mut config = Config::default();
    config.workspaces.push(WorkspaceConfig {
        name: "w".into(),
        write_keys: vec!["k".into()],
        rate_limit: Some(RateLimit {
            events_per_second: 1,
            burst: 1,
        }),
        ..Default::default()
    });
    config.collect.identity_cookie = Some(CookieConfig {
        domain: Some("shop.example".into()),
        ..CookieConfig::default()
    });
    config.collect.forward_secret = Some("s".into());
    config.collect.upstream = Some("http://u".into());
    config.collect.sdk.dir = Some("sdk".into());
    config.collect.cors.allowed_origins.push("https://o".into());
    config.catalogue.enrich.internal_domains.push("d".into());
    config.unify.identity.default_country = Some("33".into());
    config
        .unify
        .identity
        .trait_identifiers
        .insert("t".into(), "loyalty".into());
    for rule in config.unify.identity.types.values_mut() {
        rule.limit_window_days = Some(1);
        rule.blocked.push("x".into());
    }
    config.unify.profiles.traits = BTreeMap::from([(
        "plan".to_owned(),
        Survivorship::SourcePriority(vec!["crm".into()]),
    )]);
    config.unify.profiles.aggregates.push(Aggregate {
        name: "revenue".into(),
        event: "Order Completed".into(),
        property: "revenue".into(),
        op: AggregateOp::Sum,
    });
    config
        .unify
        .profiles
        .computed
        .push(crate::unify::computed::ComputedTrait {
            name: "spend".into(),
            event: "Order Completed".into(),
            op: crate::unify::computed::ComputedOp::Sum,
            property: "total".into(),
            filters: vec![crate::unify::computed::Filter {
                property: "currency".into(),
                op: crate::unify::computed::Comparison::Eq,
                value: json!("EUR"),
            }],
            window: crate::unify::computed::Window::Days(30),
            then: None,
        });
    config.segment.audiences.insert(
        "a".into(),
        crate::segment::AudienceConfig {
            name: "A".into(),
            description: "d".into(),
            when: json!({"member": "a"}),
        },
    );
    config.activate.profile_api = Some(ProfileApiConfig { token: "t".into() });
    let destination = r#"{"key": "d", "type": "webhook", "url": "https://x", "retry_seconds": [1],
        "previous_secrets": ["p"], "audiences": ["a"], "computed_traits": ["c"],
        "consent": ["m"], "traits": ["t"], "allow_addresses": ["10.0.0.1"],
        "receives": ["profile_changed"], "segment_secret": "s", "batch": 2, "schema": "s", "table_prefix": "p_",
        "columns": {"plan": "text"}, "wait_seconds": 1, "format": "csv", "full_every_hours": 1,
        "mapping": {"select": ["id"], "rename": {"a": "b"}, "constants": {"c": 1},
                    "templates": {"t": "{id}"}}}"#;
    config
        .activate
        .destinations
        .push(serde_json::from_str(destination).unwrap());
    config.catalogue.api = Some(crate::catalogue::CatalogueApiConfig { token: "a".into() });
    config.activate.personalize = Some(PersonalizeConfig {
        key_secret: "k".into(),
        token_secret: Some("t".into()),
        traits: vec!["plan".into()],
    });
    config
}

#[test]
fn the_example_holds_every_setting_of_the_model() {
    let mut model = BTreeSet::new();
    paths(
        &serde_json::to_value(full()).unwrap(),
        "",
        &MAPS,
        &mut model,
    );
    let example: toml::Table = toml::from_str(EXAMPLE).unwrap();
    let mut shown = commented_paths(EXAMPLE);
    paths(
        &serde_json::to_value(example).unwrap(),
        "",
        &MAPS,
        &mut shown,
    );
    let missing: Vec<&String> = model.difference(&shown).collect();
    assert!(
        missing.is_empty(),
        "settings of the model that braid.example.toml does not show: {missing:?}"
    );
    let unknown: Vec<&String> = shown.difference(&model).collect();
    assert!(
        unknown.is_empty(),
        "braid.example.toml shows settings the model does not have: {unknown:?}"
    );
}

#[test]
fn the_example_is_valid_and_keeps_the_defaults_it_says_it_keeps() {
    let config = Config::load(Some(EXAMPLE), |_| None).unwrap();
    assert_eq!(config.workspaces[0].name, "shop");
    assert_eq!(config.server, ServerConfig::default());
    assert_eq!(config.catalogue.limits, Limits::default());
    assert_eq!(config.catalogue.enrich, EnrichConfig::default());
    assert_eq!(config.catalogue.compaction, CompactionConfig::default());
    assert_eq!(config.collect.cors, CorsConfig::default());
    assert_eq!(config.collect.upstream, None, "edge mode is only shown");
    assert_eq!(
        config.unify.store,
        crate::unify::ProfileStoreConfig::default()
    );
    // Its audiences compile, the one in the text form among them.
    let segments = config.segments().unwrap();
    for key in ["lapsing", "quick_buyers"] {
        assert!(segments.audience(key).is_some(), "{key}");
    }
}

#[test]
fn unknown_settings_are_errors_that_name_them() {
    let error = Config::parse("[catalogue.limits]\nmax_events = 3\n").unwrap_err();
    assert!(
        error.to_string().contains("unknown field `max_events`"),
        "{error}"
    );
    let error = Config::parse("[limits]\nmax_event_bytes = 3\n").unwrap_err();
    assert!(
        error.to_string().contains("unknown field `limits`"),
        "{error}"
    );
    let error = Config::parse(r#"{"unify": {"identity": {"typo": 1}}}"#).unwrap_err();
    assert!(
        error.to_string().starts_with("JSON: unknown field `typo`"),
        "{error}"
    );
}

#[test]
fn toml_and_json_are_the_same_document() {
    let toml = "[[workspaces]]\nname = \"w\"\nwrite_keys = [\"k\"]\n[unify.identity.types.email]\nlimit = 2\n";
    let json = json!({"workspaces": [{"name": "w", "write_keys": ["k"]}],
                      "unify": {"identity": {"types": {"email": {"limit": 2}}}}})
    .to_string();
    let (a, b) = (
        Config::load(Some(toml), |_| None).unwrap(),
        Config::load(Some(&json), |_| None).unwrap(),
    );
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        serde_json::to_value(&b).unwrap()
    );
    assert_eq!(a.unify.identity.rule(&crate::unify::IdType::Email).limit, 2);
    assert!(
        a.unify.identity.rule(&crate::unify::IdType::UserId).unique,
        "user_id keeps its built-in rule"
    );
}

#[test]
fn secrets_from_the_environment_win_over_the_document() {
    let document =
        "[collect]\nforward_secret = \"in-file\"\n[activate.personalize]\nkey_secret = \"k\"\n";
    let env = |name: &str| match name {
        "BRAID_FORWARD_SECRET" => Some("from-env".to_owned()),
        "BRAID_PROFILE_TOKEN" => Some("token".to_owned()),
        "BRAID_CATALOGUE_TOKEN" => Some("admin".to_owned()),
        "BRAID_TOKEN_SECRET" => Some("tokens".to_owned()),
        "BRAID_EDGE_KEY_SECRET" => Some(String::new()),
        _ => None,
    };
    let config = Config::load(Some(document), env).unwrap();
    assert_eq!(config.collect.forward_secret.as_deref(), Some("from-env"));
    assert_eq!(config.activate.profile_api.unwrap().token, "token");
    assert_eq!(config.catalogue.api.unwrap().token, "admin");
    let personalize = config.activate.personalize.unwrap();
    assert_eq!(
        personalize.key_secret, "k",
        "an empty secret counts as absent"
    );
    assert_eq!(personalize.token_secret.as_deref(), Some("tokens"));
    for (name, _) in SECRETS {
        assert!(name.starts_with("BRAID_"), "{name}");
    }
    let none = Config::load(None, |_| None).unwrap();
    assert!(none.workspaces.is_empty() && none.collect.forward_secret.is_none());
}

#[test]
fn checks_name_what_is_wrong() {
    let error = |document: &str| {
        Config::load(Some(document), |_| None)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        error(
            "[[workspaces]]\nname = \"shop\"\nwrite_keys = [\"wk_1\"]\n[catalogue.api]\ntoken = \"wk_1\"\n"
        ),
        "catalogue.api.token must not be a write key: write keys are public, the token is not"
    );
    assert_eq!(
        error("[catalogue]\ntracking_plan = \"plan.json\"\n"),
        "catalogue.tracking_plan: \"plan.json\" is a file, which this platform cannot read: put the plan in the configuration as catalogue.plan"
    );
    assert_eq!(
        error(
            r#"{"catalogue": {"plan": {"events": [{"type": "track", "name": "A", "schema": {"type": "text"}}]}}}"#
        ),
        "tracking plan: event track \"A\": the event: unknown type \"text\""
    );
    assert_eq!(
        error("[[workspaces]]\nname = \"Shop\"\nwrite_keys = []\n"),
        "workspaces: name \"Shop\" must be 1-64 characters of a-z, 0-9, '_' and '-'"
    );
    assert_eq!(
        error("[[workspaces]]\nname = \"a\"\nwrite_keys = [\"\"]\n"),
        "workspaces: \"a\" has an empty write key"
    );
    assert_eq!(
        error(
            "[[workspaces]]\nname = \"a\"\nwrite_keys = [\"k\"]\n[[workspaces]]\nname = \"b\"\nwrite_keys = [\"k\"]\n"
        ),
        "workspaces: write key \"k\" belongs to two workspaces"
    );
    assert_eq!(
        error("[[workspaces]]\nname = \"a\"\n[[workspaces]]\nname = \"a\"\n"),
        "workspaces: \"a\" is listed twice"
    );
    // Write keys are optional: an ingest function behind an edge has none.
    let ingest = Config::load(Some("[[workspaces]]\nname = \"a\"\n"), |_| None).unwrap();
    assert!(ingest.workspace("a").unwrap().write_keys.is_empty());
    assert!(ingest.workspace("b").is_none());
    assert_eq!(
        error("[collect.sdk]\npath = \"/sdk/\"\n"),
        "collect.sdk.path must start with / and not end with one: \"/sdk/\""
    );
    assert!(
        error("[unify.identity.types.phone]\nblocked = [\"(\"]\n")
            .starts_with("identity.types.phone.blocked: \"(\" is not a regular expression"),
    );
}

#[test]
fn allowed_origins_are_origins() {
    for bad in [
        "null",
        "*",
        "shop.example",
        "https://shop.example/",
        "https://",
    ] {
        let mut config = Config::default();
        config.collect.cors.allowed_origins = vec![bad.to_owned()];
        assert_eq!(
            config.check().unwrap_err(),
            ConfigError::BadOrigin {
                origin: bad.to_owned()
            },
            "{bad}"
        );
    }
    let mut config = Config::default();
    config.collect.cors.allowed_origins = vec![
        "https://shop.example".into(),
        "http://127.0.0.1:8080".into(),
    ];
    assert!(config.check().is_ok());
}
