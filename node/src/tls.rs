//! TLS on the node's listeners: `http.tls` and `cluster.tls` read into
//! [`TlsSettings`], turned into a rustls server config on the aws-lc-rs
//! provider, with a certificate that is re-read when its files change and
//! optional mutual TLS against `clientcas`; and the client side of
//! `cluster.tls`, which presents the same reloading certificate to peers.
//!
//! Reloading polls the files' contents every second rather than watching
//! them: a read follows symlinks, so Kubernetes' swap of a mounted Secret's
//! `..data` link is seen like any rewrite, with no watch to re-arm.

use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, SupportedCipherSuite, SupportedProtocolVersion};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// How often the certificate and key files are read for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// distribution's `http.tls` keys, as the file spells them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsSection {
    certificate: Option<PathBuf>,
    key: Option<PathBuf>,
    #[serde(default)]
    clientcas: PathList,
    clientauth: Option<String>,
    minimumtls: Option<String>,
    #[serde(default)]
    ciphersuites: Vec<String>,
    /// Refused with a reason, rather than as an unknown key.
    letsencrypt: Option<serde_yaml::Value>,
}

/// A list of paths, or one comma-separated string (as an environment
/// override gives it).
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum PathList {
    #[default]
    None,
    List(Vec<PathBuf>),
    Joined(String),
}

impl PathList {
    fn into_paths(self) -> Vec<PathBuf> {
        match self {
            PathList::None => Vec::new(),
            PathList::List(paths) => paths,
            PathList::Joined(joined) => joined
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
        }
    }
}

/// TLS on one listener, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM: the server certificate, then its intermediates.
    pub certificate: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM bundles of the CAs whose client certificates are accepted; empty
    /// for no client certificates.
    pub client_cas: Vec<PathBuf>,
    pub client_auth: ClientAuth,
    pub minimum: MinimumTls,
    /// Names of the TLS 1.2 and 1.3 suites offered, as IANA spells them;
    /// empty for rustls' defaults.
    pub cipher_suites: Vec<String>,
}

impl TlsSettings {
    /// TLS with `certificate` and `key` and everything else at its default.
    pub fn new(certificate: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsSettings {
            certificate: certificate.into(),
            key: key.into(),
            client_cas: Vec::new(),
            client_auth: ClientAuth::Require,
            minimum: MinimumTls::Tls12,
            cipher_suites: Vec::new(),
        }
    }
}

/// What a listener with `clientcas` does with clients (distribution's
/// `clientauth`). The two modes that accept certificates no CA vouches for
/// are not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `require-and-verify-client-cert`: no certificate, no connection.
    Require,
    /// `verify-client-cert-if-given`: a certificate, when sent, must verify.
    IfGiven,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinimumTls {
    Tls12,
    Tls13,
}

impl MinimumTls {
    fn versions(self) -> &'static [&'static SupportedProtocolVersion] {
        static BOTH: &[&SupportedProtocolVersion] =
            &[&rustls::version::TLS13, &rustls::version::TLS12];
        static ONLY_13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
        match self {
            MinimumTls::Tls12 => BOTH,
            MinimumTls::Tls13 => ONLY_13,
        }
    }
}

