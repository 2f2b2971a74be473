//! The standing hostile-input suite: what anyone holding the public write key can send, mixed
//! into ordinary traffic on a real `braid serve`, with exact counts of what was acknowledged,
//! what is in the lake and what is in the profiles.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::io::Write as _;
use std::path::Path;

use braid_tests::{Server, braid, export_profiles, read_lake, request, wait_unified};
use serde_json::{Value, json};

const TOKEN: &str = "hostile-profile-token";
const USERS: usize = 40;
const REQUESTS: usize = 40;
const PER_REQUEST: usize = 10;
const POISON: usize = 30;

/// The bodies no reader of the lake can hold (numbers beyond a 64-bit float, a lone surrogate,
/// nesting past the limit), with the code and a word of the message each must get.
fn poison(n: usize) -> (&'static str, String, &'static str, &'static str) {
    let deep = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    match n % 5 {
        0 => (
            "/v1/batch",
            format!(
                r#"{{"batch":[{{"type":"identify","userId":"u{n}","traits":{{"plan":"HIJACKED","n":1e400}}}}]}}"#
            ),
            "malformed_json",
            "64-bit float",
        ),
        1 => (
            "/v1/track",
            format!(
                r#"{{"event":"Viewed","userId":"u{n}","properties":{{"n":{}}}}}"#,
                "9".repeat(10_000)
            ),
            "malformed_json",
            "64-bit float",
        ),
        2 => (
            "/v1/batch",
            r#"{"batch":[{"type":"track","event":"Viewed","userId":"\ud800"}]}"#.to_owned(),
            "malformed_json",
            "lone surrogate",
        ),
        3 => (
            "/v1/batch",
            format!(
                r#"{{"batch":[{{"type":"track","event":"Viewed","userId":"u{n}","properties":{{"n":{}}}}}]}}"#,
                deep(200)
            ),
            "too_deep",
            "127 levels",
        ),
        _ => (
            "/v1/track",
            format!(
                r#"{{"event":"Viewed","userId":"u{n}","properties":{{"n":{}}}}}"#,
                deep(100_000)
            ),
            "too_deep",
            "127 levels",
        ),
    }
}

/// Request `r` of the ordinary traffic: ten events, each of a different user, so that every
/// user's ten events are spread over ten requests.
fn ordinary(r: usize) -> String {
    let events: Vec<Value> = (0..PER_REQUEST)
        .map(|i| {
            json!({
                "type": "track", "event": "Viewed", "userId": format!("u{}", (r * PER_REQUEST + i) % USERS),
                "messageId": format!("ok-{r}-{i}"), "properties": {"n": i}
            })
        })
        .collect();
    json!({"batch": events}).to_string()
}

/// A lake object as an older version could have written it: one event, and two lines that are
/// not events by today's rule (a number out of range, a lone surrogate).
fn write_legacy_object(data: &Path) -> std::path::PathBuf {
    let folder = data.join("raw/workspace=test/date=2024-05-01/hour=10");
    std::fs::create_dir_all(&folder).unwrap();
    let at = r#""timestamp":"2024-05-01T10:00:00.000Z","receivedAt":"2024-05-01T10:00:00.000Z""#;
    let content = format!(
        "{}\n{}\n{}\n",
        format_args!(
            r#"{{"type":"track","event":"Legacy","userId":"legacy-1","messageId":"legacy-a",{at}}}"#
        ),
        format_args!(
            r#"{{"type":"identify","userId":"legacy-1","messageId":"legacy-b","traits":{{"plan":"HIJACKED","n":1e400}},{at}}}"#
        ),
        format_args!(
            r#"{{"type":"track","event":"Legacy","userId":"\ud800","messageId":"legacy-c",{at}}}"#
        ),
    );
    let path = folder.join("0123456789abcdef0123456789abcdef.ndjson.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(content.as_bytes()).unwrap();
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    path
}

fn profile(server: &Server, id: &str) -> Value {
    braid_tests::profile_json(server, TOKEN, id)
}

/// Eight clients at once, each interleaving ordinary and poison requests, so that group
/// commits mix them: every ordinary request is acknowledged whole, every poison one refused by
/// name.
fn send_mixed_traffic(server: &Server) {
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (addr, key) = (server.addr, server.key.clone());
            std::thread::spawn(move || {
                let auth = braid_tests::basic_auth(&key);
                let headers = [
                    ("authorization", auth.as_str()),
                    ("content-type", "application/json"),
                ];
                let mut answers = Vec::new();
                for n in (t..REQUESTS.max(POISON)).step_by(8) {
                    if n < REQUESTS {
                        let reply =
                            request(addr, "POST", "/v1/batch", &headers, ordinary(n).as_bytes())
                                .unwrap();
                        assert_eq!(reply.status, 200, "{}", reply.text());
                        assert_eq!(reply.json()["accepted"], PER_REQUEST);
                    }
                    if n < POISON {
                        let (path, body, code, word) = poison(n);
                        let reply = request(addr, "POST", path, &headers, body.as_bytes()).unwrap();
                        answers.push((n, reply.status, reply.json(), code, word));
                    }
                }
                answers
            })
        })
        .collect();
    let mut refused = 0;
    for thread in threads {
        for (n, status, body, code, word) in thread.join().unwrap() {
            assert_eq!(status, 400, "poison {n}: {body}");
            let error = &body["errors"][0];
            assert_eq!(error["code"], code, "poison {n}: {body}");
            assert!(
                error["message"].as_str().unwrap().contains(word),
                "poison {n}: {body}"
            );
            if code == "too_deep" {
                assert_eq!(error["limit"], 127);
            }
            refused += 1;
        }
    }
    assert_eq!(refused, POISON);
}

