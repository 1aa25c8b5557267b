//! `Oncehub-Signature` verification: pure functions over the raw body bytes.
//!
//! Scheme (shared/oncehub-api.md §7): header `t=<unix seconds>,s=<hex>[,s=<hex>...]`; the signature
//! is lowercase hex HMAC-SHA256 keyed by the subscription secret's UTF-8 bytes over
//! `t + "." + raw_body`. Any configured secret (rotation) matching any `s=` accepts. Comparison is
//! constant-time (`Mac::verify_slice`). No secret or signature value ever appears in an error.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::WebhookSecret;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Oncehub-Signature header is missing")]
    Missing,
    #[error("the Oncehub-Signature header is malformed; expected t=<unix seconds>,s=<hex>")]
    Malformed,
    #[error("the signature `s` has {0} characters; an HMAC-SHA256 signature is 64 hex characters")]
    WrongLength(usize),
    #[error("the signature timestamp is outside the allowed tolerance")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
}

/// A parsed `Oncehub-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    timestamp: i64,
    signatures: Vec<[u8; 32]>,
}

impl SignatureHeader {
    /// The signed timestamp `t`, seconds since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// Parses `t=...,s=...`; keys are matched case-insensitively, whitespace around parts ignored,
    /// unknown keys skipped. Needs exactly one `t` and at least one well-formed `s`.
    pub fn parse(header: &str) -> Result<SignatureHeader, SignatureError> {
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            let (key, value) = part.trim().split_once('=').ok_or(SignatureError::Malformed)?;
            match key.trim().to_ascii_lowercase().as_str() {
                "t" if timestamp.is_none() => {
                    timestamp = Some(value.trim().parse::<i64>().map_err(|_| SignatureError::Malformed)?)
                }
                "t" => return Err(SignatureError::Malformed),
                "s" => {
                    let mut sig = [0u8; 32];
                    let value = value.trim();
                    if value.len() != 64 {
                        return Err(SignatureError::WrongLength(value.len()));
                    }
                    hex::decode_to_slice(value, &mut sig).map_err(|_| SignatureError::Malformed)?;
                    signatures.push(sig);
                }
                _ => {}
            }
        }
        match (timestamp, signatures.is_empty()) {
            (Some(timestamp), false) => Ok(SignatureHeader { timestamp, signatures }),
            _ => Err(SignatureError::Malformed),
        }
    }
}

/// Checks signatures against the configured secrets and replay tolerance.
#[derive(Clone)]
pub struct Verifier {
    /// Each key with the last unix second it is accepted (`None`: no end).
    keys: Vec<(HmacSha256, Option<i64>)>,
    /// Maximum |now - t| in seconds; `None` disables the check.
    tolerance_secs: Option<u64>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.keys.len())
            .field("tolerance_secs", &self.tolerance_secs)
            .finish()
    }
}

impl Verifier {
    /// `tolerance_secs == 0` disables the timestamp check.
    pub fn new(secrets: &[WebhookSecret], tolerance_secs: u64) -> Verifier {
        Self::with_expiring(secrets, &[], tolerance_secs)
    }

    /// As [`Self::new`], plus secrets accepted only until a unix time (a replaced subscription's,
    /// during its grace period).
    pub fn with_expiring(
        secrets: &[WebhookSecret],
        expiring: &[(WebhookSecret, i64)],
        tolerance_secs: u64,
    ) -> Verifier {
        let keys = secrets
            .iter()
            .map(|s| (keyed(s), None))
            .chain(expiring.iter().map(|(s, until)| (keyed(s), Some(*until))))
            .collect();
        Verifier { keys, tolerance_secs: (tolerance_secs > 0).then_some(tolerance_secs) }
    }

    /// Accepts when some secret signs `t.body` as one of the header's signatures and `t` is fresh.
    /// Returns which secret matched (its position: the configured ones, then the expiring ones).
    pub fn verify(&self, header: &SignatureHeader, body: &[u8], now_unix: i64) -> Result<usize, SignatureError> {
        if self.tolerance_secs.is_some_and(|tol| now_unix.abs_diff(header.timestamp) > tol) {
            return Err(SignatureError::Stale);
        }
        for (i, (key, until)) in self.keys.iter().enumerate() {
            if until.is_some_and(|u| now_unix > u) {
                continue;
            }
            let mac = signed(key.clone(), header.timestamp, body);
            if header.signatures.iter().any(|sig| mac.clone().verify_slice(sig).is_ok()) {
                return Ok(i);
            }
        }
        Err(SignatureError::Mismatch)
    }

    /// How many secrets are configured (not counting expiring ones).
    pub fn current_secrets(&self) -> usize {
        self.keys.iter().filter(|(_, until)| until.is_none()).count()
    }

    /// How many secrets are checked, expiring ones included.
    pub fn secrets(&self) -> usize {
        self.keys.len()
    }

