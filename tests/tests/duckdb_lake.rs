//! The lake is readable by standard tools with no conversion: DuckDB (the real Python package)
//! runs the README's query over the Hive-partitioned NDJSON.gz files, exact when clients retry.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::doc_markdown,
    reason = "test code"
)]

use std::process::Command;

use braid_tests::{Server, python, read_lake, repo_root};
use serde_json::json;

/// The README's SQL (its view, then its query), on the data folder `data`.
fn readme_sql(data: &std::path::Path) -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let sql = readme
        .split("```sql\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap()
        .replace("braid-data", data.to_str().unwrap());
    sql.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn duckdb_read_json_auto_reads_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let batch = json!({"batch": [
        {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "o1",
         "properties": {"revenue": 10}},
        {"type": "track", "event": "Order Completed", "userId": "u2", "messageId": "o2",
         "properties": {"revenue": 5}},
        {"type": "identify", "userId": "u1", "messageId": "i1", "traits": {"plan": "pro"}},
        {"type": "page", "anonymousId": "a1", "messageId": "p1", "name": "Home"},
    ]});
    // Sent twice, as a client whose first answer was lost does: the lake keeps both copies.
    for _ in 0..2 {
        let reply = server.post("/v1/batch", batch.to_string().as_bytes());
        assert_eq!(reply.status, 200);
    }
    // Another user's event that reuses a messageId is that user's: it counts.
    let reply = server.post(
        "/v1/track",
        br#"{"event":"Order Completed","userId":"u3","messageId":"o1","properties":{"revenue":1}}"#,
    );
    assert_eq!(reply.status, 200);
    assert_eq!(read_lake(&server.data, "raw").len(), 9);

    let statements = readme_sql(&server.data);
    assert_eq!(statements.len(), 2, "a view and a query: {statements:?}");
    let script = r"
import sys, duckdb
con = duckdb.connect()
*setup, query = sys.argv[1:]
for statement in setup:
    con.execute(statement)
for row in con.sql(query).fetchall():
    print('|'.join('' if v is None else str(v) for v in row))
";
    let output = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(&statements)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        rows,
        vec!["test|identify|1|", "test|page|1|", "test|track|3|16"]
    );
}
