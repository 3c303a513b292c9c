//! The HTTP/1.1 server under the test billing servers: real sockets on
//! 127.0.0.1, keep-alive, `Content-Length` bodies, `TCP_NODELAY`, one
//! thread a connection, and a handler that says how to answer each request
//! (a reply, or one of the ways a billing server fails).
//!
//! Every wait in here is bounded: connections read with a short timeout
//! and look at the server's flags in between, so stopping the server ends
//! them within a fraction of a second.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a connection thread looks at the server's flags.
const TICK: Duration = Duration::from_millis(100);

/// One request as the server read it.
pub struct Served {
    pub method: String,
    pub path: String,
    /// The request line and headers, as sent.
    pub head: String,
    pub body: Vec<u8>,
    closing: Arc<AtomicBool>,
}

impl Served {
    /// Whether the server is being stopped (a handler that waits should
    /// give up).
    pub fn stopping(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }
}

/// How to answer a request.
pub enum Answer {
    /// This status with this body (`Content-Type: text/xml`).
    Reply { status: u16, body: Vec<u8> },
    /// No answer; the connection closes after this long (or when the server
    /// stops).
    Hang(Duration),
    /// Writes these bytes, then resets the connection (RST, not FIN).
    Reset(Vec<u8>),
    /// Writes these bytes one at a time, one every `every`, then closes.
    Trickle { bytes: Vec<u8>, every: Duration },
    /// Closes the connection without answering.
    Close,
    /// This status with this body and `Connection: close`, then closes
    /// (a server that takes one request per connection).
    ReplyAndClose { status: u16, body: Vec<u8> },
}

pub type Handler = Arc<dyn Fn(&Served) -> Answer + Send + Sync>;

/// Socket and connection settings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `SO_RCVBUF` of the listener (and so of its connections): a small one
    /// keeps what a slow server has not read in the sender.
    pub rcvbuf: Option<usize>,
    /// A connection idle this long is closed by the server.
    pub idle_timeout: Option<Duration>,
    /// The read buffer of a connection.
    pub read_buffer: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            rcvbuf: None,
            idle_timeout: Some(Duration::from_secs(30)),
            read_buffer: 64 * 1024,
        }
    }
}

