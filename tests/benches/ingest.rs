//! Figures for the cloud back end, on this machine:
//! - events/s through the ingest handler into `s3s-fs` (a real S3-compatible server, on the same
//!   machine: it shares the CPU with the handler, so this is a floor, not S3's ceiling), with
//!   100-event batches and 16 concurrent requests, and the S3 requests it takes;
//! - the Lambda functions' init time: from process start to the first request for an event from
//!   the runtime API (what Lambda reports as Init Duration, minus fetching the code), measured
//!   with a minimal runtime API of our own, and their size on disk.
//!
//! Needs `scripts/setup.sh --test` (s3s-fs) and, for the init figures,
//! `scripts/lambda-build.sh` (the release binaries); missing ones are reported, not faked.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::indexing_slicing,
    clippy::let_underscore_must_use,
    reason = "a benchmark report"
)]

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::Credentials;
use braid_core::collect::forward::{ForwardBatch, sign};
use braid_edge::Api;
use braid_tests::{
    S3_ACCESS_KEY, S3_SECRET_KEY, S3Server, forward_request, forwarding_config, repo_root,
};
use braid_unifier::lake::store::ObjectStore;
use braid_unifier::lake::store::{S3Store, s3_client};
use serde_json::json;
use time::OffsetDateTime;

const BATCH: usize = 100;
const BATCHES: usize = 2_000;
const CONCURRENCY: usize = 16;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = S3Server::start(dir.path());
    let credentials = Credentials::new(S3_ACCESS_KEY, S3_SECRET_KEY, None, None, "bench");
    let client = s3_client("us-east-1", credentials, Some(&server.endpoint));
    runtime
        .block_on(client.create_bucket().bucket("bench").send())
        .unwrap();
    let store = Arc::new(S3Store::new(client, "bench"));
    runtime.block_on(throughput(&store));
    init_times();
}

fn batch_body(seed: usize) -> Vec<u8> {
    let received = OffsetDateTime::now_utc();
    let mut events = Vec::new();
    for i in 0..BATCH {
        let event = json!({
            "type": "track", "event": "Product Viewed", "userId": format!("user-{}", (seed * BATCH + i) % 10_000),
            "messageId": format!("bench-{seed}-{i}"), "timestamp": "2024-05-01T10:00:00.000Z",
            "receivedAt": "2024-05-01T10:00:01.000Z",
            "properties": {"product_id": format!("sku-{i}"), "price": 19.99, "currency": "EUR"},
            "context": {"library": {"name": "analytics.js", "version": "5.0.0"},
                        "page": {"url": format!("https://shop.example/p/sku-{i}?utm_source=news")},
                        "ip": "203.0.113.0",
                        "agent": {"browser": "Chrome", "os": "Mac OSX", "deviceType": "desktop", "bot": false}}
        });
        events.extend_from_slice(event.to_string().as_bytes());
        events.push(b'\n');
    }
    ForwardBatch::write("bench", received, &events, b"")
}

async fn throughput(store: &Arc<S3Store>) {
    let bodies: Vec<Vec<u8>> = (0..BATCHES).map(batch_body).collect();
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    let bodies = Arc::new(bodies);
    let api = Arc::new(Api::new(forwarding_config("bench", &["bench"])).unwrap());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CONCURRENCY {
        let (store, bodies, api) = (Arc::clone(store), Arc::clone(&bodies), Arc::clone(&api));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for body in bodies.iter().skip(worker).step_by(CONCURRENCY) {
                let now = OffsetDateTime::now_utc();
                let signature = sign(b"bench", now.unix_timestamp(), body);
                let timestamp = now.unix_timestamp().to_string();
                let request = forward_request(&timestamp, &signature, body);
                let sent = Instant::now();
                let reply =
                    braid_unifier::ingest::handle(&api, store.as_ref(), &request, now).await;
                assert_eq!(reply.status, 200, "{:?}", reply.json_body());
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    let objects = store.list("raw/").await.unwrap().len();
    let events = BATCHES * BATCH;
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "ingest handler → s3s-fs (same machine), {BATCH}-event batches, {CONCURRENCY} concurrent"
    );
    println!(
        "  events            {events} in {BATCHES} batches, {:.1} MB of forward bodies",
        bytes as f64 / 1e6
    );
    println!("  time              {seconds:.3} s");
    println!(
        "  throughput        {:.0} events/s",
        events as f64 / seconds
    );
    println!(
        "  latency           p50 {:?}  p99 {:?}",
        pick(0.5),
        pick(0.99)
    );
    println!("  objects written   {objects} (one PutObject per batch)");
    let puts_per_million = objects as f64 * 1e6 / events as f64;
    println!(
        "  S3 PUTs           {puts_per_million:.0} per million events = ${:.3} per million events at $0.005 per 1,000 PUTs",
        puts_per_million * 0.005 / 1000.0
    );
}

/// Process start → first `GET /2018-06-01/runtime/invocation/next`, for each release binary.
fn init_times() {
    println!();
    println!("Lambda functions (release, target/lambda/*/bootstrap): size and init time");
    for function in ["ingest", "unify", "compact"] {
        let bin = repo_root().join(format!("target/lambda/{function}/bootstrap"));
        let Ok(meta) = std::fs::metadata(&bin) else {
            println!("  {function:8} not built: run scripts/lambda-build.sh");
            continue;
        };
        let mut samples = Vec::new();
        for _ in 0..5 {
            samples.push(init_time(&bin));
        }
        samples.sort();
        println!(
            "  {function:8} {:.1} MB   init median {:?} (min {:?}, max {:?}, 5 starts)",
            meta.len() as f64 / 1e6,
            samples[2],
            samples[0],
            samples[4]
        );
    }
}

fn init_time(bin: &std::path::Path) -> Duration {
    let api = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = api.local_addr().unwrap();
    let started = Instant::now();
    let mut child = Command::new(bin)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .env("AWS_ACCESS_KEY_ID", "AK")
        .env("AWS_SECRET_ACCESS_KEY", "SK")
        .env("AWS_REGION", "us-east-1")
        .env("BRAID_BUCKET", "bench")
        .env("BRAID_FORWARD_SECRET", "bench")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut stream, _) = api.accept().unwrap();
    let mut buffer = [0_u8; 512];
    let _ = stream.read(&mut buffer);
    let elapsed = started.elapsed();
    assert!(
        String::from_utf8_lossy(&buffer).starts_with("GET /2018-06-01/runtime/invocation/next"),
        "unexpected first request: {}",
        String::from_utf8_lossy(&buffer)
    );
    let _ = stream.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n");
    let _ = child.kill();
    let _ = child.wait();
    elapsed
}
