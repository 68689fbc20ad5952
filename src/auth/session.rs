//! Session tokens and CSRF tokens. The session token lives only in the client's cookie; the
//! database keeps its SHA-256, so a leaked table cannot be replayed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::SecretKey;

/// A new random token (256 bits, URL-safe base64) and the hash to store for it.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_token(&token);
    (token, hash)
}

/// SHA-256 of a token, hex. Tokens have 256 bits of entropy, so a fast hash is enough.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The CSRF token for forms rendered to a client whose secret cookie value is `seed` (the
/// session cookie once signed in, a random pre-session cookie before). An attacker who
/// cannot read the victim's cookies cannot compute it.
pub fn csrf_token(key: &SecretKey, seed: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose()).expect("HMAC takes any key length");
    mac.update(b"gatehouse-csrf:");
    mac.update(seed.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Constant-time check of a submitted CSRF token.
pub fn csrf_matches(key: &SecretKey, seed: &str, submitted: &str) -> bool {
    let expected = csrf_token(key, seed);
    expected.as_bytes().ct_eq(submitted.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_consistently() {
        let (a, hash_a) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43, "256 bits in base64url");
        assert_eq!(hash_token(&a), hash_a);
        assert_ne!(hash_a, a);
    }

    #[test]
    fn csrf_is_bound_to_the_seed_and_the_key() {
        let key = SecretKey::new(vec![7; 32]);
        let token = csrf_token(&key, "seed-1");
        assert!(csrf_matches(&key, "seed-1", &token));
        assert!(!csrf_matches(&key, "seed-2", &token));
        assert!(!csrf_matches(
            &SecretKey::new(vec![8; 32]),
            "seed-1",
            &token
        ));
        assert!(!csrf_matches(&key, "seed-1", ""));
    }
}
