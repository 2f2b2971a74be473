//! The files destination: exports of the profiles as NDJSON or CSV files in the lake, with a
//! manifest (`braid_core::activate::files` has the rows, the files and the manifest). Each
//! request is one file, then the manifest names it; a file written again after a crash has the
//! name the manifest gives it next, so it replaces itself.

use braid_core::activate::destination::Destination;
use braid_core::activate::files::{Export, ExportFile, Manifest};
use braid_core::timestamp;
use serde_json::Value;

use super::{Answer, Delivery, Sink, Wants};
use crate::lake::store::{ObjectStore, StoreError};

/// A files destination writing to the lake `S`.
pub struct Files<S> {
    destination: Destination,
    export: Export,
    lake: S,
    manifest: tokio::sync::Mutex<Option<Manifest>>,
}

/// The prefix of a files destination's exports.
pub fn export_prefix(workspace: &str, key: &str) -> String {
    format!("exports/workspace={workspace}/{key}/")
}

impl<S: ObjectStore> Files<S> {
    /// The files destination of `destination`, writing to `lake`.
    pub fn new(destination: Destination, lake: S) -> Files<S> {
        Files {
            export: Export::of(&destination.config),
            destination,
            lake,
            manifest: tokio::sync::Mutex::new(None),
        }
    }

    fn prefix(&self) -> String {
        export_prefix(&self.destination.workspace, self.destination.key())
    }

    /// The manifest as the lake holds it (a new one when there is none).
    async fn read_manifest(&self) -> Result<Manifest, StoreError> {
        let key = format!("{}manifest.json", self.prefix());
        let found = self
            .lake
            .get(&key)
            .await?
            .and_then(|bytes| serde_json::from_slice::<Manifest>(&bytes).ok());
        Ok(found.unwrap_or_else(|| {
            Manifest::new(
                self.destination.key(),
                &self.destination.workspace,
                &self.export,
            )
        }))
    }

    async fn write_manifest(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let key = format!("{}manifest.json", self.prefix());
        let bytes = serde_json::to_vec_pretty(manifest).unwrap_or_default();
        self.lake.put(&key, bytes).await
    }

    /// Writes a request's file and names it in the manifest.
    async fn write(&self, delivery: &Delivery<'_>) -> Result<(), StoreError> {
        let mut cached = self.manifest.lock().await;
        let mut manifest = match cached.take() {
            Some(manifest) => manifest,
            None => self.read_manifest().await?,
        };
        let copies = delivery
            .messages
            .first()
            .is_some_and(|m| m.body.get("type").and_then(Value::as_str) == Some("profile.copied"));
        let copying = manifest.copying(copies, delivery.sync);
        let rows: Vec<_> = self
            .destination
            .latest(delivery.messages, delivery.views)
            .into_iter()
            .map(|(id, view, number)| self.export.row(id, view, number))
            // A full export holds the profiles that are in it; its deleted rows say nothing.
            .filter(|row| copying.is_none() || !row.deleted)
            .collect();
        let key = manifest.next_key(&self.prefix(), self.export.format, copying);
        let bytes = self.export.file(&rows);
        let file = ExportFile {
            key: key.clone(),
            rows: rows.len() as u64,
            bytes: bytes.len() as u64,
            written_at: written_at(delivery.now),
        };
        self.lake.put(&key, bytes).await?;
        manifest.record(file, copying);
        self.write_manifest(&manifest).await?;
        *cached = Some(manifest);
        Ok(())
    }

    /// Makes the full export `sync` the one in force (`Manifest::complete`), and deletes the
    /// files retired before.
    async fn complete(&self, sync: u64, now: i64) -> Result<(), StoreError> {
        let mut cached = self.manifest.lock().await;
        let mut manifest = match cached.take() {
            Some(manifest) => manifest,
            None => self.read_manifest().await?,
        };
        let gone = manifest.complete(sync, written_at(now));
        self.write_manifest(&manifest).await?;
        *cached = Some(manifest);
        for key in gone {
            self.lake.delete(&key).await?;
        }
        Ok(())
    }
}

fn written_at(now: i64) -> String {
    timestamp::from_unix_millis(now)
        .map(timestamp::format)
        .unwrap_or_default()
}

fn answer(result: Result<(), StoreError>) -> Answer {
    match result {
        Ok(()) => Answer::ok(),
        Err(error) => Answer {
            error: error.to_string(),
            ..Answer::default()
        },
    }
}

impl<S: ObjectStore> Sink for Files<S> {
    fn wants(&self) -> Wants {
        Wants::Whole
    }

    fn copies(&self) -> bool {
        true
    }

    fn copy_every(&self) -> Option<std::time::Duration> {
        let hours = self.destination.config.full_every_hours.unwrap_or(24);
        (hours > 0).then(|| std::time::Duration::from_secs(hours * 3_600))
    }

    async fn deliver(&self, delivery: Delivery<'_>) -> Answer {
        answer(self.write(&delivery).await)
    }

    async fn finish_copy(&self, sync: u64) -> Answer {
        let now = timestamp::unix_millis(time::OffsetDateTime::now_utc());
        answer(self.complete(sync, now).await)
    }
}
