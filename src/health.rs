//! `billbox health`: asks a running billbox's `/healthz` or `/readyz`, for
//! container health checks (the image has no curl).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// Asks the endpoint and prints its answer; exit 0 on HTTP 200.
pub fn main(addr: SocketAddr, ready: bool, timeout: Duration) -> ExitCode {
    let path = if ready { "/readyz" } else { "/healthz" };
    match ask(addr, path, timeout) {
        Ok((200, body)) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            println!("{body}");
            eprintln!("billbox: {path} on {addr} answered {status}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("billbox: cannot ask {path} on {addr}: {e}");
            ExitCode::from(1)
        }
    }
}

/// One HTTP/1.0 GET; returns the status and the body.
pub fn ask(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut conn = TcpStream::connect_timeout(&addr, timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut answer = Vec::new();
    conn.take(1 << 20).read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}
