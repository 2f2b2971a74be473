//! A files destination: exports of the profiles (or of an audience's members) as NDJSON or
//! CSV files in the lake, with a manifest, for the tools that import files — everything of it
//! that is not I/O (the settings' rules, the rows, the files' bytes, the manifest). The runtime
//! (`braid_unifier::activate::files`) writes them.
//!
//! Under `exports/workspace=W/<key>/` (in the data folder, or the lake's bucket):
//!
//! - `full/sync=N/part-00000.<ext>`, ...: a full export, every profile (or member) once, written
//!   page by page when the destination starts, after a rebuild of the profiles, and every
//!   `full_every_hours`;
//! - `changes/sync=N/part-00000.<ext>`, ...: after it, the profiles that changed, a file per
//!   `batch` changes or per `wait_seconds`, each profile as it is then (`deleted` when it is
//!   gone, merged into another, left the exported audiences, or no longer grants the consent);
//! - `manifest.json`: the full export in force and the change files since, in order, with
//!   their rows and bytes. A tool reads the manifest, loads the full export, then applies the
//!   change files in order. When a new full export is complete, the files of the one before and
//!   of its changes are retired, and deleted when the next one is complete (a reader that read
//!   the manifest before finds them).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use super::settings::FileFormat;
use super::settings::{DestinationConfig, Mapping, Method};

/// Changes per file when `batch` is left out.
pub const DEFAULT_BATCH: usize = 10_000;

/// The most changes per file (and profiles per page of a full export).
pub const MAX_BATCH: usize = 50_000;

/// The identifier types a CSV row has a column for, in this order (several values of one
/// type joined by `;`).
pub const CSV_IDENTIFIERS: [&str; 5] = ["user_id", "email", "phone", "device_id", "anonymous_id"];

impl FileFormat {
    /// The files' extension.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Ndjson => "ndjson",
            FileFormat::Csv => "csv",
        }
    }
}

/// Checks what is a files destination's own, and no setting of another kind. The setting and
/// the problem when it is wrong.
///
/// # Errors
///
/// The first setting that is wrong, and why.
pub fn check(config: &DestinationConfig) -> Result<(), (String, String)> {
    let fail = |field: &str, problem: &str| Err((field.to_owned(), problem.to_owned()));
    for (field, set) in [
        ("url", !config.url.is_empty()),
        ("method", config.method != Method::Post),
        ("secret", !config.secret.is_empty()),
        ("previous_secrets", !config.previous_secrets.is_empty()),
        ("segment_secret", !config.segment_secret.is_empty()),
        ("allow_addresses", !config.allow_addresses.is_empty()),
        ("mapping", config.mapping != Mapping::default()),
        ("schema", config.schema.is_some()),
        ("table_prefix", config.table_prefix.is_some()),
        ("columns", !config.columns.is_empty()),
    ] {
        if set {
            return fail(
                field,
                "not a setting of a files destination (its files go to the lake, under exports/)",
            );
        }
    }
    if config.full_every_hours.is_some_and(|h| h > 24 * 30) {
        return fail("full_every_hours", "at most 720 (0: only when it starts)");
    }
    if config.format == Some(FileFormat::Csv)
        && config
            .traits
            .iter()
            .chain(&config.computed_traits)
            .any(|name| name.contains(['\n', '\r']))
    {
        return fail("traits", "a CSV column's name has no line break");
    }
    Ok(())
}

/// A destination's export: what a row holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    /// The format.
    pub format: FileFormat,
    /// The traits a row carries (all, in NDJSON, when empty).
    pub traits: Vec<String>,
    /// The computed traits a row carries (all, in NDJSON, when empty).
    pub computed: Vec<String>,
    /// The audiences exported: a profile in none of them is `deleted` (all profiles when
    /// empty).
    pub audiences: Vec<String>,
    /// The consent categories a profile must grant to be exported.
    pub consent: Vec<String>,
}

/// One row of an export.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The profile.
    pub profile_id: String,
    /// Whether the profile left the export (gone, merged, out of its audiences, no consent).
    pub deleted: bool,
    /// Identifier type → values.
    pub identifiers: Map<String, Value>,
    /// Trait → value.
    pub traits: Map<String, Value>,
    /// Computed trait → value.
    pub computed: Map<String, Value>,
    /// The exported audiences it is in (every audience it is in when none are named).
    pub audiences: Vec<String>,
    /// The number of the last change it reflects (0 in a full export).
    pub change_number: u64,
}

