//! Objects as files under a folder, each `put` durable before it returns: written to a
//! temporary file beside its final name, fsync'ed, renamed into place, and the folder fsync'ed.
//! A crash leaves the old object or the new one, plus at worst a `.<name>.tmp` file, which
//! listings skip and [`LocalStore::open`] removes.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ObjectInfo, ObjectStore, StoreError, is_valid_key};

/// A folder of objects.
#[derive(Clone, Debug)]
pub struct LocalStore {
    root: Arc<PathBuf>,
}

impl LocalStore {
    /// Opens (creating) the store at `root`, removing temporary files that interrupted writes
    /// left behind.
    ///
    /// # Errors
    ///
    /// When the folder cannot be created or read.
    pub fn open(root: &Path) -> io::Result<LocalStore> {
        fs::create_dir_all(root)?;
        remove_temporary_files(root)?;
        Ok(LocalStore {
            root: Arc::new(root.to_owned()),
        })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, operation: &'static str, key: &str) -> Result<PathBuf, StoreError> {
        if is_valid_key(key) {
            Ok(self.root.join(key))
        } else {
            Err(StoreError::new(
                operation,
                key,
                "not a valid object key",
                false,
            ))
        }
    }

    /// [`ObjectStore::put`] for callers that are not async (a writer thread).
    ///
    /// # Errors
    ///
    /// When the key is invalid or the file cannot be written durably.
    pub fn put_blocking(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        let path = self.path("put", key)?;
        write_durably(&path, body).map_err(|e| io_error("put", key, &e))
    }

    fn get_blocking(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path("get", key)?;
        match fs::read(&path) {
            Ok(body) => Ok(Some(body)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("get", key, &e)),
        }
    }

    fn list_blocking(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        // Walk only the folder the prefix names, then filter by the whole prefix.
        let folder = match prefix.rsplit_once('/') {
            Some((folder, _)) => self.root.join(folder),
            None => self.root.to_path_buf(),
        };
        let mut found = Vec::new();
        collect(&self.root, &folder, prefix, &mut found)
            .map_err(|e| io_error("list", prefix, &e))?;
        found.sort();
        Ok(found)
    }

    fn delete_blocking(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path("delete", key)?;
        match fs::remove_file(&path) {
            Ok(()) => sync_parent(&path).map_err(|e| io_error("delete", key, &e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("delete", key, &e)),
        }
    }
}

impl ObjectStore for LocalStore {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        let store = self.clone();
        let owned = key.to_owned();
        blocking("put", key, move || store.put_blocking(&owned, &body)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let store = self.clone();
        let owned = key.to_owned();
        blocking("get", key, move || store.get_blocking(&owned)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let store = self.clone();
        let owned = prefix.to_owned();
        blocking("list", prefix, move || store.list_blocking(&owned)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let store = self.clone();
        let owned = key.to_owned();
        blocking("delete", key, move || store.delete_blocking(&owned)).await
    }
}

/// Runs file I/O on tokio's blocking threads.
async fn blocking<T: Send + 'static>(
    operation: &'static str,
    key: &str,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::new(operation, key, e.to_string(), true))?
}

fn io_error(operation: &'static str, key: &str, error: &io::Error) -> StoreError {
    // A full disk or an interrupted call may pass; a missing permission or a bad path will not.
    let retriable = !matches!(
        error.kind(),
        io::ErrorKind::PermissionDenied
            | io::ErrorKind::InvalidInput
            | io::ErrorKind::NotADirectory
    );
    StoreError::new(operation, key, error.to_string(), retriable)
}

/// Writes `body` to `path` so that it is on disk, whole, when this returns.
fn write_durably(path: &Path, body: &[u8]) -> io::Result<()> {
    let folder = path
        .parent()
        .ok_or_else(|| io::Error::other("no parent folder"))?;
    fs::create_dir_all(folder)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::other("no file name"))?;
    let temporary = folder.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut file = File::create(&temporary)?;
        file.write_all(body)?;
        file.sync_all()?;
        fs::rename(&temporary, path)?;
        File::open(folder)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(folder) => File::open(folder)?.sync_all(),
        None => Ok(()),
    }
}

