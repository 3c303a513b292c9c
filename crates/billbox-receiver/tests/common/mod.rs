//! What the receiver's tests share: a receiver filing under a temporary
//! directory, and a plain HTTP/1.1 client on std sockets.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use billbox_receiver::{serve_secure, ReceiverOptions, ReceiverSecurity, Running};

/// A receiver on 127.0.0.1 (its own thread), filing under `out`.
pub struct Receiver {
    pub running: Running,
}

impl Receiver {
    pub fn start(out: &Path, key: Option<&str>) -> Receiver {
        let security = ReceiverSecurity {
            secret_key: key.map(|k| billbox_config::SecretKey::new(k).unwrap()),
            tls: None,
        };
        let opts = ReceiverOptions {
            listen: "127.0.0.1:0".into(),
            out: out.to_path_buf(),
            durable: true,
        };
        Receiver {
            running: serve_secure(opts, security).unwrap(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    pub fn post(&self, body: &[u8]) -> (u16, String) {
        post(self.running.addr, body, None)
    }

    /// Stops it (gracefully, or at once) and waits until it has.
    pub fn stop_with(&self, graceful: bool) {
        actix_rt::System::new().block_on(self.running.stop(graceful));
    }

    pub fn stop(self) {
        self.stop_with(true);
    }
}

/// The head of a POST of `len` bytes, `extra` header lines included.
pub fn head(addr: SocketAddr, len: usize, extra: &str) -> String {
    format!(
        "POST /billing HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {len}\r\n{extra}\r\n"
    )
}

/// Writes a keep-alive POST of `body` on `conn`.
pub fn send(conn: &mut TcpStream, addr: SocketAddr, body: &[u8]) {
    conn.write_all(head(addr, body.len(), "").as_bytes())
        .unwrap();
    conn.write_all(body).unwrap();
}

/// One HTTP/1.1 POST with `Connection: close`: (status, body).
pub fn post(addr: SocketAddr, body: &[u8], signature: Option<&str>) -> (u16, String) {
    let mut conn = connect(addr);
    let mut extra = "Connection: close\r\n".to_string();
    if let Some(s) = signature {
        extra.push_str(&format!("{}: {s}\r\n", billbox_wire::SIGNATURE_HEADER));
    }
    conn.write_all(head(addr, body.len(), &extra).as_bytes())
        .unwrap();
    conn.write_all(body).unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).unwrap();
    let (status, body, _) = answer_of(&answer).expect("a whole answer");
    (status, String::from_utf8_lossy(body).into_owned())
}

/// A connection to `addr`, reads timing out after 10 s.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn
}

/// The first whole answer in `bytes`: (status, body, its length in
/// `bytes`), or `None` while it is not all there. Answers carry a
/// `Content-Length` (the receiver's always do).
pub fn answer_of(bytes: &[u8]) -> Option<(u16, &[u8], usize)> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&bytes[..end]).expect("an ASCII head");
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    (bytes.len() >= end + len).then(|| (status, &bytes[end..end + len], end + len))
}

/// Whether an answer's ack says the packet was taken.
pub fn delivered((status, body): &(u16, String)) -> bool {
    billbox_wire::delivery_verdict(*status, body.as_bytes()).is_delivered()
}
