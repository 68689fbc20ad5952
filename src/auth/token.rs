//! Access tokens: JWTs signed with HS256 and `SECRET_KEY`, as the tutorial's backend issues
//! them, so tokens minted by either backend are accepted by the other; or, with a signing key
//! configured, with Ed25519 (EdDSA), whose public keys other services read from the JWK Set.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::keys::{self, PrivateKey, PublicKey};
use crate::config::{JwtConfig, SecretKey};

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
    /// The session the token belongs to; ending the session revokes the token at once.
    /// Absent in tokens minted by the tutorial's backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<i64>,
}

/// The claims as read from an untrusted token: `sub` may be missing; `exp` may not.
#[derive(Debug, Deserialize)]
struct IncomingClaims {
    sub: Option<String>,
    exp: i64,
    iat: Option<i64>,
    jti: Option<String>,
    sid: Option<i64>,
    iss: Option<String>,
    aud: Option<Audience>,
}

/// What a token's header says about its key; other header fields are ignored.
#[derive(Debug, Deserialize)]
struct KeyHint {
    alg: Algorithm,
    kid: Option<String>,
}

/// `aud` is one string or a list of them (RFC 7519 section 4.1.3).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(one) => one == audience,
            Self::Many(many) => many.iter().any(|a| a == audience),
        }
    }
}

/// An access token and how long it lives.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: Duration,
}

/// What a token carries besides the claims: `iss` and `aud` when configured.
#[derive(Serialize)]
struct OutgoingClaims<'a> {
    #[serde(flatten)]
    claims: &'a AccessClaims,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Signs new tokens, and checks tokens against the keys still accepted.
#[derive(Clone)]
pub struct TokenKeys {
    /// HS256 without a `kid`, or EdDSA naming the signing key's `kid`.
    header: Header,
    encoding: EncodingKey,
    /// `SECRET_KEY` for HS256; `None` once EdDSA signs and `JWT_ACCEPT_HS256` is false.
    hs256: Option<DecodingKey>,
    /// Ed25519 public keys by `kid`: the signing key's and older ones still accepted.
    ed25519: HashMap<String, DecodingKey>,
    /// The same Ed25519 keys, signing key first, for the JWK Set.
    published: Vec<PublicKey>,
    issuer: Option<String>,
    audience: Option<String>,
    ttl: Duration,
}

impl TokenKeys {
    /// HS256 with `secret` and nothing else: the tutorial's setup.
    pub fn new(secret: &SecretKey, ttl: Duration) -> Self {
        Self::with_keys(secret, None, Vec::new(), &JwtConfig::default(), ttl)
            .expect("HS256 needs no key files")
    }

    /// Reads the key files that `jwt` names; a missing or malformed file stops the start.
    pub fn from_config(secret: &SecretKey, jwt: &JwtConfig, ttl: Duration) -> anyhow::Result<Self> {
        let signing = jwt
            .signing_key_file
            .as_deref()
            .map(keys::read_signing_key)
            .transpose()?;
        let verification = jwt
            .verification_key_files
            .iter()
            .map(|path| keys::read_verification_key(path))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let tokens = Self::with_keys(secret, signing.as_ref(), verification, jwt, ttl)?;
        match tokens.header.kid.as_deref() {
            Some(kid) => tracing::info!(
                kid,
                accepted = tokens.published.len(),
                hs256 = tokens.hs256.is_some(),
                "signing access tokens with EdDSA"
            ),
            None => tracing::info!(
                ed25519_accepted = tokens.published.len(),
                "signing access tokens with HS256 and SECRET_KEY"
            ),
        }
        Ok(tokens)
    }

