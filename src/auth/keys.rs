//! Ed25519 keys for EdDSA access tokens: reading and writing PEM files, and naming each key
//! by its `kid`, the RFC 7638 JWK thumbprint, so a verifier can pick the right public key.

use std::fmt;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A public Ed25519 key that verifies tokens, and its `kid`.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    kid: String,
    key: VerifyingKey,
}

impl PublicKey {
    pub fn new(key: VerifyingKey) -> Self {
        let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
        // RFC 7638: the required members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        Self { kid, key }
    }

    /// The RFC 7638 thumbprint, base64url: what the JWT header's `kid` names.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWK `x` member: the raw public key, base64url.
    pub fn x(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.as_bytes())
    }

    /// The raw 32-byte public key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("kid", &self.kid).finish()
    }
}

/// A private Ed25519 key that signs tokens. `Debug` shows only its `kid`.
#[derive(Clone)]
pub struct PrivateKey {
    key: SigningKey,
    public: PublicKey,
}

impl PrivateKey {
    /// A new random key.
    pub fn generate() -> Self {
        // ed25519-dalek 2 takes a rand_core 0.6 RNG and `rand` 0.9 is rand_core 0.9: a key is
        // just 32 random bytes, so build it from those.
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let key = SigningKey::from_bytes(&seed);
        seed.fill(0);
        Self::from_signing_key(key)
    }

    fn from_signing_key(key: SigningKey) -> Self {
        let public = PublicKey::new(key.verifying_key());
        Self { key, public }
    }

    /// Parses a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) holding an Ed25519 key.
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let key = SigningKey::from_pkcs8_pem(pem.trim())
            .map_err(|e| anyhow::anyhow!("not a PKCS#8 Ed25519 private key: {e}"))?;
        Ok(Self::from_signing_key(key))
    }

    /// The key as PKCS#8 PEM, as `openssl genpkey -algorithm ed25519` writes it.
    pub fn to_pem(&self) -> anyhow::Result<String> {
        let pem = self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encoding the key: {e}"))?;
        Ok(pem.to_string())
    }

    /// The key as PKCS#8 DER, the form `jsonwebtoken` signs with.
    pub fn to_pkcs8_der(&self) -> anyhow::Result<Vec<u8>> {
        let der = self
            .key
            .to_pkcs8_der()
            .map_err(|e| anyhow::anyhow!("encoding the key: {e}"))?;
        Ok(der.as_bytes().to_vec())
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

/// Reads the signing key: a PKCS#8 PEM file with an Ed25519 private key.
pub fn read_signing_key(path: &Path) -> anyhow::Result<PrivateKey> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    PrivateKey::from_pem(&pem).with_context(|| format!("{}", path.display()))
}

/// Reads a key accepted for verification: a PEM file with an Ed25519 private key (PKCS#8)
/// or public key (`-----BEGIN PUBLIC KEY-----`, SPKI).
pub fn read_verification_key(path: &Path) -> anyhow::Result<PublicKey> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    public_key_from_pem(&pem).with_context(|| format!("{}", path.display()))
}

fn public_key_from_pem(pem: &str) -> anyhow::Result<PublicKey> {
    let pem = pem.trim();
    if pem.starts_with("-----BEGIN PUBLIC KEY-----") {
        let key = VerifyingKey::from_public_key_pem(pem)
            .map_err(|e| anyhow::anyhow!("not an Ed25519 public key: {e}"))?;
        return Ok(PublicKey::new(key));
    }
    if pem.starts_with("-----BEGIN PRIVATE KEY-----") {
        return Ok(PrivateKey::from_pem(pem)?.public().clone());
    }
    bail!("expected a PEM Ed25519 key (BEGIN PRIVATE KEY or BEGIN PUBLIC KEY)")
}

/// Generates a key and writes it to `path` as PKCS#8 PEM, readable by the owner only. Refuses
/// to overwrite an existing file, so a signing key is never lost by mistake.
pub fn write_new_key(path: &Path) -> anyhow::Result<PrivateKey> {
    use std::io::Write;
    let key = PrivateKey::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(key.to_pem()?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_is_the_rfc_7638_thumbprint() {
        // RFC 8037, appendix A.2 and A.3.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let key = PublicKey::new(VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap());
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(key.x(), "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    }

    #[test]
    fn written_keys_read_back_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.pem");
        let written = write_new_key(&path).unwrap();
        let read = read_signing_key(&path).unwrap();
        assert_eq!(read.public(), written.public());
        assert_eq!(read_verification_key(&path).unwrap(), *written.public());
        assert!(write_new_key(&path).is_err(), "never overwrites a key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn public_key_pem_is_accepted_for_verification() {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        let key = PrivateKey::generate();
        let pem = key
            .key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        assert_eq!(public_key_from_pem(&pem).unwrap(), *key.public());
        assert!(
            PrivateKey::from_pem(&pem).is_err(),
            "a public key cannot sign"
        );
    }

    #[test]
    fn openssl_generated_key_is_read() {
        // `openssl genpkey -algorithm ed25519`, RFC 8410 section 10.3.
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
                   -----END PRIVATE KEY-----\n";
        let key = PrivateKey::from_pem(pem).unwrap();
        assert_eq!(key.public().as_bytes().len(), 32);
        assert_eq!(
            PrivateKey::from_pem(&key.to_pem().unwrap())
                .unwrap()
                .public(),
            key.public()
        );
    }

    #[test]
    fn other_files_are_refused() {
        for garbage in [
            "",
            "hello",
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----",
        ] {
            assert!(public_key_from_pem(garbage).is_err());
            assert!(PrivateKey::from_pem(garbage).is_err());
        }
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let key = PrivateKey::generate();
        let debug = format!("{key:?}");
        assert!(debug.contains(key.public().kid()));
        assert!(!debug.contains(&URL_SAFE_NO_PAD.encode(key.key.to_bytes())));
    }
}
