//! [`Kv`] on SlateDB (pinned `=0.18.0`: its format is only guaranteed between adjacent
//! versions), over any `object_store`: a local folder for `braid serve`, a bucket for the unify
//! Lambda (feature `s3`).
//!
//! SlateDB has one writer per database: a second writer opening it fences the first, whose
//! writes then fail (`fenced`, not retriable: the caller must reopen). Braid keeps one writer
//! per workspace outside SlateDB (a lock file locally, reserved concurrency 1 for the Lambda),
//! so fencing only ends a writer that was already superseded.

use std::sync::Arc;
use std::time::Duration;

use slatedb::config::{
    CompressionCodec, GarbageCollectorDirectoryOptions, GarbageCollectorOptions, PutOptions,
    ScanOptions, Settings, Ttl,
};
use slatedb::object_store::ObjectStore;
use slatedb::object_store::local::LocalFileSystem;
use slatedb::{CloseReason, Db, DbReader, ErrorKind, WriteBatch};

use super::{Entry, Kv, KvError, KvHome, KvWrite};

/// Scans of at least this many entries read ahead ([`SlateKv::scan`]).
const LONG_SCAN: usize = 256;

/// How a database is opened.
#[derive(Clone, Debug)]
pub struct SlateOptions {
    /// How often the write-ahead log is flushed when nobody asks ([`Kv::flush`] flushes at
    /// once).
    pub flush_interval: Duration,
    /// Whether the object store can overwrite an object conditionally (`If-Match`): S3 can, a
    /// local folder cannot, and SlateDB's garbage collector then collects old manifests only
    /// without its boundary files.
    pub conditional_overwrites: bool,
}

impl Default for SlateOptions {
    fn default() -> Self {
        SlateOptions {
            flush_interval: Duration::from_millis(100),
            conditional_overwrites: true,
        }
    }
}

fn gc_options(options: &SlateOptions) -> GarbageCollectorOptions {
    GarbageCollectorOptions {
        boundary_files_enabled: options.conditional_overwrites,
        ..GarbageCollectorOptions::default()
    }
}

/// A SlateDB database, opened as its writer or as a reader (which follows what the writer
/// made durable, and cannot write).
#[derive(Clone)]
pub struct SlateKv {
    db: Arc<Handle>,
}

enum Handle {
    Writer(Db),
    Reader(Box<DbReader>),
}

impl std::fmt::Debug for SlateKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlateKv").finish_non_exhaustive()
    }
}

fn kv_error(operation: &'static str, error: &slatedb::Error) -> KvError {
    if let ErrorKind::Closed(CloseReason::Fenced) = error.kind() {
        return KvError::Fenced { operation };
    }
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    KvError::new(
        operation,
        message,
        matches!(error.kind(), ErrorKind::Unavailable),
    )
}

