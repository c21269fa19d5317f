//! Bearer tokens from an external token server (distribution's
//! `auth.token`), verified as distribution v3 does and as older token
//! servers still sign them.
//!
//! A token's key is found by, in order: its `x5c` chain, verified up to a
//! certificate of `rootcertbundle`; or its `kid`, which may name a key of
//! the `jwks` file, or a `rootcertbundle` key by its RFC 7638 thumbprint
//! (distribution v3) or by its libtrust key id (distribution v2 and the
//! token servers written for it). Then `iss` must be `issuer`, `aud` must
//! hold `service`, and `exp`/`nbf` hold within a minute's leeway. The
//! token's `access` claims are what the caller may do.

use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;

/// Clocks of the registry and the token server may disagree this much.
const LEEWAY_SECONDS: u64 = 60;

/// Signature algorithms accepted unless `signingalgorithms` narrows them:
/// every asymmetric one (no shared secret is configured to check HS*).
const DEFAULT_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// `auth.token` as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// Where clients get tokens (the challenge's `realm`).
    pub realm: String,
    /// This registry's name to the token server (`service`, the tokens' `aud`).
    pub service: String,
    /// Who signs the tokens (their `iss`).
    pub issuer: String,
    /// PEM certificates: the keys that sign tokens, or the CAs of `x5c` chains.
    pub root_cert_bundle: Option<PathBuf>,
    /// A JWK set of signing keys, looked up by `kid`.
    pub jwks: Option<PathBuf>,
    /// Algorithm names (`RS256`, `ES256`, …); empty for every asymmetric one.
    pub algorithms: Vec<String>,
}

/// One `access` claim: `type`, `name`, `actions`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct AccessClaim {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    access: Vec<AccessClaim>,
}

/// What a verified token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `sub`: the user, empty for an anonymous token.
    pub subject: String,
    pub access: Vec<AccessClaim>,
}

impl Grant {
    /// Whether the token grants `action` (or `*`) on `kind:name`.
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|claim| {
            claim.kind == kind
                && claim.name == name
                && claim.actions.iter().any(|a| a == action || a == "*")
        })
    }
}

pub struct TokenVerifier {
    config: TokenConfig,
    roots: Vec<CertificateDer<'static>>,
    /// By `kid`: jwks keys, and each root's thumbprint and libtrust id.
    keys: HashMap<String, DecodingKey>,
    algorithms: Vec<Algorithm>,
}

