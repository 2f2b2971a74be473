//! What a handler gives back to its platform ([`Handled`]): an answer, or a step to finish on
//! the platform — store a [`LakeWrite`], read a profile, an edge entry or a file — with what
//! turns the step's result into the answer.

use braid_core::activate::personalize::EMPTY_PROFILE;
use braid_core::catalogue::lake::LakeWrite;
use braid_core::unify::Identifier;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::http::HttpResponse;
use crate::sdk::{sdk_content_type, sdk_response};

/// What happened to a request, for the platform's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events in the body (0 when it could not be parsed).
    pub received: usize,
    /// Events accepted into the lake.
    pub accepted: usize,
    /// Events rejected into `failed/`.
    pub failed: usize,
    /// Body bytes as received.
    pub bytes: usize,
}

/// The response to give once a [`LakeWrite`] is durable (or has failed).
#[derive(Debug)]
pub struct Reply {
    pub(crate) response: HttpResponse,
}

impl Reply {
    /// The response to send: the prepared one when the events are stored, else 503 with
    /// `Retry-After` so the client keeps them and tries again.
    pub fn finish(self, stored: bool) -> HttpResponse {
        if stored {
            return self.response;
        }
        let mut failure = ApiError::StorageUnavailable.to_response();
        // Keep the CORS headers, or the browser cannot read the 503.
        failure.headers.extend(
            self.response
                .headers
                .into_iter()
                .filter(|(k, _)| k.starts_with("access-control") || *k == "vary"),
        );
        failure
    }
}

/// The outcome of handling a request.
#[derive(Debug)]
pub enum Handled {
    /// Answer at once; nothing to store.
    Respond(HttpResponse, Counts),
    /// Store the events durably (or hand them to the upstream ingest), then answer with
    /// `reply.finish(stored)`.
    Store(LakeWrite, Reply, Counts),
    /// Look up the caller's edge entry, then answer with `read.finish(value)`.
    Personalize(Personalization),
    /// Read a profile (or its events) from the profile store, then answer with
    /// `read.finish(answer)`.
    Profile(ProfileRead),
    /// Read the data map from the profile store, then answer with `read.finish(map)`.
    Catalogue(CatalogueRead),
    /// Preview a condition tree over the profiles, or read the change log, then answer with
    /// `read.finish(answer)`.
    Audiences(AudienceRead),
    /// Replay `failed/` into `raw/` under the plan in force, then answer with
    /// `replay.finish(summary)`.
    Replay(ReplayRequest),
    /// Read a file of the browser SDK, then answer with `read.finish(bytes)`.
    Sdk(SdkRead),
    /// Report the destinations' deliveries, then answer with `read.finish(reports)`.
    Destinations(DestinationsRead),
}

impl Handled {
    pub(crate) fn respond(response: HttpResponse) -> Handled {
        Handled::Respond(response, Counts::default())
    }
}

/// A personalization read for the platform to finish.
#[derive(Debug)]
pub struct Personalization {
    /// The workspace (the first configured one): where `braid serve` looks.
    pub workspace: String,
    /// The caller's identifier.
    pub identifier: Identifier,
    /// Its key in the edge store (`braid_core::activate::personalize::edge_key`).
    pub key: String,
    /// The traits the edge may show (`[activate.personalize] traits`).
    pub traits: Vec<String>,
    pub(crate) headers: Vec<(&'static str, String)>,
}

impl Personalization {
    /// The answer, given the stored value (`None`: unknown, an empty profile).
    pub fn finish(self, value: Option<String>) -> HttpResponse {
        personal_answer(
            value.unwrap_or_else(|| EMPTY_PROFILE.to_owned()),
            self.headers,
        )
    }

