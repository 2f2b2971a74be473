//! The files destination: exports of the profiles as NDJSON or CSV files in the lake, with a
//! manifest (`braid_core::activate::files` has the rows, the files and the manifest). Each
//! request is one file, then the manifest names it; a file written again after a crash has the
//! name the manifest gives it next, so it replaces itself.

use braid_core::activate::destination::Destination;
use braid_core::activate::files::{Export, ExportFile, FullExport, Manifest};
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
        Ok(found.unwrap_or_else(|| Manifest {
            destination: self.destination.key().to_owned(),
            workspace: self.destination.workspace.clone(),
            format: self.export.format,
            columns: match self.export.format {
                braid_core::activate::files::FileFormat::Csv => self.export.csv_header(),
                braid_core::activate::files::FileFormat::Ndjson => Vec::new(),
            },
            ..Manifest::default()
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
        let consent = &self.destination.config.consent;
        let mut rows = Vec::new();
        let mut seen = std::collections::HashMap::new();
        for (message, view) in delivery.messages.iter().zip(delivery.views) {
            let Some(id) = message.body.get("profile").and_then(Value::as_str) else {
                continue;
            };
            let grants = view
                .as_ref()
                .is_some_and(|v| consent.iter().all(|c| v.grants(c)));
            let profile = view.as_ref().and_then(|v| v.profile.as_ref());
            let row = self.export.row(id, profile, grants, message.number);
            // A profile once per file, as it is last.
            if let Some(slot) = seen.get(id).and_then(|&at| rows.get_mut(at)) {
                *slot = row;
            } else {
                seen.insert(id.to_owned(), rows.len());
                rows.push(row);
            }
        }
        // A full export holds the profiles that are in it; its deleted rows say nothing. A page
        // of a full export that is complete already (a dead letter replayed) is a change.
        let copying =
            delivery.messages.first().is_some_and(|m| {
                m.body.get("type").and_then(Value::as_str) == Some("profile.copied")
            }) && manifest
                .full
                .as_ref()
                .is_none_or(|full| full.sync < delivery.sync);
        if copying {
            rows.retain(|row| !row.deleted);
        }
        let key = manifest.next_key(
            &self.prefix(),
            self.export.format,
            copying.then_some(delivery.sync),
        );
        let bytes = self.export.file(&rows);
        let file = ExportFile {
            key: key.clone(),
            rows: rows.len() as u64,
            bytes: bytes.len() as u64,
            written_at: written_at(delivery.now),
        };
        self.lake.put(&key, bytes).await?;
        if copying {
            let next = manifest.next_full.get_or_insert_with(|| FullExport {
                sync: delivery.sync,
                ..FullExport::default()
            });
            if next.sync != delivery.sync {
                *next = FullExport {
                    sync: delivery.sync,
                    ..FullExport::default()
                };
            }
            next.files.push(file);
        } else {
            manifest.changes.push(file);
        }
        self.write_manifest(&manifest).await?;
        *cached = Some(manifest);
        Ok(())
    }

    /// Makes the full export `sync` the one in force: the files of the one before and of its
    /// changes are retired, and those retired before are deleted.
    async fn complete(&self, sync: u64, now: i64) -> Result<(), StoreError> {
        let mut cached = self.manifest.lock().await;
        let mut manifest = match cached.take() {
            Some(manifest) => manifest,
            None => self.read_manifest().await?,
        };
        let mut next = match manifest.next_full.take() {
            Some(next) if next.sync == sync => next,
            // A copy of no profile wrote no file.
            _ => FullExport {
                sync,
                ..FullExport::default()
            },
        };
        next.completed_at = Some(written_at(now));
        let retired: Vec<String> = manifest
            .full
            .iter()
            .flat_map(|full| full.files.iter())
            .chain(&manifest.changes)
            .map(|file| file.key.clone())
            .collect();
        let gone = std::mem::replace(&mut manifest.retired, retired);
        manifest.full = Some(next);
        manifest.changes.clear();
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
