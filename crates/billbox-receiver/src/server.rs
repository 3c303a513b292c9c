//! The HTTP side of the reference receiver.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use billbox_config::SecretKey;
use billbox_record::Epoch;
use billbox_wire::{
    decode_packet, encode_ack, verify_signature, verify_transaction_signature, AckValue, Packet,
    ReceivedCdr, Transaction,
};
use hyper::StatusCode;
use tokio::sync::watch;

use crate::http::{self, Control, PacketRequest, Packets};
use crate::ledger::Ledger;
use crate::transactions::{self, transaction_files, Appender};

/// How the receiver runs.
#[derive(Debug, Clone)]
pub struct ReceiverOptions {
    pub listen: String,
    pub out: PathBuf,
    /// fsync record files before acknowledging (what a billing server must do).
    pub durable: bool,
}

/// How the receiver protects itself: TLS, client certificates, signatures.
/// `Debug` never shows the key.
#[derive(Debug, Clone, Default)]
pub struct ReceiverSecurity {
    /// Verify every packet's `X-Billbox-Signature` (and the `SIGNATURE` of
    /// `ADD_REC` packets signed by billbox) with this key; a packet that
    /// does not match is refused with an ERROR ack (403).
    pub secret_key: Option<SecretKey>,
    /// Serve HTTPS instead of HTTP.
    pub tls: Option<ReceiverTls>,
}

/// The receiver's TLS files (PEM).
#[derive(Debug, Clone)]
pub struct ReceiverTls {
    /// The server's certificate chain, its own certificate first.
    pub cert: PathBuf,
    /// The private key of `cert`.
    pub key: PathBuf,
    /// Require a client certificate signed by one of these authorities
    /// (mutual TLS). `None`: no client certificate is asked for.
    pub client_ca: Option<PathBuf>,
}

/// The ERROR_CODE of an ack refusing a packet whose signature does not match.
pub const SIGNATURE_ERROR_CODE: i64 = 4;

struct PortFiles {
    records: File,
    ids: File,
}

struct State {
    out: PathBuf,
    durable: bool,
    ledger: Ledger,
    files: HashMap<(String, String), PortFiles>,
    /// AG transactions per (USG_ID, PROPERTY_ID): a ledger of their own, so
    /// a gateway named like a USG_ID is not mistaken for it.
    tx_ledger: Ledger,
    /// `tx_ledger`'s (records, duplicates) once loaded at start.
    tx_loaded: (u64, u64),
    /// Open transaction files, by their `.txt` path.
    tx_files: HashMap<PathBuf, Appender>,
    /// `.txt` paths whose last append failed: repaired before the next one.
    tx_repair: HashSet<PathBuf>,
}

/// A (gateway, port) and its missing sequence ranges.
pub type PortGaps = ((String, String), Vec<(u64, u64)>);

/// A (USG_ID, PROPERTY_ID) and its missing `REC_NUM` ranges.
pub type PropertyGaps = ((String, String), Vec<(u64, u64)>);

/// A running receiver.
///
/// It serves on a thread of its own until [`Running::stop`], or until it is
/// dropped (which stops it at once).
pub struct Running {
    pub addr: SocketAddr,
    control: watch::Sender<Control>,
    done: watch::Receiver<bool>,
    state: Arc<Mutex<State>>,
}

impl Running {
    /// Stops answering and returns once every connection is closed. With
    /// `graceful`, requests in progress are answered first (for at most 30
    /// s) and idle connections close; without, every connection is closed
    /// at once, as when a server goes down. A second call waits for the
    /// first (and may turn a graceful stop into an immediate one).
    pub async fn stop(&self, graceful: bool) {
        let asked = if graceful {
            Control::StopGraceful
        } else {
            Control::StopNow
        };
        self.control.send_if_modified(|now| {
            let change = *now == Control::Serve || asked == Control::StopNow;
            if change {
                *now = asked;
            }
            change
        });
        let mut done = self.done.clone();
        // An error: the server's thread is gone, so it is stopped too.
        let _ = done.wait_for(|done| *done).await;
    }