impl SlateKv {
    /// Opens (creating) the database at `path` of `store`.
    ///
    /// # Errors
    ///
    /// When the store cannot be read or the database is not a SlateDB database.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        path: &str,
        options: &SlateOptions,
    ) -> Result<SlateKv, KvError> {
        let settings = Settings {
            flush_interval: Some(options.flush_interval),
            compression_codec: Some(CompressionCodec::Lz4),
            garbage_collector_options: Some(gc_options(options)),
            ..Settings::default()
        };
        // Opening is a large future (recovery of the log): on the heap.
        let db = Box::pin(
            Db::builder(path.to_owned(), store)
                .with_settings(settings)
                .build(),
        )
        .await
        .map_err(|e| kv_error("open", &e))?;
        Ok(SlateKv {
            db: Arc::new(Handle::Writer(db)),
        })
    }

    /// Opens the database at `path` of `store` as a reader, beside its writer (another
    /// process, say).
    ///
    /// # Errors
    ///
    /// When there is no database there, or it cannot be read.
    pub async fn open_reader(store: Arc<dyn ObjectStore>, path: &str) -> Result<SlateKv, KvError> {
        let reader = Box::pin(DbReader::builder(path.to_owned(), store).build())
            .await
            .map_err(|e| kv_error("open", &e))?;
        Ok(SlateKv {
            db: Arc::new(Handle::Reader(Box::new(reader))),
        })
    }

    fn writer(&self, operation: &'static str) -> Result<&Db, KvError> {
        match self.db.as_ref() {
            Handle::Writer(db) => Ok(db),
            Handle::Reader(_) => Err(KvError::ReadOnly { operation }),
        }
    }

    /// Opens (creating) the database at `path` under the local folder `root`, with every file
    /// fsync'ed.
    ///
    /// # Errors
    ///
    /// As [`SlateKv::open`], and when the folder cannot be created.
    pub async fn open_local(
        root: &std::path::Path,
        path: &str,
        options: &SlateOptions,
    ) -> Result<SlateKv, KvError> {
        let io = |e: &dyn std::fmt::Display| {
            KvError::new("open", format!("{}: {e}", root.display()), false)
        };
        std::fs::create_dir_all(root).map_err(|e| io(&e))?;
        let store = LocalFileSystem::new_with_prefix(root)
            .map_err(|e| io(&e))?
            .with_fsync(true);
        let options = SlateOptions {
            conditional_overwrites: false,
            ..options.clone()
        };
        SlateKv::open(Arc::new(store), path, &options).await
    }

    /// Collects, now, what SlateDB's garbage collector collects in the background (after 5
    /// minutes): log files already in tables, tables compacted away, old manifests. For a
    /// closed database under the local folder `root` (`braid bench` measures the store's size
    /// after it).
    ///
    /// # Errors
    ///
    /// When the folder cannot be read.
    pub async fn collect_garbage_local(root: &std::path::Path, path: &str) -> Result<(), KvError> {
        let store = LocalFileSystem::new_with_prefix(root)
            .map_err(|e| KvError::new("gc", format!("{}: {e}", root.display()), false))?;
        let now = GarbageCollectorDirectoryOptions {
            interval: None,
            min_age: Duration::ZERO,
            dry_run: false,
        };
        let options = GarbageCollectorOptions {
            manifest_options: Some(now),
            wal_options: Some(now),
            compacted_options: Some(now),
            compactions_options: Some(now),
            boundary_files_enabled: false,
            ..GarbageCollectorOptions::default()
        };
        slatedb::admin::Admin::builder(path.to_owned(), Arc::new(store))
            .build()
            .run_gc_once(options)
            .await
            .map_err(|e| kv_error("gc", &e))
    }
}

impl Kv for SlateKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        let value = match self.db.as_ref() {
            Handle::Writer(db) => db.get(key).await,
            Handle::Reader(reader) => reader.get(key).await,
        };
        let value = value.map_err(|e| kv_error("get", &e))?;
        Ok(value.map(|bytes| bytes.to_vec()))
    }

    async fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Entry>, KvError> {
        if start >= end || limit == 0 {
            return Ok(Vec::new());
        }
        let range = start.to_vec()..end.to_vec();
        // A long scan (every profile, a page of thousands) reads ahead, several blocks at a
        // time: one block per request is a round trip per 4 KB, which made reading every
        // profile of a store a hundred times slower than decoding them. A short one (a page of
        // timers or events) reads what it needs.
        let options = if limit >= LONG_SCAN {
            ScanOptions {
                read_ahead_bytes: 1 << 20,
                max_fetch_tasks: 4,
                cache_blocks: false,
                ..ScanOptions::default()
            }
        } else {
            ScanOptions::default()
        };
        let iterator = match self.db.as_ref() {
            Handle::Writer(db) => db.scan_with_options(range, &options).await,
            Handle::Reader(reader) => reader.scan_with_options(range, &options).await,
        };
        let mut iterator = iterator.map_err(|e| kv_error("scan", &e))?;
        let mut out = Vec::new();
        while out.len() < limit {
            match iterator.next().await.map_err(|e| kv_error("scan", &e))? {
                Some(entry) => out.push((entry.key.to_vec(), entry.value.to_vec())),
                None => break,
            }
        }
        Ok(out)
    }

    async fn write(&self, batch: Vec<KvWrite>) -> Result<(), KvError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut writes = WriteBatch::new();
        for write in batch {
            match write {
                KvWrite::Put {
                    key,
                    value,
                    ttl_millis,
                } => {
                    let ttl = ttl_millis.map_or(Ttl::NoExpiry, Ttl::ExpireAfterMillis);
                    writes.put_with_options(key, value, &PutOptions { ttl });
                }
                KvWrite::Delete { key } => writes.delete(key),
            }
        }
        self.writer("write")?
            .write(writes)
            .await
            .map_err(|e| kv_error("write", &e))?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), KvError> {
        self.writer("flush")?
            .flush()
            .await
            .map_err(|e| kv_error("flush", &e))
    }

    async fn close(&self) -> Result<(), KvError> {
        let closed = match self.db.as_ref() {
            Handle::Writer(db) => db.close().await,
            Handle::Reader(reader) => reader.close().await,
        };
        closed.map_err(|e| kv_error("close", &e))
    }
}

