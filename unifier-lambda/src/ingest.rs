//! Ingest over an object store: the HTTP handlers of `braid_edge::Api` with what they accept
//! written to the store as one object per request and area ([`write_objects`]) — what the
//! ingest Lambda function runs behind its function URL, and what tests run against any store.
//! `POST /v1/forward` takes the edge's signed batches; the collection routes take clients'
//! events directly when the configuration names workspaces.

use braid_edge::{Api, ApiError, Handled, HttpRequest, HttpResponse};
use time::OffsetDateTime;

use crate::lake::store::ObjectStore;
use crate::lake::write::write_objects;

/// Handles one request received at `now`, storing what it carries before the answer.
pub async fn handle<S: ObjectStore>(
    api: &Api,
    store: &S,
    request: &HttpRequest<'_>,
    now: OffsetDateTime,
) -> HttpResponse {
    match api.handle(request, now) {
        Handled::Respond(response, _) => response,
        Handled::Store(write, reply, _) => {
            let stored = write_objects(store, &write).await;
            if let Err(error) = &stored {
                tracing::warn!(%error, "ingest: the store refused a lake object");
            }
            reply.finish(stored.is_ok())
        }
        Handled::Sdk(read) => read.finish(None),
        Handled::Personalize(_) | Handled::Profile(_) | Handled::Audiences(_) => ApiError::Off {
            what: "profile reads in the ingest function",
            how: "read profiles where the profile store is served (braid serve)",
        }
        .to_response(),
        Handled::Destinations(_) => ApiError::Off {
            what: "the destinations' status in the ingest function",
            how: "ask where destinations are delivered (braid serve)",
        }
        .to_response(),
        Handled::Catalogue(_) => ApiError::Off {
            what: "the catalogue API in the ingest function",
            how: "read the data map where the profile store is served (braid serve, braid catalogue)",
        }
        .to_response(),
        // What lands is new `raw/` objects: the bucket notifies unify of them.
        Handled::Replay(replay) => {
            crate::lake::replay::answer(store, api.config().catalogue.plan.as_ref(), replay)
                .await
                .0
        }
    }
}
