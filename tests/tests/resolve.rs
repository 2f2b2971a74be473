//! `braid resolve` end to end: CSV in, `<id>,cluster_id` out, the report on stdout, and clear
//! errors for bad input. The matching itself is tested in `braid-core` (`resolve/tests.rs`)
//! and measured on FEBRL by `scripts/bench-resolve.sh`.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::format_push_string,
    clippy::cast_precision_loss,
    reason = "test code"
)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use braid_tests::braid_bin;

fn resolve(args: &[&str]) -> Output {
    Command::new(braid_bin())
        .arg("resolve")
        .args(args)
        .output()
        .unwrap()
}

/// 200 customers from a seeded generator; every fourth has a second record with a typo in the
/// last name, the phone written differently and no email. The `person` column is the truth.
fn customers(path: &Path) {
    let first = [
        "ana", "bruno", "carla", "diego", "elena", "felix", "gina", "hugo", "ines", "jonas",
        "kira", "luca", "mara", "nils", "olga", "pavel",
    ];
    let last = [
        "silva", "moreau", "rossi", "novak", "berg", "kowalski", "garcia", "weber", "costa",
        "dubois", "lind", "horvat", "meyer", "santos", "ivanova", "jansen", "keller", "larsen",
    ];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut out =
        String::from("customer_no,first_name,last_name,email,phone,birth_date,zip,person\n");
    let mut n = 0;
    for person in 0..200 {
        let given = first[next(16) as usize];
        let family = last[next(18) as usize];
        let birth = format!(
            "19{:02}-{:02}-{:02}",
            40 + next(60),
            1 + next(12),
            1 + next(28)
        );
        let zip = format!("{:05}", 10_000 + next(80_000));
        let phone = format!("+49 30 {:07}", 1_000_000 + next(8_999_999));
        n += 1;
        out.push_str(&format!("C{n:04},{given},{family},{given}.{family}{person}@mail.example,{phone},{birth},{zip},p{person}\n"));
        if person % 4 == 0 {
            n += 1;
            let typo = format!("{}x", &family[..family.len() - 1]);
            let local = phone.replace("+49 30 ", "030-");
            out.push_str(&format!(
                "C{n:04},{given},{typo},,{local},{birth},{zip},p{person}\n"
            ));
        }
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn resolve_writes_one_cluster_per_person_and_reports_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("customers.csv");
    let output = dir.path().join("clusters.csv");
    customers(&input);
    let run = resolve(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--truth-column",
        "person",
    ]);
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // What it chose, printed for the user.
    assert!(report.contains("250 records from 1 file(s)"), "{report}");
    assert!(
        report.contains("first_name       GivenName     (header)"),
        "{report}"
    );
    assert!(
        report.contains("email            Email         (header)"),
        "{report}"
    );
    assert!(
        report.contains("strong identifiers: email + phone"),
        "{report}"
    );
    assert!(report.contains("clusters 200, largest 2"), "{report}");
    assert!(report.contains("F1 1.0000"), "{report}");
    // One row per record: the id column (the first) and the cluster.
    let text = std::fs::read_to_string(&output).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("customer_no,cluster_id"));
    let rows: HashMap<String, String> = lines
        .map(|l| {
            let (id, cluster) = l.split_once(',').unwrap();
            (id.to_owned(), cluster.to_owned())
        })
        .collect();
    assert_eq!(rows.len(), 250);
    assert_eq!(
        rows["C0001"], rows["C0002"],
        "person 0 and their second record"
    );
    assert_eq!(
        rows["C0002"], "C0001",
        "a cluster is named after its first record"
    );
    assert_ne!(rows["C0001"], rows["C0003"]);
}

