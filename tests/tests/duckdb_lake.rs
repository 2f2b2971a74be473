//! The lake is readable by standard tools with no conversion: DuckDB (the real Python package)
//! runs the README's query over the Hive-partitioned NDJSON.gz files.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::doc_markdown,
    reason = "test code"
)]

use std::process::Command;

use braid_tests::{Server, python, read_lake};
use serde_json::json;

#[test]
fn duckdb_read_json_auto_reads_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let batch = json!({"batch": [
        {"type": "track", "event": "Order Completed", "userId": "u1", "properties": {"revenue": 10}},
        {"type": "track", "event": "Order Completed", "userId": "u2", "properties": {"revenue": 5}},
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}},
        {"type": "page", "anonymousId": "a1", "name": "Home"},
    ]});
    assert_eq!(
        server
            .post("/v1/batch", batch.to_string().as_bytes())
            .status,
        200
    );
    assert_eq!(
        server
            .post(
                "/v1/track",
                br#"{"event":"Order Completed","userId":"u3","properties":{"revenue":1}}"#
            )
            .status,
        200
    );
    assert_eq!(read_lake(&server.data, "raw").len(), 5);

    // The query from the README, on this server's data folder.
    let script = r"
import sys, duckdb
rows = duckdb.sql(f'''
  SELECT workspace, type, count(*) AS events, sum(properties.revenue) AS revenue
  FROM read_json_auto('{sys.argv[1]}/raw/*/*/*/*.ndjson.gz', hive_partitioning = true)
  GROUP BY ALL ORDER BY type
''').fetchall()
for row in rows:
    print('|'.join('' if v is None else str(v) for v in row))
";
    let output = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(&server.data)
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
