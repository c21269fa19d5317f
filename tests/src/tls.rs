//! Certificates a test makes for itself: a CA, server certificates for
//! loopback, client certificates for mutual TLS, and reqwest clients that
//! trust only the test's CA.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// A certificate authority that exists only for one test.
pub struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Pair {
    pub certificate: String,
    pub key: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::new()).expect("no names");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let certificate = params.self_signed(&key).expect("CA certificate");
        TestCa {
            pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA's signing half, to issue other certificates with.
    pub fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes the CA certificate to `dir/ca.crt` (the name skopeo's and
    /// docker's certificate directories look for); answers the path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).expect("certificate dir");
        let path = dir.join("ca.crt");
        std::fs::write(&path, &self.pem).expect("write CA");
        path
    }

    /// A server certificate for `127.0.0.1` and `localhost`.
    pub fn server(&self, common_name: &str) -> Pair {
        self.issue(
            common_name,
            vec!["127.0.0.1".into(), "localhost".into()],
            &[ExtendedKeyUsagePurpose::ServerAuth],
        )
    }

    /// A cluster node's certificate for `127.0.0.1`: served on its internal
    /// listener and presented to peers, so for both purposes.
    pub fn node(&self, common_name: &str) -> Pair {
        self.issue(
            common_name,
            vec!["127.0.0.1".into(), "localhost".into()],
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    /// A client certificate for `name`.
    pub fn client(&self, name: &str) -> Pair {
        self.issue(name, Vec::new(), &[ExtendedKeyUsagePurpose::ClientAuth])
    }

    fn issue(
        &self,
        common_name: &str,
        names: Vec<String>,
        usages: &[ExtendedKeyUsagePurpose],
    ) -> Pair {
        let mut params = CertificateParams::new(names).expect("valid names");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages.push(KeyUsagePurpose::DigitalSignature);
        params.extended_key_usages.extend_from_slice(usages);
        let key = KeyPair::generate().expect("key");
        let certificate = params.signed_by(&key, &self.issuer).expect("certificate");
        Pair {
            certificate: certificate.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A client that trusts this CA alone.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let ca = reqwest::Certificate::from_pem(self.pem.as_bytes()).expect("CA pem");
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .tls_certs_only([ca])
    }
}

impl Pair {
    /// Writes `tls.crt` and `tls.key` (a Secret's names) under `dir`.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        std::fs::create_dir_all(dir).expect("certificate dir");
        let (certificate, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&certificate, &self.certificate).expect("write certificate");
        std::fs::write(&key, &self.key).expect("write key");
        (certificate, key)
    }

    /// The pair as a client identity.
    pub fn identity(&self) -> reqwest::Identity {
        reqwest::Identity::from_pem(format!("{}{}", self.certificate, self.key).as_bytes())
            .expect("identity")
    }

    /// The certificate, DER (what a TLS peer presents).
    pub fn der(&self) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(self.certificate.as_bytes())
            .expect("certificate pem")
            .to_vec()
    }
}
