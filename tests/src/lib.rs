//! Helpers for the end-to-end tests: start `braid serve` as a real process, talk HTTP to it,
//! run real client libraries, and read the lake back from disk.
//!
//! The binary is `target/<profile>/braid`, built by `scripts/test.sh` before the tests run (or
//! named by `BRAID_BIN`). The Python clients run from `.venv` (or `BRAID_PYTHON`), the node
//! clients from `tests/clients/node_modules`; `scripts/test.sh` installs both. A missing piece
//! fails the test with a message saying what to run: nothing is skipped silently.

#![allow(
    clippy::missing_panics_doc,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::let_underscore_must_use,
    reason = "test support"
)]

pub mod cdp;

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use flate2::read::MultiGzDecoder;
use serde_json::Value;

/// A free port on 127.0.0.1 (nothing listens on it once this returns).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Waits until something accepts connections on `addr`, failing the test with `what` after
/// `limit`.
pub fn wait_for_port(addr: SocketAddr, limit: Duration, what: &str) {
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(started.elapsed() < limit, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The headers that sign a forward body for ingest now: (`X-Braid-Timestamp`,
/// `X-Braid-Signature`).
pub fn forward_signature(secret: &[u8], body: &[u8]) -> (String, String) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    (
        now.to_string(),
        braid_core::collect::forward::sign(secret, now, body),
    )
}

/// What ingest answered.
#[derive(Clone, Debug)]
pub struct IngestReply {
    /// The status code.
    pub status: u16,
    /// The JSON body, as text.
    pub body: String,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<u32>,
}

/// `POST /v1/forward` with its signature headers, as the handlers take it.
pub fn forward_request<'a>(
    timestamp: &'a str,
    signature: &'a str,
    body: &'a [u8],
) -> braid_edge::HttpRequest<'a> {
    http_request(
        "POST",
        "/v1/forward",
        vec![
            ("x-braid-timestamp", timestamp),
            ("x-braid-signature", signature),
        ],
        body,
    )
}

/// A request to a handler of `braid_edge::Api` as a platform hands it over, from no known
/// address and without fresh ids.
pub fn http_request<'a>(
    method: &'a str,
    path: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
) -> braid_edge::HttpRequest<'a> {
    braid_edge::HttpRequest {
        method,
        path,
        query: None,
        headers,
        body,
        client_ip: None,
        fresh_id: None,
        fresh_key: None,
        location: None,
        edge: None,
    }
}

/// The configuration of an ingest function: it takes batches signed with `secret` for these
/// workspaces, which have no write keys of their own.
pub fn forwarding_config(secret: &str, workspaces: &[&str]) -> braid_core::Config {
    let mut config = braid_core::Config::default();
    config.collect.forward_secret = Some(secret.to_owned());
    config.workspaces = workspaces
        .iter()
        .map(|name| braid_core::collect::WorkspaceConfig {
            name: (*name).to_owned(),
            write_keys: Vec::new(),
            rate_limit: None,
            ..Default::default()
        })
        .collect();
    config
}

/// A forward body signed now with `secret` through the ingest handler over `store`: the code
/// the ingest function runs behind its function URL (`braid_unifier::ingest::handle`).
pub async fn ingest_forward<S: braid_unifier::lake::store::ObjectStore>(
    store: &S,
    secret: &str,
    body: &[u8],
    now: time::OffsetDateTime,
) -> IngestReply {
    let api = braid_edge::Api::new(forwarding_config(secret, &["shop"])).unwrap();
    let (timestamp, signature) = forward_signature(secret.as_bytes(), body);
    let request = forward_request(&timestamp, &signature, body);
    let response = braid_unifier::ingest::handle(&api, store, &request, now).await;
    IngestReply {
        status: response.status,
        retry_after: response.header("retry-after").and_then(|v| v.parse().ok()),
        body: String::from_utf8(response.body).unwrap(),
    }
}

/// A running `s3s-fs`, a real S3-compatible server that checks request signatures, on a free
/// port over its own folder (installed into `.tools` by `scripts/setup.sh --test`, or named by
/// `BRAID_S3S_FS`).
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The address.
    pub addr: SocketAddr,
}

