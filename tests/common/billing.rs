//! Billing servers for tests: real HTTP on 127.0.0.1 that answer like a
//! billing server would, including slowly, wrongly, or not at all.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 with an OK ack.
    Ack,
    /// The given HTTP status with an OK ack body.
    Status(u16),
    /// 200 with ACK_VALUE ERROR.
    AckError,
    /// 200 with a body that is not XML.
    Garbage,
    /// 200 with an empty body.
    Empty,
    /// Reads the request and never answers.
    Hang,
    /// Starts the answer, then resets the connection.
    Reset,
    /// Answers one byte per second.
    Slow,
    /// Acknowledges after this many milliseconds.
    Delay(u64),
    /// 200 with this body (hostile or malformed answers).
    Body(&'static str),
    /// 200 with a body of this many bytes of XML-ish filler.
    Huge(usize),
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub server: &'static str,
    pub at: Instant,
    /// (port, seq) of every record in the packet; for an AG transaction
    /// (`ADD_REC`), ("USG_ID/PROPERTY_ID", REC_NUM).
    pub records: Vec<(String, u64)>,
    pub mode: Mode,
    /// The request body as received.
    pub body: Vec<u8>,
}

impl Request {
    pub fn acked(&self) -> bool {
        matches!(self.mode, Mode::Ack | Mode::Delay(_))
    }
}

/// A shared request log, so the order across servers is visible.
pub type Log = Arc<Mutex<Vec<Request>>>;

pub struct BillingServer {
    pub name: &'static str,
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    log: Log,
    up: Arc<AtomicBool>,
    listener: Option<std::thread::JoinHandle<()>>,
    /// While down: the address, bound but not listening, so connections are
    /// refused and no other server of a test running beside takes the port
    /// (it would then get this test's billbox's packets).
    held: Option<socket2::Socket>,
}

impl BillingServer {
    pub fn start(name: &'static str, log: &Log) -> BillingServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut s = BillingServer {
            name,
            addr,
            mode: Arc::new(Mutex::new(Mode::Ack)),
            log: log.clone(),
            up: Arc::new(AtomicBool::new(false)),
            listener: None,
            held: None,
        };
        s.serve(listener);
        s
    }

    pub fn url(&self) -> String {
        format!("http://{}/billing", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Stops listening: connections are refused.
    pub fn down(&mut self) {
        self.up.store(false, Ordering::SeqCst);
        // Wake the accept loop so it drops the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(h) = self.listener.take() {
            h.join().unwrap();
        }
        // A child process another test is spawning may still share the
        // listener for a moment (between fork and exec): retry briefly.
        let mut tries = 0;
        let held = loop {
            let held =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            held.set_reuse_address(true).unwrap();
            match held.bind(&self.addr.into()) {
                Ok(()) => break held,
                Err(_) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("{} could not keep {}: {e}", self.name, self.addr),
            }
        };
        self.held = Some(held);
    }

    /// Listens again on the same address.
    pub fn up(&mut self) {
        let held = self.held.take().expect("up() after down()");
        held.listen(128).unwrap();
        self.serve(TcpListener::from(held));
    }

    fn serve(&mut self, listener: TcpListener) {
        self.up.store(true, Ordering::SeqCst);
        let (mode, log, up, name) = (
            self.mode.clone(),
            self.log.clone(),
            self.up.clone(),
            self.name,
        );
        self.listener = Some(std::thread::spawn(move || {
            for conn in listener.incoming() {
                if !up.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (mode, log, up) = (mode.clone(), log.clone(), up.clone());
                std::thread::spawn(move || handle(conn, name, &mode, &log, &up));
            }
        }));
    }

    /// Every (port, seq) this server acknowledged, in order.
    pub fn acked(&self) -> Vec<(String, u64)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.server == self.name && r.acked())
            .flat_map(|r| r.records.clone())
            .collect()
    }

    /// Every request this server saw.
    pub fn requests(&self) -> Vec<Request> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.server == self.name)
            .cloned()
            .collect()
    }
}

impl Drop for BillingServer {
    fn drop(&mut self) {
        self.up.store(false, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

const ACK_OK: &str = "<USG COMMAND=\"RMTLOG_ACK\"><ACK_VALUE>OK</ACK_VALUE><IP_ADDR>127.0.0.1</IP_ADDR><ERROR_CODE>1</ERROR_CODE></USG>";
const ACK_ERROR: &str = "<USG COMMAND=\"RMTLOG_ACK\"><ACK_VALUE>ERROR</ACK_VALUE><IP_ADDR>127.0.0.1</IP_ADDR><ERROR_CODE>4</ERROR_CODE></USG>";

fn handle(conn: TcpStream, name: &'static str, mode: &Mutex<Mode>, log: &Log, up: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        // Request head.
        let mut length = 0usize;
        let mut first = true;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if first && line.trim().is_empty() {
                continue;
            }
            first = false;
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if !up.load(Ordering::SeqCst) {
            return;
        }
        let records = match billbox_wire::decode_packet(&body) {
            Ok(billbox_wire::Packet::Cdrs(cdrs)) => {
                cdrs.into_iter().map(|c| (c.port, c.seq)).collect()
            }
            Ok(billbox_wire::Packet::Transaction(t)) => vec![(
                format!("{}/{}", t.usg_id, t.property_id),
                u64::from(t.rec_num),
            )],
            _ => Vec::new(),
        };
        let m = *mode.lock().unwrap();
        log.lock().unwrap().push(Request {
            server: name,
            at: Instant::now(),
            records,
            mode: m,
            body: body.clone(),
        });
        let reply = |status: u16, body: &str| {
            format!(
                "HTTP/1.1 {status} X\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let answer = match m {
            Mode::Ack => reply(200, ACK_OK),
            Mode::Delay(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                reply(200, ACK_OK)
            }
            Mode::Status(s) => reply(s, ACK_OK),
            Mode::AckError => reply(200, ACK_ERROR),
            Mode::Garbage => reply(200, "this is not an ack \u{1}\u{2}<<<"),
            Mode::Body(b) => reply(200, b),
            Mode::Huge(n) => {
                let mut body =
                    String::from("<USG COMMAND=\"RMTLOG_ACK\"><ACK_VALUE>OK</ACK_VALUE><X>");
                body.push_str(&"A".repeat(n));
                body.push_str("</X><ERROR_CODE>1</ERROR_CODE></USG>");
                reply(200, &body)
            }
            Mode::Empty => reply(200, ""),
            Mode::Hang => {
                // Never answer; give up after a bounded time.
                std::thread::sleep(Duration::from_secs(30));
                return;
            }
            Mode::Reset => {
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n<USG");
                let _ = socket_reset(&conn);
                drop(reader);
                return;
            }
            Mode::Slow => {
                for b in reply(200, ACK_OK).bytes().take(60) {
                    if conn.write_all(&[b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
                return;
            }
        };
        if conn.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Makes the coming close send RST instead of FIN (SO_LINGER 0).
fn socket_reset(conn: &TcpStream) -> nix::Result<()> {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(conn, nix::sys::socket::sockopt::Linger, &linger)
}
