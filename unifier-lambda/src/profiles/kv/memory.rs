//! [`Kv`] in memory: a sorted map behind a lock, for tests. Every write is "durable" at once,
//! and TTLs are ignored (nothing expires during a test).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{Entry, Kv, KvError, KvHome, KvWrite};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// A map as a key-value store.
#[derive(Clone, Debug, Default)]
pub struct MemoryKv {
    map: Arc<Mutex<Map>>,
    failing: Arc<AtomicBool>,
}

impl MemoryKv {
    fn locked(&self, operation: &'static str) -> Result<std::sync::MutexGuard<'_, Map>, KvError> {
        self.map
            .lock()
            .map_err(|_| KvError::new(operation, "a writer panicked", false))
    }

    /// Makes every write fail (retriably) until called with `false`: an unavailable store.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

impl Kv for MemoryKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.locked("get")?.get(key).cloned())
    }

    async fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Entry>, KvError> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self
            .locked("scan")?
            .range(start.to_vec()..end.to_vec())
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn write(&self, batch: Vec<KvWrite>) -> Result<(), KvError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(KvError::new("write", "unavailable (a test)", true));
        }
        let mut map = self.locked("write")?;
        for write in batch {
            match write {
                KvWrite::Put { key, value, .. } => {
                    map.insert(key, value);
                }
                KvWrite::Delete { key } => {
                    map.remove(&key);
                }
            }
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), KvError> {
        Ok(())
    }

    async fn close(&self) -> Result<(), KvError> {
        Ok(())
    }
}

/// Stores in memory by path: opening a path again gives the same store.
#[derive(Clone, Debug, Default)]
pub struct MemoryHome {
    stores: Arc<Mutex<BTreeMap<String, MemoryKv>>>,
}

impl MemoryHome {
    /// The paths of the stores opened so far.
    pub fn paths(&self) -> Vec<String> {
        self.stores
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
    }
}

impl KvHome for MemoryHome {
    type Kv = MemoryKv;

    async fn open(&self, path: &str) -> Result<MemoryKv, KvError> {
        let mut stores = self
            .stores
            .lock()
            .map_err(|_| KvError::new("open", "a writer panicked", false))?;
        Ok(stores.entry(path.to_owned()).or_default().clone())
    }
}
