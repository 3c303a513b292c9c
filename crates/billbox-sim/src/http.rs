//! A small HTTP/1.1 client: what a hotel portal, an AG relaying its packets,
//! a monitoring probe or a test says to billbox and to billing servers.
//!
//! [`request`] sends one request with `Connection: close` and reads the
//! answer to the end of the connection; [`request_on`] does the same over
//! any stream (TLS, for one). [`Connection`] keeps one connection open and
//! reads each answer by its `Content-Length` (keep-alive submitters).
//! Headers are whole lines without the CR LF (`"Content-Type: text/xml"`);
//! `Host`, `Content-Length` and, for the one-shot calls, `Connection: close`
//! are added.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a call waits to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call waits for the answer (a billing server that hangs, a
/// flush that waits for the disk).
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// An answer: status, the head as sent (status line and headers), body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parses an answer read whole from the connection.
    pub fn parse(answer: &[u8]) -> io::Result<Response> {
        let split = answer.windows(4).position(|w| w == b"\r\n\r\n");
        let (head, body) = match split {
            Some(at) => (&answer[..at], &answer[at + 4..]),
            None => (answer, &b""[..]),
        };
        let head = String::from_utf8_lossy(head).into_owned();
        let status = status_of(&head)?;
        Ok(Response {
            status,
            head,
            body: body.to_vec(),
        })
    }
}

fn status_of(head: &str) -> io::Result<u16> {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "not an HTTP answer: {:?}",
                    head.chars().take(80).collect::<String>()
                ),
            )
        })
}

/// The request's bytes: request line, `Host`, `headers`, `Content-Length`,
/// `Connection: close` when `close`, then the body.
pub fn encode(
    host: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    if close {
        head.push_str("Connection: close\r\n");
    }
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// One request to `addr` with `Connection: close`; the answer is what the
/// server sent until it closed.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> io::Result<Response> {
    let mut conn = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    conn.set_read_timeout(Some(READ_TIMEOUT))?;
    conn.set_nodelay(true)?;
    request_on(&mut conn, &addr.to_string(), method, path, headers, body)
}

/// [`request`] over a stream already connected (a TLS session, say) to
/// `host`. A stream that ends without a clean close (a TLS peer without
/// `close_notify`) keeps what was read.
pub fn request_on<S: Read + Write>(
    stream: &mut S,
    host: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> io::Result<Response> {
    stream.write_all(&encode(host, method, path, headers, body, true))?;
    stream.flush()?;
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(e),
    }
    Response::parse(&answer)
}

/// One POST with `Connection: close` and this `Content-Type`.
pub fn post(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> io::Result<Response> {
    let content_type = format!("Content-Type: {content_type}");
    request(addr, "POST", path, &[&content_type], body)
}

/// One keep-alive connection: requests one after the other, each answer
/// read by its `Content-Length`.
pub struct Connection {
    host: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> io::Result<Connection> {
        let conn = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        conn.set_read_timeout(Some(READ_TIMEOUT))?;
        conn.set_nodelay(true)?;
        Ok(Connection {
            host: addr.to_string(),
            reader: BufReader::new(conn.try_clone()?),
            writer: conn,
        })
    }

    /// Sends one request and reads its answer.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &[u8],
    ) -> io::Result<Response> {
        self.writer
            .write_all(&encode(&self.host, method, path, headers, body, false))?;
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v
                    .trim()
                    .parse()
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, line.clone()))?;
            }
            head.push_str(&line);
        }
        let status = status_of(&head)?;
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(Response {
            status,
            head: head.trim_end().to_string(),
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_splits_into_status_head_and_body() {
        let r = Response::parse(b"HTTP/1.1 201 Created\r\nA: b\r\n\r\n{\"x\":1}").unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.head, "HTTP/1.1 201 Created\r\nA: b");
        assert_eq!(r.text(), "{\"x\":1}");
        assert!(Response::parse(b"\x15\x03\x03").is_err());
    }

    #[test]
    fn a_request_carries_host_headers_and_length() {
        let b = encode("h:1", "POST", "/x", &["A: b"], b"body", true);
        assert_eq!(
            b,
            b"POST /x HTTP/1.1\r\nHost: h:1\r\nConnection: close\r\nA: b\r\nContent-Length: 4\r\n\r\nbody"
        );
    }
}
