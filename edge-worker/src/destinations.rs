//! `GET /v1/destinations`, for a holder of the catalogue's admin token: each destination's
//! deliveries as the process running them holds them (`braid serve`; the platform answers with
//! [`DestinationsRead::finish`](crate::DestinationsRead::finish)).

use crate::api::Api;
use crate::auth::check_bearer;
use crate::error::ApiError;
use crate::handled::{DestinationsRead, Handled};
use crate::http::HttpRequest;

impl Api {
    pub(crate) fn destinations(&self, request: &HttpRequest<'_>) -> Handled {
        let Some(api) = &self.config.catalogue.api else {
            let error = ApiError::Off {
                what: "the destinations' status",
                how: "set catalogue.api.token (or BRAID_CATALOGUE_TOKEN)",
            };
            return self.refuse(request, &error, 0);
        };
        match check_bearer(request, &api.token, "the catalogue token") {
            Ok(()) => Handled::Destinations(DestinationsRead { _private: () }),
            Err(error) => self.refuse(request, &error, 0),
        }
    }
}