impl TokenVerifier {
    pub fn new(config: &TokenConfig) -> Result<Self, String> {
        let algorithms = if config.algorithms.is_empty() {
            DEFAULT_ALGORITHMS.to_vec()
        } else {
            config
                .algorithms
                .iter()
                .map(|name| match name.parse::<Algorithm>() {
                    Ok(alg) if DEFAULT_ALGORITHMS.contains(&alg) => Ok(alg),
                    Ok(_) => Err(format!(
                        "auth.token.signingalgorithms: {name} needs a shared secret, which is not supported"
                    )),
                    Err(_) => Err(format!("auth.token.signingalgorithms: {name:?} is not a JWS algorithm")),
                })
                .collect::<Result<_, _>>()?
        };
        let mut roots = Vec::new();
        let mut keys = HashMap::new();
        if let Some(path) = &config.root_cert_bundle {
            let key = |e: String| format!("auth.token.rootcertbundle: {}: {e}", path.display());
            let pem = std::fs::read(path).map_err(|e| key(e.to_string()))?;
            roots = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| key(e.to_string()))?;
            if roots.is_empty() {
                return Err(key("no certificate in the file".to_owned()));
            }
            for root in &roots {
                let (decoding, spki) = certificate_key(root).map_err(key)?;
                let thumbprint = spki_jwk(&spki)
                    .map_err(key)?
                    .thumbprint(ThumbprintHash::SHA256);
                keys.insert(thumbprint, decoding.clone());
                keys.insert(libtrust_key_id(&spki), decoding);
            }
        }
        if let Some(path) = &config.jwks {
            let key = |e: String| format!("auth.token.jwks: {}: {e}", path.display());
            let text = std::fs::read(path).map_err(|e| key(e.to_string()))?;
            let set: JwkSet = serde_json::from_slice(&text).map_err(|e| key(e.to_string()))?;
            for jwk in &set.keys {
                let kid = jwk
                    .common
                    .key_id
                    .clone()
                    .ok_or_else(|| key("a key without kid".to_owned()))?;
                keys.insert(
                    kid,
                    DecodingKey::from_jwk(jwk).map_err(|e| key(e.to_string()))?,
                );
            }
        }
        if keys.is_empty() {
            return Err(
                "auth.token: give rootcertbundle or jwks: the keys that sign tokens".to_owned(),
            );
        }
        Ok(TokenVerifier {
            config: config.clone(),
            roots,
            keys,
            algorithms,
        })
    }

    /// A verifier of tokens signed by one key only (the built-in token
    /// service's own).
    pub fn for_key(
        service: &str,
        issuer: &str,
        algorithm: Algorithm,
        kid: String,
        key: DecodingKey,
    ) -> Self {
        TokenVerifier {
            config: TokenConfig {
                realm: String::new(),
                service: service.to_owned(),
                issuer: issuer.to_owned(),
                root_cert_bundle: None,
                jwks: None,
                algorithms: Vec::new(),
            },
            roots: Vec::new(),
            keys: HashMap::from([(kid, key)]),
            algorithms: vec![algorithm],
        }
    }

    pub fn realm(&self) -> &str {
        &self.config.realm
    }

    pub fn service(&self) -> &str {
        &self.config.service
    }

    /// What `token` grants, or why it grants nothing (for the log; the
    /// client gets `invalid_token`).
    pub fn verify(&self, token: &str) -> Result<Grant, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(format!(
                "signed with {:?}, not an accepted algorithm",
                header.alg
            ));
        }
        let key = match header.x5c_der().map_err(|e| format!("x5c: {e}"))? {
            Some(chain) => self.chain_key(chain)?,
            None => {
                let kid = match (&header.kid, &header.jwk) {
                    (Some(kid), _) => kid.clone(),
                    (None, Some(jwk)) => jwk.thumbprint(ThumbprintHash::SHA256),
                    (None, None) => {
                        return Err("the token names no key (kid, jwk or x5c)".to_owned())
                    }
                };
                self.keys
                    .get(&kid)
                    .cloned()
                    .ok_or_else(|| format!("signed by an untrusted key {kid:?}"))?
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.service]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| e.to_string())?;
        Ok(Grant {
            subject: data.claims.sub,
            access: data.claims.access,
        })
    }

    /// The key of an `x5c` chain's leaf, once the chain is verified up to a
    /// root (a root itself as the leaf is trusted as it is).
    fn chain_key(&self, chain: Vec<Vec<u8>>) -> Result<DecodingKey, String> {
        let mut chain = chain.into_iter().map(CertificateDer::from);
        let leaf = chain.next().ok_or("x5c: an empty chain")?;
        if !self.roots.contains(&leaf) {
            let intermediates: Vec<CertificateDer<'static>> = chain.collect();
            let anchors: Vec<_> = self
                .roots
                .iter()
                .map(|root| webpki::anchor_from_trusted_cert(root).map(|anchor| anchor.to_owned()))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("rootcertbundle: {e}"))?;
            let end_entity =
                webpki::EndEntityCert::try_from(&leaf).map_err(|e| format!("x5c: {e}"))?;
            let algorithms = rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms
                .all;
            // Token-signing certificates rarely name a key purpose; when
            // they do, a TLS one (as a reused server certificate has) is fine.
            let verified = |usage| {
                end_entity.verify_for_usage(
                    algorithms,
                    &anchors,
                    &intermediates,
                    UnixTime::now(),
                    usage,
                    None,
                    None,
                )
            };
            verified(webpki::KeyUsage::server_auth())
                .or_else(|_| verified(webpki::KeyUsage::client_auth()))
                .map_err(|e| format!("x5c chain does not verify up to rootcertbundle: {e}"))?;
        }
        certificate_key(&leaf).map(|(key, _)| key)
    }
}

/// A certificate's public key, for jsonwebtoken and as SPKI DER.
fn certificate_key(certificate: &CertificateDer<'_>) -> Result<(DecodingKey, Vec<u8>), String> {
    let parsed =
        webpki::EndEntityCert::try_from(certificate).map_err(|e| format!("certificate: {e}"))?;
    let spki = parsed.subject_public_key_info().as_ref().to_vec();
    // jsonwebtoken reads a certificate's key from PEM.
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            certificate.as_ref()
        )
    );
    let key = DecodingKey::from_ec_pem(pem.as_bytes())
        .or_else(|_| DecodingKey::from_rsa_pem(pem.as_bytes()))
        .or_else(|_| DecodingKey::from_ed_pem(pem.as_bytes()))
        .map_err(|e| format!("certificate key: {e}"))?;
    Ok((key, spki))
}

