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

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(
            &SecretKey::new(b"0123456789abcdef0123456789abcdef".to_vec()),
            Duration::from_secs(60),
        )
    }

    proptest! {
        #[test]
        fn any_string_is_refused_without_panicking(token in ".{0,200}") {
            prop_assert!(keys().verify(&token).is_none());
        }

        #[test]
        fn any_three_base64url_parts_are_refused(
            header in "[A-Za-z0-9_-]{0,60}",
            claims in "[A-Za-z0-9_-]{0,120}",
            signature in "[A-Za-z0-9_-]{0,60}",
        ) {
            let token = [header, claims, signature].join(".");
            prop_assert!(keys().verify(&token).is_none());
        }

        #[test]
        fn any_change_to_a_valid_token_is_refused(position in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let keys = keys();
            let token = keys.issue("alice").unwrap().token;
            let mut bytes = token.clone().into_bytes();
            let i = position.index(bytes.len());
            bytes[i] = byte;
            let changed = String::from_utf8_lossy(&bytes).into_owned();
            if changed != token {
                // A change in the last base64 character may only flip unused padding bits.
                let same_signature = i == token.len() - 1;
                prop_assert!(keys.verify(&changed).is_none() || same_signature);
            }
        }

        #[test]
        fn any_signed_claims_are_handled(claims in any_json(), sub in proptest::option::of(".{0,20}")) {
            let mut claims = claims;
            if let (serde_json::Value::Object(map), Some(sub)) = (&mut claims, sub) {
                map.insert("sub".into(), sub.into());
            }
            let secret = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
            if let Ok(token) = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &secret) {
                if let Some(verified) = keys().verify(&token) {
                    prop_assert!(!verified.sub.is_empty());
                    prop_assert!(verified.exp > Utc::now().timestamp() - 1);
                }
            }
        }
    }

    fn any_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            (Utc::now().timestamp()..i64::MAX).prop_map(serde_json::Value::from),
            ".{0,10}".prop_map(serde_json::Value::from),
        ];
        let field = prop_oneof![Just("exp"), Just("sub"), Just("iat"), Just("jti"), Just("x")];
        proptest::collection::btree_map(field.prop_map(String::from), leaf, 0..5)
            .prop_map(|map| serde_json::Value::Object(map.into_iter().collect()))
    }
}
