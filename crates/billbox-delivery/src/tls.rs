//! The rustls client configuration of an `https://` server, built from
//! the server's TLS files where its connections are made.

use std::sync::{Arc, OnceLock};

use billbox_config::{crypto_provider, read_roots, TlsFileError, TlsFiles};
use rustls::{ClientConfig, RootCertStore};

/// The built-in trust roots (Mozilla's, compiled in: no system store needed).
pub fn webpki_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// The client configuration for `tls`: its `ca_file` (or else the built-in
/// roots) and its client certificate, if any. The files are read now; the
/// error names the setting at fault ([`TlsFileError::key`]).
pub fn client_config(tls: &TlsFiles) -> Result<Arc<ClientConfig>, TlsFileError> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if tls.is_empty() {
        let default = || build(webpki_roots(), None).expect("the default configuration");
        return Ok(DEFAULT.get_or_init(default).clone());
    }
    let roots = match &tls.ca_file {
        Some(path) => read_roots("ca_file", path)?,
        None => webpki_roots(),
    };
    build(roots, Some(tls))
}

fn build(roots: RootCertStore, tls: Option<&TlsFiles>) -> Result<Arc<ClientConfig>, TlsFileError> {
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots);
    let config = match tls.map(TlsFiles::client_pair).transpose()?.flatten() {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls.unwrap_or(&TlsFiles::default()).mismatch(e))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_client_certificate_configurations() {
        let config = client_config(&TlsFiles::default()).unwrap();
        assert!(!config.client_auth_cert_resolver.has_certs());

        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let client = rcgen::CertificateParams::new(vec!["gw".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let file = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            Some(path)
        };
        let mut tls = TlsFiles {
            ca_file: file("ca.pem", ca.pem()),
            client_cert: file("client.pem", client.pem()),
            client_key: file("client.key", key.serialize_pem()),
        };
        let config = client_config(&tls).unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());

        tls.client_key = file("other.key", other.serialize_pem());
        let err = client_config(&tls).unwrap_err();
        assert!(matches!(err, TlsFileError::Mismatch(..)), "{err}");
        assert_eq!(err.key(), "client_key");
        tls.ca_file = Some(dir.path().join("nowhere.pem"));
        let err = client_config(&tls).unwrap_err();
        assert!(matches!(err, TlsFileError::Read("ca_file", ..)), "{err}");
    }
}
