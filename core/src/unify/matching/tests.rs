#![allow(
    clippy::cast_possible_truncation,
    clippy::float_cmp,
    clippy::needless_range_loop,
    clippy::manual_is_multiple_of,
    reason = "test code: small generated numbers, exact expected values"
)]

use super::*;

/// A deterministic generator of CRM-like people and their messy duplicates.
struct People {
    state: u64,
}

impl People {
    fn next(&mut self) -> u64 {
        self.state = self
            .state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.state >> 33
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() as usize) % items.len()]
    }
    /// One typo: a substituted, deleted or doubled character.
    fn typo(&mut self, value: &str) -> String {
        let mut chars: Vec<char> = value.chars().collect();
        if chars.len() < 3 {
            return value.to_owned();
        }
        let at = 1 + (self.next() as usize) % (chars.len() - 2);
        match self.next() % 3 {
            0 => chars[at] = 'x',
            1 => {
                chars.remove(at);
            }
            _ => chars.insert(at, chars[at]),
        }
        chars.into_iter().collect()
    }
}

const GIVEN: &[&str] = &[
    "ada", "grace", "alan", "edsger", "barbara", "donald", "frances", "john", "margaret", "ken",
    "dennis", "radia", "leslie", "tony", "niklaus", "jean", "sophie", "karen", "peter", "linus",
];
const SURNAME: &[&str] = &[
    "lovelace", "hopper", "turing", "dijkstra", "liskov", "knuth", "allen", "backus", "hamilton",
    "thompson", "ritchie", "perlman", "lamport", "hoare", "wirth", "sammet", "wilson", "jones",
    "smith", "brown",
];
const SUBURB: &[&str] = &[
    "northcote",
    "fitzroy",
    "carlton",
    "brunswick",
    "richmond",
    "kew",
    "hawthorn",
    "preston",
];

/// `n` people, about a third with one or two duplicates; the truth column is the person.
fn crm(n: usize, seed: u64) -> Table {
    let mut g = People { state: seed };
    let headers = [
        "rec_id",
        "given_name",
        "surname",
        "dob",
        "postcode",
        "street_number",
        "suburb",
        "email",
        "truth",
    ];
    let mut rows = Vec::new();
    for person in 0..n {
        let given = g.pick(GIVEN).to_owned();
        let surname = g.pick(SURNAME).to_owned();
        let dob = format!(
            "19{:02}{:02}{:02}",
            40 + g.next() % 60,
            1 + g.next() % 12,
            1 + g.next() % 28
        );
        let postcode = format!("3{:03}", g.next() % 200);
        let number = (1 + g.next() % 150).to_string();
        let suburb = g.pick(SUBURB).to_owned();
        // Some people give the shop's placeholder address: a shared value, not an identity.
        let email = if person % 17 == 0 {
            "noreply@shop.example".to_owned()
        } else {
            format!("{given}.{surname}{person}@mail.example")
        };
        let original = vec![given, surname, dob, postcode, number, suburb, email];
        let mut push = |id: String, fields: &[String]| {
            let mut row = vec![id];
            row.extend(fields.iter().cloned());
            row.push(format!("p{person}"));
            rows.push(row);
        };
        push(format!("rec-{person}-org"), &original);
        let copies = match person % 3 {
            0 => 1,
            1 if person % 2 == 0 => 2,
            _ => 0,
        };
        for copy in 0..copies {
            let mut dup = original.clone();
            // Two corrupted fields of seven (two different ones); the email is dropped in half
            // of the copies.
            let first = (g.next() as usize) % 6;
            let second = (first + 1 + (g.next() as usize) % 5) % 6;
            for field in [first, second] {
                dup[field] = match field {
                    2 if g.next() % 2 == 0 => {
                        format!("{}{}{}", &dup[2][..4], &dup[2][6..], &dup[2][4..6])
                    }
                    4 => String::new(),
                    _ => g.typo(&dup[field]),
                };
            }
            if g.next() % 2 == 0 {
                dup[6] = String::new();
            }
            push(format!("rec-{person}-dup-{copy}"), &dup);
        }
    }
    Table {
        headers: headers.iter().map(|h| (*h).to_owned()).collect(),
        rows,
        sources: Vec::new(),
    }
}

