//! Billing servers for tests: real HTTP on 127.0.0.1 that answer like a
//! billing server would, including slowly, wrongly, or not at all, and
//! that can go down (connections refused) and come back on the same port.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::server::{Answer, HttpServer, Options, Served};

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
    /// 200 with an OK ack and `Connection: close`, then the connection
    /// closes (one request per connection).
    AckClose,
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
        matches!(self.mode, Mode::Ack | Mode::Delay(_) | Mode::AckClose)
    }
}

/// A shared request log, so the order across servers is visible.
pub type Log = Arc<Mutex<Vec<Request>>>;

pub const ACK_OK: &str = "<USG COMMAND=\"RMTLOG_ACK\"><ACK_VALUE>OK</ACK_VALUE><IP_ADDR>127.0.0.1</IP_ADDR><ERROR_CODE>1</ERROR_CODE></USG>";
pub const ACK_ERROR: &str = "<USG COMMAND=\"RMTLOG_ACK\"><ACK_VALUE>ERROR</ACK_VALUE><IP_ADDR>127.0.0.1</IP_ADDR><ERROR_CODE>4</ERROR_CODE></USG>";

/// A site in the middle of an outage: a primary that is down, a secondary
/// that answers, and a carbon-copy server that is down.
pub struct Outage {
    pub primary: BillingServer,
    pub secondary: BillingServer,
    pub mirror: BillingServer,
}

impl Outage {
    pub fn start(log: &Log) -> Outage {
        let mut primary = BillingServer::start("a", log);
        let secondary = BillingServer::start("b", log);
        let mut mirror = BillingServer::start("m", log);
        primary.down();
        mirror.down();
        Outage {
            primary,
            secondary,
            mirror,
        }
    }

    /// The `[delivery]` (fail-over, one attempt per server, no fail-back)
    /// and `[[carbon_copy]]` (`audit`) sections for these servers.
    pub fn toml(&self) -> String {
        format!(
            "[delivery]\nprimary = \"{}\"\nsecondary = \"{}\"\nattempts = 1\nretry_delay = \"100ms\"\n\
             failback_after = \"1h\"\n\
             [[carbon_copy]]\nname = \"audit\"\nurl = \"{}\"\n",
            self.primary.url(),
            self.secondary.url(),
            self.mirror.url()
        )
    }
}

/// A billing server in one of the [`Mode`]s, logging every request it
/// answers into a [`Log`] shared with other servers.
pub struct BillingServer {
    pub name: &'static str,
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    /// Sequences whose next packet is refused once (an ERROR ack).
    refuse: Arc<Mutex<Vec<u64>>>,
    log: Log,
    server: HttpServer,
    /// While down: the address, bound but not listening, so connections are
    /// refused and no other server of a test running beside takes the port
    /// (it would then get this test's billbox's packets).
    held: Option<socket2::Socket>,
}

impl BillingServer {
    pub fn start(name: &'static str, log: &Log) -> BillingServer {
        let mode = Arc::new(Mutex::new(Mode::Ack));
        let refuse = Arc::new(Mutex::new(Vec::new()));
        let handler = {
            let (mode, log, refuse) = (mode.clone(), log.clone(), refuse.clone());
            Arc::new(move |r: &Served| answer(r, name, &mode, &refuse, &log))
        };
        let server = HttpServer::start(handler);
        BillingServer {
            name,
            addr: server.addr(),
            mode,
            refuse,
            log: log.clone(),
            server,
            held: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/billing", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// The next packet holding record `seq` is refused (an ERROR ack),
    /// once; the server's mode answers the rest.
    pub fn refuse_once(&self, seq: u64) {
        self.refuse.lock().unwrap().push(seq);
    }

    /// Stops listening: connections are refused.
    pub fn down(&mut self) {
        self.server.pause();
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
        self.server.resume(TcpListener::from(held));
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

/// The records of a packet: (port, seq) of CDRs, or the transaction's
/// ("USG_ID/PROPERTY_ID", REC_NUM); nothing for what does not decode.
pub fn records_of(body: &[u8]) -> Vec<(String, u64)> {
    match billbox_wire::decode_packet(body) {
        Ok(billbox_wire::Packet::Cdrs(cdrs)) => cdrs.into_iter().map(|c| (c.port, c.seq)).collect(),
        Ok(billbox_wire::Packet::Transaction(t)) => vec![(
            format!("{}/{}", t.usg_id, t.property_id),
            u64::from(t.rec_num),
        )],
        _ => Vec::new(),
    }
}

fn answer(
    r: &Served,
    name: &'static str,
    mode: &Mutex<Mode>,
    refuse: &Mutex<Vec<u64>>,
    log: &Log,
) -> Answer {
    let records = records_of(&r.body);
    let mut m = *mode.lock().unwrap();
    {
        let mut refuse = refuse.lock().unwrap();
        if let Some(i) = refuse
            .iter()
            .position(|s| records.iter().any(|(_, seq)| seq == s))
        {
            refuse.remove(i);
            m = Mode::AckError;
        }
    }
    log.lock().unwrap().push(Request {
        server: name,
        at: Instant::now(),
        records,
        mode: m,
        body: r.body.clone(),
    });
    let ok = |body: &str| Answer::Reply {
        status: 200,
        body: body.as_bytes().to_vec(),
    };
    match m {
        Mode::Ack => ok(ACK_OK),
        Mode::AckClose => Answer::ReplyAndClose {
            status: 200,
            body: ACK_OK.as_bytes().to_vec(),
        },
        Mode::Delay(ms) => {
            std::thread::sleep(Duration::from_millis(ms));
            ok(ACK_OK)
        }
        Mode::Status(status) => Answer::Reply {
            status,
            body: ACK_OK.as_bytes().to_vec(),
        },
        Mode::AckError => ok(ACK_ERROR),
        Mode::Garbage => ok("this is not an ack \u{1}\u{2}<<<"),
        Mode::Body(b) => ok(b),
        Mode::Huge(n) => {
            let mut body = String::from("<USG COMMAND=\"RMTLOG_ACK\"><ACK_VALUE>OK</ACK_VALUE><X>");
            body.push_str(&"A".repeat(n));
            body.push_str("</X><ERROR_CODE>1</ERROR_CODE></USG>");
            ok(&body)
        }
        Mode::Empty => ok(""),
        // Never answer; give up after a bounded time.
        Mode::Hang => Answer::Hang(Duration::from_secs(30)),
        Mode::Reset => {
            Answer::Reset(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n<USG".to_vec())
        }
        Mode::Slow => Answer::Trickle {
            bytes: crate::server::reply(200, ACK_OK.as_bytes())
                .into_iter()
                .take(60)
                .collect(),
            every: Duration::from_secs(1),
        },
    }
}

/// A server on a port chosen by the caller (a peer's config names it
/// before the server starts), answering through `handler`; see
/// [`HttpServer::bind`].
pub fn serve_on(
    addr: SocketAddr,
    options: Options,
    handler: impl Fn(&Served) -> Answer + Send + Sync + 'static,
) -> HttpServer {
    HttpServer::bind(addr, options, Arc::new(handler))
}