    /// The replay tolerance in seconds (0: not checked).
    pub fn tolerance_secs(&self) -> u64 {
        self.tolerance_secs.unwrap_or(0)
    }
}

/// Signs `body` at `t` with `secret`: the header value a sender puts in `Oncehub-Signature`.
pub fn sign(secret: &WebhookSecret, t: i64, body: &[u8]) -> String {
    let mac = signed(keyed(secret), t, body);
    format!("t={t},s={}", hex::encode(mac.finalize().into_bytes()))
}

/// The HMAC state keyed by a secret's UTF-8 bytes.
fn keyed(secret: &WebhookSecret) -> HmacSha256 {
    HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("HMAC accepts keys of any length")
}

/// `key` fed with the signed message: `t + "." + body`.
fn signed(mut key: HmacSha256, t: i64, body: &[u8]) -> HmacSha256 {
    key.update(t.to_string().as_bytes());
    key.update(b".");
    key.update(body);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "d7686b8c83f04913929079aeae40189e";
    const T: i64 = 1767225600;
    const BODY: &str = r#"{"id":"EVNT-TESTVECTOR","object":"event","creation_time":"2026-01-01T00:00:00Z","type":"booking.scheduled","api_version":"v2","data":{"object":"booking","id":"BKNG-TESTVECTOR"}}"#;
    const EXPECTED: &str = "a640beea02bb25484eecc2bc9c885dfdd8e3f015199f9473f97024ad72046cff";

    fn secret(s: &str) -> WebhookSecret {
        WebhookSecret::parse(s).unwrap()
    }

    #[test]
    fn documented_test_vector() {
        assert_eq!(sign(&secret(SECRET), T, BODY.as_bytes()), format!("t={T},s={EXPECTED}"));
        let v = Verifier::new(&[secret(SECRET)], 300);
        let h = SignatureHeader::parse(&format!("t={T},s={EXPECTED}")).unwrap();
        assert_eq!(v.verify(&h, BODY.as_bytes(), T + 10), Ok(0));
    }

    #[test]
    fn any_secret_and_any_signature_may_match() {
        let v = Verifier::new(&[secret("old-secret"), secret(SECRET)], 0);
        let other = "0".repeat(64);
        let h = SignatureHeader::parse(&format!("t={T}, s={other} ,S={EXPECTED}")).unwrap();
        assert_eq!(v.verify(&h, BODY.as_bytes(), 0), Ok(1), "the second secret");
        assert_eq!((v.current_secrets(), v.secrets()), (2, 2));
    }

    #[test]
    fn wrong_body_secret_or_time_is_refused() {
        let v = Verifier::new(&[secret(SECRET)], 300);
        let h = SignatureHeader::parse(&format!("t={T},s={EXPECTED}")).unwrap();
        assert_eq!(v.verify(&h, b"{}", T), Err(SignatureError::Mismatch));
        assert_eq!(v.verify(&h, BODY.as_bytes(), T + 301), Err(SignatureError::Stale));
        assert_eq!(v.verify(&h, BODY.as_bytes(), T - 301), Err(SignatureError::Stale));
        assert_eq!(v.tolerance_secs(), 300);
        let w = Verifier::new(&[secret("another")], 300);
        assert_eq!(w.verify(&h, BODY.as_bytes(), T), Err(SignatureError::Mismatch));
        let no_tolerance = Verifier::new(&[secret(SECRET)], 0);
        assert_eq!(no_tolerance.verify(&h, BODY.as_bytes(), T + 10_000_000), Ok(0));
    }

    #[test]
    fn an_expiring_secret_is_accepted_until_its_end_only() {
        let v = Verifier::with_expiring(&[secret("new-secret")], &[(secret(SECRET), T + 60)], 0);
        let h = SignatureHeader::parse(&format!("t={T},s={EXPECTED}")).unwrap();
        assert_eq!(v.verify(&h, BODY.as_bytes(), T + 60), Ok(1));
        assert_eq!((v.current_secrets(), v.secrets()), (1, 2), "past the current ones: the grace secret");
        assert_eq!(v.verify(&h, BODY.as_bytes(), T + 61), Err(SignatureError::Mismatch));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let zz = "z".repeat(64);
        for bad in ["", "t=1", "t=x,s=00", &format!("t=1,s={zz}"), "t=1,t=2,s=00", "garbage"] {
            assert_eq!(SignatureHeader::parse(bad), Err(SignatureError::Malformed), "{bad:?}");
        }
        for (bad, len) in [("t=1,s=deadbeef", 8), ("s=ab", 2), ("t=1,s=", 0)] {
            let e = SignatureHeader::parse(bad).unwrap_err();
            assert_eq!(e, SignatureError::WrongLength(len), "{bad:?}");
            assert!(e.to_string().contains("64 hex characters"), "{e}");
        }
        let upper = format!("t={T},s={}", EXPECTED.to_uppercase());
        assert!(SignatureHeader::parse(&upper).is_ok(), "hex case does not matter for decoding");
    }
}
