//! The API key a server off loopback requires: `Authorization: Bearer <key>`.
//!
//! The key is kept only as its SHA-256 digest, and a presented token is
//! hashed too before the two digests are compared in constant time, so the
//! time a check takes says nothing about how much of a guess was right, nor
//! about the key's length. Neither the key nor a presented token is ever
//! logged, echoed or put in an error.

use axum::http::HeaderValue;
use sha2::{Digest, Sha256};
use std::fmt;

/// The server's key.
#[derive(Clone)]
pub struct ApiKey {
    digest: [u8; 32],
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<hidden>)")
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Compares two digests without an early exit.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= std::hint::black_box(x ^ y);
    }
    diff == 0
}

impl ApiKey {
    /// A key from its secret text.
    pub fn new(secret: &str) -> Self {
        ApiKey {
            digest: digest(secret.as_bytes()),
        }
    }

    /// Whether an `Authorization` header carries this key as a bearer token.
    pub fn accepts(&self, header: Option<&HeaderValue>) -> bool {
        let Some(value) = header else { return false };
        let value = value.as_bytes();
        let Some(scheme_end) = value.iter().position(|b| *b == b' ') else {
            return false;
        };
        if !value[..scheme_end].eq_ignore_ascii_case(b"bearer") {
            return false;
        }
        let token = value[scheme_end..].trim_ascii();
        constant_time_eq(&self.digest, &digest(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).expect("header")
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        let key = ApiKey::new("s3cret-key");
        assert!(key.accepts(Some(&h("Bearer s3cret-key"))));
        assert!(key.accepts(Some(&h("bearer  s3cret-key "))));
        assert!(!key.accepts(Some(&h("Bearer s3cret-kez"))));
        assert!(!key.accepts(Some(&h("Bearer s3cret-key2"))));
        assert!(!key.accepts(Some(&h("Basic s3cret-key"))));
        assert!(!key.accepts(Some(&h("s3cret-key"))));
        assert!(!key.accepts(None));
    }

    #[test]
    fn debug_output_hides_the_key() {
        assert_eq!(format!("{:?}", ApiKey::new("s3cret")), "ApiKey(<hidden>)");
    }

    #[test]
    fn digests_compare_by_every_byte() {
        let a = digest(b"a");
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
    }
}