/// The profile stores of a data folder (`braid serve`): SlateDB databases under it, with a
/// lock file (`profiles/LOCK`) held for as long as the home is, so that two processes never
/// write one folder's profiles (the second would fence the first).
#[derive(Debug)]
pub struct LocalHome {
    root: std::path::PathBuf,
    options: SlateOptions,
    /// The lock, held by a writer; a read-only home has none.
    lock: Option<std::fs::File>,
}

impl LocalHome {
    /// Takes the data folder `root`'s profile lock.
    ///
    /// # Errors
    ///
    /// When another process holds it, or the folder cannot be written.
    pub fn open(root: &std::path::Path, options: SlateOptions) -> Result<LocalHome, KvError> {
        let folder = root.join("profiles");
        let failed = |message: String| KvError::new("open", message, false);
        std::fs::create_dir_all(&folder)
            .map_err(|e| failed(format!("{}: {e}", folder.display())))?;
        let path = folder.join("LOCK");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| failed(format!("{}: {e}", path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(KvError::Locked {
                    folder: root.display().to_string(),
                    lock: path.display().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(failed(format!("{}: {e}", path.display())));
            }
        }
        Ok(LocalHome {
            root: root.to_owned(),
            options,
            lock: Some(lock),
        })
    }

    /// The data folder `root`'s profile stores as a reader, beside the process that writes
    /// them (a running `braid serve`): what it made durable, never a write.
    pub fn open_read_only(root: &std::path::Path, options: SlateOptions) -> LocalHome {
        LocalHome {
            root: root.to_owned(),
            options,
            lock: None,
        }
    }

    /// The writer's home when no other process holds the lock, else a reader's
    /// ([`LocalHome::open_read_only`]).
    ///
    /// # Errors
    ///
    /// When the folder cannot be written.
    pub fn open_to_read(
        root: &std::path::Path,
        options: SlateOptions,
    ) -> Result<LocalHome, KvError> {
        match LocalHome::open(root, options.clone()) {
            Ok(home) => Ok(home),
            Err(KvError::Locked { .. }) => Ok(LocalHome::open_read_only(root, options)),
            Err(error) => Err(error),
        }
    }
}

impl KvHome for LocalHome {
    type Kv = SlateKv;

    async fn open(&self, path: &str) -> Result<SlateKv, KvError> {
        if self.lock.is_none() {
            let store = LocalFileSystem::new_with_prefix(&self.root).map_err(|e| {
                KvError::new("open", format!("{}: {e}", self.root.display()), false)
            })?;
            return SlateKv::open_reader(Arc::new(store), path).await;
        }
        SlateKv::open_local(&self.root, path, &self.options).await
    }

    fn read_only(&self) -> bool {
        self.lock.is_none()
    }
}

/// The profile stores of a bucket (the unify Lambda): SlateDB databases under it.
#[cfg(feature = "s3")]
#[derive(Clone)]
pub struct S3Home {
    store: Arc<dyn ObjectStore>,
    options: SlateOptions,
}

#[cfg(feature = "s3")]
impl std::fmt::Debug for S3Home {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Home").finish_non_exhaustive()
    }
}

#[cfg(feature = "s3")]
impl S3Home {
    /// The bucket `bucket` through the S3 API: `region` and static credentials (as Lambda
    /// gives them), and `endpoint` for an S3-compatible server (path-style addressing).
    ///
    /// # Errors
    ///
    /// When the settings do not make a client.
    pub fn new(
        bucket: &str,
        region: &str,
        credentials: (&str, &str, Option<&str>),
        endpoint: Option<&str>,
        options: SlateOptions,
    ) -> Result<S3Home, KvError> {
        use slatedb::object_store::aws::AmazonS3Builder;
        let (access_key, secret_key, token) = credentials;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(region)
            .with_access_key_id(access_key)
            .with_secret_access_key(secret_key);
        if let Some(token) = token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false);
        }
        let store = builder
            .build()
            .map_err(|e| KvError::new("open", format!("s3://{bucket}: {e}"), false))?;
        Ok(S3Home {
            store: Arc::new(store),
            options,
        })
    }
}

