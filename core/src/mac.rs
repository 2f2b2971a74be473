//! HMAC-SHA256, the one signature primitive of Braid's contracts: forwarded batches
//! (`docs/forward.md`), personalization tokens and edge keys (`docs/personalization.md`).

use hmac::digest::generic_array::GenericArray;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// An HMAC-SHA256 keyed with `secret`, ready for `update`.
pub(crate) fn keyed(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: the fallback is never used.
    <Hmac<Sha256>>::new_from_slice(secret)
        .unwrap_or_else(|_| <Hmac<Sha256>>::new(&GenericArray::default()))
}

#[cfg(test)]
mod tests {
    use hmac::Mac as _;

    use super::*;

    #[test]
    fn is_standard_hmac_sha256() {
        // RFC 4231 test case 2 (key "Jefe", data "what do ya want for nothing?"): any language
        // can sign for Braid and check what it signs.
        let mut mac = keyed(b"Jefe");
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            crate::hex::encode(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