impl Export {
    /// The export of a (checked) destination.
    pub fn of(config: &DestinationConfig) -> Export {
        Export {
            format: config.format.unwrap_or_default(),
            traits: config.traits.clone(),
            computed: config.computed_traits.clone(),
            audiences: config.audiences.clone(),
            consent: config.consent.clone(),
        }
    }

    /// The row of a profile: `view` is the profile API's view of it (`None`: gone, or not
    /// granting the export's consent: `super::destination::Destination::latest`).
    pub fn row(&self, id: &str, view: Option<&Value>, number: u64) -> Row {
        let mut row = Row {
            profile_id: id.to_owned(),
            deleted: true,
            identifiers: Map::new(),
            traits: Map::new(),
            computed: Map::new(),
            audiences: Vec::new(),
            change_number: number,
        };
        let Some(view) = view else {
            return row;
        };
        let in_audiences: Vec<String> = view
            .get("audiences")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(key, _)| key.clone())
            .filter(|key| self.audiences.is_empty() || self.audiences.contains(key))
            .collect();
        if !self.audiences.is_empty() && in_audiences.is_empty() {
            return row;
        }
        row.deleted = false;
        row.audiences = in_audiences;
        for id in view
            .get("identifiers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(kind), Some(value)) = (
                id.get("type").and_then(Value::as_str),
                id.get("value").cloned(),
            ) && let Value::Array(values) = row
                .identifiers
                .entry(kind.to_owned())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                values.push(value);
            }
        }
        let chosen =
            |names: &[String], name: &str| names.is_empty() || names.iter().any(|n| n == name);
        for (name, t) in view
            .get("traits")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if chosen(&self.traits, name) {
                row.traits
                    .insert(name.clone(), t.get("value").cloned().unwrap_or_default());
            }
        }
        for (name, value) in view
            .get("computedTraits")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if chosen(&self.computed, name) {
                row.computed.insert(name.clone(), value.clone());
            }
        }
        row
    }

    /// The bytes of a file of `rows` (a CSV file starts with its header).
    pub fn file(&self, rows: &[Row]) -> Vec<u8> {
        match self.format {
            FileFormat::Ndjson => {
                let mut out = Vec::new();
                for row in rows {
                    let line = json!({"profile_id": row.profile_id, "deleted": row.deleted,
                                      "identifiers": row.identifiers, "traits": row.traits,
                                      "computed_traits": row.computed, "audiences": row.audiences,
                                      "change_number": row.change_number});
                    out.extend(serde_json::to_vec(&line).unwrap_or_default());
                    out.push(b'\n');
                }
                out
            }
            FileFormat::Csv => self.csv(rows),
        }
    }

    /// The CSV header: the profile, `deleted`, the identifier types of [`CSV_IDENTIFIERS`],
    /// the traits and computed traits named, and the audiences (keys joined by `;`).
    pub fn csv_header(&self) -> Vec<String> {
        let mut header = vec!["profile_id".to_owned(), "deleted".to_owned()];
        header.extend(CSV_IDENTIFIERS.iter().map(|&t| t.to_owned()));
        header.extend(self.traits.iter().cloned());
        header.extend(self.computed.iter().cloned());
        header.push("audiences".to_owned());
        header.push("change_number".to_owned());
        header
    }

    fn csv(&self, rows: &[Row]) -> Vec<u8> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let text = |value: Option<&Value>| match value {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => defused(s),
            Some(other) => other.to_string(),
        };
        // Writing to memory does not fail; a row that could not be written is left out.
        let _ignored = writer.write_record(self.csv_header());
        for row in rows {
            let mut record = vec![row.profile_id.clone(), row.deleted.to_string()];
            for kind in CSV_IDENTIFIERS {
                let values: Vec<String> = row
                    .identifiers
                    .get(kind)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|v| text(Some(v)))
                    .collect();
                record.push(values.join(";"));
            }
            record.extend(self.traits.iter().map(|name| text(row.traits.get(name))));
            record.extend(
                self.computed
                    .iter()
                    .map(|name| text(row.computed.get(name))),
            );
            record.push(row.audiences.join(";"));
            record.push(row.change_number.to_string());
            let _ignored = writer.write_record(&record);
        }
        writer.into_inner().unwrap_or_default()
    }
}