    /// Signs with `signing` (EdDSA) or, without it, HS256 and `secret`; accepts `verification`
    /// and the signing key.
    pub fn with_keys(
        secret: &SecretKey,
        signing: Option<&PrivateKey>,
        verification: Vec<PublicKey>,
        jwt: &JwtConfig,
        ttl: Duration,
    ) -> anyhow::Result<Self> {
        let (header, encoding) = match signing {
            None => (
                Header::new(Algorithm::HS256),
                EncodingKey::from_secret(secret.expose()),
            ),
            Some(key) => {
                let mut header = Header::new(Algorithm::EdDSA);
                header.kid = Some(key.public().kid().to_string());
                (header, EncodingKey::from_ed_der(&key.to_pkcs8_der()?))
            }
        };
        // The tokens this service signs must verify: without an Ed25519 key, HS256 stays on.
        let hs256 = (jwt.accept_hs256 || signing.is_none())
            .then(|| DecodingKey::from_secret(secret.expose()));
        let mut published: Vec<PublicKey> = Vec::new();
        for key in signing
            .map(|k| k.public().clone())
            .into_iter()
            .chain(verification)
        {
            if !published.contains(&key) {
                published.push(key);
            }
        }
        let ed25519 = published
            .iter()
            .map(|key| {
                (
                    key.kid().to_string(),
                    DecodingKey::from_ed_der(key.as_bytes()),
                )
            })
            .collect();
        Ok(Self {
            header,
            encoding,
            hs256,
            ed25519,
            published,
            issuer: jwt.issuer.clone(),
            audience: jwt.audience.clone(),
            ttl,
        })
    }

    /// The Ed25519 public keys accepted, signing key first: what the JWK Set publishes.
    pub fn published_keys(&self) -> &[PublicKey] {
        &self.published
    }

    /// Signs a new access token for `username` in session `session_id`.
    pub fn issue(
        &self,
        username: &str,
        session_id: i64,
        now: DateTime<Utc>,
    ) -> anyhow::Result<IssuedToken> {
        let now = now.timestamp();
        let claims = AccessClaims {
            sub: username.to_string(),
            exp: now + self.ttl.as_secs() as i64,
            iat: Some(now),
            jti: Some(uuid::Uuid::new_v4().simple().to_string()),
            sid: Some(session_id),
        };
        let outgoing = OutgoingClaims {
            claims: &claims,
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
        };
        let token = jsonwebtoken::encode(&self.header, &outgoing, &self.encoding)?;
        Ok(IssuedToken {
            token,
            expires_in: self.ttl,
        })
    }

    /// The key for a token's header, with its algorithm. Each key is tied to one algorithm,
    /// so `alg: none`, an HS256 token naming an Ed25519 `kid` (a public key used as an HMAC
    /// secret) or an EdDSA token without a known `kid` find nothing.
    fn key_for(&self, hint: &KeyHint) -> Option<(&DecodingKey, Algorithm)> {
        match (hint.alg, hint.kid.as_deref()) {
            (Algorithm::HS256, None) => Some((self.hs256.as_ref()?, Algorithm::HS256)),
            (Algorithm::EdDSA, Some(kid)) => Some((self.ed25519.get(kid)?, Algorithm::EdDSA)),
            _ => None,
        }
    }