fn collect(
    root: &Path,
    folder: &Path,
    prefix: &str,
    found: &mut Vec<ObjectInfo>,
) -> io::Result<()> {
    let entries = match fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Some(key) = key_of(root, &path) else {
            continue;
        };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            // Descend only where keys with the prefix can be.
            let as_folder = format!("{key}/");
            if as_folder.starts_with(prefix) || prefix.starts_with(&as_folder) {
                collect(root, &path, prefix, found)?;
            }
        } else if kind.is_file() && key.starts_with(prefix) {
            let metadata = entry.metadata()?;
            let modified = metadata
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
            found.push(ObjectInfo {
                key,
                size: metadata.len(),
                modified,
            });
        }
    }
    Ok(())
}

fn key_of(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect();
    Some(parts?.join("/"))
}

fn remove_temporary_files(folder: &Path) -> io::Result<()> {
    for entry in fs::read_dir(folder)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if kind.is_dir() {
            remove_temporary_files(&entry.path())?;
        } else if name.starts_with('.') && name.ends_with(".tmp") {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn puts_gets_lists_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.put("raw/w=a/x.gz", b"one".to_vec()).await.unwrap();
        store.put("raw/w=a/y.gz", b"two!".to_vec()).await.unwrap();
        store.put("raw/w=b/z.gz", b"3".to_vec()).await.unwrap();
        store.put("failed/w=a/x.gz", b"f".to_vec()).await.unwrap();
        store.put("raw/w=a/x.gz", b"uno".to_vec()).await.unwrap();
        assert_eq!(
            store.get("raw/w=a/x.gz").await.unwrap().as_deref(),
            Some(&b"uno"[..])
        );
        assert_eq!(store.get("raw/w=a/none.gz").await.unwrap(), None);
        let keys = |list: Vec<ObjectInfo>| list.into_iter().map(|o| o.key).collect::<Vec<_>>();
        assert_eq!(
            keys(store.list("raw/").await.unwrap()),
            ["raw/w=a/x.gz", "raw/w=a/y.gz", "raw/w=b/z.gz"]
        );
        assert_eq!(
            keys(store.list("raw/w=a").await.unwrap()),
            ["raw/w=a/x.gz", "raw/w=a/y.gz"]
        );
        assert_eq!(
            keys(store.list("raw/w=a/y").await.unwrap()),
            ["raw/w=a/y.gz"]
        );
        assert_eq!(store.list("raw/w=a/").await.unwrap()[1].size, 4);
        assert!(store.list("nothing/").await.unwrap().is_empty());
        store.delete("raw/w=a/x.gz").await.unwrap();
        store.delete("raw/w=a/x.gz").await.unwrap();
        assert_eq!(
            keys(store.list("raw/w=a/").await.unwrap()),
            ["raw/w=a/y.gz"]
        );
    }

    #[tokio::test]
    async fn refuses_keys_outside_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("inner")).unwrap();
        for key in ["../escape", "/etc/passwd", "a/.b.tmp"] {
            let error = store.put(key, b"x".to_vec()).await.unwrap_err();
            assert!(!error.retriable, "{key}");
        }
        assert!(!dir.path().join("escape").exists());
    }

    #[tokio::test]
    async fn leftovers_of_interrupted_writes_are_invisible_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.put("raw/w=a/y.gz", b"whole".to_vec()).await.unwrap();
        let partition = dir.path().join("raw/w=a");
        fs::write(partition.join(".x.gz.tmp"), b"half").unwrap();
        let listed = store.list("raw/").await.unwrap();
        assert_eq!(listed.len(), 1);
        LocalStore::open(dir.path()).unwrap();
        assert!(!partition.join(".x.gz.tmp").exists());
        assert!(partition.join("y.gz").exists());
    }
}