/// A text cell as a spreadsheet may open it safely: one that starts as a formula would (`=`, `+`,
/// `-`, `@`, a tab or a carriage return) gets a `'` before it. Traits come from a public write
/// key: `=HYPERLINK(...)` in a name must not run in the marketer's spreadsheet (OWASP's CSV
/// injection). Numbers are written as numbers, without it.
pub fn defused(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// A file an export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportFile {
    /// Its key in the lake.
    pub key: String,
    /// Its rows.
    pub rows: u64,
    /// Its size.
    pub bytes: u64,
    /// When it was written (RFC 3339).
    pub written_at: String,
}

/// A full export: its files, and when it started and ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FullExport {
    /// Its number (the destination's `sync`).
    pub sync: u64,
    /// Its files, in order.
    pub files: Vec<ExportFile>,
    /// When its last file was written, once it is complete.
    pub completed_at: Option<String>,
}

/// The manifest of a files destination.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Manifest {
    /// The destination.
    pub destination: String,
    /// The workspace.
    pub workspace: String,
    /// The files' format.
    pub format: FileFormat,
    /// The columns of a CSV file, in order.
    pub columns: Vec<String>,
    /// The full export in force (complete).
    pub full: Option<FullExport>,
    /// The changes since it, in order.
    pub changes: Vec<ExportFile>,
    /// A full export being written (it replaces `full` and `changes` when complete).
    pub next_full: Option<FullExport>,
    /// The files of the export before the one in force and of its changes: kept until the next
    /// full export is complete, so that a reader that read the manifest before finds them.
    pub retired: Vec<String>,
}

impl Manifest {
    /// The manifest of a destination that has written nothing yet.
    pub fn new(destination: &str, workspace: &str, export: &Export) -> Manifest {
        Manifest {
            destination: destination.to_owned(),
            workspace: workspace.to_owned(),
            format: export.format,
            columns: match export.format {
                FileFormat::Csv => export.csv_header(),
                FileFormat::Ndjson => Vec::new(),
            },
            ..Manifest::default()
        }
    }

    /// The full export a request's file belongs to, when its messages are pages of a full copy
    /// (`copies`) numbered `sync` that is not complete yet; `None`: a file of changes (a page
    /// of a complete export, a dead letter replayed, is a change).
    pub fn copying(&self, copies: bool, sync: u64) -> Option<u64> {
        (copies && self.full.as_ref().is_none_or(|full| full.sync < sync)).then_some(sync)
    }

    /// Names `file`: a part of the full export `copying` under way, or the next change.
    pub fn record(&mut self, file: ExportFile, copying: Option<u64>) {
        match copying {
            Some(sync) => {
                let next = self.next_full.get_or_insert_with(FullExport::default);
                if next.sync != sync {
                    *next = FullExport {
                        sync,
                        ..FullExport::default()
                    };
                }
                next.files.push(file);
            }
            None => self.changes.push(file),
        }
    }

    /// Makes the full export `sync` the one in force, complete at `at`: the files of the one
    /// before and of its changes are retired. The keys of those retired before, to delete.
    pub fn complete(&mut self, sync: u64, at: String) -> Vec<String> {
        let mut next = match self.next_full.take() {
            Some(next) if next.sync == sync => next,
            // A copy of no profile wrote no file.
            _ => FullExport {
                sync,
                ..FullExport::default()
            },
        };
        next.completed_at = Some(at);
        let retired: Vec<String> = self
            .full
            .iter()
            .flat_map(|full| full.files.iter())
            .chain(&self.changes)
            .map(|file| file.key.clone())
            .collect();
        self.full = Some(next);
        self.changes.clear();
        std::mem::replace(&mut self.retired, retired)
    }

    /// The key of the next file: a part of the full export `sync` under way, or of the changes
    /// after the full export in force.
    pub fn next_key(&self, prefix: &str, format: FileFormat, copying: Option<u64>) -> String {
        let (kind, sync, part) = match copying {
            Some(sync) => (
                "full",
                sync,
                self.next_full
                    .as_ref()
                    .filter(|full| full.sync == sync)
                    .map_or(0, |full| full.files.len()),
            ),
            None => (
                "changes",
                self.full.as_ref().map_or(0, |full| full.sync),
                self.changes.len(),
            ),
        };
        format!(
            "{prefix}{kind}/sync={sync}/part-{part:05}.{}",
            format.extension()
        )
    }
}

#[cfg(test)]
mod tests;