    /// Checks signature, algorithm, expiry and, when configured, issuer and audience; `None`
    /// for anything that is not a valid token with a subject.
    ///
    /// This runs on every bearer request, so each part is read once: the header's `alg` and
    /// `kid` to find the key, the signature through `jsonwebtoken::crypto`, then the claims
    /// (`decode` reads every header field, and the claims twice).
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Option<AccessClaims> {
        let (message, signature) = token.rsplit_once('.')?;
        let (header, payload) = message.split_once('.')?;
        let hint: KeyHint = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        let (key, algorithm) = self.key_for(&hint)?;
        if !jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, algorithm).ok()? {
            return None;
        }
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let claims: IncomingClaims = serde_json::from_slice(&payload).ok()?;
        let issuer_ok = self
            .issuer
            .as_ref()
            .is_none_or(|issuer| claims.iss.as_ref() == Some(issuer));
        let audience_ok = self.audience.as_ref().is_none_or(|audience| {
            claims
                .aud
                .as_ref()
                .is_some_and(|aud| aud.contains(audience))
        });
        if claims.exp <= now.timestamp() || !issuer_ok || !audience_ok {
            return None;
        }
        Some(AccessClaims {
            sub: claims.sub.filter(|s| !s.is_empty())?,
            exp: claims.exp,
            iat: claims.iat,
            jti: claims.jti,
            sid: claims.sid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(
            &SecretKey::new(b"0123456789abcdef0123456789abcdef".to_vec()),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn issued_tokens_verify() {
        let keys = keys();
        let issued = keys.issue("alice", 1, Utc::now()).unwrap();
        let claims = keys.verify(&issued.token, Utc::now()).unwrap();
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
        assert_eq!(keys.verify(&token, Utc::now()).unwrap().sub, "foo");
    }

    #[test]
    fn alg_none_and_garbage_are_refused() {
        let keys = keys();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let exp = Utc::now().timestamp() + 60;
        let body = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"alice","exp":{exp}}}"#));
        assert!(
            keys.verify(&format!("{header}.{body}."), Utc::now())
                .is_none()
        );
        for garbage in ["", ".", "a.b.c", "🦀", "eyJ.eyJ.x"] {
            assert!(keys.verify(garbage, Utc::now()).is_none());
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
        assert!(keys.verify(&expired, Utc::now()).is_none());
        let future = Utc::now().timestamp() + 60;
        let subless =
            jsonwebtoken::encode(&header, &serde_json::json!({"exp": future}), &secret).unwrap();
        assert!(keys.verify(&subless, Utc::now()).is_none());
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
            prop_assert!(keys().verify(&token, Utc::now()).is_none());
        }

        #[test]
        fn any_three_base64url_parts_are_refused(
            header in "[A-Za-z0-9_-]{0,60}",
            claims in "[A-Za-z0-9_-]{0,120}",
            signature in "[A-Za-z0-9_-]{0,60}",
        ) {
            let token = [header, claims, signature].join(".");
            prop_assert!(keys().verify(&token, Utc::now()).is_none());
        }

        #[test]
        fn any_change_to_a_valid_token_is_refused(position in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let keys = keys();
            let token = keys.issue("alice", 1, Utc::now()).unwrap().token;
            let mut bytes = token.clone().into_bytes();
            let i = position.index(bytes.len());
            bytes[i] = byte;
            let changed = String::from_utf8_lossy(&bytes).into_owned();
            if changed != token {
                // A change in the last base64 character may only flip unused padding bits.
                let same_signature = i == token.len() - 1;
                prop_assert!(keys.verify(&changed, Utc::now()).is_none() || same_signature);
            }
        }

        #[test]
        fn any_signed_claims_are_handled(claims in any_json(), sub in proptest::option::of(".{0,20}")) {
            let mut claims = claims;
            if let (serde_json::Value::Object(map), Some(sub)) = (&mut claims, sub) {
                map.insert("sub".into(), sub.into());
            }
            let secret = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
            let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &secret);
            if let Some(verified) = token.ok().and_then(|token| keys().verify(&token, Utc::now())) {
                prop_assert!(!verified.sub.is_empty());
                prop_assert!(verified.exp > Utc::now().timestamp() - 1);
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
        let field = prop_oneof![
            Just("exp"),
            Just("sub"),
            Just("iat"),
            Just("jti"),
            Just("x")
        ];
        proptest::collection::btree_map(field.prop_map(String::from), leaf, 0..5)
            .prop_map(|map| serde_json::Value::Object(map.into_iter().collect()))
    }
}

#[cfg(test)]
mod eddsa {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const TTL: Duration = Duration::from_secs(60);

    fn signing_with(key: &PrivateKey, older: &[&PrivateKey], jwt: &JwtConfig) -> TokenKeys {
        let older = older.iter().map(|k| k.public().clone()).collect();
        TokenKeys::with_keys(&SecretKey::new(SECRET.to_vec()), Some(key), older, jwt, TTL).unwrap()
    }

    fn header_of(token: &str) -> serde_json::Value {
        let encoded = token.split('.').next().unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap()
    }

    fn claims_of(token: &str) -> serde_json::Value {
        let encoded = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap()
    }

    fn hs256(claims: serde_json::Value, header: Header) -> String {
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    fn soon() -> i64 {
        Utc::now().timestamp() + 60
    }

    #[test]
    fn eddsa_tokens_name_their_key_and_verify() {
        let key = PrivateKey::generate();
        let keys = signing_with(&key, &[], &JwtConfig::default());
        let token = keys.issue("alice", 7, Utc::now()).unwrap().token;
        let header = header_of(&token);
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], key.public().kid());
        let claims = keys.verify(&token, Utc::now()).unwrap();
        assert_eq!((claims.sub.as_str(), claims.sid), ("alice", Some(7)));
        assert_eq!(keys.published_keys(), [key.public().clone()]);
    }

    #[test]
    fn hs256_only_publishes_nothing() {
        let keys = TokenKeys::new(&SecretKey::new(SECRET.to_vec()), TTL);
        assert!(keys.published_keys().is_empty());
        let token = keys.issue("alice", 1, Utc::now()).unwrap().token;
        assert_eq!(
            header_of(&token),
            serde_json::json!({"typ": "JWT", "alg": "HS256"})
        );
    }

    #[test]
    fn hs256_stays_accepted_only_while_allowed() {
        let key = PrivateKey::generate();
        let tutorial = hs256(
            serde_json::json!({"sub": "foo", "exp": soon()}),
            Header::default(),
        );
        let allowing = signing_with(&key, &[], &JwtConfig::default());
        assert_eq!(allowing.verify(&tutorial, Utc::now()).unwrap().sub, "foo");
        let strict = JwtConfig {
            accept_hs256: false,
            ..JwtConfig::default()
        };
        assert!(
            signing_with(&key, &[], &strict)
                .verify(&tutorial, Utc::now())
                .is_none()
        );
    }

    #[test]
    fn rotation_keeps_old_tokens_and_refuses_unknown_keys() {
        let old = PrivateKey::generate();
        let new = PrivateKey::generate();
        let jwt = JwtConfig::default();
        let old_token = signing_with(&old, &[], &jwt)
            .issue("alice", 1, Utc::now())
            .unwrap()
            .token;
        let rotated = signing_with(&new, &[&old], &jwt);
        assert_eq!(rotated.verify(&old_token, Utc::now()).unwrap().sub, "alice");
        assert_eq!(
            header_of(&rotated.issue("a", 1, Utc::now()).unwrap().token)["kid"],
            new.public().kid()
        );
        let kids: Vec<_> = rotated
            .published_keys()
            .iter()
            .map(PublicKey::kid)
            .collect();
        assert_eq!(kids, [new.public().kid(), old.public().kid()]);
        let retired = signing_with(&new, &[], &jwt);
        assert!(retired.verify(&old_token, Utc::now()).is_none());
    }

    #[test]
    fn algorithm_confusion_is_refused() {
        let key = PrivateKey::generate();
        let keys = signing_with(&key, &[], &JwtConfig::default());
        let claims = serde_json::json!({"sub": "alice", "exp": soon()});
        // HS256 keyed with the public key, in each form an attacker could find it.
        for public in [
            key.public().as_bytes().to_vec(),
            key.public().x().into_bytes(),
        ] {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(key.public().kid().to_string());
            let token =
                jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&public)).unwrap();
            assert!(keys.verify(&token, Utc::now()).is_none());
        }
        // An HS256 token signed with the real secret still may not name a kid.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.public().kid().to_string());
        assert!(
            keys.verify(&hs256(claims.clone(), header), Utc::now())
                .is_none()
        );
        // EdDSA without a kid, and `alg: none` naming the kid.
        let valid = keys.issue("alice", 1, Utc::now()).unwrap().token;
        let (_, rest) = valid.split_once('.').unwrap();
        let no_kid = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
        assert!(
            keys.verify(&format!("{no_kid}.{rest}"), Utc::now())
                .is_none()
        );
        let none = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"none","kid":"{}"}}"#,
            key.public().kid()
        ));
        let body = rest.split('.').next().unwrap();
        assert!(
            keys.verify(&format!("{none}.{body}."), Utc::now())
                .is_none()
        );
    }

    #[test]
    fn issuer_and_audience_are_written_and_required() {
        let key = PrivateKey::generate();
        let jwt = JwtConfig {
            issuer: Some("https://auth.example".into()),
            audience: Some("notes-api".into()),
            ..JwtConfig::default()
        };
        let keys = signing_with(&key, &[], &jwt);
        let token = keys.issue("alice", 1, Utc::now()).unwrap().token;
        let claims = claims_of(&token);
        assert_eq!(
            (claims["iss"].as_str(), claims["aud"].as_str()),
            (Some("https://auth.example"), Some("notes-api"))
        );
        assert!(keys.verify(&token, Utc::now()).is_some());

        let other = JwtConfig {
            audience: Some("billing".into()),
            ..jwt.clone()
        };
        let wrong_audience = signing_with(&key, &[], &other)
            .issue("alice", 1, Utc::now())
            .unwrap()
            .token;
        assert!(keys.verify(&wrong_audience, Utc::now()).is_none());
        let unnamed = signing_with(&key, &[], &JwtConfig::default())
            .issue("alice", 1, Utc::now())
            .unwrap()
            .token;
        assert!(
            keys.verify(&unnamed, Utc::now()).is_none(),
            "missing iss and aud"
        );
        for claims in [
            serde_json::json!({"sub": "a", "exp": soon(), "aud": "notes-api"}),
            serde_json::json!({"sub": "a", "exp": soon(), "iss": "https://auth.example"}),
            serde_json::json!({"sub": "a", "exp": soon(), "iss": "https://evil.example", "aud": "notes-api"}),
        ] {
            assert!(
                keys.verify(&hs256(claims.clone(), Header::default()), Utc::now())
                    .is_none(),
                "{claims}"
            );
        }
        let complete = serde_json::json!({"sub": "a", "exp": soon(), "iss": "https://auth.example", "aud": "notes-api"});
        assert!(
            keys.verify(&hs256(complete, Header::default()), Utc::now())
                .is_some()
        );
        // RFC 7519 lets `aud` be a list: one of its entries must be ours.
        let listed = serde_json::json!({"sub": "a", "exp": soon(), "iss": "https://auth.example", "aud": ["billing", "notes-api"]});
        assert!(
            keys.verify(&hs256(listed, Header::default()), Utc::now())
                .is_some()
        );
        let others = serde_json::json!({"sub": "a", "exp": soon(), "iss": "https://auth.example", "aud": ["billing"]});
        assert!(
            keys.verify(&hs256(others, Header::default()), Utc::now())
                .is_none()
        );
    }

    #[test]
    fn unreadable_key_files_stop_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let missing = JwtConfig {
            signing_key_file: Some(dir.path().join("missing.pem")),
            ..JwtConfig::default()
        };
        let secret = SecretKey::new(SECRET.to_vec());
        assert!(TokenKeys::from_config(&secret, &missing, TTL).is_err());
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a key").unwrap();
        let junk_verification = JwtConfig {
            verification_key_files: vec![junk],
            ..JwtConfig::default()
        };
        assert!(TokenKeys::from_config(&secret, &junk_verification, TTL).is_err());
    }
}