    /// Records held and duplicates dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        let s = self.state.lock().expect("receiver state poisoned");
        (s.ledger.records(), s.ledger.duplicates())
    }

    /// Missing sequences per (gateway, port).
    pub fn gaps(&self) -> Vec<PortGaps> {
        let s = self.state.lock().expect("receiver state poisoned");
        s.ledger
            .ports()
            .into_iter()
            .map(|(g, p)| {
                let gaps = s.ledger.gaps(&g, &p);
                ((g, p), gaps)
            })
            .collect()
    }

    /// AG transactions filed and duplicates dropped since this receiver
    /// started (the transactions it found in `OUT` at start are not
    /// counted).
    pub fn transaction_counts(&self) -> (u64, u64) {
        let s = self.state.lock().expect("receiver state poisoned");
        (
            s.tx_ledger.records().saturating_sub(s.tx_loaded.0),
            s.tx_ledger.duplicates().saturating_sub(s.tx_loaded.1),
        )
    }

    /// Missing `REC_NUM`s (between 1 and the highest held) per
    /// (USG_ID, PROPERTY_ID), the transactions found in `OUT` at start
    /// included.
    pub fn transaction_gaps(&self) -> Vec<PropertyGaps> {
        let s = self.state.lock().expect("receiver state poisoned");
        s.tx_ledger
            .ports()
            .into_iter()
            .map(|(u, p)| {
                let gaps = s.tx_ledger.gaps(&u, &p);
                ((u, p), gaps)
            })
            .collect()
    }
}

/// Starts the receiver on a thread of its own (plain HTTP, no signatures
/// checked).
pub fn serve(opts: ReceiverOptions) -> std::io::Result<Running> {
    serve_secure(opts, ReceiverSecurity::default())
}

/// Builds the rustls server configuration from the PEM files of `tls`.
/// Errors name the file and the problem.
pub fn tls_server_config(tls: &ReceiverTls) -> std::io::Result<rustls::ServerConfig> {
    let invalid = |(key, why): (&str, String)| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--{key}: {why}"))
    };
    let file = |e: billbox_config::TlsFileError| invalid((e.key(), e.to_string()));
    let chain = billbox_config::read_certificates("tls-cert", &tls.cert).map_err(file)?;
    let key = billbox_config::read_private_key("tls-key", &tls.key).map_err(file)?;
    let provider = billbox_config::crypto_provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(("tls-cert", e.to_string())))?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let roots = billbox_config::read_roots("client-ca", ca).map_err(file)?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| invalid(("client-ca", e.to_string())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(chain, key)
        .map_err(|e| invalid(("tls-key", format!("does not fit --tls-cert: {e}"))))
}

/// Starts the receiver on a thread of its own, with `security`.
pub fn serve_secure(opts: ReceiverOptions, security: ReceiverSecurity) -> std::io::Result<Running> {
    let tls = security.tls.as_ref().map(tls_server_config).transpose()?;
    std::fs::create_dir_all(&opts.out)?;
    let ledger = load_ledger(&opts.out)?;
    let tx_ledger = transactions::load(&opts.out, opts.durable)?;
    tracing::info!(
        out = %opts.out.display(),
        records = ledger.records(),
        transactions = tx_ledger.records(),
        "The receiver loaded the records it already holds."
    );
    let state = Arc::new(Mutex::new(State {
        out: opts.out.clone(),
        durable: opts.durable,
        ledger,
        files: HashMap::new(),
        tx_loaded: (tx_ledger.records(), tx_ledger.duplicates()),
        tx_ledger,
        tx_files: HashMap::new(),
        tx_repair: HashSet::new(),
    }));
    let packets = Arc::new(Receiver {
        state: state.clone(),
        key: security.secret_key.clone(),
    });
    let served = http::start(&opts.listen, tls, packets)?;
    tracing::info!(
        listen = %served.addr,
        tls = security.tls.is_some(),
        client_certificates = security.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        signatures = security.secret_key.is_some(),
        "The receiver is listening for billing packets."
    );
    Ok(Running {
        addr: served.addr,
        control: served.control,
        done: served.done,
        state,
    })
}

