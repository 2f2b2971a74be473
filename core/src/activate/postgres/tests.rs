use serde_json::json;

use super::*;
use crate::activate::destination::{
    Destination, DestinationKind, Message, MessageKind, ProfileView,
};

fn config(extra: &str) -> DestinationConfig {
    let text = format!(
        "key = \"warehouse\"\ntype = \"postgres\"\n\
         url = \"postgres://braid@db.example.com:5432/marketing\"\n{extra}"
    );
    toml::from_str(&text).unwrap()
}

fn destination(extra: &str) -> Destination {
    Destination::check(0, &config(extra), &["shop"]).unwrap()
}

fn problem(extra: &str) -> String {
    Destination::check(0, &config(extra), &["shop"])
        .unwrap_err()
        .to_string()
}

#[test]
fn a_postgres_destination_checks_its_own_settings_and_refuses_a_webhook_s() {
    let d = destination("");
    assert_eq!(d.config.kind, DestinationKind::Postgres);
    assert_eq!(d.batch(), DEFAULT_BATCH);
    assert_eq!(
        d.receives(),
        [
            MessageKind::AudienceEntered,
            MessageKind::AudienceExited,
            MessageKind::ComputedTrait,
            MessageKind::ProfileChanged
        ]
    );
    // No signing key needed: its secret is a password, and may be absent.
    assert!(d.require_key().is_ok());
    for (extra, says) in [
        (
            "batch = 1001",
            "destinations[0].batch: 1001 messages per request: 1 to 1000",
        ),
        ("batch = 0", "1 to 1000"),
        (
            "method = \"PUT\"",
            "destinations[0].method: a setting of a webhook",
        ),
        (
            "allow_addresses = [\"10.0.0.0/8\"]",
            "allow_addresses: a setting of a webhook",
        ),
        (
            "mapping = { select = [\"id\"] }",
            "mapping: a setting of a webhook",
        ),
        ("schema = \"Public\"", "destinations[0].schema: 1-40 of a-z"),
        ("schema = \"a;drop\"", "schema: 1-40 of a-z"),
        ("table_prefix = \"x\\\"\"", "table_prefix: 0-40 of a-z"),
        (
            "columns = { traits = \"text\" }",
            "columns.traits: its column \"traits\" is one of the table's own",
        ),
        (
            "columns = { \"first-name\" = \"text\", first_name = \"integer\" }",
            "is another trait's column too",
        ),
        ("receives = []", "receives: name what it receives"),
    ] {
        let found = problem(extra);
        assert!(found.contains(says), "{extra}: {found}");
    }
    let mut https = config("");
    https.url = "https://db.example.com".to_owned();
    let error = Destination::check(0, &https, &["shop"])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("destinations[0].url: a postgres:// URL"),
        "{error}"
    );
    // A column type that is not one is a parse error naming the types.
    let text = "key = \"w\"\ntype = \"postgres\"\nurl = \"postgres://h/d\"\ncolumns = { plan = \"varchar\" }";
    let error = toml::from_str::<DestinationConfig>(text)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("text") && error.contains("timestamp"),
        "{error}"
    );
    // A webhook refuses what is a database's.
    let webhook: DestinationConfig = toml::from_str(
        "key = \"crm\"\ntype = \"webhook\"\nurl = \"https://hooks.example.com/\"\n\
         columns = { plan = \"text\" }",
    )
    .unwrap();
    let error = Destination::check(0, &webhook, &["shop"])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("columns: a setting of a postgres destination"),
        "{error}"
    );
}

#[test]
fn a_trait_s_value_goes_into_its_column_or_leaves_it_empty() {
    use ColumnType::*;
    let cases = [
        (Text, json!("pro"), json!("pro")),
        (Text, json!(3), json!("3")),
        (Text, json!({"a": 1}), json!("{\"a\":1}")),
        (Integer, json!(42), json!(42)),
        (Integer, json!(42.0), json!(42)),
        (Integer, json!(" 42 "), json!(42)),
        (Integer, json!(4.5), Value::Null),
        (Integer, json!(1e300), Value::Null),
        (Integer, json!("forty"), Value::Null),
        (Number, json!(4.5), json!(4.5)),
        (Number, json!("4.5"), json!(4.5)),
        (Number, json!("NaN"), Value::Null),
        (Number, json!("inf"), Value::Null),
        (Number, json!(true), Value::Null),
        (Boolean, json!(true), json!(true)),
        (Boolean, json!("false"), json!(false)),
        (Boolean, json!("yes"), Value::Null),
        (
            Timestamp,
            json!("2026-12-07T10:00:00Z"),
            json!("2026-12-07T10:00:00.000Z"),
        ),
        (
            Timestamp,
            json!("2026-12-07T10:00:00+01:00"),
            json!("2026-12-07T09:00:00.000Z"),
        ),
        (Timestamp, json!("yesterday"), Value::Null),
        (Timestamp, json!(1_765_000_000), Value::Null),
        (Text, Value::Null, Value::Null),
    ];
    for (kind, value, want) in cases {
        assert_eq!(kind.convert(&value), want, "{kind:?} of {value}");
    }
}

#[test]
fn column_names_are_plain_sql_names() {
    assert_eq!(column_name("firstName"), "firstname");
    assert_eq!(column_name("plan.tier"), "plan_tier");
    assert_eq!(column_name("2fa"), "t_2fa");
    assert_eq!(column_name("ünï"), "_n_");
}

