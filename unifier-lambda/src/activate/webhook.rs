//! The webhook destination: each request's messages as one JSON body (or `{"batch": [...]}`),
//! signed with Standard Webhooks' headers by every key of the destination, sent by a
//! [`Sender`].

use braid_core::activate::destination::Destination;
use braid_core::activate::webhook::{segment_signature, signed_headers};

use super::{Answer, Delivery, Request, Sender, Sink, Wants};

/// A webhook destination, its requests sent by `T`.
pub struct Webhook<T> {
    destination: Destination,
    sender: T,
}

impl<T: Sender> Webhook<T> {
    /// The webhook of `destination` (checked, with its key), sending with `sender`.
    pub fn new(destination: Destination, sender: T) -> Webhook<T> {
        Webhook {
            destination,
            sender,
        }
    }
}

impl<T: Sender> Sink for Webhook<T> {
    fn wants(&self) -> Wants {
        let config = &self.destination.config;
        if config.identifiers || !config.traits.is_empty() || !config.consent.is_empty() {
            Wants::View
        } else {
            Wants::Nothing
        }
    }

    async fn deliver(&self, delivery: Delivery<'_>) -> Answer {
        let (id, body) = self.destination.body(delivery.messages);
        debug_assert_eq!(id, delivery.id);
        let mut headers: Vec<(&'static str, String)> = signed_headers(
            &self.destination.keys,
            &id,
            delivery.now.div_euclid(1000),
            &body,
        )
        .into();
        headers.push(("user-agent", "Braid-Webhooks/1".to_owned()));
        let segment = &self.destination.config.segment_secret;
        if !segment.is_empty() {
            headers.push(("x-signature", segment_signature(segment, &body)));
        }
        self.sender
            .send(Request {
                method: self.destination.config.method,
                headers,
                body,
            })
            .await
    }
}
