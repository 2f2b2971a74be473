use serde_json::json;

use super::*;
use crate::activate::destination::{Destination, DestinationKind, MessageKind};

fn config(extra: &str) -> DestinationConfig {
    toml::from_str(&format!("key = \"exports\"\ntype = \"files\"\n{extra}")).unwrap()
}

fn problem(extra: &str) -> String {
    Destination::check(0, &config(extra), &["shop"])
        .unwrap_err()
        .to_string()
}

#[test]
fn a_files_destination_checks_its_settings() {
    let d = Destination::check(0, &config(""), &["shop"]).unwrap();
    assert_eq!(d.config.kind, DestinationKind::Files);
    assert_eq!(d.batch(), DEFAULT_BATCH);
    assert_eq!(d.wait(), std::time::Duration::from_hours(1));
    assert!(d.receives().contains(&MessageKind::ProfileChanged));
    for (extra, says) in [
        (
            "url = \"https://x.example\"",
            "destinations[0].url: not a setting of a files destination",
        ),
        (
            "secret = \"s\"",
            "secret: not a setting of a files destination",
        ),
        ("columns = { plan = \"text\" }", "columns: not a setting"),
        (
            "batch = 50001",
            "batch: 50001 messages per request: 1 to 50000",
        ),
        ("full_every_hours = 721", "full_every_hours: at most 720"),
        (
            "wait_seconds = 86401",
            "wait_seconds: 86401 seconds: at most 86400",
        ),
        (
            "format = \"csv\"\ntraits = [\"a\\nb\"]",
            "traits: a CSV column's name has no line break",
        ),
    ] {
        let found = problem(extra);
        assert!(found.contains(says), "{extra}: {found}");
    }
    // Another kind refuses what is a files destination's.
    let webhook: DestinationConfig = toml::from_str(
        "key = \"crm\"\ntype = \"webhook\"\nurl = \"https://hooks.example.com/\"\nformat = \"csv\"",
    )
    .unwrap();
    let error = Destination::check(0, &webhook, &["shop"])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("format: a setting of a files destination"),
        "{error}"
    );
}

fn view(audiences: &[&str]) -> Value {
    let audiences: Map<String, Value> = audiences
        .iter()
        .map(|a| ((*a).to_owned(), json!({"enteredAt": null})))
        .collect();
    json!({
        "id": "p1",
        "identifiers": [{"type": "email", "value": "ada@example.com"},
                        {"type": "user_id", "value": "u1"},
                        {"type": "anonymous_id", "value": "a1"},
                        {"type": "anonymous_id", "value": "a2"}],
        "traits": {"plan": {"value": "pro"}, "name": {"value": "Ada, \"the first\""}},
        "computedTraits": {"orders": 3, "spend": 12.5},
        "audiences": audiences,
    })
}

#[test]
fn a_row_is_the_profile_or_says_it_left_the_export() {
    let export = Export::of(&config("audiences = [\"vip\"]\nconsent = [\"marketing\"]"));
    let member = view(&["vip", "other"]);
    let row = export.row("p1", Some(&member), 7);
    assert!(!row.deleted);
    assert_eq!(row.audiences, ["vip"], "only the exported audiences");
    assert_eq!(row.identifiers["anonymous_id"], json!(["a1", "a2"]));
    assert_eq!(row.traits["plan"], json!("pro"));
    assert_eq!(row.change_number, 7);
    // Out of the audiences, without the consent, or gone: deleted, nothing else said. (The
    // consent is the destination's rule: a profile that does not grant it has no view.)
    let outside = view(&["other"]);
    let destination = Destination::check(
        0,
        &config("audiences = [\"vip\"]\nconsent = [\"marketing\"]"),
        &["shop"],
    )
    .unwrap();
    let message = crate::activate::destination::Message {
        id: "m".into(),
        number: 8,
        at: None,
        body: json!({"profile": "p1"}),
    };
    let as_now = |consent: bool| crate::activate::destination::ProfileView {
        consent: [("marketing".to_owned(), consent)].into_iter().collect(),
        profile: Some(member.clone()),
        ..Default::default()
    };
    let refused = [Some(as_now(false))];
    let granted = [Some(as_now(true))];
    let messages = [message];
    let unconsented = destination.latest(&messages, &refused)[0].1;
    assert_eq!(destination.latest(&messages, &granted)[0].1, Some(&member));
    for view in [Some(&outside), unconsented, None] {
        let row = export.row("p1", view, 8);
        assert!(row.deleted);
        assert!(row.identifiers.is_empty() && row.traits.is_empty());
    }
}

