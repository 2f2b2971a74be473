//! The lake on a local folder, with group commit (`braid serve`): the events of concurrent
//! requests are gathered into one object per partition and written durably together
//! ([`LocalStore::put_all_blocking`]: temporary file, fsync, rename, folder fsync) — and only
//! then is any of those requests acknowledged.
//!
//! A crash at any moment leaves either the whole object or a `.tmp` file that no request was
//! acknowledged for; `.tmp` files are removed when the store opens.

use std::collections::BTreeMap;
use std::thread;

use braid_core::catalogue::lake::{self, Area, LakeWrite};
use tokio::sync::{mpsc, oneshot};

use super::object::gzip;
use super::store::{LocalStore, Operation, StoreError};

/// Most bytes gathered into one group commit; more waits for the next.
const MAX_GROUP_BYTES: usize = 16 * 1024 * 1024;

struct Job {
    write: LakeWrite,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// A handle to the writer thread.
#[derive(Debug)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
    writer: thread::JoinHandle<()>,
}

impl GroupCommit {
    /// Starts the writer over `store`. The keys of the `raw/` objects each commit writes are
    /// sent to `written`, when given (the unify loop waits on them).
    ///
    /// # Errors
    ///
    /// When the writer thread cannot start.
    pub fn open(
        store: &LocalStore,
        written: Option<mpsc::UnboundedSender<Vec<String>>>,
    ) -> std::io::Result<GroupCommit> {
        let (jobs, receiver) = mpsc::channel(4_096);
        let store = store.clone();
        let writer = thread::Builder::new()
            .name("braid-lake".into())
            .spawn(move || write_loop(&store, receiver, written.as_ref()))?;
        Ok(GroupCommit { jobs, writer })
    }

    /// Stores a write durably; returns once it is on disk.
    ///
    /// # Errors
    ///
    /// When the write (or the group it was part of) could not be made durable, or the writer
    /// has stopped.
    pub async fn store(&self, write: LakeWrite) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        let stopped =
            || StoreError::new(Operation::Put, "raw/", "the lake writer has stopped", true);
        self.jobs
            .send(Job { write, done })
            .await
            .map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }

    /// Writes what is queued and stops the writer.
    pub fn close(self) {
        drop(self.jobs);
        if self.writer.join().is_err() {
            tracing::error!(message = "The lake writer panicked.");
        }
    }
}

fn write_loop(
    store: &LocalStore,
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
        let result = commit(store, &group);
        match &result {
            Err(error) => {
                tracing::error!(message = "Failed to write to the lake.", %error, requests = group.len());
            }
            Ok(keys) => {
                // The unify loop has stopped only at shutdown: its objects wait for the next
                // start.
                if let Some(written) = written
                    && written.send(keys.clone()).is_err()
                {
                    tracing::debug!(message = "The unify loop has stopped.");
                }
            }
        }
        let result = result.map(|_| ());
        for job in group {
            // The requester may have gone away (client disconnected): nothing to tell.
            if job.done.send(result.clone()).is_err() {
                tracing::debug!(message = "A request went away before its write was durable.");
            }
        }
    }
}

/// Writes one object per (area, workspace, partition) holding every job's lines, durably;
/// gives the keys of the objects, `raw/` first (unify applies the events, and counts the
/// failure records in the data map).
fn commit(store: &LocalStore, jobs: &[Job]) -> Result<Vec<String>, StoreError> {
    let mut contents: BTreeMap<(Area, &str, String), Vec<u8>> = BTreeMap::new();
    for job in jobs {
        let write = &job.write;
        for (area, lines) in write.areas() {
            let key = (
                area,
                write.workspace.as_str(),
                lake::partition(area, &write.workspace, write.received_at),
            );
            contents.entry(key).or_default().extend_from_slice(lines);
        }
    }
    let objects: Vec<(Area, String, Vec<u8>)> = contents
        .into_iter()
        .map(|((area, _, partition), content)| {
            let key = format!(
                "{partition}/{}{}",
                lake::batch_id(&content),
                lake::OBJECT_SUFFIX
            );
            (area, key, gzip(&content))
        })
        .collect();
    let puts: Vec<(&str, &[u8])> = objects
        .iter()
        .map(|(_, key, body)| (key.as_str(), body.as_slice()))
        .collect();
    store.put_all_blocking(&puts)?;
    Ok(objects.into_iter().map(|(_, key, _)| key).collect())
}