#[test]
fn resolve_refuses_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("customers.csv");
    customers(&input);
    let out = dir.path().join("out.csv");
    let (input, out) = (input.to_str().unwrap(), out.to_str().unwrap());
    let error = |args: &[&str]| {
        let run = resolve(args);
        assert!(!run.status.success());
        String::from_utf8_lossy(&run.stderr).into_owned()
    };
    let missing = error(&["--input", input, "--output", out, "--id-column", "nope"]);
    assert!(missing.contains("no column \"nope\""), "{missing}");
    let config = dir.path().join("rules.toml");
    std::fs::write(&config, "threshold = 0.9\nthreshhold = 1\n").unwrap();
    let typo = error(&[
        "--input",
        input,
        "--output",
        out,
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(typo.contains("unknown field `threshhold`"), "{typo}");
    let ragged = dir.path().join("ragged.csv");
    std::fs::write(&ragged, "id,name\n1,ada\n2,grace,extra\n").unwrap();
    let bad = error(&["--input", ragged.to_str().unwrap(), "--output", out]);
    assert!(bad.contains("record 2"), "{bad}");
    // Events as NDJSON are no records: said so, for resolve and for import.
    let events = dir.path().join("events.ndjson");
    std::fs::write(&events, "{\"type\":\"identify\",\"userId\":\"u1\"}\n").unwrap();
    let json = error(&["--input", events.to_str().unwrap(), "--output", out]);
    assert!(json.contains("holds JSON, not CSV"), "{json}");
    let import = Command::new(braid_bin())
        .args(["import", "--input", events.to_str().unwrap()])
        .args(["--url", "http://127.0.0.1:9", "--write-key", "k"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&import.stderr);
    assert!(
        !import.status.success() && said.contains("holds JSON, not CSV"),
        "{said}"
    );
}

/// `braid import` sends the records to a running `braid serve`; the identity graph links
/// them into one profile per cluster `braid resolve` finds on the same file — records of one
/// customer that share no identifier (a typo in the name, the phone written otherwise, no
/// email) included — with each record's traits, and the link explained in the history.
#[test]
fn import_links_records_into_the_profiles_of_their_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("customers.csv");
    customers(&input);
    let clusters = dir.path().join("clusters.csv");
    let run = resolve(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        clusters.to_str().unwrap(),
        "--truth-column",
        "person",
    ]);
    assert!(run.status.success(), "{run:?}");
    let server = braid_tests::Server::start_with(
        dir.path().join("data"),
        dir.path().join("braid.log"),
        &["--profile-token", "t"],
    );
    let import = Command::new(braid_bin())
        .args(["import", "--input", input.to_str().unwrap(), "--url"])
        .arg(server.url())
        .args(["--write-key", &server.key, "--ignore-column", "person"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&import.stdout);
    assert!(import.status.success(), "{import:?}");
    assert!(
        said.contains("250 identify events sent in 1 requests")
            && said.contains("customer_no:<customer_no>"),
        "{said}"
    );
    braid_tests::wait_unified(&server.data);

    let mut cluster_of = HashMap::new();
    for line in std::fs::read_to_string(&clusters).unwrap().lines().skip(1) {
        let (id, cluster) = line.split_once(',').unwrap();
        cluster_of.insert(id.to_owned(), cluster.to_owned());
    }
    assert_eq!(cluster_of.len(), 250);
    let mut profile_of = HashMap::new();
    let mut merged = None;
    for id in cluster_of.keys() {
        let reply = braid_tests::request(
            server.addr,
            "GET",
            &format!("/v1/profiles/customer_no:{id}"),
            &[("Authorization", "Bearer t")],
            b"",
        )
        .unwrap();
        assert_eq!(reply.status, 200, "{id}: {}", reply.text());
        let profile = reply.json();
        assert!(
            profile["traits"]["firstName"]["value"].is_string(),
            "{profile}"
        );
        let records = profile["identifiers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["type"] == "customer_no")
            .count();
        if records == 2 {
            merged = Some(profile.clone());
        }
        profile_of.insert(id.clone(), profile["id"].as_str().unwrap().to_owned());
    }
    let ids: Vec<&String> = cluster_of.keys().collect();
    for a in &ids {
        for b in &ids {
            assert_eq!(
                cluster_of[*a] == cluster_of[*b],
                profile_of[*a] == profile_of[*b],
                "{a} and {b}"
            );
        }
    }
    // A customer's two records: the second joined the first's profile through their
    // cluster (they share no identifier), and the history says so.
    let merged = merged.expect("some profile has two records");
    let cluster = merged["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "customer_no_cluster")
        .unwrap_or_else(|| panic!("{merged}"));
    let history = merged["history"].as_array().unwrap();
    let changes: Vec<&str> = history
        .iter()
        .map(|h| h["change"].as_str().unwrap())
        .collect();
    // The second record's national phone (no default country is configured) is explained.
    assert_eq!(changes, ["created", "linked", "dropped"], "{merged}");
    assert_eq!(history[2]["reason"], "not a valid value for its type");
    assert!(
        history[0]["identifiers"].as_array().unwrap().contains(
            &format!("customer_no_cluster:{}", cluster["value"].as_str().unwrap()).into()
        ),
        "{merged}"
    );
}

/// Pairwise precision, recall and largest cluster of `braid resolve`'s output against the
/// truth, counted here (not by the code under test).
fn pair_quality(clusters: &Path, truth: &HashMap<String, String>) -> (f64, f64, usize) {
    let pairs = |counts: &HashMap<(String, String), u64>| -> u64 {
        counts.values().map(|n| n * (n - 1) / 2).sum()
    };
    let (mut by_both, mut by_cluster, mut by_person) =
        (HashMap::new(), HashMap::new(), HashMap::new());
    let text = std::fs::read_to_string(clusters).unwrap();
    for line in text.lines().skip(1) {
        let (id, cluster) = line.split_once(',').unwrap();
        let person = truth[id].clone();
        *by_both
            .entry((cluster.to_owned(), person.clone()))
            .or_insert(0) += 1;
        *by_cluster
            .entry((cluster.to_owned(), String::new()))
            .or_insert(0) += 1;
        *by_person.entry((person, String::new())).or_insert(0) += 1;
    }
    assert_eq!(by_person.values().sum::<u64>() as usize, truth.len());
    let hits = pairs(&by_both) as f64;
    let largest = by_cluster.values().copied().max().unwrap_or(0) as usize;
    (
        hits / pairs(&by_cluster) as f64,
        hits / pairs(&by_person) as f64,
        largest,
    )
}

/// Sparse records from five sources about people with Zipf names, a fifth of them in
/// households that share a landline, a mailbox or a tablet (`braid_tests::cdp`): resolved with
/// no configuration, nearly every link is right, most are found, and no cluster outgrows a
/// person (at most 10 records each).
#[test]
fn resolve_keeps_households_apart_on_sparse_multi_source_records() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("records.csv");
    let output = dir.path().join("clusters.csv");
    let csv = braid_tests::cdp::records(30_000, 7);
    std::fs::write(&input, &csv).unwrap();
    let truth: HashMap<String, String> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            (cells[0].to_owned(), cells[cells.len() - 1].to_owned())
        })
        .collect();
    let run = resolve(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--id-column",
        "record_id",
        "--truth-column",
        "person",
    ]);
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        report.contains("strong identifiers: email + phone + device_id"),
        "{report}"
    );
    assert!(!report.contains("warning"), "{report}");
    let households: usize = report
        .split(" on records of people with different names")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{report}"));
    assert!(households > 50, "households found: {households}\n{report}");
    let (precision, recall, largest) = pair_quality(&output, &truth);
    let f1 = 2.0 * precision * recall / (precision + recall);
    assert!(
        precision >= 0.97 && f1 >= 0.85,
        "precision {precision:.4}, recall {recall:.4}, F1 {f1:.4}\n{report}"
    );
    assert!(largest <= 13, "largest cluster {largest}\n{report}");
}

