//! The built-in token service (`auth.tokenservice`): htpasswd users get
//! Bearer tokens scoped by the access rules from the registry itself, the
//! way an external token server (docker/distribution's token spec) would
//! hand them out, without running one.
//!
//! Tokens are ES256 JWTs signed with a P-256 key read from a file that
//! every node of a cluster is given (a Kubernetes Secret), so a token one
//! node issued is good on every other. Their `kid` is the key's RFC 7638
//! thumbprint and their claims those of the token spec (`iss`, `sub`,
//! `aud`, `exp`, `nbf`, `iat`, `jti`, `access`); they are checked by the
//! same verifier as an external server's.

use super::token::{AccessClaim, Grant, TokenVerifier};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the token service answers, on the API listener.
pub const TOKEN_PATH: &str = "/token";

/// `auth.tokenservice` as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenServiceConfig {
    /// A PEM ECDSA P-256 private key (PKCS#8 or SEC1), the same on every node.
    pub key: PathBuf,
    /// The challenge's `realm`; `None` for the request's own scheme and
    /// host with [`TOKEN_PATH`].
    pub realm: Option<String>,
    /// This registry's name in challenges and the tokens' `aud`.
    pub service: String,
    /// The tokens' `iss`.
    pub issuer: String,
    /// How long a token is good for.
    pub expiration: Duration,
}

/// A token as the token spec answers it.
#[derive(Debug, Serialize)]
pub struct IssuedToken {
    pub token: String,
    /// The same token under OAuth2's name, which some clients read instead.
    pub access_token: String,
    pub expires_in: u64,
    /// RFC 3339, UTC.
    pub issued_at: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: &'a [AccessClaim],
}

pub struct TokenService {
    config: TokenServiceConfig,
    signing: EncodingKey,
    kid: String,
    verifier: TokenVerifier,
}

impl TokenService {
    pub fn new(config: &TokenServiceConfig) -> Result<Self, String> {
        let key = |e: String| format!("auth.tokenservice.key: {}: {e}", config.key.display());
        let pem = std::fs::read(&config.key).map_err(|e| key(e.to_string()))?;
        let private = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| key(e.to_string()))?;
        let pair = EcdsaKeyPair::from_private_key_der(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            private.secret_der(),
        )
        .map_err(|e| key(format!("not an ECDSA P-256 private key: {e}")))?;
        let pkcs8 = pair
            .to_pkcs8v1()
            .map_err(|_| key("the key cannot be written as PKCS#8".to_owned()))?;
        // The uncompressed point: 0x04, x, y.
        let point = pair.public_key().as_ref();
        let (x, y) = point
            .get(1..)
            .map(|p| p.split_at(p.len() / 2))
            .ok_or_else(|| key("an empty public key".to_owned()))?;
        let url = |bytes: &[u8]| {
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
        };
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": url(x), "y": url(y)
        }))
        .map_err(|e| key(e.to_string()))?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256);
        let verifier = TokenVerifier::for_key(
            &config.service,
            &config.issuer,
            Algorithm::ES256,
            kid.clone(),
            DecodingKey::from_ec_der(point),
        );
        Ok(TokenService {
            config: config.clone(),
            signing: EncodingKey::from_ec_der(pkcs8.as_ref()),
            kid,
            verifier,
        })
    }

    pub fn service(&self) -> &str {
        &self.config.service
    }

    /// The realm to name in a challenge to `req`.
    pub fn realm(&self, req: &actix_web::HttpRequest) -> String {
        match &self.config.realm {
            Some(realm) => realm.clone(),
            None => {
                let connection = req.connection_info();
                format!(
                    "{}://{}{TOKEN_PATH}",
                    connection.scheme(),
                    connection.host()
                )
            }
        }
    }

    /// What a token this service issued grants, or why it grants nothing.
    pub fn verify(&self, token: &str) -> Result<Grant, String> {
        self.verifier.verify(token)
    }

    /// A token for `subject` (empty for anonymous) granting `access`.
    pub fn issue(&self, subject: &str, access: &[AccessClaim]) -> Result<IssuedToken, String> {
        let now = SystemTime::now();
        let seconds = now
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let expires_in = self.config.expiration.as_secs().max(1);
        let claims = Claims {
            iss: &self.config.issuer,
            sub: subject,
            aud: &self.config.service,
            exp: seconds + expires_in,
            nbf: seconds,
            iat: seconds,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            access,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.signing).map_err(|e| e.to_string())?;
        Ok(IssuedToken {
            access_token: token.clone(),
            token,
            expires_in,
            issued_at: crate::time::rfc3339(
                now.duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default(),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;

    fn pem(label: &str, der: &[u8]) -> String {
        let body = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
        format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
    }

    fn service(dir: &std::path::Path, name: &str, key_pem: &str) -> TokenService {
        let key = dir.join(name);
        std::fs::write(&key, key_pem).unwrap();
        TokenService::new(&TokenServiceConfig {
            key,
            realm: None,
            service: "registry".to_owned(),
            issuer: "registry".to_owned(),
            expiration: Duration::from_secs(300),
        })
        .unwrap()
    }

    #[test]
    fn tokens_issued_verify_with_the_same_key_in_either_encoding_and_not_with_another() {
        let dir = tempfile::tempdir().unwrap();
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pkcs8 = pem("PRIVATE KEY", pair.to_pkcs8v1().unwrap().as_ref());
        let sec1 = pem(
            "EC PRIVATE KEY",
            pair.private_key().as_der().unwrap().as_ref(),
        );
        let (first, second) = (
            service(dir.path(), "pkcs8.pem", &pkcs8),
            service(dir.path(), "sec1.pem", &sec1),
        );
        let access = [AccessClaim {
            kind: "repository".to_owned(),
            name: "team-a/app".to_owned(),
            actions: vec!["pull".to_owned()],
        }];
        let issued = first.issue("alice", &access).unwrap();
        assert_eq!(issued.token, issued.access_token);
        assert_eq!(issued.expires_in, 300);
        let grant = second.verify(&issued.token).expect("the same key, SEC1");
        assert_eq!(grant.subject, "alice");
        assert_eq!(grant.access, access);

        let other = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let other = service(
            dir.path(),
            "other.pem",
            &pem("PRIVATE KEY", other.to_pkcs8v1().unwrap().as_ref()),
        );
        let refused = other.verify(&issued.token).unwrap_err();
        assert!(refused.contains("untrusted key"), "{refused}");

        std::fs::write(
            dir.path().join("rsa.pem"),
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let config = TokenServiceConfig {
            key: dir.path().join("rsa.pem"),
            realm: None,
            service: "registry".to_owned(),
            issuer: "registry".to_owned(),
            expiration: Duration::from_secs(300),
        };
        let refused = TokenService::new(&config).err().unwrap();
        assert!(refused.contains("auth.tokenservice.key"), "{refused}");
    }
}