/// What answers packets: the filing state and the key packets must be
/// signed with, if any.
struct Receiver {
    state: Arc<Mutex<State>>,
    key: Option<SecretKey>,
}

/// An ack and its HTTP status.
fn ack(status: StatusCode, ok: bool, ip: std::net::IpAddr, code: i64) -> (StatusCode, Vec<u8>) {
    let value = if ok { AckValue::Ok } else { AckValue::Error };
    (status, encode_ack(value, &ip.to_string(), code))
}

impl Packets for Receiver {
    fn refuse_body(&self, ip: std::net::IpAddr, too_large: bool) -> (StatusCode, Vec<u8>) {
        if too_large {
            tracing::warn!(
                limit = billbox_wire::MAX_PACKET_BYTES,
                "A packet is larger than a packet may be; answering ERROR (413)."
            );
            ack(StatusCode::PAYLOAD_TOO_LARGE, false, ip, 2)
        } else {
            tracing::debug!("A packet's body could not be read to its end.");
            ack(StatusCode::BAD_REQUEST, false, ip, 2)
        }
    }

    fn answer(&self, req: PacketRequest<'_>) -> (StatusCode, Vec<u8>) {
        let ip = req.local_ip;
        if !req.post {
            return ack(StatusCode::METHOD_NOT_ALLOWED, false, ip, 3);
        }
        let body = req.body;
        let refuse_signature = |reason: &dyn std::fmt::Display| {
            tracing::warn!(
                peer = %req.peer,
                reason = %reason,
                bytes = body.len(),
                "A packet's signature does not match; answering ERROR (403) so billbox retries."
            );
            ack(StatusCode::FORBIDDEN, false, ip, SIGNATURE_ERROR_CODE)
        };
        if let Some(key) = &self.key {
            if let Err(e) = verify_signature(key.expose(), body, req.signature) {
                return refuse_signature(&e);
            }
        }
        let packet = match decode_packet(body) {
            Ok(p) => p,
            Err(e) => {
                // The full error may quote the packet's contents: DEBUG only.
                tracing::debug!(error = %e, "The packet that could not be decoded.");
                tracing::warn!(error = %e.without_contents(), bytes = body.len(), "A packet could not be decoded; answering ERROR.");
                return ack(StatusCode::BAD_REQUEST, false, ip, 2);
            }
        };
        if let (Some(key), Packet::Transaction(_)) = (&self.key, &packet) {
            if let Err(e) = verify_transaction_signature(key.expose(), body) {
                return refuse_signature(&format!("SIGNATURE element: {e}"));
            }
        }
        let mut state = self.state.lock().expect("receiver state poisoned");
        let result = match &packet {
            Packet::Cdrs(cdrs) => state.file_cdrs(cdrs),
            Packet::Transaction(tx) => state.file_transaction(tx, body),
        };
        match result {
            Ok(()) => ack(StatusCode::OK, true, ip, 1),
            Err(e) => {
                tracing::error!(error = %e, "Filing received records failed; answering ERROR so billbox retries.");
                ack(StatusCode::INTERNAL_SERVER_ERROR, false, ip, 5)
            }
        }
    }
}

/// What one packet adds to one port's files: (gateway, port), records, id lines.
type PortWrites = ((String, String), Vec<u8>, Vec<u8>);