impl TlsSection {
    /// The settings this section asks for (`None`: no TLS), or what is wrong
    /// with it, naming the key under `prefix` (e.g. `http.tls`).
    pub(crate) fn validate(self, prefix: &str) -> Result<Option<TlsSettings>, String> {
        if self.letsencrypt.is_some() {
            return Err(format!(
                "{prefix}.letsencrypt: not supported; give certificate and key (e.g. from cert-manager), \
                 they are reloaded when they change"
            ));
        }
        let client_cas = self.clientcas.into_paths();
        let (certificate, key) = match (self.certificate, self.key) {
            (Some(certificate), Some(key)) => (certificate, key),
            (None, None) => {
                if !client_cas.is_empty()
                    || self.clientauth.is_some()
                    || self.minimumtls.is_some()
                    || !self.ciphersuites.is_empty()
                {
                    return Err(format!("{prefix}.certificate and {prefix}.key: required by the other {prefix} keys"));
                }
                return Ok(None);
            }
            (Some(_), None) => {
                return Err(format!("{prefix}.key: required with {prefix}.certificate"))
            }
            (None, Some(_)) => {
                return Err(format!("{prefix}.certificate: required with {prefix}.key"))
            }
        };
        let client_auth = match self.clientauth.as_deref() {
            _ if client_cas.is_empty() && self.clientauth.is_some() => {
                return Err(format!("{prefix}.clientauth: needs {prefix}.clientcas to verify certificates against"));
            }
            None | Some("require-and-verify-client-cert") => ClientAuth::Require,
            Some("verify-client-cert-if-given") => ClientAuth::IfGiven,
            Some(other @ ("request-client-cert" | "require-any-client-cert")) => {
                return Err(format!(
                    "{prefix}.clientauth: {other} accepts certificates no CA vouches for and is not supported; \
                     use require-and-verify-client-cert or verify-client-cert-if-given"
                ));
            }
            Some(other) => {
                return Err(format!(
                    "{prefix}.clientauth: {other:?} is not one of require-and-verify-client-cert, verify-client-cert-if-given"
                ))
            }
        };
        let minimum = match self.minimumtls.as_deref() {
            None | Some("tls1.2") => MinimumTls::Tls12,
            Some("tls1.3") => MinimumTls::Tls13,
            Some(old @ ("tls1.0" | "tls1.1")) => {
                return Err(format!(
                    "{prefix}.minimumtls: {old} is not supported: rustls speaks TLS 1.2 and 1.3 only; use tls1.2 or tls1.3"
                ));
            }
            Some(other) => {
                return Err(format!(
                    "{prefix}.minimumtls: {other:?} is not one of tls1.2, tls1.3"
                ))
            }
        };
        let cipher_suites = self
            .ciphersuites
            .iter()
            .map(|name| cipher_suite(name).map(|suite| suite_name(&suite)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{prefix}.ciphersuites: {e}"))?;
        Ok(Some(TlsSettings {
            certificate,
            key,
            client_cas,
            client_auth,
            minimum,
            cipher_suites,
        }))
    }
}

/// The suite's IANA name (rustls names the TLS 1.3 suites `TLS13_…`).
fn suite_name(suite: &SupportedCipherSuite) -> String {
    let name = format!("{:?}", suite.suite());
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

/// The suite an IANA (or Go) name means, if rustls implements it.
fn cipher_suite(name: &str) -> Result<SupportedCipherSuite, String> {
    let mut wanted = name.trim().to_ascii_uppercase();
    // Go spells the TLS 1.2 ChaCha suites without their hash.
    if wanted.starts_with("TLS_ECDHE_") && wanted.ends_with("CHACHA20_POLY1305") {
        wanted.push_str("_SHA256");
    }
    aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .find(|suite| suite_name(suite) == wanted)
        .copied()
        .ok_or_else(|| {
            let known: Vec<String> = aws_lc_rs::ALL_CIPHER_SUITES.iter().map(suite_name).collect();
            format!(
                "{name:?} is not a suite rustls implements (only AEAD suites with forward secrecy: {})",
                known.join(", ")
            )
        })
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Certificate(String),
    #[error("client CAs {path}: {reason}")]
    ClientCas { path: PathBuf, reason: String },
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// A listener's rustls config, and the certificate it serves (to watch).
pub struct ServerTls {
    pub config: rustls::ServerConfig,
    pub certificate: Arc<ReloadingCertificate>,
}

impl TlsSettings {
    /// Loads the certificate, key and client CAs; fails on anything a
    /// client could not be served with.
    pub fn server(
        &self,
        listener: &'static str,
        metrics: TlsMetrics,
    ) -> Result<ServerTls, TlsError> {
        let provider = Arc::new(self.provider());
        let certificate = Arc::new(ReloadingCertificate::load(
            self,
            listener,
            provider.clone(),
            metrics,
        )?);
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(self.minimum.versions())?;
        let builder = if self.client_cas.is_empty() {
            builder.with_no_client_auth()
        } else {
            let roots = Arc::new(self.client_roots()?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = match self.client_auth {
                ClientAuth::Require => verifier,
                ClientAuth::IfGiven => verifier.allow_unauthenticated(),
            };
            builder.with_client_cert_verifier(verifier.build()?)
        };
        let config = builder.with_cert_resolver(certificate.clone());
        Ok(ServerTls {
            config,
            certificate,
        })
    }

    /// The client config of calls to peers: their certificates must chain
    /// to `client_cas` and name the address called; `certificate` (this
    /// node's, as its listener serves it) is presented as the client's.
    pub fn peer_client(
        &self,
        certificate: Arc<ReloadingCertificate>,
    ) -> Result<rustls::ClientConfig, TlsError> {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(self.provider()))
            .with_protocol_versions(self.minimum.versions())?
            .with_root_certificates(self.client_roots()?)
            .with_client_cert_resolver(certificate);
        Ok(config)
    }

    /// aws-lc-rs, with only the configured suites when some are named.
    fn provider(&self) -> CryptoProvider {
        let mut provider = aws_lc_rs::default_provider();
        if !self.cipher_suites.is_empty() {
            provider.cipher_suites = aws_lc_rs::ALL_CIPHER_SUITES
                .iter()
                .filter(|suite| self.cipher_suites.contains(&suite_name(suite)))
                .copied()
                .collect();
        }
        provider
    }

    fn client_roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for path in &self.client_cas {
            let refused = |reason: String| TlsError::ClientCas {
                path: path.clone(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| refused(e.to_string()))?;
            let certificates = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| refused(e.to_string()))?;
            if certificates.is_empty() {
                return Err(refused("no certificate in the file".to_owned()));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|e| refused(e.to_string()))?;
            }
        }
        Ok(roots)
    }
}

/// Counts certificate reloads per listener and result.
#[derive(Debug, Clone)]
pub struct TlsMetrics {
    reloads: prometheus::IntCounterVec,
    expiry: prometheus::IntGaugeVec,
}

impl TlsMetrics {
    pub fn new(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let reloads = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "registry_tls_certificate_reloads_total",
                "Changed certificate files read: loaded (now served) or refused (the previous pair kept)",
            ),
            &["listener", "result"],
        )?;
        registry.register(Box::new(reloads.clone()))?;
        let expiry = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "registry_tls_certificate_expiry_timestamp_seconds",
                "When the certificate a listener serves stops being valid (notAfter), Unix seconds: \
                 alert on it minus time() before a renewal is missed",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(expiry.clone()))?;
        Ok(TlsMetrics { reloads, expiry })
    }

    fn served(&self, listener: &'static str, key: &CertifiedKey) {
        match not_after(key) {
            Some(expiry) => self.expiry.with_label_values(&[listener]).set(expiry),
            None => tracing::warn!(
                listener,
                "the certificate's expiry could not be read; it is served, but not on /metrics"
            ),
        }
    }
}