    /// The answer when the store could not be read: 503, to try again.
    pub fn fail(self, message: &str) -> HttpResponse {
        let mut response = ApiError::ProfileStoreFailed {
            message: message.to_owned(),
        }
        .to_response();
        response.headers.extend(self.headers);
        response
    }
}

/// The answer with one person's data: never cached by a shared cache.
pub(crate) fn personal_answer(
    body: String,
    cors_headers: Vec<(&'static str, String)>,
) -> HttpResponse {
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        // One person's data: never cached by a shared cache, never reused for another caller.
        ("cache-control", "private, no-store".to_owned()),
        ("vary", "Cookie, Authorization".to_owned()),
    ];
    headers.extend(cors_headers);
    HttpResponse {
        status: 200,
        headers,
        body: body.into_bytes(),
    }
}

/// What the caller asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProfileQuery {
    /// The profile.
    Profile,
    /// Why it is in or out of an audience (which exists).
    Explain {
        /// The audience's key.
        audience: String,
    },
    /// A page of its events: up to `limit` after the event numbered `after` (from the first
    /// when `None`).
    Events {
        /// Where the previous page ended.
        after: Option<u64>,
        /// The page's size.
        limit: usize,
    },
}

/// What the profile store found.
#[derive(Clone, Debug, PartialEq)]
pub enum ProfileAnswer {
    /// No profile has the identifier.
    Unknown,
    /// The profile, as the profile API shows it.
    Profile(Value),
    /// A page of events, and the number to continue after when there are more.
    Events {
        /// The events (lake lines), in the order they were unified.
        events: Vec<Value>,
        /// Where the next page starts.
        next: Option<u64>,
    },
}

/// A profile read for the platform to finish.
#[derive(Clone, Debug)]
pub struct ProfileRead {
    /// The workspace.
    pub workspace: String,
    /// The identifier named in the path (as sent; the store normalises it).
    pub identifier: Identifier,
    /// What is asked.
    pub query: ProfileQuery,
}

impl ProfileRead {
    /// The answer, given what the store found (or why it could not read).
    pub fn finish<E: std::fmt::Display>(self, found: Result<ProfileAnswer, E>) -> HttpResponse {
        match found {
            Ok(ProfileAnswer::Profile(profile)) => HttpResponse::json(200, &profile),
            Ok(ProfileAnswer::Events { events, next }) => HttpResponse::json(
                200,
                &json!({"events": events, "nextCursor": next.map(|n| format!("{n:x}"))}),
            ),
            Ok(ProfileAnswer::Unknown) => ApiError::NoProfile {
                identifier: self.identifier.to_string(),
            }
            .to_response(),
            Err(error) => ApiError::ProfileStoreFailed {
                message: error.to_string(),
            }
            .to_response(),
        }
    }
}

/// What the catalogue API is asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogueQuery {
    /// The flags, the sources, each event with the number of its properties.
    Summary,
    /// The events of a type and name (every source), with their properties (only `path`,
    /// when given).
    Events {
        /// The Spec type.
        kind: String,
        /// The name (empty for identify, group, alias).
        name: String,
        /// One property path.
        path: Option<String>,
    },
}

/// What an audience read asks.
#[derive(Clone, Debug, PartialEq)]
pub enum AudienceQuery {
    /// Who meets a condition tree now (checked, its event conditions mapped to what profiles
    /// count: `braid_core::segment::Segments::preview_condition`).
    Preview {
        /// The condition.
        condition: braid_core::segment::Condition,
        /// A saved audience to compare with: who would enter and leave it.
        compare: Option<String>,
        /// How many members to list.
        sample: usize,
    },
    /// A page of the change log: up to `limit` entries after the one numbered `after`.
    Changes {
        /// The last entry read (0: from the start).
        after: u64,
        /// The page's size.
        limit: usize,
    },
}

/// An audience read for the platform to finish.
#[derive(Clone, Debug, PartialEq)]
pub struct AudienceRead {
    /// The workspace.
    pub workspace: String,
    /// What is asked.
    pub query: AudienceQuery,
}

impl AudienceRead {
    /// The answer, given what the store found (a preview, or the change log's entries as a
    /// list) or why it could not read.
    pub fn finish<E: std::fmt::Display>(self, found: Result<Value, E>) -> HttpResponse {
        match found {
            Ok(Value::Array(entries)) if matches!(self.query, AudienceQuery::Changes { .. }) => {
                // Where the next page starts: after the last entry of this one.
                let next = entries
                    .last()
                    .and_then(|e| e.get("number"))
                    .and_then(Value::as_u64);
                HttpResponse::json(200, &json!({"changes": entries, "next": next}))
            }
            Ok(answer) => HttpResponse::json(200, &answer),
            Err(error) => ApiError::ProfileStoreFailed {
                message: error.to_string(),
            }
            .to_response(),
        }
    }
}

