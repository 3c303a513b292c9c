//! Per-server security as plain configuration: the TLS files of an
//! `https://` server and the key that signs every packet posted to it
//! ([`ServerSecurity`]), plus the PEM readers that check those files when
//! the configuration is loaded. The rustls client configuration is built
//! where connections are made (`billbox-delivery`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

use crate::read::{check_path, Table};

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

/// Why a secret key (or token) was refused. The messages never show the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Fewer than [`MIN_SECRET_KEY_BYTES`] bytes: how many.
    #[error("is {0} bytes long; use at least {MIN_SECRET_KEY_BYTES} (32 random characters or more are best)")]
    TooShort(usize),
    /// The key file cannot be read.
    #[error("cannot read {path:?}: {1}", path = .0.display().to_string())]
    Read(PathBuf, #[source] std::io::Error),
    /// The key file is not UTF-8 text.
    #[error("{path:?} is not UTF-8 text; write the key as text", path = .0.display().to_string())]
    NotText(PathBuf),
    /// The key in the file is refused.
    #[error("the key in {path:?} {1}", path = .0.display().to_string())]
    InFile(PathBuf, #[source] Box<KeyError>),
}

impl SecretKey {
    /// A key from its text: at least [`MIN_SECRET_KEY_BYTES`] bytes.
    pub fn new(text: &str) -> Result<SecretKey, KeyError> {
        if text.len() < MIN_SECRET_KEY_BYTES {
            return Err(KeyError::TooShort(text.len()));
        }
        Ok(SecretKey(Arc::from(text.as_bytes())))
    }

    /// A key read from `path`: the file's text with the line break(s) at
    /// its end removed (`printf` or `echo` both work).
    pub fn from_file(path: &Path) -> Result<SecretKey, KeyError> {
        let bytes = std::fs::read(path).map_err(|e| KeyError::Read(path.into(), e))?;
        let text = String::from_utf8(bytes).map_err(|_| KeyError::NotText(path.into()))?;
        let text = text.trim_end_matches(['\n', '\r']);
        SecretKey::new(text).map_err(|e| KeyError::InFile(path.into(), Box::new(e)))
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

    /// Reads every file and checks it as a client configuration would
    /// use it: the CA certificates, the client chain and its key, which
    /// must fit together.
    pub fn check(&self) -> Result<(), TlsFileError> {
        if let Some(ca) = &self.ca_file {
            read_roots("ca_file", ca)?;
        }
        if let Some((chain, key)) = self.client_pair()? {
            rustls::sign::CertifiedKey::from_der(chain, key, &crypto_provider())
                .map_err(|source| self.mismatch(source))?;
        }
        Ok(())
    }

    /// The client certificate chain and key, when both are given; an
    /// error when only one is.
    #[allow(clippy::type_complexity)]
    pub fn client_pair(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TlsFileError> {
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Ok(Some((
                read_certificates("client_cert", cert)?,
                read_private_key("client_key", key)?,
            ))),
            (Some(_), None) => Err(TlsFileError::Missing(
                "client_key",
                "client_cert needs the private key of its certificate, \
                 e.g. client_key = \"/etc/billbox/client.key\"",
            )),
            (None, Some(_)) => Err(TlsFileError::Missing(
                "client_cert",
                "client_key needs the certificate it belongs to, \
                 e.g. client_cert = \"/etc/billbox/client.pem\"",
            )),
            (None, None) => Ok(None),
        }
    }

    /// The error for a client key that does not fit the certificate.
    pub fn mismatch(&self, source: rustls::Error) -> TlsFileError {
        let (key, cert) = (self.client_key.clone(), self.client_cert.clone());
        TlsFileError::Mismatch(key.unwrap_or_default(), cert.unwrap_or_default(), source)
    }
}

/// The security settings of one server (the primary and secondary of
/// `[delivery]` share theirs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSecurity {
    /// The TLS files; `https://` servers only.
    pub tls: TlsFiles,
    /// `secret_key` / `secret_key_file`: when set, every POST carries an
    /// `X-Billbox-Signature: sha256=<hex>` header (see `docs/security.md`).
    pub secret_key: Option<SecretKey>,
}

impl ServerSecurity {
    /// Whether nothing is set.
    pub fn is_default(&self) -> bool {
        self.tls.is_empty() && self.secret_key.is_none()
    }

    /// Reads the security keys of a server table. `https` says whether a
    /// server of the table is `https://` (`None` when its URLs were
    /// rejected); `no_https` says why not, for the TLS keys of a table
    /// without one. The TLS files are read for `https` servers.
    pub(crate) fn read(t: &mut Table, https: Option<bool>, no_https: &str) -> Option<Self> {
        let before = t.problem_count();
        let paths_before = t.value_problem_count();
        let tls = TlsFiles {
            ca_file: t.path("ca_file"),
            client_cert: t.path("client_cert"),
            client_key: t.path("client_key"),
        };
        // A file of the wrong type is left out; one that is refused stops
        // the reading of the others.
        let tls_ok = t.value_problem_count() == paths_before;
        for key in ["ca_file", "client_cert", "client_key"] {
            if https == Some(false) && t.accepted(key) {
                t.warning(
                    key,
                    format!("has no effect: only https:// servers use TLS, and {no_https}"),
                );
            }
        }
        let secret_key = read_secret(t, "secret_key", "secret_key_file");
        if tls_ok && https == Some(true) {
            match tls.check() {
                Err(e @ TlsFileError::Missing(..)) => t.missing(e.key(), e.to_string()),
                Err(e) => t.problem(e.key(), e.to_string()),
                Ok(()) => {}
            }
        }
        (t.problem_count() == before).then_some(ServerSecurity {
            tls,
            secret_key: secret_key?,
        })
    }
}

/// A secret given as the string `key` or in the file `file_key`.
/// `Some(None)` when neither is given, `None` on a problem.
pub(crate) fn read_secret(
    t: &mut Table,
    key: &'static str,
    file_key: &'static str,
) -> Option<Option<SecretKey>> {
    let result = match (t.secret(key), t.text(file_key)) {
        (Some(_), Some(_)) => {
            return t.fail(file_key, format!("give {key} or {file_key}, not both"))
        }
        (Some(text), None) => SecretKey::new(&text).map_err(|e| (key, e.to_string())),
        (None, Some(file)) => check_path(&file)
            .and_then(|()| SecretKey::from_file(file.as_ref()).map_err(|e| e.to_string()))
            .map_err(|why| (file_key, why)),
        (None, None) => return Some(None),
    };
    match result {
        Ok(secret) => Some(Some(secret)),
        Err((key, why)) => t.fail(key, why),
    }
}

/// Why a PEM file is not usable: the setting (as the reader was told,
/// see [`key`](Self::key)), the file, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// The file cannot be read.
    #[error("cannot read {path:?}: {2}", path = .1.display().to_string())]
    Read(&'static str, PathBuf, #[source] std::io::Error),
    /// Not PEM.
    #[error("{path:?} is not valid PEM: {2}", path = .1.display().to_string())]
    NotPem(
        &'static str,
        PathBuf,
        #[source] rustls::pki_types::pem::Error,
    ),
    /// No certificate in the file.
    #[error("{path:?} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path = .1.display().to_string())]
    NoCertificate(&'static str, PathBuf),
    /// No private key in the file.
    #[error(
        "{path:?} holds no PEM private key (-----BEGIN PRIVATE KEY-----, \
         -----BEGIN RSA PRIVATE KEY----- or -----BEGIN EC PRIVATE KEY-----)",
        path = .1.display().to_string()
    )]
    NoPrivateKey(&'static str, PathBuf),
    /// The `n`th certificate (from 1) cannot be a trust anchor.
    #[error("certificate {n} in {path:?} is not usable: {3}", n = .2, path = .1.display().to_string())]
    Unusable(&'static str, PathBuf, usize, #[source] rustls::Error),
    /// One of a client certificate and key without the other: the one
    /// missing, and what it is needed for.
    #[error("missing; {1}")]
    Missing(&'static str, &'static str),
    /// The client key (the file) does not belong to the certificate.
    #[error("{key:?} does not fit client_cert {cert:?}: {2}", key = .0.display().to_string(), cert = .1.display().to_string())]
    Mismatch(PathBuf, PathBuf, #[source] rustls::Error),
}

impl TlsFileError {
    /// The setting at fault, e.g. `ca_file`.
    pub fn key(&self) -> &'static str {
        use TlsFileError::*;
        match self {
            Read(key, ..) | NotPem(key, ..) | NoCertificate(key, _) => key,
            NoPrivateKey(key, _) | Unusable(key, ..) | Missing(key, _) => key,
            Mismatch(..) => "client_key",
        }
    }
}

/// The crypto billbox uses for TLS (ring), whatever else the build holds.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    let provider = || Arc::new(rustls::crypto::ring::default_provider());
    PROVIDER.get_or_init(provider).clone()
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|e| TlsFileError::Read(key, path.to_path_buf(), e))
}

/// Every PEM certificate in the file at `path` (for the setting `key`);
/// at least one.
pub fn read_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let pem = read(key, path)?;
    let path = path.to_path_buf();
    let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>();
    match certs {
        Err(e) => Err(TlsFileError::NotPem(key, path, e)),
        Ok(certs) if certs.is_empty() => Err(TlsFileError::NoCertificate(key, path)),
        Ok(certs) => Ok(certs),
    }
}

/// The PEM private key in the file at `path` (for the setting `key`).
pub fn read_private_key(
    key: &'static str,
    path: &Path,
) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let pem = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsFileError::NoPrivateKey(key, path.into()))
}

/// Trust anchors from the PEM certificates in `path` (for the setting `key`).
pub fn read_roots(key: &'static str, path: &Path) -> Result<RootCertStore, TlsFileError> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in read_certificates(key, path)?.into_iter().enumerate() {
        let unusable = |e| TlsFileError::Unusable(key, path.to_path_buf(), i + 1, e);
        roots.add(cert).map_err(unusable)?;
    }
    Ok(roots)
}