#[test]
fn comparators_give_the_documented_levels() {
    let jw = Comparator::JaroWinkler;
    assert_eq!(jw.level("lovelace", "lovelace"), Some(3));
    assert_eq!(jw.level("lovelace", "lovelacx"), Some(2));
    assert_eq!(jw.level("martha", "marhta"), Some(2), "jw 0.961");
    assert_eq!(jw.level("dixon", "dicksonx"), Some(1), "jw 0.813");
    assert_eq!(jw.level("ada", "knuth"), Some(0));
    assert_eq!(jw.level("", "knuth"), None, "missing is no evidence");
    let lev = Comparator::Levenshtein;
    assert_eq!(lev.level("1234567", "1234567"), Some(3));
    assert_eq!(lev.level("1234567", "1234568"), Some(2));
    assert_eq!(lev.level("1234567", "1234599"), Some(1));
    assert_eq!(lev.level("1234567", "7654321"), Some(0));
    let date = Comparator::Date;
    assert_eq!(date.level("19850412", "19850412"), Some(2));
    assert_eq!(
        date.level("19850412", "19851204"),
        Some(1),
        "day and month swapped"
    );
    assert_eq!(
        date.level("19850412", "19850421"),
        Some(1),
        "transposed digits"
    );
    assert_eq!(date.level("19850412", "19630101"), Some(0));
    assert_eq!(Comparator::Numeric.level("12", "13"), Some(1));
    assert_eq!(Comparator::Numeric.level("12", "15"), Some(0));
    // The last nine digits: a country code or a trunk zero does not make another number.
    assert_eq!(Kind::Phone.normalize("+61 (3) 9555-0100"), "395550100");
    assert_eq!(Kind::Phone.normalize("03 9555 0100"), "395550100");
    assert_eq!(
        Kind::Phone.normalize("+1 555 123 4567"),
        Kind::Phone.normalize("(555) 123-4567")
    );
    assert_eq!(Kind::GivenName.normalize(" Bobby "), "robert");
    let email = Comparator::Email;
    assert_eq!(
        email.level("jane.doe@mail.example", "jane.doe@mail.example"),
        Some(2)
    );
    assert_eq!(
        email.level("jane.doe@mail.example", "jane.dow@mail.example"),
        Some(1),
        "a typo"
    );
    assert_eq!(
        email.level("janedoe@mail.example", "jane.doe@mail.example"),
        Some(0),
        "a dot"
    );
    assert_eq!(
        email.level("jane.doe2@mail.example", "jane.doe@mail.example"),
        Some(0),
        "a digit"
    );
    assert_eq!(
        email.level("jane.doe@mail.example", "jane.doe@post.example"),
        Some(0),
        "a domain"
    );
    assert_eq!(Kind::Surname.normalize("  De  Souza "), "de souza");
}

#[test]
fn profiling_reads_headers_and_values() {
    let table = Table {
        headers: [
            "id",
            "first_name",
            "LastName",
            "contact",
            "born",
            "notes",
            "tier",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows: (0..40)
            .map(|i| {
                vec![
                    format!("c{i}"),
                    GIVEN[i % 20].to_owned(),
                    SURNAME[i % 7].to_owned(),
                    format!("person{i}@mail.example"),
                    format!("1980-03-{:02}", 1 + i % 28),
                    format!("called on day {i}"),
                    ["gold", "silver"][i % 2].to_owned(),
                ]
            })
            .collect(),
        sources: Vec::new(),
    };
    let plan = plan(&table, &ResolveConfig::default(), &[0]).unwrap();
    let kinds: Vec<(&str, Kind, &str)> = plan
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.kind, f.why.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("first_name", Kind::GivenName, "header"),
            ("LastName", Kind::Surname, "header"),
            ("contact", Kind::Email, "values: emails"),
            ("born", Kind::Date, "values: dates"),
            ("notes", Kind::Text, "values: text"),
            ("tier", Kind::Text, "values: text"),
        ]
    );
    assert_eq!(plan.strong, [2], "the emails identify");
    assert!(!plan.blocking.is_empty());
    let bad = ResolveConfig {
        strong: Some(vec!["nope".into()]),
        ..ResolveConfig::default()
    };
    assert_eq!(plan_error(&table, &bad), "no compared column \"nope\"");
}

fn plan_error(table: &Table, config: &ResolveConfig) -> String {
    plan(table, config, &[0]).unwrap_err().to_string()
}

#[test]
fn pair_metrics_count_pairs() {
    // Truth {0,1,2} {3}; predicted {0,1} {2,3}: 1 true positive of 2 predicted, 3 actual.
    let metrics = pair_metrics(&[0, 0, 2, 2], &["a", "a", "a", "b"]);
    assert_eq!(
        metrics,
        PairMetrics {
            true_positives: 1,
            predicted: 2,
            actual: 3
        }
    );
    assert!((metrics.f1() - 0.4).abs() < 1e-12);
}

