//! A token server of the test's own, as docker_auth or Harbor's core run
//! one beside distribution: `GET /token?service=…&scope=…` with Basic
//! credentials answers a JWT granting what the user may of what was asked
//! (the token spec's intersection). It signs with an ECDSA key whose
//! certificate a test CA issued, and names the key the way the test asks.

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{CertificateParams, DnType, Issuer, KeyPair};
use serde_json::json;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

/// How a token names the key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// `x5c`: the signing certificate and its chain.
    X5c,
    /// `kid`: the RFC 7638 thumbprint of the signing key (distribution v3).
    Thumbprint,
    /// `kid`: docker/libtrust's key id (distribution v2's token servers).
    Libtrust,
    /// `kid`: as given (a JWKS entry).
    Kid(String),
}

/// A signing key and how tokens are made with it.
pub struct Signer {
    key: KeyPair,
    /// PEM of the signing certificate.
    pub certificate: String,
    certificate_der: Vec<u8>,
    pub issuer: String,
    pub audience: String,
    pub key_ref: KeyRef,
}

/// The claims of one token, before signing; tests change them to make bad tokens.
#[derive(Clone, Debug)]
pub struct Claims {
    pub subject: String,
    pub issuer: String,
    pub audience: String,
    pub issued_at: i64,
    pub not_before: i64,
    pub expires: i64,
    /// `(type, name, actions)`.
    pub access: Vec<(String, String, Vec<String>)>,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Signer {
    /// A key with a certificate from `ca` (or self-signed without one).
    pub fn new(
        ca: Option<&Issuer<'static, KeyPair>>,
        issuer: &str,
        audience: &str,
        key_ref: KeyRef,
    ) -> Self {
        let key = KeyPair::generate().expect("signing key");
        Self::with_key(key, ca, issuer, audience, key_ref)
    }

    /// A signer with the given `key` (the registry's own token-service key,
    /// to make tokens it would verify, or bad ones it must refuse).
    pub fn with_key(
        key: KeyPair,
        ca: Option<&Issuer<'static, KeyPair>>,
        issuer: &str,
        audience: &str,
        key_ref: KeyRef,
    ) -> Self {
        let mut params = CertificateParams::new(Vec::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, issuer);
        let certificate = match ca {
            Some(ca) => params.signed_by(&key, ca),
            None => params.self_signed(&key),
        }
        .expect("signing certificate");
        Signer {
            certificate: certificate.pem(),
            certificate_der: certificate.der().to_vec(),
            key,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            key_ref,
        }
    }

    /// Claims for `subject` granting `access`, valid for five minutes.
    pub fn claims(&self, subject: &str, access: Vec<(String, String, Vec<String>)>) -> Claims {
        let now = now();
        Claims {
            subject: subject.to_owned(),
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            issued_at: now,
            not_before: now,
            expires: now + 300,
            access,
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".to_owned());
        match &self.key_ref {
            KeyRef::X5c => {
                header.x5c = Some(vec![base64_std(&self.certificate_der)]);
            }
            KeyRef::Thumbprint => header.kid = Some(self.thumbprint()),
            KeyRef::Libtrust => {
                header.kid = Some(libtrust_key_id(
                    &rcgen::PublicKeyData::subject_public_key_info(&self.key),
                ))
            }
            KeyRef::Kid(kid) => header.kid = Some(kid.clone()),
        }
        let access: Vec<_> = claims
            .access
            .iter()
            .map(|(kind, name, actions)| json!({ "type": kind, "name": name, "actions": actions }))
            .collect();
        let body = json!({
            "iss": claims.issuer, "sub": claims.subject, "aud": claims.audience,
            "exp": claims.expires, "nbf": claims.not_before, "iat": claims.issued_at,
            "jti": uuid_like(), "access": access,
        });
        let key =
            EncodingKey::from_ec_pem(self.key.serialize_pem().as_bytes()).expect("encoding key");
        jsonwebtoken::encode(&header, &body, &key).expect("sign")
    }

    /// The public key as a JWK (EC P-256) with `kid`, for a JWKS file.
    pub fn jwk(&self, kid: &str) -> serde_json::Value {
        let mut jwk = self.public_jwk();
        jwk["kid"] = kid.into();
        jwk["alg"] = "ES256".into();
        jwk["use"] = "sig".into();
        jwk
    }

    /// The RFC 7638 members, from rcgen's raw point (0x04, x, y): computed
    /// here independently of the registry's reading of certificates.
    fn public_jwk(&self) -> serde_json::Value {
        let url = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let point = &rcgen::PublicKeyData::der_bytes(&self.key)[1..];
        let (x, y) = point.split_at(point.len() / 2);
        json!({ "crv": "P-256", "kty": "EC", "x": url(x), "y": url(y) })
    }

    fn thumbprint(&self) -> String {
        use sha2::Digest;
        // serde_json orders object keys, as RFC 7638 asks.
        let canonical = self.public_jwk().to_string();
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(canonical.as_bytes()))
    }
}

fn base64_std(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// libtrust's key id, computed here independently of the registry's code:
/// SHA-256 of the SPKI DER, its first 30 bytes in base32, groups of four.
pub fn libtrust_key_id(spki: &[u8]) -> String {
    use sha2::Digest;
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = sha2::Sha256::digest(spki);
    let mut bits = String::new();
    for byte in &digest[..30] {
        bits.push_str(&format!("{byte:08b}"));
    }
    let encoded: Vec<char> =
        bits.as_bytes()
            .chunks(5)
            .map(|five| {
                ALPHABET[usize::from_str_radix(std::str::from_utf8(five).unwrap_or("0"), 2)
                    .unwrap_or(0)] as char
            })
            .collect();
    encoded
        .chunks(4)
        .map(|g| g.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(":")
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )
}

/// Users of the token server: password, and per repository prefix the
/// actions they may be granted.
#[derive(Default, Clone)]
pub struct Users {
    pub passwords: HashMap<String, String>,
    /// `(user or "" for anonymous, repository prefix, actions)`.
    pub grants: Vec<(String, String, Vec<String>)>,
}

struct Shared {
    signer: Signer,
    users: Users,
    issued: Mutex<u64>,
}

/// The running token server.
pub struct TokenServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _server: crate::thread_server::ThreadServer,
}

impl TokenServer {
    pub fn start(signer: Signer, users: Users) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            signer,
            users,
            issued: Mutex::new(0),
        });
        let state = shared.clone();
        let server = crate::thread_server::ThreadServer::start(listener, move |app| {
            app.app_data(web::Data::new(state.clone()))
                .route("/token", web::get().to(token));
        });
        TokenServer {
            addr,
            shared,
            _server: server,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn signer(&self) -> &Signer {
        &self.shared.signer
    }

    /// Tokens issued so far.
    pub fn issued(&self) -> u64 {
        *self.shared.issued.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn token(
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<Arc<Shared>>,
) -> HttpResponse {
    let user = match basic(&req) {
        None => String::new(),
        Some((user, password)) => {
            if state.users.passwords.get(&user) != Some(&password) {
                return HttpResponse::Unauthorized()
                    .json(json!({ "details": "wrong user name or password" }));
            }
            user
        }
    };
    if query
        .iter()
        .any(|(k, v)| k == "service" && *v != state.signer.audience)
    {
        return HttpResponse::BadRequest().json(json!({ "details": "unknown service" }));
    }
    let mut access = Vec::new();
    for (_, scope) in query.iter().filter(|(k, _)| k == "scope") {
        // type:name:actions, where the name may hold a host:port.
        let Some((rest, actions)) = scope.rsplit_once(':') else {
            continue;
        };
        let Some((kind, name)) = rest.split_once(':') else {
            continue;
        };
        let granted: Vec<String> = actions
            .split(',')
            .filter(|action| {
                state.users.grants.iter().any(|(who, prefix, allowed)| {
                    *who == user
                        && name.starts_with(prefix.as_str())
                        && allowed.iter().any(|a| a == action || a == "*")
                })
            })
            .map(str::to_owned)
            .collect();
        access.push((kind.to_owned(), name.to_owned(), granted));
    }
    let claims = state.signer.claims(&user, access);
    let token = state.signer.sign(&claims);
    *state.issued.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    HttpResponse::Ok().json(json!({ "token": token, "access_token": token, "expires_in": 300, "issued_at": "2026-12-02T00:00:00Z" }))
}

fn basic(req: &HttpRequest) -> Option<(String, String)> {
    let header = req.headers().get("authorization")?.to_str().ok()?;
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64_decode(encoded.trim())?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}