#[test]
fn files_are_ndjson_or_csv_with_a_header() {
    let ndjson = Export::of(&config("traits = [\"plan\"]"));
    let row = ndjson.row("p1", Some(&view(&["vip"])), 0);
    let gone = ndjson.row("p2", None, 9);
    let text = String::from_utf8(ndjson.file(&[row.clone(), gone.clone()])).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0],
        json!({"profile_id": "p1", "deleted": false,
               "identifiers": {"email": ["ada@example.com"], "user_id": ["u1"],
                               "anonymous_id": ["a1", "a2"]},
               "traits": {"plan": "pro"}, "computed_traits": {"orders": 3, "spend": 12.5},
               "audiences": ["vip"], "change_number": 0})
    );
    assert_eq!(lines[1]["deleted"], json!(true));
    let csv = Export::of(&config(
        "format = \"csv\"\ntraits = [\"plan\", \"name\"]\ncomputed_traits = [\"orders\"]",
    ));
    let row = csv.row("p1", Some(&view(&["vip", "new"])), 4);
    let text = String::from_utf8(csv.file(&[row, gone])).unwrap();
    assert_eq!(
        text,
        "profile_id,deleted,user_id,email,phone,device_id,anonymous_id,plan,name,orders,audiences,change_number\n\
         p1,false,u1,ada@example.com,,,a1;a2,pro,\"Ada, \"\"the first\"\"\",3,new;vip,4\n\
         p2,true,,,,,,,,,,9\n"
    );
    // A trait a spreadsheet would run as a formula is written as text; a number stays one.
    let mut hostile = view(&[]);
    hostile["traits"]["plan"]["value"] = json!("=HYPERLINK(\"https://evil.example\")");
    hostile["traits"]["name"]["value"] = json!("-2+3");
    hostile["computedTraits"]["orders"] = json!(-2);
    let row = csv.row("p3", Some(&hostile), 5);
    let text = String::from_utf8(csv.file(&[row])).unwrap();
    let line = text.lines().nth(1).unwrap();
    assert!(
        line.contains(",\"'=HYPERLINK(\"\"https://evil.example\"\")\",'-2+3,-2,"),
        "{line}"
    );
    assert_eq!(defused("@SUM(A1)"), "'@SUM(A1)");
    assert_eq!(defused("plain"), "plain");
}

#[test]
fn the_manifest_names_the_next_file() {
    let mut manifest = Manifest::default();
    let prefix = "exports/workspace=shop/exports/";
    assert_eq!(
        manifest.next_key(prefix, FileFormat::Csv, Some(1)),
        "exports/workspace=shop/exports/full/sync=1/part-00000.csv"
    );
    manifest.next_full = Some(FullExport {
        sync: 1,
        files: vec![ExportFile::default(); 2],
        completed_at: None,
    });
    assert!(
        manifest
            .next_key(prefix, FileFormat::Csv, Some(1))
            .ends_with("full/sync=1/part-00002.csv")
    );
    manifest.full = manifest.next_full.take();
    manifest.changes = vec![ExportFile::default(); 3];
    assert!(
        manifest
            .next_key(prefix, FileFormat::Ndjson, None)
            .ends_with("changes/sync=1/part-00003.ndjson")
    );
}

#[test]
fn a_complete_full_export_retires_the_one_before_and_deletes_what_was_retired() {
    let file = |key: &str| ExportFile {
        key: key.to_owned(),
        ..ExportFile::default()
    };
    let mut manifest = Manifest::default();
    assert_eq!(manifest.copying(true, 1), Some(1));
    manifest.record(file("f1"), Some(1));
    assert!(manifest.complete(1, "t1".into()).is_empty());
    manifest.record(file("c1"), None);
    // A page of the export in force (a dead letter replayed) is a change.
    assert_eq!(manifest.copying(true, 1), None);
    assert_eq!(manifest.copying(false, 2), None);
    assert_eq!(manifest.copying(true, 2), Some(2));
    manifest.record(file("f2"), Some(2));
    assert!(manifest.complete(2, "t2".into()).is_empty());
    assert_eq!(manifest.retired, ["f1", "c1"]);
    assert!(manifest.changes.is_empty());
    let full = manifest.full.clone().unwrap();
    assert_eq!((full.sync, full.completed_at.as_deref()), (2, Some("t2")));
    // A copy of no profile wrote no file: it still ends, and what was retired goes.
    assert_eq!(manifest.complete(3, "t3".into()), ["f1", "c1"]);
    assert_eq!(manifest.retired, ["f2"]);
}