/// Poison requests sent among ordinary ones are refused by name, and keep no one else's
/// events out of the lake or the profiles; a poisoned line already in the lake is kept out
/// alone; the live profiles equal the rebuilt ones. (Before the one rule, ingest accepted
/// `1e400`, unify refused the whole group-commit object, and rebuild applied it.)
#[test]
fn poison_keeps_no_one_elses_events_out_and_live_equals_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let legacy = write_legacy_object(&data);
    let mut server = Server::start_with(
        data.clone(),
        dir.path().join("braid.log"),
        &["--profile-token", TOKEN],
    );

    send_mixed_traffic(&server);
    wait_unified(&data);

    // The lake: every acknowledged event once, every refused body kept in failed/.
    let mut objects = Vec::new();
    braid_tests::collect(&data.join("raw"), &mut objects);
    objects.retain(|object| *object != legacy);
    let raw: Vec<Value> = objects
        .iter()
        .flat_map(|object| read_object(object))
        .collect();
    let mut ids: Vec<&str> = raw
        .iter()
        .map(|e| e["messageId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let acknowledged = REQUESTS * PER_REQUEST;
    assert_eq!((raw.len(), ids.len()), (acknowledged, acknowledged));
    assert_eq!(read_lake(&data, "failed").len(), POISON);

    // The profiles: every user's ten events, no trait an attacker sent.
    for user in 0..USERS {
        let profile = profile(&server, &format!("user_id:u{user}"));
        assert_eq!(
            profile["eventCounts"],
            json!({"Viewed": PER_REQUEST}),
            "u{user}"
        );
        assert!(
            profile["traits"].get("plan").is_none(),
            "u{user}: {profile}"
        );
    }
    // The older object: its one event applied, its two bad lines kept out and named.
    let legacy_profile = profile(&server, "user_id:legacy-1");
    assert_eq!(legacy_profile["eventCounts"], json!({"Legacy": 1}));
    assert!(legacy_profile["traits"].get("plan").is_none());
    let record = data.join(format!(
        "dead-letter/unify/{}.json",
        legacy.strip_prefix(&data).unwrap().display()
    ));
    let record: Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    assert_eq!(record["quarantined"], 2, "{record}");
    assert_eq!(record["lines"][0]["line"], 2);
    assert_eq!(record["lines"][1]["line"], 3);

    // Live equals rebuilt, profile by profile.
    assert!(server.terminate());
    let live = export_profiles(&data, &dir.path().join("live.ndjson"));
    let run = braid(&[
        "profiles".as_ref(),
        "rebuild".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
    ]);
    let said = String::from_utf8_lossy(&run.stderr);
    let applied = REQUESTS * PER_REQUEST + 1;
    assert!(said.contains(&format!("from {applied} events")), "{said}");
    let rebuilt = export_profiles(&data, &dir.path().join("rebuilt.ndjson"));
    assert_eq!(live.len(), USERS + 1);
    assert_eq!(rebuilt, live);
}

/// The events of one lake object.
fn read_object(path: &Path) -> Vec<Value> {
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap()),
        &mut text,
    )
    .unwrap();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}