/// A report of the destinations for the platform to finish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationsRead {
    pub(crate) _private: (),
}

impl DestinationsRead {
    /// The answer: `{"destinations": [...]}`, each a destination's report
    /// (`braid_core::activate::destination::DeliveryState::report`).
    pub fn finish(self, reports: &[Value]) -> HttpResponse {
        HttpResponse::json(200, &json!({ "destinations": reports }))
    }
}

/// A catalogue read for the platform to finish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogueRead {
    /// The workspace.
    pub workspace: String,
    /// What is asked.
    pub query: CatalogueQuery,
}

impl CatalogueRead {
    /// The answer, given the workspace's data map (`None`: nothing unified yet, an empty
    /// map) or why it could not be read.
    pub fn finish<E: std::fmt::Display>(
        self,
        found: Result<Option<braid_core::catalogue::map::DataMap>, E>,
    ) -> HttpResponse {
        let map = match found {
            Ok(map) => map.unwrap_or_default(),
            Err(error) => {
                return ApiError::ProfileStoreFailed {
                    message: error.to_string(),
                }
                .to_response();
            }
        };
        let shown = braid_core::catalogue::map::view(&map);
        let body = match self.query {
            CatalogueQuery::Summary => {
                let mut summary = shown.summary();
                if let Some(object) = summary.as_object_mut() {
                    object.insert("workspace".to_owned(), json!(self.workspace));
                }
                summary
            }
            CatalogueQuery::Events { kind, name, path } => {
                let events = shown.select(Some(&kind), &name, path.as_deref());
                if events.is_empty() {
                    return ApiError::NotInCatalogue {
                        what: format!(
                            "{kind} event {name:?}{}",
                            path.map(|p| format!(" with {p}")).unwrap_or_default()
                        ),
                    }
                    .to_response();
                }
                json!({"workspace": self.workspace, "events": events})
            }
        };
        let mut response = HttpResponse::json(200, &body);
        response
            .headers
            .push(("cache-control", "private, no-store".to_owned()));
        response
    }
}

/// A replay of `failed/` for the platform that holds the lake to run
/// (`braid_unifier::lake::replay`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayRequest {
    /// The workspace.
    pub workspace: String,
    /// Which records.
    pub filter: braid_core::catalogue::replay::ReplayFilter,
    /// Say what would land, write nothing.
    pub dry_run: bool,
}

impl ReplayRequest {
    /// The answer, given what the replay did (as JSON) or why it failed.
    pub fn finish<E: std::fmt::Display>(self, done: Result<Value, E>) -> HttpResponse {
        match done {
            Ok(mut summary) => {
                if let Some(object) = summary.as_object_mut() {
                    object.insert("workspace".to_owned(), json!(self.workspace));
                }
                let mut response = HttpResponse::json(200, &summary);
                response
                    .headers
                    .push(("cache-control", "private, no-store".to_owned()));
                response
            }
            Err(error) => ApiError::LakeFailed {
                message: error.to_string(),
            }
            .to_response(),
        }
    }
}

/// A file of the SDK for the platform to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdkRead {
    method: String,
    name: String,
}

impl SdkRead {
    pub(crate) fn new(method: &str, name: &str) -> SdkRead {
        SdkRead {
            method: method.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The file's name, when it may be read: a plain name (no folders, no dot files) of a
    /// known type; `None` for any other name, which [`SdkRead::finish`] answers 404 whatever
    /// the platform has.
    pub fn name(&self) -> Option<&str> {
        sdk_content_type(&self.name).map(|_| self.name.as_str())
    }

    /// The answer, given the file's bytes (`None`: no such file, or the platform serves no
    /// SDK).
    pub fn finish(self, bytes: Option<Vec<u8>>) -> HttpResponse {
        sdk_response(&self.method, &self.name, bytes)
    }
}