#[cfg(feature = "s3")]
impl KvHome for S3Home {
    type Kv = SlateKv;

    async fn open(&self, path: &str) -> Result<SlateKv, KvError> {
        SlateKv::open(Arc::clone(&self.store), path, &self.options).await
    }
}

#[cfg(test)]
mod tests {
    use slatedb::object_store::memory::InMemory;

    use super::*;

    fn put(key: &str, value: &str) -> Vec<KvWrite> {
        vec![KvWrite::Put {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ttl_millis: None,
        }]
    }

    /// What was flushed survives a reopen; a reader sees it beside the writer; a second
    /// writer fences the first, whose next write fails for good with a clear message.
    #[tokio::test]
    async fn flushed_writes_persist_and_a_second_writer_fences_the_first() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let options = SlateOptions::default();
        let first = SlateKv::open(Arc::clone(&store), "profiles/w/g1", &options)
            .await
            .unwrap();
        first.write(put("p/a", "1")).await.unwrap();
        first
            .write(vec![
                KvWrite::Put {
                    key: b"p/b".to_vec(),
                    value: b"2".to_vec(),
                    ttl_millis: Some(60_000),
                },
                KvWrite::Delete {
                    key: b"p/a".to_vec(),
                },
            ])
            .await
            .unwrap();
        first.flush().await.unwrap();
        assert_eq!(first.get(b"p/a").await.unwrap(), None);
        let reader = SlateKv::open_reader(Arc::clone(&store), "profiles/w/g1")
            .await
            .unwrap();
        assert_eq!(reader.get(b"p/b").await.unwrap(), Some(b"2".to_vec()));
        let refused = reader.write(put("p/c", "3")).await.unwrap_err();
        assert_eq!(refused, KvError::ReadOnly { operation: "write" });

        let second = SlateKv::open(Arc::clone(&store), "profiles/w/g1", &options)
            .await
            .unwrap();
        assert_eq!(
            second.scan(b"p/", b"p0", 10).await.unwrap(),
            [(b"p/b".to_vec(), b"2".to_vec())]
        );
        let fenced = async {
            first.write(put("p/x", "stale")).await?;
            first.flush().await
        }
        .await
        .unwrap_err();
        assert!(!fenced.is_retriable(), "{fenced}");
        assert!(fenced.to_string().contains("fenced"), "{fenced}");
        assert_eq!(second.get(b"p/x").await.unwrap(), None);
        second.close().await.unwrap();
    }
}