/// A profile as the profile API shows it.
fn view(id: &str, plan: &Value, audiences: &Value) -> Value {
    json!({
        "id": id,
        "identifiers": [{"type": "email", "value": "ada@example.com", "firstSeen": "2026-12-01T00:00:00.000Z"}],
        "traits": {
            "plan": {"value": plan, "at": "2026-12-01T00:00:00.000Z", "source": "web", "messageId": "m1"},
            "secret_note": {"value": "x", "at": "2026-12-01T00:00:00.000Z", "source": "web", "messageId": "m1"},
        },
        "firstSeen": "2026-12-01T00:00:00.000Z",
        "lastSeen": "2026-12-02T00:00:00.000Z",
        "eventCounts": {"Order Completed": 2},
        "computedTraits": {"orders_30d": 2},
        "audiences": audiences,
    })
}

#[test]
fn a_batch_becomes_rows_of_each_profile_as_it_is_last() {
    let tables = Tables::of(&config(
        "columns = { plan = \"text\" }\ntraits = [\"plan\"]\nschema = \"crm\"\ntable_prefix = \"b_\"",
    ));
    assert_eq!(tables.profiles(), "\"crm\".\"b_profiles\"");
    let p1 = view(
        "p1",
        &json!("pro"),
        &json!({"vip": {"enteredAt": "2026-12-02T00:00:00.000Z"}}),
    );
    let p1_later = view("p1", &json!("max\u{0}"), &json!({}));
    let p2 = view(
        "p2",
        &json!(7),
        &json!({"vip": {"enteredAt": null}, "new": {"enteredAt": null}}),
    );
    // A request's changes, each with its profile as it is (the same profile twice: its last
    // state counts), made rows as the runtime makes them.
    let destination = destination("");
    let (messages, views): (Vec<Message>, Vec<Option<ProfileView>>) = [
        ("p1", Some(&p1), 10),
        ("gone", None, 11),
        ("p2", Some(&p2), 12),
        ("p1", Some(&p1_later), 13),
    ]
    .into_iter()
    .map(|(id, view, number)| {
        let message = Message {
            id: format!("m{number}"),
            number,
            at: None,
            body: json!({"profile": id}),
        };
        let view = view.map(|v| ProfileView {
            profile: Some(v.clone()),
            ..ProfileView::default()
        });
        (message, view)
    })
    .unzip();
    let rows = tables.rows(&destination.latest(&messages, &views), 3);
    // Each profile once, in the order first met; the gone one's rows deleted.
    assert_eq!(rows.touched, [json!("p1"), json!("gone"), json!("p2")]);
    assert_eq!(rows.gone, [json!("gone")]);
    assert_eq!(rows.profiles.len(), 2);
    let first = &rows.profiles[0];
    // The last state, NUL made U+FFFD (PostgreSQL holds none), only the chosen traits.
    assert_eq!(first["traits"], json!({"plan": "max\u{fffd}"}));
    assert_eq!(first["plan"], json!("max\u{fffd}"));
    assert_eq!(first["change_number"], json!(13));
    assert_eq!(first["sync"], json!(3));
    assert_eq!(first["audiences"], json!([]));
    assert_eq!(first["identifiers"][0]["value"], json!("ada@example.com"));
    assert_eq!(first["computed_traits"], json!({"orders_30d": 2}));
    assert_eq!(first["event_counts"], json!({"Order Completed": 2}));
    assert_eq!(first["first_seen"], json!("2026-12-01T00:00:00.000Z"));
    // A number trait in a text column is its text.
    assert_eq!(rows.profiles[1]["plan"], json!("7"));
    // Memberships: p2's two (p1 left its audience by its last state).
    let mut members: Vec<(String, String)> = rows
        .members
        .iter()
        .map(|m| {
            (
                m["profile_id"].as_str().unwrap().to_owned(),
                m["audience"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    members.sort();
    assert_eq!(
        members,
        [("p2".into(), "new".into()), ("p2".into(), "vip".into())]
    );
}

#[test]
fn the_statements_name_the_tables_and_the_typed_columns() {
    let tables = Tables::of(&config(
        "columns = { ltv = \"number\", signedUp = \"timestamp\" }",
    ));
    let migrations = tables.migrations();
    assert!(
        !migrations.iter().any(|m| m.contains("CREATE SCHEMA")),
        "public exists"
    );
    assert!(migrations.iter().any(|m| m.contains(
        "ALTER TABLE \"public\".\"braid_profiles\" ADD COLUMN IF NOT EXISTS \"ltv\" double precision"
    )));
    assert!(
        migrations
            .iter()
            .any(|m| m.contains("ADD COLUMN IF NOT EXISTS \"signedup\" timestamptz"))
    );
    let upsert = tables.upsert_profiles();
    assert!(
        upsert.contains(", \"ltv\" double precision, \"signedup\" timestamptz)"),
        "{upsert}"
    );
    assert!(upsert.contains("\"ltv\" = EXCLUDED.\"ltv\""), "{upsert}");
    let schema = Tables::of(&config("schema = \"crm\""));
    assert_eq!(
        schema.migrations()[0],
        "CREATE SCHEMA IF NOT EXISTS \"crm\""
    );
    assert_ne!(schema.lock_key(), tables.lock_key());
}

#[test]
fn a_password_in_the_url_is_not_shown() {
    let mut shown = config("");
    for (url, want) in [
        (
            "postgres://braid:s3cret@db:5432/m",
            "postgres://braid:***@db:5432/m",
        ),
        (
            "postgres://braid@db/m?sslmode=require&password=x",
            "postgres://braid@db/m?…",
        ),
        ("postgresql://db/m", "postgresql://db/m"),
    ] {
        url.clone_into(&mut shown.url);
        let d = Destination::check(0, &shown, &["shop"]).unwrap();
        assert_eq!(d.shown_url(), want);
    }
}
