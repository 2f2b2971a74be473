//! A [`LakeWrite`] into an object store: one object per area (`raw/`, and `failed/` when some
//! events failed), each named by its content (`braid_core::catalogue::lake::batch_id`), so that
//! a request that is retried, or a forwarded batch replayed within its signature's window,
//! rewrites its own objects: no duplicate events. This is how the ingest function stores what
//! it takes; `braid serve` gathers many requests into one object per partition instead
//! ([`super::group`]).

use braid_core::catalogue::lake::{self, LakeWrite};

use super::object::gzip;
use super::store::{ObjectStore, StoreError};

/// Writes `write` durably; gives the keys of the objects written, `raw/` first.
///
/// # Errors
///
/// When the store refuses a put; the objects before it may be in place (a retry rewrites
/// them).
pub async fn write_objects<S: ObjectStore>(
    store: &S,
    write: &LakeWrite,
) -> Result<Vec<String>, StoreError> {
    let mut keys = Vec::new();
    for (area, content) in write.areas() {
        let key = lake::object_key(
            area,
            &write.workspace,
            write.received_at,
            &lake::batch_id(content),
        );
        store.put(&key, gzip(content)).await?;
        keys.push(key);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use braid_core::catalogue::validate::Limits;
    use braid_core::collect::forward::ForwardBatch;
    use serde_json::Value;

    use super::*;
    use crate::lake::object::{gunzip, lines};
    use crate::lake::store::LocalStore;

    async fn read(store: &LocalStore, prefix: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for object in store.list(prefix).await.unwrap() {
            let packed = store.get(&object.key).await.unwrap().unwrap();
            for line in lines(&gunzip(&packed, 1 << 20).unwrap()) {
                out.push(serde_json::from_slice(line).unwrap());
            }
        }
        out
    }

    #[tokio::test]
    async fn writes_one_object_per_area_and_retries_overwrite_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let received = braid_core::timestamp::parse("2024-05-01T10:00:00Z").unwrap();
        let events = "{\"type\":\"track\",\"event\":\"A\",\"userId\":\"u\",\"messageId\":\"m1\"}\n\
                      {\"type\":\"track\",\"userId\":\"u\"}\n";
        let failed = r#"{"code":"malformed_json","payload":"{"}"#;
        let body = ForwardBatch::write("shop", received, events.as_bytes(), failed.as_bytes());
        let write = ForwardBatch::parse(&body)
            .unwrap()
            .to_lake_write(&Limits::default());
        let keys = write_objects(&store, &write).await.unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys[0].starts_with("raw/workspace=shop/date=2024-05-01/hour=10/"));
        assert!(keys[1].starts_with("failed/workspace=shop/date=2024-05-01/hour=10/"));
        assert_eq!(write_objects(&store, &write).await.unwrap(), keys);
        assert_eq!(
            store.list("raw/").await.unwrap().len(),
            1,
            "a retry rewrites the same object"
        );
        let stored = read(&store, "raw/").await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0]["messageId"], "m1");
        let failures = read(&store, "failed/").await;
        assert_eq!(failures.len(), 2);
        assert_eq!(failures[0]["code"], "missing_field");
        assert_eq!(failures[1]["code"], "malformed_json");
    }
}