/// A public key (SPKI DER) as a JWK, for its RFC 7638 thumbprint: EC
/// P-256 and P-384, RSA, Ed25519.
fn spki_jwk(spki: &[u8]) -> Result<Jwk, String> {
    use simple_asn1::{from_der, oid, ASN1Block};
    let unreadable = || "a public key this registry cannot read".to_owned();
    let url = |bytes: &[u8]| {
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
    };
    let blocks = from_der(spki).map_err(|e| e.to_string())?;
    let [ASN1Block::Sequence(_, items)] = blocks.as_slice() else {
        return Err(unreadable());
    };
    let [ASN1Block::Sequence(_, algorithm), ASN1Block::BitString(_, _, key)] = items.as_slice()
    else {
        return Err(unreadable());
    };
    let Some(ASN1Block::ObjectIdentifier(_, kind)) = algorithm.first() else {
        return Err(unreadable());
    };
    let json = if *kind == oid!(1, 2, 840, 10045, 2, 1) {
        let curve = match algorithm.get(1) {
            Some(ASN1Block::ObjectIdentifier(_, curve))
                if *curve == oid!(1, 2, 840, 10045, 3, 1, 7) =>
            {
                "P-256"
            }
            Some(ASN1Block::ObjectIdentifier(_, curve)) if *curve == oid!(1, 3, 132, 0, 34) => {
                "P-384"
            }
            _ => return Err("an elliptic curve other than P-256 and P-384".to_owned()),
        };
        // The uncompressed point: 0x04, then x and y of equal length.
        let point = key
            .strip_prefix(&[4])
            .filter(|p| p.len() % 2 == 0)
            .ok_or_else(unreadable)?;
        let (x, y) = point.split_at(point.len() / 2);
        serde_json::json!({ "kty": "EC", "crv": curve, "x": url(x), "y": url(y) })
    } else if *kind == oid!(1, 2, 840, 113549, 1, 1, 1) {
        let inner = from_der(key).map_err(|e| e.to_string())?;
        let [ASN1Block::Sequence(_, numbers)] = inner.as_slice() else {
            return Err(unreadable());
        };
        let [ASN1Block::Integer(_, n), ASN1Block::Integer(_, e)] = numbers.as_slice() else {
            return Err(unreadable());
        };
        serde_json::json!({ "kty": "RSA", "n": url(&n.to_bytes_be().1), "e": url(&e.to_bytes_be().1) })
    } else if *kind == oid!(1, 3, 101, 112) {
        serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": url(key) })
    } else {
        return Err(unreadable());
    };
    serde_json::from_value(json).map_err(|e| e.to_string())
}

/// docker/libtrust's key id: the first 240 bits of the SHA-256 of the
/// SPKI DER, base32, in twelve groups of four joined by `:`.
fn libtrust_key_id(spki: &[u8]) -> String {
    let digest = Sha256::digest(spki);
    let encoded = data_encoding::BASE32_NOPAD.encode(&digest[..30]);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|group| String::from_utf8_lossy(group).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_libtrust_key_id_is_twelve_groups_of_four() {
        let id = libtrust_key_id(b"any spki");
        assert_eq!(id.len(), 12 * 4 + 11);
        assert!(id.split(':').all(|group| group.len() == 4));
        assert!(id
            .chars()
            .all(|c| c == ':' || c.is_ascii_uppercase() || ('2'..='7').contains(&c)));
    }

    /// RFC 7638 §3.1's example key and thumbprint, the key put in an SPKI
    /// as a certificate carries it.
    #[test]
    fn an_rsa_key_has_rfc_7638s_thumbprint() {
        use base64::Engine;
        use simple_asn1::{oid, to_der, ASN1Block, BigInt, BigUint};
        let url = |text: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text)
                .unwrap()
        };
        let n = url(
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        );
        let e = url("AQAB");
        let integer =
            |bytes: &[u8]| ASN1Block::Integer(0, BigInt::from(BigUint::from_bytes_be(bytes)));
        let key = to_der(&ASN1Block::Sequence(0, vec![integer(&n), integer(&e)])).unwrap();
        let spki = to_der(&ASN1Block::Sequence(
            0,
            vec![
                ASN1Block::Sequence(
                    0,
                    vec![
                        ASN1Block::ObjectIdentifier(0, oid!(1, 2, 840, 113549, 1, 1, 1)),
                        ASN1Block::Null(0),
                    ],
                ),
                ASN1Block::BitString(0, key.len() * 8, key),
            ],
        ))
        .unwrap();
        let thumbprint = spki_jwk(&spki).unwrap().thumbprint(ThumbprintHash::SHA256);
        assert_eq!(thumbprint, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn grants_match_type_name_and_action() {
        let grant = Grant {
            subject: "alice".to_owned(),
            access: vec![AccessClaim {
                kind: "repository".to_owned(),
                name: "team-a/app".to_owned(),
                actions: vec!["pull".to_owned()],
            }],
        };
        assert!(grant.allows("repository", "team-a/app", "pull"));
        assert!(!grant.allows("repository", "team-a/app", "push"));
        assert!(!grant.allows("repository", "team-a/other", "pull"));
    }
}
