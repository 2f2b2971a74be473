//! `POST /v1/forward`: a batch an edge validated, enriched and signed (`docs/forward.md`). Its
//! signature and body are checked here and its events validated again with the core, so that
//! the lake stays valid whatever an edge sends; the platform then stores it like any other
//! [`LakeWrite`](braid_core::catalogue::lake::LakeWrite).

use braid_core::catalogue::validate::ValidationError;
use braid_core::collect::forward::{ForwardBatch, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};
use serde_json::json;
use time::OffsetDateTime;

use crate::api::Api;
use crate::error::ApiError;
use crate::handled::{Counts, Handled, Reply};
use crate::http::{HttpRequest, HttpResponse};

impl Api {
    pub(crate) fn forward(&self, request: &HttpRequest<'_>, now: OffsetDateTime) -> Handled {
        let bytes = request.body.len();
        match self.check_forward(request, now) {
            Ok(batch) => {
                let write = batch.to_lake_write(&self.config.catalogue.limits);
                let counts = Counts {
                    received: batch.events.len() + batch.failed.len(),
                    accepted: write.accepted_count,
                    failed: write.failed_count,
                    bytes,
                };
                let response = HttpResponse::json(
                    200,
                    &json!({"success": true, "accepted": counts.accepted, "failed": counts.failed}),
                );
                Handled::Store(write, Reply { response }, counts)
            }
            Err(error) => self.refuse(request, &error, bytes),
        }
    }

    /// The batch, once its signature, its size and its workspace are checked.
    fn check_forward<'r>(
        &self,
        request: &HttpRequest<'r>,
        now: OffsetDateTime,
    ) -> Result<ForwardBatch<'r>, ApiError> {
        let Some(secret) = self.config.collect.forward_secret.as_deref() else {
            return Err(ApiError::Off {
                what: "POST /v1/forward",
                how: "set collect.forward_secret (or BRAID_FORWARD_SECRET)",
            });
        };
        let limits = &self.config.catalogue.limits;
        let limit = self.body_limit(request.path);
        if request.body.len() > limit {
            return Err(ValidationError::BatchTooLarge {
                size: request.body.len(),
                limit,
            }
            .into());
        }
        verify(
            secret.as_bytes(),
            request.header(TIMESTAMP_HEADER),
            request.header(SIGNATURE_HEADER),
            request.body,
            now,
        )?;
        let batch = ForwardBatch::parse(request.body)?;
        self.check_workspace(&batch.workspace)?;
        let count = batch.events.len() + batch.failed.len();
        if count > limits.max_batch_events {
            return Err(ValidationError::TooManyEvents {
                count,
                limit: limits.max_batch_events,
            }
            .into());
        }
        Ok(batch)
    }
}