#[test]
fn clusters_refuse_links_past_the_cap() {
    let mut clusters = Clusters::new(5, 3);
    assert!(clusters.union(0, 1));
    assert!(clusters.union(1, 2));
    assert!(!clusters.union(2, 3), "a fourth record would pass the cap");
    assert!(clusters.union(3, 4));
    assert_eq!(clusters.labels(), [0, 0, 0, 3, 3]);
    assert_eq!(clusters.largest(), 3);
    assert_eq!(clusters.count(), 2);
}

#[test]
fn messy_duplicates_are_found_without_any_configuration() {
    let table = crm(600, 7);
    let truth_column = table.column("truth").unwrap();
    let skip = [0, truth_column];
    let mut resolution = resolve(&table, &ResolveConfig::default(), &skip).unwrap();
    let labels = resolution.clusters.labels();
    let truth: Vec<&str> = (0..table.rows.len())
        .map(|r| table.cell(r, truth_column))
        .collect();
    let metrics = pair_metrics(&labels, &truth);
    assert!(metrics.precision() >= 0.95, "{metrics:?}");
    assert!(metrics.recall() >= 0.90, "{metrics:?}");
    // The shared placeholder email links nobody, and nothing collapses.
    assert!(
        resolution
            .shared
            .iter()
            .any(|s| s.why == Shared::Placeholder && s.value == "noreply@shop.example"),
        "{:?}",
        resolution.shared
    );
    assert!(
        resolution.clusters.largest() <= 3,
        "largest {}",
        resolution.clusters.largest()
    );
    // The model learnt that agreeing on the date of birth is strong evidence.
    let dob = resolution
        .model
        .fields
        .iter()
        .find(|f| f.name == "dob")
        .unwrap();
    assert!(dob.weight(dob.m.len() - 1) > 5.0, "{dob:?}");
    assert!(dob.weight(0) < 0.0, "{dob:?}");
}

#[test]
fn linking_two_files_compares_only_across_them() {
    let mut table = crm(300, 11);
    // File 0: the originals; file 1: the duplicates.
    table.sources = table
        .rows
        .iter()
        .map(|r| u32::from(r[0].contains("-dup-")))
        .collect();
    let truth_column = table.column("truth").unwrap();
    let mut resolution = resolve(&table, &ResolveConfig::default(), &[0, truth_column]).unwrap();
    let labels = resolution.clusters.labels();
    for (a, label) in labels.iter().enumerate() {
        for b in (a + 1)..labels.len() {
            if labels[b] == *label && table.sources[a] == table.sources[b] {
                // Two duplicates of one person meet through their original only.
                assert_eq!(table.rows[a][8], table.rows[b][8]);
            }
        }
    }
    let truth: Vec<&str> = (0..table.rows.len())
        .map(|r| table.cell(r, truth_column))
        .collect();
    assert!(pair_metrics(&labels, &truth).f1() > 0.85);
}

#[test]
fn the_fast_jaro_winkler_and_edit_check_agree_with_strsim() {
    let mut g = People { state: 99 };
    let alphabet = b"abcde";
    let word = |g: &mut People| -> String {
        let len = (g.next() % 12) as usize;
        (0..len)
            .map(|_| char::from(alphabet[(g.next() % 5) as usize]))
            .collect()
    };
    for _ in 0..20_000 {
        let (a, b) = (word(&mut g), word(&mut g));
        let fast = similarity::jaro_winkler(&a, &b);
        let reference = strsim::jaro_winkler(&a, &b);
        assert!(
            (fast - reference).abs() < 1e-12,
            "{a:?} {b:?}: {fast} vs {reference}"
        );
        assert_eq!(
            similarity::within_one_edit(a.as_bytes(), b.as_bytes()),
            strsim::osa_distance(&a, &b) <= 1,
            "{a:?} {b:?}"
        );
    }
    // Beyond the fast path: non-ASCII and long strings.
    for (a, b) in [("zoë", "zoe"), ("müller", "muller")] {
        assert_eq!(similarity::jaro_winkler(a, b), strsim::jaro_winkler(a, b));
    }
    let long = "a".repeat(70);
    assert_eq!(
        similarity::jaro_winkler(&long, "aaa"),
        strsim::jaro_winkler(&long, "aaa")
    );
}

