//! The generic webhook: the finding JSON itself, optionally signed.
//!
//! Signing: with `hmac_secret` set, each request carries
//! `X-Rootwatch-Timestamp: <unix seconds>` and
//! `X-Rootwatch-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
//! A receiver recomputes the HMAC over the timestamp header, a `.`, and the
//! raw body bytes, compares in constant time, and rejects timestamps more
//! than a few minutes from its clock so a captured request cannot be
//! replayed later.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::finding::Finding;

pub const TIMESTAMP_HEADER: &str = "X-Rootwatch-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Rootwatch-Signature";
pub const FINDING_ID_HEADER: &str = "X-Rootwatch-Finding-Id";

pub fn body(finding: &Finding) -> Vec<u8> {
    finding.to_json().into_bytes()
}

/// The signature header value for `body` sent at `timestamp`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        hmac::Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_computation() {
        // HMAC-SHA256(key="key", "1700000000.{}"), computed with Python's hmac module.
        assert_eq!(
            signature(b"key", 1_700_000_000, b"{}"),
            "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }
}
