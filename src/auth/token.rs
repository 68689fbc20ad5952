//! Access tokens: JWTs signed with HS256 and `SECRET_KEY`, as the tutorial's backend issues
//! them, so tokens minted by either backend are accepted by the other.

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::SecretKey;

/// The claims Gatehouse writes. `iat` and `jti` are optional when reading, because the
/// tutorial's tokens carry only `sub` and `exp`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub sub: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// The claims as read from an untrusted token: `sub` may be missing.
#[derive(Debug, Deserialize)]
struct IncomingClaims {
    sub: Option<String>,
    exp: i64,
    iat: Option<i64>,
    jti: Option<String>,
}

/// An access token and how long it lives.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: Duration,
}

#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl TokenKeys {
    pub fn new(secret: &SecretKey, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Only HS256 is accepted: `alg: none` and algorithm confusion fail here.
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp"]);
        validation.leeway = 0;
        validation.validate_aud = false;
        Self {
            encoding: EncodingKey::from_secret(secret.expose()),
            decoding: DecodingKey::from_secret(secret.expose()),
            validation,
            ttl,
        }
    }

    /// Signs a new access token for `username`.
    pub fn issue(&self, username: &str) -> anyhow::Result<IssuedToken> {
        let now = Utc::now().timestamp();
        let claims = AccessClaims {
            sub: username.to_string(),
            exp: now + self.ttl.as_secs() as i64,
            iat: Some(now),
            jti: Some(uuid::Uuid::new_v4().simple().to_string()),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(IssuedToken {
            token,
            expires_in: self.ttl,
        })
    }

    /// Checks signature, algorithm and expiry; `None` for anything that is not a valid token
    /// with a subject.
    pub fn verify(&self, token: &str) -> Option<AccessClaims> {
        let data =
            jsonwebtoken::decode::<IncomingClaims>(token, &self.decoding, &self.validation).ok()?;
        let claims = data.claims;
        Some(AccessClaims {
            sub: claims.sub.filter(|s| !s.is_empty())?,
            exp: claims.exp,
            iat: claims.iat,
            jti: claims.jti,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn keys() -> TokenKeys {
        TokenKeys::new(
            &SecretKey::new(b"0123456789abcdef0123456789abcdef".to_vec()),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn issued_tokens_verify() {
        let keys = keys();
        let issued = keys.issue("alice").unwrap();
        let claims = keys.verify(&issued.token).unwrap();
        assert_eq!(claims.sub, "alice");
        assert!(claims.jti.is_some());
    }

    #[test]
    fn tutorial_shaped_token_verifies() {
        let keys = keys();
        let exp = Utc::now().timestamp() + 60;
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "foo", "exp": exp}),
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        assert_eq!(keys.verify(&token).unwrap().sub, "foo");
    }

    #[test]
    fn alg_none_and_garbage_are_refused() {
        let keys = keys();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let exp = Utc::now().timestamp() + 60;
        let body = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"alice","exp":{exp}}}"#));
        assert!(keys.verify(&format!("{header}.{body}.")).is_none());
        for garbage in ["", ".", "a.b.c", "🦀", "eyJ.eyJ.x"] {
            assert!(keys.verify(garbage).is_none());
        }
    }

    #[test]
    fn expired_and_subless_tokens_are_refused() {
        let keys = keys();
        let secret = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let header = Header::new(Algorithm::HS256);
        let past = Utc::now().timestamp() - 5;
        let expired = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": "a", "exp": past}),
            &secret,
        )
        .unwrap();
        assert!(keys.verify(&expired).is_none());
        let future = Utc::now().timestamp() + 60;
        let subless =
            jsonwebtoken::encode(&header, &serde_json::json!({"exp": future}), &secret).unwrap();
        assert!(keys.verify(&subless).is_none());
    }
}