/// Two people of one household, John and Mary Smith, share a landline and (on other records)
/// a family mailbox; each has a mobile of their own. Imported into a real `braid serve`, the
/// shared values are left out of the events, and the two stay two profiles while each one's
/// records join.
#[test]
fn import_keeps_a_household_apart() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("customers.csv");
    let mut csv =
        String::from("customer_no,first_name,last_name,email,phone,mobile,street,postcode\n");
    csv.push_str("H1,John,Smith,john.smith@mail.example,+1 555 010 0100,+1 555 010 0111,12 Oak Street,10001\n");
    csv.push_str("H2,Mary,Smith,mary.smith@mail.example,+1 555 010 0100,+1 555 010 0122,12 Oak Street,10001\n");
    csv.push_str("H3,Johnny,Smith,smith.family@mail.example,,+1 555 010 0111,,\n");
    csv.push_str("H4,Mary,Smith,smith.family@mail.example,,+1 555 010 0122,,\n");
    csv.push_str("H5,John,Smith,john.smith@mail.example,,,,\n");
    // Other customers, so that the model has something to learn from.
    for n in 0..60 {
        csv.push_str(&format!(
            "C{n},Given{n},Family{},c{n}@mail.example,+1 555 020 {:04},,{n} Elm Road,2{:04}\n",
            n % 7,
            n,
            n
        ));
    }
    std::fs::write(&input, csv).unwrap();
    let server = braid_tests::Server::start_with(
        dir.path().join("data"),
        dir.path().join("braid.log"),
        &["--profile-token", "t"],
    );
    let import = Command::new(braid_bin())
        .args(["import", "--input", input.to_str().unwrap(), "--url"])
        .arg(server.url())
        .args(["--write-key", &server.key])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&import.stdout);
    assert!(import.status.success(), "{import:?}");
    assert!(
        said.contains(r#"left out: email "smith.family@mail.example", on 2 records of people with different names (a household)"#)
            && said.contains(r#"left out: phone "550100100", on 2 records of people with different names (a household)"#),
        "{said}"
    );
    braid_tests::wait_unified(&server.data);
    let profile_of = |id: &str| {
        let reply = braid_tests::request(
            server.addr,
            "GET",
            &format!("/v1/profiles/customer_no:{id}"),
            &[("Authorization", "Bearer t")],
            b"",
        )
        .unwrap();
        assert_eq!(reply.status, 200, "{id}: {}", reply.text());
        reply.json()["id"].as_str().unwrap().to_owned()
    };
    let (john, mary) = (profile_of("H1"), profile_of("H2"));
    assert_ne!(john, mary, "{said}");
    assert_eq!(profile_of("H3"), john, "{said}");
    assert_eq!(profile_of("H5"), john, "{said}");
    assert_eq!(profile_of("H4"), mary, "{said}");
}
