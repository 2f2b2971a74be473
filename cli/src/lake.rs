//! The lake on a local folder, with group commit: concurrent requests' events are gathered into
//! one object per partition, written to a temporary file, fsync'ed, renamed into place and the
//! folder fsync'ed — and only then is any of those requests acknowledged.
//!
//! A crash at any moment leaves either the whole object or a `.tmp` file that no request was
//! acknowledged for; `.tmp` files are removed at start.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::thread;

use braid_core::lake::{self, Area};
use braid_edge::LakeWrite;
use braid_unifier::LocalStore;
use flate2::Compression;
use flate2::write::GzEncoder;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

/// Most bytes gathered into one group commit; more waits for the next.
const MAX_GROUP_BYTES: usize = 16 * 1024 * 1024;

struct Job {
    write: LakeWrite,
    done: oneshot::Sender<Result<(), Arc<io::Error>>>,
}

/// A handle to the writer thread.
pub(crate) struct Lake {
    jobs: mpsc::Sender<Job>,
    writer: thread::JoinHandle<()>,
}

impl Lake {
    /// Opens the lake in the folder of `store` (whose opening removed the leftovers of
    /// interrupted writes). The keys of the `raw/` objects each commit writes are sent to
    /// `written`, when given.
    pub(crate) fn open(
        store: &LocalStore,
        written: Option<mpsc::UnboundedSender<Vec<String>>>,
    ) -> io::Result<Lake> {
        let (jobs, receiver) = mpsc::channel(4_096);
        let root = store.root().to_owned();
        let writer = thread::Builder::new()
            .name("braid-lake".into())
            .spawn(move || write_loop(&root, receiver, written.as_ref()))?;
        Ok(Lake { jobs, writer })
    }

    /// Stores a write durably; returns once it is on disk.
    pub(crate) async fn store(&self, write: LakeWrite) -> Result<(), Arc<io::Error>> {
        let (done, wait) = oneshot::channel();
        let closed = || Arc::new(io::Error::other("the lake writer has stopped"));
        self.jobs
            .send(Job { write, done })
            .await
            .map_err(|_| closed())?;
        wait.await.map_err(|_| closed())?
    }

    /// Writes what is queued and stops the writer.
    pub(crate) fn close(self) {
        drop(self.jobs);
        if self.writer.join().is_err() {
            tracing::error!(message = "The lake writer panicked.");
        }
    }
}

fn write_loop(
    root: &Path,
    mut receiver: mpsc::Receiver<Job>,
    written: Option<&mpsc::UnboundedSender<Vec<String>>>,
) {
    while let Some(first) = receiver.blocking_recv() {
        let mut group = vec![first];
        let mut bytes = group
            .iter()
            .map(|j| j.write.accepted.len() + j.write.failed.len())
            .sum::<usize>();
        while bytes < MAX_GROUP_BYTES {
            match receiver.try_recv() {
                Ok(job) => {
                    bytes += job.write.accepted.len() + job.write.failed.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let result = commit(root, &group).map_err(Arc::new);
        match &result {
            Err(error) => {
                tracing::error!(message = "Failed to write to the lake.", %error, requests = group.len());
            }
            Ok(keys) => {
                if let Some(written) = written {
                    let _ = written.send(keys.clone());
                }
            }
        }
        let result = result.map(|_| ());
        for job in group {
            // The requester may have gone away (client disconnected): nothing to tell.
            let _ = job.done.send(result.clone());
        }
    }
}

/// Writes one object per (area, workspace, partition) holding every job's lines, durably;
/// gives the keys of the `raw/` objects.
fn commit(root: &Path, jobs: &[Job]) -> io::Result<Vec<String>> {
    let mut objects: BTreeMap<(Area, &str, String), Vec<u8>> = BTreeMap::new();
    for job in jobs {
        let write = &job.write;
        for (area, lines) in [(Area::Raw, &write.accepted), (Area::Failed, &write.failed)] {
            if !lines.is_empty() {
                let key = (
                    area,
                    write.workspace.as_str(),
                    lake::partition(area, &write.workspace, write.received_at),
                );
                objects.entry(key).or_default().extend_from_slice(lines);
            }
        }
    }
    let mut folders = Vec::new();
    let mut raw_keys = Vec::new();
    for ((area, _, partition), content) in &objects {
        let folder = root.join(partition);
        fs::create_dir_all(&folder)?;
        let name = format!("{}{}", lake::batch_id(content), lake::OBJECT_SUFFIX);
        write_durably(&folder, &name, content)?;
        if *area == Area::Raw {
            raw_keys.push(format!("{partition}/{name}"));
        }
        if !folders.contains(&folder) {
            folders.push(folder);
        }
    }
    for folder in &folders {
        File::open(folder)?.sync_all()?;
    }
    Ok(raw_keys)
}

fn write_durably(folder: &Path, name: &str, content: &[u8]) -> io::Result<()> {
    let temporary = folder.join(format!(".{name}.tmp"));
    let file = File::create(&temporary)?;
    let mut encoder = GzEncoder::new(
        io::BufWriter::with_capacity(256 * 1024, file),
        Compression::fast(),
    );
    encoder.write_all(content)?;
    let file = encoder
        .finish()?
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    fs::rename(&temporary, folder.join(name))
}

/// The current time, for request handling (the one place the server reads the clock).
pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
