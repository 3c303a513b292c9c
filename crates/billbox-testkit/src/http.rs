//! The HTTP/1.1 client of tests and benches: `billbox-sim`'s client (the
//! demo's), with test-shaped wrappers that panic on a failed connection,
//! and HTTPS trusting a given CA.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use billbox_sim::http::{encode, post, request, request_on, Connection, Response};

/// One GET on 127.0.0.1 (`Connection: close`): (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = request(addr, "GET", path, &[], b"")
        .unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"));
    (r.status, r.text())
}

/// One request on 127.0.0.1 (`Connection: close`) with extra header lines
/// (`"Name: value"`): (status, header block, body).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> (u16, String, String) {
    let r = request(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} to {addr}: {e}"));
    let text = r.text();
    (r.status, r.head, text)
}

/// One HTTPS request (`Connection: close`) to `addr` trusting the CA in
/// `ca`, for the name `localhost`: (status, body). A connection the TLS
/// handshake refuses (or that gets no HTTP answer) is `None`.
pub fn https_request(
    addr: SocketAddr,
    ca: &Path,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> Option<(u16, String)> {
    let roots = billbox_config::read_roots("ca", ca).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(billbox_config::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let r = request_on(&mut tls, "localhost", method, path, headers, body).ok()?;
    Some((r.status, r.text()))
}
