//! PBXes on TCP, and feeding any PBX link with generated records.
//!
//! Two ways a PBX speaks TCP: it connects to billbox's listening port
//! ([`TcpPbx::connect`], the Avaya IP Office SMDR client), or it listens and
//! billbox connects ([`ListeningPbx`], IP Office listen mode, Mitel 1752).
//! Everything is on 127.0.0.1.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::smdr::Format;
use crate::PtyPbx;

/// Where a simulated PBX writes its records.
pub trait Link {
    /// Writes bytes as the PBX sends them.
    fn send(&mut self, bytes: &[u8]) -> io::Result<()>;
}

impl Link for PtyPbx {
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        PtyPbx::send(self, bytes)
    }
}

/// One TCP connection of a PBX to billbox (either side may have opened it).
pub struct TcpPbx {
    conn: TcpStream,
}

impl TcpPbx {
    /// Connects to a port billbox listens on.
    pub fn connect(addr: SocketAddr) -> io::Result<TcpPbx> {
        Ok(TcpPbx {
            conn: TcpStream::connect(addr)?,
        })
    }

    /// The connection, for socket options or a shutdown.
    pub fn stream(&self) -> &TcpStream {
        &self.conn
    }

    /// The connection, given up.
    pub fn into_stream(self) -> TcpStream {
        self.conn
    }
}

impl Link for TcpPbx {
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.conn.write_all(bytes)
    }
}

/// A PBX that listens on 127.0.0.1 (port picked free) for billbox to connect.
pub struct ListeningPbx {
    listener: TcpListener,
}

impl ListeningPbx {
    pub fn bind() -> io::Result<ListeningPbx> {
        Ok(ListeningPbx {
            listener: TcpListener::bind("127.0.0.1:0")?,
        })
    }

    /// The address to put in billbox's `connect = "..."`.
    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Waits up to `limit` for billbox to connect.
    pub fn accept(&self, limit: Duration) -> io::Result<TcpPbx> {
        self.listener.set_nonblocking(true)?;
        let deadline = Instant::now() + limit;
        loop {
            match self.listener.accept() {
                Ok((conn, _)) => {
                    conn.set_nonblocking(false)?;
                    return Ok(TcpPbx { conn });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("nobody connected to {} within {limit:?}", self.addr()),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Sends records `numbers` of `format` on `link`, one every `gap`, record
/// `i` stamped `start + i` seconds; returns them as sent.
pub fn feed(
    link: &mut impl Link,
    format: Format,
    numbers: std::ops::RangeInclusive<u64>,
    start: DateTime<Utc>,
    gap: Duration,
) -> io::Result<Vec<Vec<u8>>> {
    let mut sent = Vec::new();
    for i in numbers {
        let rec = format.record(i, start + chrono::Duration::seconds(i as i64));
        link.send(&rec)?;
        sent.push(rec);
        std::thread::sleep(gap);
    }
    Ok(sent)
}