/// Imported records become identify events that the identity graph links into exactly the
/// clusters resolve found (records of one person that share no identifier included), with
/// the shared placeholder email left out of every event.
#[test]
fn imported_records_link_into_the_clusters_resolve_found() {
    use crate::event::Event;
    use crate::unify::{Identifier, IdentityRules, ProfileConfig, Unifier};
    let apply = |unifier: &mut Unifier, event: &serde_json::Value| {
        let line = event.to_string();
        unifier.apply(&Event::from_lake_line(&line).unwrap());
    };
    let table = crm(400, 5);
    let truth_column = table.column("truth").unwrap();
    let skip = [0, truth_column];
    let config = ResolveConfig::default();
    let mut resolution = resolve(&table, &config, &skip).unwrap();
    let labels = resolution.clusters.labels();
    let at = crate::timestamp::parse("2024-05-01T10:00:00Z").unwrap();
    let options = ImportOptions {
        id_type: "rec_id",
        id_column: 0,
        skip: &[truth_column],
        at,
        library: "braid-import",
    };
    let imported = import_events(&table, &mut resolution, &options);
    assert_eq!((imported.unsure_records, imported.unsure_clusters), (0, 0));
    assert_eq!(imported.events.len(), table.rows.len());
    let placeholders = (0..table.rows.len())
        .filter(|&r| row_email(&table, r) == "noreply@shop.example")
        .count();
    assert!(placeholders > config.max_shared);
    assert_eq!(
        imported.shared,
        [(
            "email".to_owned(),
            "noreply@shop.example".to_owned(),
            placeholders,
            Shared::Placeholder
        )]
    );
    // The first record (a person with one duplicate), as it is sent.
    let first = &imported.events[0];
    assert_eq!(first["type"], "identify");
    assert_eq!(first["anonymousId"], "rec_id:rec-0-org");
    assert_eq!(
        first["context"]["externalIds"],
        serde_json::json!([
            {"id": "rec-0-org", "type": "rec_id", "collection": "users", "encoding": "none"},
            {"id": "rec-0-org", "type": "rec_id_cluster", "collection": "users", "encoding": "none"}
        ])
    );
    let row = &table.rows[0];
    assert_eq!(
        first["traits"],
        serde_json::json!({"firstName": row[1], "lastName": row[2], "birthday": row[3],
            "address": {"postalCode": row[4], "street": row[5], "city": row[6]}}),
        "the placeholder email of person 0 is left out"
    );
    let with_email = (0..table.rows.len())
        .find(|&r| !matches!(row_email(&table, r).as_str(), "" | "noreply@shop.example"))
        .unwrap();
    assert_eq!(
        imported.events[with_email]["traits"]["email"],
        row_email(&table, with_email)
    );
    assert!(
        imported.events[0]["messageId"]
            .as_str()
            .unwrap()
            .starts_with("import-")
    );
    // Through the identity graph: one profile per cluster.
    let mut unifier = Unifier::new(IdentityRules::default(), ProfileConfig::default());
    for event in &imported.events {
        apply(&mut unifier, event);
    }
    let profile_of = |row: usize| {
        let id = Identifier::parse(&format!("rec_id:{}", table.cell(row, 0))).unwrap();
        unifier.graph().profile_of(&id).unwrap().id.clone()
    };
    for a in 0..table.rows.len() {
        for b in a + 1..table.rows.len() {
            assert_eq!(
                labels[a] == labels[b],
                profile_of(a) == profile_of(b),
                "records {a} and {b}"
            );
        }
    }
    // Importing the same file again changes nothing.
    let before = unifier.snapshot();
    let again = import_events(&table, &mut resolution, &options);
    for event in &again.events {
        apply(&mut unifier, event);
    }
    assert!(unifier.snapshot() == before);
}

fn row_email(table: &Table, row: usize) -> String {
    table.cell(row, table.column("email").unwrap()).to_owned()
}

#[test]
fn two_people_a_letter_apart_at_one_address_stay_two() {
    // `loka` and `voka mian` live at one address; each appears twice. Their names are one
    // letter apart, so every cross pair looks like a typo of one person.
    let mut table = crm(600, 7);
    let household = [
        ("h-loka-1", "loka", "loka.mian@mail.example"),
        ("h-loka-2", "loka", ""),
        ("h-voka-1", "voka", "voka47@mail.example"),
        ("h-voka-2", "voka", ""),
    ];
    for (id, given, email) in household {
        let row = [id, given, "mian", "", "3999", "12", "kew", email, id];
        table
            .rows
            .push(row.iter().map(|c| (*c).to_owned()).collect());
    }
    let skip = [0, table.column("truth").unwrap()];
    let mut resolution = resolve(&table, &ResolveConfig::default(), &skip).unwrap();
    let labels = resolution.clusters.labels();
    let label = |id: &str| labels[table.rows.iter().position(|r| r[0] == id).unwrap()];
    assert_eq!(label("h-loka-1"), label("h-loka-2"));
    assert_eq!(label("h-voka-1"), label("h-voka-2"));
    assert_ne!(label("h-loka-1"), label("h-voka-1"));
}
