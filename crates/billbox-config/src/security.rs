//! Per-server security: the TLS trust and client certificate of an
//! `https://` server, and the key that signs every packet posted to it.
//!
//! [`ServerSecurity`] travels inside the [`ServerUrl`](crate::ServerUrl) it
//! applies to, so whatever reaches a server by its URL also has its
//! settings. The files are read and checked when the configuration is
//! loaded; the rustls client configuration is built then, once.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// The fewest bytes a `secret_key` may have.
pub const MIN_SECRET_KEY_BYTES: usize = 16;

/// The key shared with a server to sign packets (HMAC-SHA256). Its bytes
/// are the UTF-8 bytes of the configured string.
///
/// It never shows itself: `Debug` prints `SecretKey(<redacted>)` and there
/// is no `Display`.
///
/// ```
/// let key = billbox_config::SecretKey::new("0123456789abcdef-very-secret").unwrap();
/// assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
/// assert_eq!(key.expose(), b"0123456789abcdef-very-secret");
/// assert!(billbox_config::SecretKey::new("short").is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(Arc<[u8]>);

impl SecretKey {
    /// A key from its text: at least [`MIN_SECRET_KEY_BYTES`] bytes. The
    /// error never repeats the text.
    pub fn new(text: &str) -> Result<SecretKey, String> {
        if text.len() < MIN_SECRET_KEY_BYTES {
            return Err(format!(
                "is {} bytes long; use at least {MIN_SECRET_KEY_BYTES} (32 random characters or more are best)",
                text.len()
            ));
        }
        Ok(SecretKey(Arc::from(text.as_bytes())))
    }

    /// A key read from `path`: the file's text with the line break(s) at
    /// its end removed (`printf` or `echo` both work). The error names the
    /// file, never its contents.
    pub fn from_file(path: &Path) -> Result<SecretKey, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read {:?}: {e}", path.display().to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            format!(
                "{:?} is not UTF-8 text; write the key as text",
                path.display().to_string()
            )
        })?;
        let text = text.trim_end_matches(['\n', '\r']);
        SecretKey::new(text)
            .map_err(|why| format!("the key in {:?} {why}", path.display().to_string()))
    }

    /// The key's bytes, for computing signatures. Never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// The TLS files of a server, as configured (paths as given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// `ca_file`: PEM certificates of the authorities trusted to sign the
    /// server's certificate, instead of the built-in (Mozilla/webpki) roots.
    pub ca_file: Option<PathBuf>,
    /// `client_cert`: the PEM certificate chain billbox presents (mutual
    /// TLS), its own certificate first. Given together with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// `client_key`: the PEM private key (PKCS#8, PKCS#1 or SEC1) of
    /// `client_cert`.
    pub client_key: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether any file is given.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.client_cert.is_none() && self.client_key.is_none()
    }
}

/// The security settings of one server (or of the primary and secondary of
/// `[delivery]`, which share them).
#[derive(Clone, Default)]
pub struct ServerSecurity {
    /// The TLS files; used for `https://` servers only.
    pub tls: TlsFiles,
    /// `secret_key` / `secret_key_file`: when set, every POST carries an
    /// `X-Billbox-Signature: sha256=<hex>` header (see `docs/security.md`).
    pub secret_key: Option<SecretKey>,
    /// The rustls configuration built from `tls` when the configuration was
    /// loaded; `None`: the default one.
    client_config: Option<Arc<ClientConfig>>,
}

impl ServerSecurity {
    /// Settings from `tls` and `secret_key`: the TLS files are read and
    /// checked now. The error names the key at fault (`ca_file`,
    /// `client_cert` or `client_key`) and what is wrong.
    pub fn new(
        tls: TlsFiles,
        secret_key: Option<SecretKey>,
    ) -> Result<ServerSecurity, (&'static str, String)> {
        let client_config = if tls.is_empty() {
            None
        } else {
            Some(build_client_config(&tls)?)
        };
        Ok(ServerSecurity {
            tls,
            secret_key,
            client_config,
        })
    }