impl State {
    fn file_cdrs(&mut self, cdrs: &[ReceivedCdr]) -> std::io::Result<()> {
        // One write per file per packet: the records and id lines of each
        // port are gathered first.
        let mut out: Vec<PortWrites> = Vec::new();
        // Held only once written: a write that fails leaves them new, so
        // billbox's retry files them (never acknowledged as duplicates).
        let mut new: Vec<&ReceivedCdr> = Vec::new();
        let mut in_packet: std::collections::HashSet<(&str, &str, u64, u64)> = Default::default();
        let mut highest_now: HashMap<(&str, &str), u64> = HashMap::new();
        for cdr in cdrs {
            let key = (cdr.gateway.as_str(), cdr.port.as_str());
            let epoch = cdr.epoch.get();
            if !in_packet.insert((key.0, key.1, epoch, cdr.seq))
                || self
                    .ledger
                    .holds_in(&cdr.gateway, &cdr.port, epoch, cdr.seq)
            {
                // Counted as a duplicate; nothing changes in the ledger.
                self.ledger
                    .accept_in(&cdr.gateway, &cdr.port, epoch, cdr.seq);
                tracing::debug!(rec_id = %cdr.rec_id, "A duplicate record was dropped.");
                continue;
            }
            if self.ledger.holds_sequence(&cdr.gateway, &cdr.port, cdr.seq) {
                tracing::warn!(
                    rec_id = %cdr.rec_id,
                    "A new record reuses a sequence held under another epoch: the gateway's store was put back from a backup. It is filed as new."
                );
            }
            let highest = *highest_now
                .entry(key)
                .or_insert_with(|| self.ledger.highest(&cdr.gateway, &cdr.port).unwrap_or(0));
            highest_now.insert(key, highest.max(cdr.seq));
            new.push(cdr);
            if cdr.seq > highest + 1 {
                tracing::warn!(
                    gateway = %cdr.gateway,
                    port = %cdr.port,
                    from = highest + 1,
                    to = cdr.seq - 1,
                    "Records are missing before this one (a gap, so far)."
                );
            }
            let i = match out
                .iter()
                .position(|(k, _, _)| k.0 == cdr.gateway && k.1 == cdr.port)
            {
                Some(i) => i,
                None => {
                    out.push((
                        (cdr.gateway.clone(), cdr.port.clone()),
                        Vec::new(),
                        Vec::new(),
                    ));
                    out.len() - 1
                }
            };
            let (_, records, ids) = &mut out[i];
            records.extend_from_slice(&cdr.data);
            writeln!(
                ids,
                "{}\t{}\t{}\t{}\t{}",
                cdr.seq,
                cdr.received,
                if cdr.truncated { "truncated" } else { "-" },
                cdr.data.len(),
                if cdr.epoch.is_none() {
                    "-".to_string()
                } else {
                    cdr.epoch.to_string()
                }
            )?;
        }
        for (key, records, ids) in out {
            let files = match self.files.get_mut(&key) {
                Some(f) => f,
                None => {
                    let f = open_port_files(&self.out, &key.0, &key.1)?;
                    self.files.entry(key.clone()).or_insert(f)
                }
            };
            files.records.write_all(&records)?;
            files.ids.write_all(&ids)?;
            if self.durable {
                files.records.sync_data()?;
                files.ids.sync_data()?;
            }
        }
        for cdr in new {
            self.ledger
                .accept_in(&cdr.gateway, &cdr.port, cdr.epoch.get(), cdr.seq);
        }
        Ok(())
    }

