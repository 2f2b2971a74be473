//! Objects as files under a folder, each `put` durable before it returns: written to a
//! temporary file beside its final name, fsync'ed, renamed into place, and the folder fsync'ed.
//! A crash leaves the old object or the new one, plus at worst a `.<name>.tmp` file, which
//! listings skip and [`LocalStore::open`] removes.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ObjectInfo, ObjectStore, Operation, StoreError, is_valid_key};

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

    fn path(&self, operation: Operation, key: &str) -> Result<PathBuf, StoreError> {
        if is_valid_key(key) {
            Ok(self.root.join(key))
        } else {
            Err(StoreError::InvalidKey {
                operation,
                key: key.to_owned(),
            })
        }
    }

    /// [`ObjectStore::put`] for callers that are not async (a writer thread).
    ///
    /// # Errors
    ///
    /// When the key is invalid or the file cannot be written durably.
    pub fn put_blocking(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        self.put_all_blocking(&[(key, body)])
    }

    /// Puts several objects, each durable when this returns, with one fsync per folder for
    /// all of them (the lake's group commit writes many at once): each body goes to a
    /// temporary file beside its final name, is fsync'ed and renamed into place, then every
    /// folder is fsync'ed.
    ///
    /// # Errors
    ///
    /// When a key is invalid or a file cannot be written durably; objects before it may be in
    /// place.
    pub fn put_all_blocking(&self, objects: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let mut folders: Vec<PathBuf> = Vec::new();
        for (key, body) in objects {
            let path = self.path(Operation::Put, key)?;
            let created = write_file(&path, body).map_err(|e| io_error(Operation::Put, key, &e))?;
            for folder in path.parent().into_iter().map(Path::to_owned).chain(created) {
                if !folders.contains(&folder) {
                    folders.push(folder);
                }
            }
        }
        for folder in &folders {
            File::open(folder)
                .and_then(|f| f.sync_all())
                .map_err(|e| io_error(Operation::Put, &folder.to_string_lossy(), &e))?;
        }
        Ok(())
    }

    fn get_blocking(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(Operation::Get, key)?;
        match fs::read(&path) {
            Ok(body) => Ok(Some(body)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(Operation::Get, key, &e)),
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
            .map_err(|e| io_error(Operation::List, prefix, &e))?;
        found.sort();
        Ok(found)
    }

    fn delete_blocking(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(Operation::Delete, key)?;
        match fs::remove_file(&path) {
            Ok(()) => sync_parent(&path).map_err(|e| io_error(Operation::Delete, key, &e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(Operation::Delete, key, &e)),
        }
    }
}

impl ObjectStore for LocalStore {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        let store = self.clone();
        let owned = key.to_owned();
        blocking(Operation::Put, key, move || {
            store.put_blocking(&owned, &body)
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let store = self.clone();
        let owned = key.to_owned();
        blocking(Operation::Get, key, move || store.get_blocking(&owned)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let store = self.clone();
        let owned = prefix.to_owned();
        blocking(Operation::List, prefix, move || store.list_blocking(&owned)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let store = self.clone();
        let owned = key.to_owned();
        blocking(Operation::Delete, key, move || {
            store.delete_blocking(&owned)
        })
        .await
    }
}

/// Runs file I/O on tokio's blocking threads.
async fn blocking<T: Send + 'static>(
    operation: Operation,
    key: &str,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::new(operation, key, e.to_string(), true))?
}

fn io_error(operation: Operation, key: &str, error: &io::Error) -> StoreError {
    // A full disk or an interrupted call may pass; a missing permission or a bad path will not.
    let retriable = !matches!(
        error.kind(),
        io::ErrorKind::PermissionDenied
            | io::ErrorKind::InvalidInput
            | io::ErrorKind::NotADirectory
    );
    StoreError::new(operation, key, error.to_string(), retriable)
}

/// Writes `body` to `path` whole, fsync'ed, by a rename from a temporary file. The folder's own
/// fsync is the caller's, and so is that of the folders it returns: the parents of the folders
/// it created (a new `date=` or `hour=` folder survives a crash only once its parent is synced).
fn write_file(path: &Path, body: &[u8]) -> io::Result<Vec<PathBuf>> {
    let folder = path
        .parent()
        .ok_or_else(|| io::Error::other("no parent folder"))?;
    let created = create_folders(folder)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::other("no file name"))?;
    let temporary = folder.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut file = File::create(&temporary)?;
        file.write_all(body)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    // The temporary file is invisible to readers and removed at the next open: a failure to
    // remove it now changes nothing the caller must know beyond the write's own failure.
    if result.is_err()
        && let Err(error) = fs::remove_file(&temporary)
        && error.kind() != io::ErrorKind::NotFound
    {
        tracing::debug!(%error, path = %temporary.display(), "A temporary file was left.");
    }
    result.map(|()| created)
}

/// Creates `folder` and its missing ancestors: the parent of each folder it created.
fn create_folders(folder: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut at = Some(folder);
    while let Some(dir) = at.filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        missing.push(dir);
        at = dir.parent();
    }
    let mut parents = Vec::new();
    for dir in missing.into_iter().rev() {
        match fs::create_dir(dir) {
            // Made here, or by another writer a moment ago, which may not have synced it yet.
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        parents.extend(dir.parent().map(Path::to_owned));
    }
    Ok(parents)
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

    #[test]
    fn new_folders_are_made_with_the_parents_to_sync() {
        let dir = tempfile::tempdir().unwrap();
        let hour = dir.path().join("raw/workspace=w/date=2024-05-01/hour=10");
        std::fs::create_dir_all(dir.path().join("raw/workspace=w")).unwrap();
        let parents = create_folders(&hour).unwrap();
        assert!(hour.is_dir());
        assert_eq!(
            parents,
            [
                dir.path().join("raw/workspace=w"),
                dir.path().join("raw/workspace=w/date=2024-05-01"),
            ]
        );
        assert!(
            create_folders(&hour).unwrap().is_empty(),
            "nothing new: nothing to sync"
        );
    }

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
            assert!(!error.is_retriable(), "{key}");
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