/// When the leaf certificate of `key` stops being valid, in Unix seconds.
fn not_after(key: &CertifiedKey) -> Option<i64> {
    let leaf = key.cert.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// The certificate a listener serves: swapped for a new pair when the files
/// change and the new pair loads, kept otherwise.
#[derive(Debug)]
pub struct ReloadingCertificate {
    certificate: PathBuf,
    key: PathBuf,
    listener: &'static str,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' contents last tried, loaded or not.
    seen: Mutex<(Vec<u8>, Vec<u8>)>,
    metrics: TlsMetrics,
}

impl ReloadingCertificate {
    fn load(
        settings: &TlsSettings,
        listener: &'static str,
        provider: Arc<CryptoProvider>,
        metrics: TlsMetrics,
    ) -> Result<Self, TlsError> {
        let files =
            read_pair(&settings.certificate, &settings.key).map_err(TlsError::Certificate)?;
        let key = certified_key(&files, &settings.certificate, &settings.key, &provider)
            .map_err(TlsError::Certificate)?;
        metrics.served(listener, &key);
        Ok(ReloadingCertificate {
            certificate: settings.certificate.clone(),
            key: settings.key.clone(),
            listener,
            provider,
            current: RwLock::new(Arc::new(key)),
            seen: Mutex::new(files),
            metrics,
        })
    }

    /// Reads the files; when they changed, serves the new pair if it loads,
    /// else logs why and keeps the old one.
    pub fn check(&self) {
        let files = match read_pair(&self.certificate, &self.key) {
            Ok(files) => files,
            // Mid-swap, or the mount went away: nothing to decide yet. A
            // pair that stays unreadable is logged once it changes back.
            Err(_) => return,
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if *seen == files {
            return;
        }
        let reloads = &self.metrics.reloads;
        match certified_key(&files, &self.certificate, &self.key, &self.provider) {
            Ok(key) => {
                self.metrics.served(self.listener, &key);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
                reloads.with_label_values(&[self.listener, "loaded"]).inc();
                tracing::info!(listener = self.listener, certificate = %self.certificate.display(), "serving the new TLS certificate");
            }
            // A swap between reading the certificate and reading the key
            // gives a mixed pair: leave the decision to the next check.
            Err(_) if read_pair(&self.certificate, &self.key).ok().as_ref() != Some(&files) => {
                return
            }
            Err(reason) => {
                reloads.with_label_values(&[self.listener, "refused"]).inc();
                tracing::error!(listener = self.listener, %reason, "the changed TLS certificate or key does not load; still serving the previous pair");
            }
        }
        *seen = files;
    }

    /// Checks the files every second, forever.
    pub async fn watch(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(RELOAD_CHECK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let me = self.clone();
            if tokio::task::spawn_blocking(move || me.check())
                .await
                .is_err()
            {
                tracing::error!(
                    listener = self.listener,
                    "the TLS certificate check panicked"
                );
            }
        }
    }
}

/// A node presents its own certificate when it calls a peer (`cluster.tls`).
impl rustls::client::ResolvesClientCert for ReloadingCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn read_pair(certificate: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), String> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    Ok((read(certificate)?, read(key)?))
}

/// The chain and key in `files`, checked to belong together.
fn certified_key(
    (certificate_pem, key_pem): &(Vec<u8>, Vec<u8>),
    certificate: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(certificate_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", certificate.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: no certificate in the file",
            certificate.display()
        ));
    }
    let private =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("{}: {e}", key.display()))?;
    CertifiedKey::from_der(chain, private, provider)
        .map_err(|e| format!("{} with {}: {e}", certificate.display(), key.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_is_the_leaf_certificates_not_after() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2030, 1, 1);
        let key_pair = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key_pair).unwrap();
        let files = (
            certificate.pem().into_bytes(),
            key_pair.serialize_pem().into_bytes(),
        );
        let provider = aws_lc_rs::default_provider();
        let key = certified_key(&files, Path::new("c"), Path::new("k"), &provider).unwrap();
        assert_eq!(not_after(&key), Some(1_893_456_000), "2030-01-01T00:00:00Z");
    }

    fn section(yaml: &str) -> Result<Option<TlsSettings>, String> {
        let section: TlsSection = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        section.validate("http.tls")
    }

    #[test]
    fn no_certificate_is_no_tls() {
        assert_eq!(section("{}").unwrap(), None);
    }

    #[test]
    fn distribution_keys_are_read() {
        let settings = section(
            "certificate: /c.pem\nkey: /k.pem\nclientcas: [/ca1.pem, /ca2.pem]\n\
             clientauth: verify-client-cert-if-given\nminimumtls: tls1.3\n\
             ciphersuites: [TLS_AES_128_GCM_SHA256, tls_ecdhe_rsa_with_chacha20_poly1305]\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            settings.client_cas,
            [PathBuf::from("/ca1.pem"), PathBuf::from("/ca2.pem")]
        );
        assert_eq!(settings.client_auth, ClientAuth::IfGiven);
        assert_eq!(settings.minimum, MinimumTls::Tls13);
        assert_eq!(
            settings.cipher_suites,
            [
                "TLS_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
            ]
        );
        let joined = section("certificate: /c\nkey: /k\nclientcas: /a.pem, /b.pem\n")
            .unwrap()
            .unwrap();
        assert_eq!(joined.client_cas.len(), 2);
    }

    #[test]
    fn what_rustls_cannot_honour_is_refused_naming_the_key() {
        let err = |yaml: &str| section(yaml).unwrap_err();
        assert!(
            err("certificate: /c\nkey: /k\nminimumtls: tls1.0\n").contains("http.tls.minimumtls")
        );
        assert!(
            err("certificate: /c\nkey: /k\nminimumtls: tls1.1\n").contains("TLS 1.2 and 1.3 only")
        );
        assert!(
            err("certificate: /c\nkey: /k\nciphersuites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n")
                .contains("http.tls.ciphersuites")
        );
        assert!(
            err("certificate: /c\nkey: /k\nciphersuites: [TLS_ECDHE_RSA_WITH_RC4_128_SHA]\n")
                .contains("not a suite rustls implements")
        );
        assert!(err(
            "certificate: /c\nkey: /k\nclientcas: [/a]\nclientauth: require-any-client-cert\n"
        )
        .contains("http.tls.clientauth"));
        assert!(
            err("certificate: /c\nkey: /k\nclientauth: require-and-verify-client-cert\n")
                .contains("needs http.tls.clientcas")
        );
        assert!(err("certificate: /c\n").contains("http.tls.key"));
        assert!(err("minimumtls: tls1.3\n").contains("required"));
        assert!(err("letsencrypt: { email: a@b }\n").contains("http.tls.letsencrypt"));
    }
}