    /// Files a new AG transaction: its packet (`packet`, byte for byte) to
    /// the `.packets` file and its line to the `.txt` file of its USG_ID
    /// and PROPERTY_ID; drops a REC_NUM already filed for them.
    fn file_transaction(&mut self, tx: &Transaction, packet: &[u8]) -> std::io::Result<()> {
        let (usg_id, property_id) = (tx.usg_id.as_str(), tx.property_id.as_str());
        let rec_num = u64::from(tx.rec_num);
        if self.tx_ledger.holds(usg_id, property_id, rec_num) {
            self.tx_ledger.accept(usg_id, property_id, rec_num);
            tracing::debug!(
                %usg_id,
                %property_id,
                rec_num,
                "A duplicate transaction was dropped."
            );
            return Ok(());
        }
        let line = transactions::line(tx)?;
        let frame = transactions::frame(packet);
        let files = transaction_files(&self.out, usg_id, property_id);
        if !self.tx_files.contains_key(&files.txt) && self.tx_repair.contains(&files.txt) {
            // The last append to these files failed: make them whole first.
            let repaired = transactions::repair(&files, self.durable)?;
            self.tx_repair.remove(&files.txt);
            for k in repaired.completed {
                self.tx_ledger.accept(&k.usg_id, &k.property_id, k.rec_num);
            }
            if self.tx_ledger.holds(usg_id, property_id, rec_num) {
                // Its packet was filed before the failure; its line now is.
                return Ok(());
            }
        }
        let appender = match self.tx_files.entry(files.txt.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(transactions::open(&self.out, &files, self.durable)?),
        };
        let highest = self.tx_ledger.highest(usg_id, property_id).unwrap_or(0);
        if let Err(e) = appender.append(&frame, &line, self.durable) {
            self.tx_files.remove(&files.txt);
            self.tx_repair.insert(files.txt);
            return Err(e);
        }
        self.tx_ledger.accept(usg_id, property_id, rec_num);
        if rec_num > highest + 1 {
            tracing::warn!(
                %usg_id,
                %property_id,
                from = highest + 1,
                to = rec_num - 1,
                "Transactions are missing before this one (a gap in REC_NUM, so far)."
            );
        }
        Ok(())
    }
}

fn open_port_files(out: &Path, gateway: &str, port: &str) -> std::io::Result<PortFiles> {
    let dir = out.join(safe(gateway));
    std::fs::create_dir_all(&dir)?;
    let open = |name: String| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
    };
    Ok(PortFiles {
        records: open(format!("{}.txt", safe(port)))?,
        ids: open(format!("{}.ids", safe(port)))?,
    })
}

/// Names from packets become file names: keep them to a safe alphabet
/// (never empty, never `.` or `..`).
pub(crate) fn safe(name: &str) -> String {
    let name = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string();
    if name.is_empty() {
        "_".to_string()
    } else {
        name
    }
}

/// Reads `OUT/<gateway>/<port>.ids` back into a ledger.
fn load_ledger(out: &Path) -> std::io::Result<Ledger> {
    let mut ledger = Ledger::default();
    for gw in std::fs::read_dir(out)? {
        let gw = gw?;
        if !gw.file_type()?.is_dir() {
            continue;
        }
        let gateway = gw.file_name().to_string_lossy().into_owned();
        for (port, seq, epoch) in held_ids(&gw.path())? {
            ledger.accept_in(&gateway, &port, epoch.get(), seq);
        }
    }
    Ok(ledger)
}

/// The (port, sequence) of every record filed for one gateway, from its
/// `OUT/<gateway>/<port>.ids` files (one line per record, sequence first).
pub fn held_records(gateway_dir: &Path) -> std::io::Result<Vec<(String, u64)>> {
    Ok(held_ids(gateway_dir)?
        .into_iter()
        .map(|(port, seq, _)| (port, seq))
        .collect())
}

/// The (port, sequence, epoch) of every record filed for one gateway: the
/// sequence is the first column of an `.ids` line, the epoch its fifth
/// (`-`, or absent in files written before epochs, for none).
pub fn held_ids(gateway_dir: &Path) -> std::io::Result<Vec<(String, u64, Epoch)>> {
    let mut out = Vec::new();
    for f in std::fs::read_dir(gateway_dir)? {
        let f = f?;
        let path = f.path();
        // `OUT/transactions` holds directories (one per USG_ID), whatever
        // their names.
        if !f.file_type()?.is_file() || path.extension().is_none_or(|e| e != "ids") {
            continue;
        }
        let port = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for line in BufReader::new(File::open(&path)?).lines() {
            let line = line?;
            let mut columns = line.split('\t');
            if let Some(seq) = columns.next().and_then(|s| s.parse().ok()) {
                let epoch = columns
                    .nth(3)
                    .and_then(Epoch::parse_hex)
                    .unwrap_or(Epoch::NONE);
                out.push((port.clone(), seq, epoch));
            }
        }
    }
    Ok(out)
}
