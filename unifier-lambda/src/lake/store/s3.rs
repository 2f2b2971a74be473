//! Objects in an S3 bucket (or any S3-compatible server), through `aws-sdk-s3`.
//!
//! `put` is one `PutObject` — S3 makes an object visible whole, and a 200 means it is durable —
//! or, above [`MULTIPART_THRESHOLD`], a multipart upload (compacted objects), aborted when a part
//! fails so that no half-written upload lingers.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Builder, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::{ObjectInfo, ObjectStore, Operation, StoreError, is_valid_key};

/// Objects larger than this are uploaded in parts.
pub const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;

/// The size of each part of a multipart upload (S3 wants at least 5 MiB but the last).
const PART_SIZE: usize = 8 * 1024 * 1024;

/// A bucket.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
}

impl S3Store {
    /// A store over `bucket` with a configured client.
    pub fn new(client: Client, bucket: impl Into<String>) -> S3Store {
        S3Store {
            client,
            bucket: bucket.into(),
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put_multipart(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk_error(Operation::Put, key, &e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| {
                StoreError::new(Operation::Put, key, "no upload id in the answer", true)
            })?
            .to_owned();
        let result = self.upload_parts(key, &upload_id, &body).await;
        if result.is_err()
            && let Err(error) = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await
        {
            // The bucket's lifecycle rule aborts incomplete uploads after a day.
            tracing::warn!(error = %sdk_error(Operation::Put, key, &error), "A failed upload was not aborted.");
        }
        result
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        body: &[u8],
    ) -> Result<(), StoreError> {
        let mut parts = Vec::new();
        for (index, chunk) in body.chunks(PART_SIZE).enumerate() {
            let number = i32::try_from(index + 1)
                .map_err(|_| StoreError::new(Operation::Put, key, "too many parts", false))?;
            let uploaded = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| sdk_error(Operation::Put, key, &e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(uploaded.e_tag().map(str::to_owned))
                    .build(),
            );
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_error(Operation::Put, key, &e))?;
        Ok(())
    }
}

/// A client for `region` with static credentials; with `endpoint`, for an S3-compatible server
/// at that address, with path-style addressing.
pub fn client(region: &str, credentials: Credentials, endpoint: Option<&str>) -> Client {
    let mut config = Builder::new()
        .region(Region::new(region.to_owned()))
        .credentials_provider(credentials);
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint).force_path_style(true);
    }
    Client::from_conf(config.build())
}

fn check_key(operation: Operation, key: &str) -> Result<(), StoreError> {
    if is_valid_key(key) {
        Ok(())
    } else {
        Err(StoreError::new(
            operation,
            key,
            "not a valid object key",
            false,
        ))
    }
}

/// A failed S3 call: throttling (429, 503 `SlowDown`), server errors and network failures may
/// pass; other answers (403, 404 on the bucket, 400) will not.
fn sdk_error<E: ProvideErrorMetadata + std::error::Error, R>(
    operation: Operation,
    key: &str,
    error: &SdkError<E, R>,
) -> StoreError
where
    R: std::fmt::Debug,
{
    let (retriable, message) = match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("unknown");
            let retriable = matches!(
                code,
                "SlowDown"
                    | "InternalError"
                    | "ServiceUnavailable"
                    | "RequestTimeout"
                    | "Throttling"
            );
            let detail = service.err().message().unwrap_or_default();
            (retriable, format!("{code}: {detail}"))
        }
        SdkError::ResponseError(_) | SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            (true, error.to_string())
        }
        _ => (false, format!("{error:?}")),
    };
    StoreError::new(operation, key, message, retriable)
}

impl ObjectStore for S3Store {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        check_key(Operation::Put, key)?;
        if body.len() > MULTIPART_THRESHOLD {
            return self.put_multipart(key, body).await;
        }
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| sdk_error(Operation::Put, key, &e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(Operation::Get, key)?;
        let answer = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let output = match answer {
            Ok(output) => output,
            Err(SdkError::ServiceError(service)) if service.err().is_no_such_key() => {
                return Ok(None);
            }
            Err(error) => return Err(sdk_error(Operation::Get, key, &error)),
        };
        let body = output
            .body
            .collect()
            .await
            .map_err(|e| StoreError::new(Operation::Get, key, e.to_string(), true))?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error(Operation::List, prefix, &e))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    found.push(ObjectInfo {
                        key: key.to_owned(),
                        size: object
                            .size()
                            .and_then(|s| u64::try_from(s).ok())
                            .unwrap_or(0),
                        modified: object.last_modified().map_or(0, |t| {
                            i128::from(t.secs()) * 1_000_000_000 + i128::from(t.subsec_nanos())
                        }),
                    });
                }
            }
        }
        found.sort();
        Ok(found)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(Operation::Delete, key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk_error(Operation::Delete, key, &e))?;
        Ok(())
    }
}