/// A running server. Dropping it stops it: no more connections, the open
/// ones closed, every thread joined.
pub struct HttpServer {
    addr: SocketAddr,
    options: Options,
    handler: Handler,
    /// Requests are answered (off while paused: read, then the connection
    /// is closed without an answer).
    serving: Arc<AtomicBool>,
    /// Set once, when the server stops for good.
    closing: Arc<AtomicBool>,
    acceptor: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Binds `addr` (127.0.0.1 with a port someone chose), trying again for up
/// to `limit` while the port is still taken (a server of a moment ago, or
/// a connection in TIME_WAIT).
pub fn listen_retrying(addr: SocketAddr, limit: Duration) -> io::Result<TcpListener> {
    let deadline = Instant::now() + limit;
    loop {
        match TcpListener::bind(addr) {
            Ok(l) => return Ok(l),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

impl HttpServer {
    /// Serves on 127.0.0.1, a free port.
    pub fn start(handler: Handler) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
        HttpServer::serve(listener, Options::default(), handler)
    }

    /// Serves on `addr` (see [`listen_retrying`]); panics when the port
    /// stays taken for 4 s.
    pub fn bind(addr: SocketAddr, options: Options, handler: Handler) -> HttpServer {
        let listener = listen_retrying(addr, Duration::from_secs(4))
            .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
        HttpServer::serve(listener, options, handler)
    }

    /// Serves on a listener already bound and listening.
    pub fn serve(listener: TcpListener, options: Options, handler: Handler) -> HttpServer {
        let mut s = HttpServer {
            addr: listener.local_addr().expect("a bound listener"),
            options,
            handler,
            serving: Arc::new(AtomicBool::new(false)),
            closing: Arc::new(AtomicBool::new(false)),
            acceptor: None,
            conns: Arc::default(),
        };
        s.resume(listener);
        s
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and answering: the listener is closed (so the caller
    /// may hold the address), requests on open connections are read and
    /// left unanswered.
    pub fn pause(&mut self) {
        self.serving.store(false, Ordering::SeqCst);
        if let Some((accepting, acceptor)) = self.acceptor.take() {
            accepting.store(false, Ordering::SeqCst);
            // Wake the accept loop so it drops the listener (again, should
            // a wake-up connection not get through).
            for i in 0..200 {
                if acceptor.is_finished() {
                    break;
                }
                if i % 20 == 0 {
                    let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = acceptor.join();
        }
    }

    /// Accepts and answers again, on `listener`.
    pub fn resume(&mut self, listener: TcpListener) {
        if let Some(size) = self.options.rcvbuf {
            socket2::SockRef::from(&listener)
                .set_recv_buffer_size(size)
                .expect("SO_RCVBUF");
        }
        self.serving.store(true, Ordering::SeqCst);
        let accepting = Arc::new(AtomicBool::new(true));
        let (flag, conns) = (accepting.clone(), self.conns.clone());
        let (serving, closing) = (self.serving.clone(), self.closing.clone());
        let (handler, options) = (self.handler.clone(), self.options);
        let acceptor = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if !flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (serving, closing, handler) =
                    (serving.clone(), closing.clone(), handler.clone());
                let thread = std::thread::spawn(move || {
                    let _ = connection(conn, &options, &serving, &closing, &*handler);
                });
                let mut conns = conns.lock().unwrap();
                conns.retain(|t| !t.is_finished());
                conns.push(thread);
            }
        });
        self.acceptor = Some((accepting, acceptor));
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        self.pause();
        let conns = std::mem::take(&mut *self.conns.lock().unwrap());
        for c in conns {
            let _ = c.join();
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Waits for the rest of a line ("\n" included) across read timeouts;
/// false at the end of the connection, when the server stops, or after
/// `idle` without a byte.
fn read_line(
    r: &mut BufReader<TcpStream>,
    line: &mut Vec<u8>,
    closing: &AtomicBool,
    idle: Option<Duration>,
) -> bool {
    let mut since = Instant::now();
    loop {
        let before = line.len();
        match r.read_until(b'\n', line) {
            Ok(_) => return line.ends_with(b"\n"),
            Err(e) if is_timeout(&e) && !closing.load(Ordering::Relaxed) => {
                if line.len() > before {
                    since = Instant::now();
                }
                if idle.is_some_and(|i| since.elapsed() >= i) {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

fn read_full(
    r: &mut BufReader<TcpStream>,
    buf: &mut [u8],
    closing: &AtomicBool,
    idle: Option<Duration>,
) -> bool {
    let mut at = 0;
    let mut since = Instant::now();
    while at < buf.len() {
        match r.read(&mut buf[at..]) {
            Ok(0) => return false,
            Ok(n) => {
                at += n;
                since = Instant::now();
            }
            Err(e) if is_timeout(&e) && !closing.load(Ordering::Relaxed) => {
                if idle.is_some_and(|i| since.elapsed() >= i) {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// The bytes of a reply with a `text/xml` body.
pub fn reply(status: u16, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Sleeps `d` in ticks, ending early when the server stops.
fn pause_for(d: Duration, closing: &AtomicBool) {
    let deadline = Instant::now() + d;
    while !closing.load(Ordering::Relaxed) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(TICK));
    }
}

fn connection(
    conn: TcpStream,
    options: &Options,
    serving: &AtomicBool,
    closing: &Arc<AtomicBool>,
    handler: &(dyn Fn(&Served) -> Answer + Send + Sync),
) -> io::Result<()> {
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(TICK))?;
    let mut out = conn.try_clone()?;
    let mut r = BufReader::with_capacity(options.read_buffer, conn);
    let mut line = Vec::new();
    loop {
        // The request line (blank lines before it are skipped) and headers.
        let mut head = String::new();
        let mut length = 0usize;
        loop {
            line.clear();
            if !read_line(&mut r, &mut line, closing, options.idle_timeout) {
                return Ok(());
            }
            if line == b"\r\n" || line == b"\n" {
                if head.is_empty() {
                    continue;
                }
                break;
            }
            let text = String::from_utf8_lossy(&line);
            if let Some((k, v)) = text.split_once(':') {
                if !head.is_empty() && k.trim().eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            head.push_str(&text);
        }
        let mut body = vec![0u8; length];
        if !read_full(&mut r, &mut body, closing, options.idle_timeout) {
            return Ok(());
        }
        if !serving.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut words = head.split_whitespace();
        let served = Served {
            method: words.next().unwrap_or_default().to_string(),
            path: words.next().unwrap_or_default().to_string(),
            head: head.trim_end().to_string(),
            body,
            closing: closing.clone(),
        };
        match handler(&served) {
            Answer::Reply { status, body } => out.write_all(&reply(status, &body))?,
            Answer::Hang(d) => {
                pause_for(d, closing);
                return Ok(());
            }
            Answer::Reset(bytes) => {
                let _ = out.write_all(&bytes);
                // SO_LINGER 0: the close sends RST instead of FIN.
                socket2::SockRef::from(&out).set_linger(Some(Duration::ZERO))?;
                return Ok(());
            }
            Answer::Trickle { bytes, every } => {
                for b in bytes {
                    out.write_all(&[b])?;
                    pause_for(every, closing);
                    if closing.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                }
                return Ok(());
            }
            Answer::Close => return Ok(()),
            Answer::ReplyAndClose { status, body } => {
                let mut bytes = reply(status, &body);
                let at = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
                bytes.splice(at..at, b"\r\nConnection: close".iter().copied());
                out.write_all(&bytes)?;
                return Ok(());
            }
        }
    }
}