/// The access key `S3Server` accepts.
pub const S3_ACCESS_KEY: &str = "braid-test-access";
/// The secret key `S3Server` accepts.
pub const S3_SECRET_KEY: &str = "braid-test-secret-key";

impl S3Server {
    /// Starts a server storing under `dir`.
    pub fn start(dir: &Path) -> S3Server {
        let bin = std::env::var_os("BRAID_S3S_FS")
            .map_or_else(|| repo_root().join(".tools/bin/s3s-fs"), PathBuf::from);
        assert!(
            bin.exists(),
            "{} is missing: run scripts/setup.sh --test (scripts/test.sh does)",
            bin.display()
        );
        let root = dir.join("s3");
        std::fs::create_dir_all(&root).unwrap();
        let addr = free_addr();
        let port = addr.port();
        let log = std::fs::File::create(dir.join("s3s-fs.log")).unwrap();
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(&root)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let log = dir.join("s3s-fs.log");
        wait_for_port(
            addr,
            Duration::from_secs(20),
            &format!("s3s-fs ({})", log.display()),
        );
        S3Server {
            child,
            endpoint: format!("http://{addr}"),
            addr,
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running moto server (S3 and SQS, with real S3 → SQS object-created notifications), from
/// the test venv, on a free port. It accepts any credentials.
pub struct MotoServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The address.
    pub addr: SocketAddr,
}

impl MotoServer {
    /// Starts a server, logging under `dir`.
    pub fn start(dir: &Path) -> MotoServer {
        let bin = repo_root().join(".venv/bin/moto_server");
        assert!(
            bin.exists(),
            "{} is missing: run scripts/setup.sh --test (scripts/test.sh does)",
            bin.display()
        );
        let addr = free_addr();
        let port = addr.port();
        let log = std::fs::File::create(dir.join("moto.log")).unwrap();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_for_port(addr, Duration::from_secs(30), "moto");
        MotoServer {
            child,
            endpoint: format!("http://{addr}"),
            addr,
        }
    }

    /// One SQS call in the JSON protocol (`action` like `ReceiveMessage`).
    pub fn sqs(&self, action: &str, body: &Value) -> Value {
        // moto routes by the credential scope of the Authorization header; it checks nothing.
        let auth = "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/sqs/aws4_request, \
                    SignedHeaders=host, Signature=0";
        let target = format!("AmazonSQS.{action}");
        let reply = request(
            self.addr,
            "POST",
            "/",
            &[
                ("Authorization", auth),
                ("Content-Type", "application/x-amz-json-1.0"),
                ("X-Amz-Target", &target),
            ],
            body.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(reply.status, 200, "{action}: {}", reply.text());
        reply.json()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy in front of a server that answers the next `fail` requests itself with
/// `503 SlowDown` (S3's throttling answer, with `Connection: close`) and passes every other
/// connection through untouched: faults injected between a client and a real S3 server.
pub struct FaultyProxy {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    fail: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    faulted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FaultyProxy {
    /// Starts a proxy to `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultyProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let fail = Arc::new(AtomicUsize::new(0));
        let faulted = Arc::new(AtomicUsize::new(0));
        let (fail_in, faulted_in) = (Arc::clone(&fail), Arc::clone(&faulted));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let take = fail_in
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if take {
                    faulted_in.fetch_add(1, Ordering::SeqCst);
                    std::thread::spawn(move || answer_slow_down(client));
                } else {
                    std::thread::spawn(move || pipe(client, upstream));
                }
            }
        });
        FaultyProxy {
            endpoint,
            fail,
            faulted,
        }
    }

    /// Makes the next `n` connections fail.
    pub fn fail_next(&self, n: usize) {
        self.fail.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many requests were answered with a fault so far.
    pub fn faulted(&self) -> usize {
        self.faulted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Reads one request (headers, then a `Content-Length` or chunked body) and answers 503.
fn answer_slow_down(mut client: TcpStream) {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 8192];
    let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
    let header_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &buffer[header_end..];
        let complete = match length {
            Some(length) => body.len() >= length,
            None if chunked => body.ends_with(b"0\r\n\r\n"),
            None => true,
        };
        if complete {
            break;
        }
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                <Message>Please reduce your request rate.</Message></Error>";
    let response = format!(
        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(response.as_bytes());
}

/// Copies bytes both ways between a client and `upstream` until either side closes.
fn pipe(client: TcpStream, upstream: SocketAddr) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let (Ok(mut client_read), Ok(mut server_write)) = (client.try_clone(), server.try_clone())
    else {
        return;
    };
    let forward = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut server_read, mut client_write) = (server, client);
    let _ = std::io::copy(&mut server_read, &mut client_write);
    let _ = client_write.shutdown(std::net::Shutdown::Write);
    let _ = forward.join();
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The `braid` binary.
pub fn braid_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("BRAID_BIN") {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/<test> → target/<profile>/braid
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join("braid");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p braid` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A running `braid serve` on a free port with its own data folder.
pub struct Server {
    child: Option<Child>,
    /// Its address.
    pub addr: SocketAddr,
    /// Its data folder.
    pub data: PathBuf,
    /// The write key it accepts (workspace `test`).
    pub key: String,
    log: PathBuf,
}

impl Server {
    /// Starts a server with a fresh data folder under `dir`.
    pub fn start(dir: &Path) -> Server {
        Server::start_with(dir.join("data"), dir.join("braid.log"), &[])
    }

    /// Starts a server on `data` (kept across restarts), logging to `log`, with extra args.
    pub fn start_with(data: PathBuf, log: PathBuf, extra: &[&str]) -> Server {
        Server::start_at(free_addr(), data, log, extra)
    }

    /// [`Server::start_with`] on a given address (one a client was told about earlier).
    pub fn start_at(addr: SocketAddr, data: PathBuf, log: PathBuf, extra: &[&str]) -> Server {
        let key = "wk_e2e_test".to_owned();
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(braid_bin())
            .args(["serve", "--listen", &addr.to_string(), "--data"])
            .arg(&data)
            .args(["--write-key", &key, "--workspace", "test"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let server = Server {
            child: Some(child),
            addr,
            data,
            key,
            log,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(response) = request(self.addr, "GET", "/health", &[], b"")
                && response.status == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "braid serve did not become ready; log:\n{}",
            self.log_text()
        );
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `Authorization` header value for the write key.
    pub fn basic_auth(&self) -> String {
        basic_auth(&self.key)
    }

    /// POSTs a body with the write key as Basic auth.
    pub fn post(&self, path: &str, body: &[u8]) -> Response {
        let auth = self.basic_auth();
        request(
            self.addr,
            "POST",
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body,
        )
        .unwrap()
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Sends SIGTERM and waits for a clean exit, returning whether it exited with success.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "braid serve did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `Basic base64(key:)`.
pub fn basic_auth(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text (for messages).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a new connection (`Connection: close`).
///
/// # Errors
///
/// Any I/O error (the server is down, or closed the connection).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| std::io::Error::other("incomplete HTTP response"))
}

/// A raw HTTP/1.1 response, parsed (`None` when incomplete).
pub fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(raw.get(..split)?).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw.get(split + 4..)?.to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body)?;
    }
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(data.get(..line_end)?).ok()?.trim(), 16)
                .ok()?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(line_end + 2..line_end + 2 + size)?);
        data = data.get(line_end + 4 + size..)?;
    }
}

/// Every line of every object under `data/area` (`raw` or `failed`), parsed.
pub fn read_lake(data: &Path, area: &str) -> Vec<Value> {
    let mut files = Vec::new();
    collect(&data.join(area), &mut files);
    files.sort();
    let mut events = Vec::new();
    for file in files {
        let mut text = String::new();
        MultiGzDecoder::new(std::fs::File::open(&file).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        for line in text.lines() {
            events.push(
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{}: bad line {line:?}: {e}", file.display())),
            );
        }
    }
    events
}

/// Runs the braid binary with `args`; it must succeed.
pub fn braid(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let run = Command::new(braid_bin()).args(args).output().unwrap();
    assert!(run.status.success(), "{run:?}");
    run
}

/// Every profile `braid profiles export` writes for a data folder, by id (`output`: the file
/// to write them to).
pub fn export_profiles(data: &Path, output: &Path) -> std::collections::BTreeMap<String, Value> {
    export_profiles_with(data, output, None)
}

/// The same, reading the configuration `config` (its audiences and computed traits).
pub fn export_profiles_with(
    data: &Path,
    output: &Path,
    config: Option<&Path>,
) -> std::collections::BTreeMap<String, Value> {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "profiles".as_ref(),
        "export".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--output".as_ref(),
        output.as_os_str(),
    ];
    if let Some(config) = config {
        args.extend(["--config".as_ref(), config.as_os_str()]);
    }
    braid(&args);
    std::fs::read_to_string(output)
        .unwrap()
        .lines()
        .map(|line| {
            let profile: Value = serde_json::from_str(line).unwrap();
            (profile["id"].as_str().unwrap().to_owned(), profile)
        })
        .collect()
}

/// The lake object files under `folder`.
pub fn collect(folder: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.to_string_lossy().ends_with(".ndjson.gz") {
            out.push(path);
        }
    }
}

/// Waits until the unify loop of a server on `data` has checkpointed every lake object of
/// `raw/` (compacted objects aside: unify reads the objects they replace): what it applied is
/// then durable in the profile store.
pub fn wait_unified(data: &Path) {
    wait_unified_within(data, Duration::from_secs(30));
}

/// [`wait_unified`], for at most `limit`.
pub fn wait_unified_within(data: &Path, limit: Duration) {
    // Every object (events, and failure records, which the data map counts), by its key, has
    // its checkpoint under the same key.
    let pending = || {
        let mut objects = Vec::new();
        collect(&data.join("raw"), &mut objects);
        collect(&data.join("failed"), &mut objects);
        objects.iter().any(|path| {
            let key = path.strip_prefix(data).unwrap_or(path);
            let compacted = path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("compacted-"));
            let checkpoint = braid_core::catalogue::lake::checkpoint_key(&key.to_string_lossy());
            !compacted && !data.join(checkpoint).exists()
        })
    };
    let started = Instant::now();
    while pending() {
        assert!(started.elapsed() < limit, "unify did not catch up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `command` with `input` as JSON on its standard input, and waits for it: what it wrote
/// and how it ended (its standard error kept apart).
pub fn run_with_json(command: &mut Command, input: &Value) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The Python interpreter of the test venv.
pub fn python() -> PathBuf {
    let path = std::env::var_os("BRAID_PYTHON")
        .map_or_else(|| repo_root().join(".venv/bin/python"), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh, which creates the venv",
        path.display()
    );
    path
}

/// The folder of the client scripts (with `node_modules`).
pub fn clients_dir() -> PathBuf {
    let dir = repo_root().join("tests/clients");
    assert!(
        dir.join("node_modules").exists(),
        "tests/clients/node_modules is missing: run scripts/test.sh (npm ci)"
    );
    dir
}

/// Checks the seven events one client script sent (see `tests/clients/*`) in the lake at `data`.
pub fn check_client_events(data: &Path, user: &str, run: &str, library: &str) {
    let events = read_lake(data, "raw");
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| e["userId"] == user || e["anonymousId"] == format!("anon-{run}"))
        .collect();
    let kinds = |kind: &str| mine.iter().filter(|e| e["type"] == kind).count();
    assert_eq!(mine.len(), 7, "expected 7 events for {user}, got {mine:#?}");
    for kind in ["identify", "page", "screen", "group", "alias"] {
        assert_eq!(kinds(kind), 1, "{kind} for {user}");
    }
    assert_eq!(kinds("track"), 2);
    let find = |kind: &str| {
        *mine
            .iter()
            .find(|e| e["type"] == kind && e["userId"] == user)
            .unwrap()
    };
    assert_eq!(
        find("identify")["traits"]["email"],
        format!("{user}@example.com")
    );
    assert_eq!(find("identify")["traits"]["plan"], "pro");
    let order = find("track");
    assert_eq!(order["event"], "Order Completed");
    assert_eq!(order["properties"]["revenue"], 42.5);
    assert_eq!(find("page")["context"]["campaign"]["source"], "news");
    assert_eq!(find("group")["groupId"], format!("grp-{run}"));
    assert_eq!(find("alias")["previousId"], format!("prev-{run}"));
    for event in &mine {
        assert!(
            event["messageId"].as_str().is_some_and(|id| !id.is_empty()),
            "{event}"
        );
        assert!(
            event["receivedAt"].is_string() && event["timestamp"].is_string(),
            "{event}"
        );
        assert_eq!(event["context"]["library"]["name"], library, "{event}");
        assert_eq!(event["context"]["ip"], "127.0.0.0", "anonymised client IP");
        assert!(event.get("writeKey").is_none());
    }
    let failed = read_lake(data, "failed");
    assert!(failed.is_empty(), "nothing should fail: {failed:#?}");
}

/// Runs a client script against a server and checks it exited 0.
pub fn run_client(program: &Path, script: &str, server: &Server, run: &str, gzip: bool) {
    run_client_at(
        program,
        script,
        &server.url(),
        &server.key,
        run,
        gzip,
        &|| server.log_text(),
    );
}

/// Runs a client script against any endpoint (`http://host:port`) with a write key; `log` gives
/// the endpoint's log for the failure message.
pub fn run_client_at(
    program: &Path,
    script: &str,
    url: &str,
    key: &str,
    run: &str,
    gzip: bool,
    log: &dyn Fn() -> String,
) {
    let output = Command::new(program)
        .arg(clients_dir().join(script))
        .current_dir(clients_dir())
        .env("BRAID_URL", url)
        .env("BRAID_WRITE_KEY", key)
        .env("BRAID_RUN", run)
        .env("BRAID_GZIP", if gzip { "1" } else { "0" })
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{script} failed:\nstdout: {}\nstderr: {}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        log()
    );
}

/// A profile as `GET /v1/profiles/{id}` shows it, read with the profile token `token`.
pub fn profile_json(server: &Server, token: &str, id: &str) -> Value {
    let auth = format!("Bearer {token}");
    let reply = request(
        server.addr,
        "GET",
        &format!("/v1/profiles/{id}"),
        &[("authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{id}: {}", reply.text());
    reply.json()
}

/// A profile view's identifiers, as `type:value`.
pub fn identifiers_of(view: &Value) -> Vec<String> {
    view["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["type"].as_str().unwrap(),
                i["value"].as_str().unwrap()
            )
        })
        .collect()
}

/// A private `PostgreSQL` server on a free port of 127.0.0.1 (Debian's package, which
/// `scripts/setup.sh --test` installs), its data in a temporary folder, stopped and removed when
/// dropped. As root it runs as the `postgres` user (root may not run it).
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    /// Its port.
    pub port: u16,
}

impl PgServer {
    /// Starts one (trust authentication for user `postgres`, no fsync: a test's data).
    pub fn start() -> PgServer {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|dirs| {
                let mut found: Vec<PathBuf> = dirs
                    .filter_map(Result::ok)
                    .map(|d| d.path().join("bin"))
                    .filter(|bin| bin.join("initdb").exists())
                    .collect();
                found.sort_by_key(|p| {
                    p.parent()
                        .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
                        .unwrap_or(0)
                });
                found.pop()
            })
            .expect("PostgreSQL's server is not installed: run scripts/setup.sh --test");
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let dir = tempfile::Builder::new()
            .prefix("braid-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        if as_postgres {
            let chown = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(chown.success());
        }
        let port = free_addr().port();
        let server = PgServer {
            dir,
            bin,
            as_postgres,
            port,
        };
        let data = server.dir.path().join("data");
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off",
            server.dir.path().display()
        );
        let log = server.dir.path().join("log");
        server.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "start".as_ref(),
            ],
        );
        server
    }

    /// A command of the server's, run as the user the server runs as.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let output = self
            .command(program)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
    }

    /// The URL of `database`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs `sql` with `psql` on `database`: its rows, unaligned, one per line.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U",
                "postgres",
                "-d",
                database,
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(["-c", sql])
            .output()
            .unwrap();
        assert!(output.status.success(), "{sql}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        self.command("pg_ctl")
            .arg("-D")
            .arg(data)
            .args(["-m", "immediate", "stop"])
            .output()
            .ok();
    }
}

/// The destinations' status (`braid destinations status --json`) of a data folder, by key.
pub fn destinations_status(
    data: &Path,
    config: &Path,
) -> std::collections::BTreeMap<String, Value> {
    let out = braid(&[
        "destinations".as_ref(),
        "status".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
        "--json".as_ref(),
    ]);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let status: Value = serde_json::from_str(line).unwrap();
            (status["destination"].as_str().unwrap().to_owned(), status)
        })
        .collect()
}