    /// Whether nothing is set.
    pub fn is_default(&self) -> bool {
        self.tls.is_empty() && self.secret_key.is_none()
    }

    /// The rustls client configuration for an `https://` server: the one
    /// built from the TLS files, or else the default (built-in webpki roots,
    /// no client certificate).
    pub fn tls_client_config(&self) -> Arc<ClientConfig> {
        self.client_config
            .clone()
            .unwrap_or_else(default_client_config)
    }
}

impl PartialEq for ServerSecurity {
    /// The settings compare; the built rustls configuration follows them.
    fn eq(&self, other: &Self) -> bool {
        self.tls == other.tls && self.secret_key == other.secret_key
    }
}

impl Eq for ServerSecurity {}

impl fmt::Debug for ServerSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSecurity")
            .field("ca_file", &self.tls.ca_file)
            .field("client_cert", &self.tls.client_cert)
            .field("client_key", &self.tls.client_key)
            .field("secret_key", &self.secret_key)
            .finish()
    }
}

/// The crypto billbox uses for TLS (ring), whatever else the build holds.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The built-in trust roots (Mozilla's, compiled in: no system store needed).
pub fn webpki_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

fn default_client_config() -> Arc<ClientConfig> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            let builder = ClientConfig::builder_with_provider(crypto_provider())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions");
            Arc::new(
                builder
                    .with_root_certificates(webpki_roots())
                    .with_no_client_auth(),
            )
        })
        .clone()
}

fn shown(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// Reads a file for `key`.
fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, (&'static str, String)> {
    std::fs::read(path).map_err(|e| (key, format!("cannot read {}: {e}", shown(path))))
}

/// Every PEM certificate in the file at `path` (for `key`); at least one.
pub fn read_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, (&'static str, String)> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| (key, format!("{} is not valid PEM: {e}", shown(path))))?;
    if certs.is_empty() {
        return Err((
            key,
            format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                shown(path)
            ),
        ));
    }
    Ok(certs)
}

/// The PEM private key in the file at `path` (for `key`).
pub fn read_private_key(
    key: &'static str,
    path: &Path,
) -> Result<PrivateKeyDer<'static>, (&'static str, String)> {
    let pem = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        (
            key,
            format!(
                "{} holds no PEM private key (-----BEGIN PRIVATE KEY-----, \
                 -----BEGIN RSA PRIVATE KEY----- or -----BEGIN EC PRIVATE KEY-----)",
                shown(path)
            ),
        )
    })
}

/// Trust anchors from the PEM certificates in `path` (for `key`).
pub fn read_roots(key: &'static str, path: &Path) -> Result<RootCertStore, (&'static str, String)> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in read_certificates(key, path)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            (
                key,
                format!(
                    "certificate {} in {} is not usable: {e}",
                    i + 1,
                    shown(path)
                ),
            )
        })?;
    }
    Ok(roots)
}

fn build_client_config(tls: &TlsFiles) -> Result<Arc<ClientConfig>, (&'static str, String)> {
    let roots = match &tls.ca_file {
        Some(path) => read_roots("ca_file", path)?,
        None => webpki_roots(),
    };
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots);
    let config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certificates("client_cert", cert)?;
            let key_der = read_private_key("client_key", key)?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                (
                    "client_key",
                    format!(
                        "{} does not fit client_cert {}: {e}",
                        shown(key),
                        shown(cert)
                    ),
                )
            })?
        }
        (Some(_), None) => {
            return Err((
                "client_key",
                "missing; client_cert needs the private key of its certificate, \
                 e.g. client_key = \"/etc/billbox/client.key\""
                    .to_string(),
            ))
        }
        (None, Some(_)) => {
            return Err((
                "client_cert",
                "missing; client_key needs the certificate it belongs to, \
                 e.g. client_cert = \"/etc/billbox/client.pem\""
                    .to_string(),
            ))
        }
        (None, None) => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
