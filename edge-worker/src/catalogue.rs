//! The catalogue API, for a holder of the catalogue token (`[catalogue.api]`, never a write
//! key): `GET /v1/catalogue` (the quality flags, the sources, and each event with the number of
//! its properties) and `GET /v1/catalogue/events?type=T&name=N[&path=P]` (the events of that
//! type and name, from every source, with their properties, or only the path `P`).
//! `?workspace=W` reads another workspace than the first configured one. The platform reads
//! the data map beside its profiles and answers with
//! [`CatalogueRead::finish`](crate::CatalogueRead::finish); personal data is masked in both.

use crate::api::Api;
use crate::auth::check_bearer;
use crate::error::ApiError;
use crate::handled::{CatalogueQuery, CatalogueRead, Handled};
use crate::http::HttpRequest;

impl Api {
    pub(crate) fn catalogue(&self, request: &HttpRequest<'_>, rest: &str) -> Handled {
        match self.catalogue_read(request, rest) {
            Ok(read) => Handled::Catalogue(read),
            Err(error) => self.refuse(request, &error, 0),
        }
    }

    fn catalogue_read(
        &self,
        request: &HttpRequest<'_>,
        rest: &str,
    ) -> Result<CatalogueRead, ApiError> {
        let Some(api) = &self.config.catalogue.api else {
            return Err(ApiError::Off {
                what: "the catalogue API",
                how: "set catalogue.api.token (or BRAID_CATALOGUE_TOKEN)",
            });
        };
        let query = match rest.strip_suffix('/').unwrap_or(rest) {
            "" => CatalogueQuery::Summary,
            "/events" => {
                let required = |field: &'static str| {
                    request
                        .query_value(field)
                        .map(std::borrow::Cow::into_owned)
                        .ok_or(ApiError::BadParameter {
                            field,
                            expected: "the event's type (track, identify, page, ...) and name",
                            limit: None,
                        })
                };
                CatalogueQuery::Events {
                    kind: required("type")?,
                    name: request
                        .query_value("name")
                        .map(std::borrow::Cow::into_owned)
                        .unwrap_or_default(),
                    path: request
                        .query_value("path")
                        .map(std::borrow::Cow::into_owned),
                }
            }
            _ => {
                return Err(ApiError::NotFound {
                    path: request.path.to_owned(),
                });
            }
        };
        check_bearer(request, &api.token, "the catalogue token")?;
        Ok(CatalogueRead {
            workspace: self.requested_workspace(request)?,
            query,
        })
    }
}
