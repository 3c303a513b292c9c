//! `billbox demo`: the real pipeline fed by simulated PBXes, no hardware.
//!
//! Two serial PBXes on pseudo-terminals (a Panasonic and an NEC, each at its
//! own line settings) and an Avaya IP Office sending SMDR over TCP feed the
//! real actors into a directory of its own. A hotel's hotspot portal submits
//! PMS and card transactions to the submit API, and an AG 5500 relays its
//! `ADD_REC` packets through billbox. The demo then checks every record it
//! sent is in exactly one closed file and reached a billing server, and
//! prints where everything is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use billbox_sim::smdr::Format;
use billbox_sim::tcp::{feed, TcpPbx};
use billbox_sim::{http, PtyPbx};

use crate::cli::DemoArgs;
use crate::story::{Character, Narrator, Teller};

/// Pause between two records of one simulated PBX.
const RECORD_GAP: Duration = Duration::from_millis(8);
/// The IP Office's last calls: sent after the primary is back and
/// `failback_after` has passed, on a new connection, so the story shows
/// the fail-back.
const LATE_CALLS: u64 = 5;
/// `delivery.failback_after` in the demo's config.
const FAILBACK_AFTER: Duration = Duration::from_secs(2);
/// How long the demo waits for the last files to close.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

struct DemoPort {
    name: &'static str,
    alias: &'static str,
    format: Format,
    link: String,
}

/// Runs the demo; `log_to_file`: the log goes to `billbox.log` in the demo
/// directory (no `--log-format` was given), with `filter`.
pub fn main(args: DemoArgs, log_to_file: bool, filter: &str) -> ExitCode {
    match run(args, log_to_file, filter) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("billbox demo failed: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(
    args: DemoArgs,
    log_to_file: bool,
    filter: &str,
) -> Result<bool, Box<dyn std::error::Error>> {
    let dir = match args.dir {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            d
        }
        None => tempfile::Builder::new()
            .prefix("billbox-demo-")
            .tempdir()?
            .keep(),
    };
    let spool = dir.join("spool");
    let data = dir.join("data");
    let log = dir.join("billbox.log");
    if log_to_file {
        crate::logging::init_demo(&log, filter)?;
    }
    let mut panasonic = PtyPbx::open()?;
    let mut nec = PtyPbx::open()?;
    let toml = format!(
        r#"
[gateway]
name = "demo-gw"
data_dir = "{data}"
spool_dir = "{spool}"

[[ports]]
name = "panasonic"
device = "{pana}"
speed = 9600
data_bits = 7
parity = "even"
alias = "PANA-trunk1"
billing_eor = "\r\n"
billing_records = 25
billing_timeout = "2s"

[[ports]]
name = "nec"
device = "{nec}"
speed = 1200
alias = "NEC-sl1100"
billing_eor = "\r\n"
billing_records = 25
billing_timeout = "2s"

[[ports]]
name = "ipoffice"
listen = "127.0.0.1:0"
alias = "IPO-smdr"
billing_eor = "\r\n"
billing_records = 25
billing_timeout = "2s"

[delivery]
method = "failover"
primary = "http://{{PRIMARY}}/billing"
secondary = "http://{{SECONDARY}}/billing"
attempts = 2
retry_delay = "200ms"
request_timeout = "1s"
failback_after = "2s"

[transactions]
listen = "127.0.0.1:0"
property_id = "Hotel-1"
usg_id = "00020b"
alias = "TRANS"
billing_records = 25
billing_timeout = "2s"
"#,
        data = data.display(),
        spool = spool.display(),
        pana = panasonic.path().display(),
        nec = nec.path().display(),
    );
    let mut ports = [
        DemoPort {
            name: "panasonic",
            alias: "PANA-trunk1",
            format: Format::Panasonic,
            link: format!("serial {} 9600 7E1", panasonic.path().display()),
        },
        DemoPort {
            name: "nec",
            alias: "NEC-sl1100",
            format: Format::Nec,
            link: format!("serial {} 1200 8N1", nec.path().display()),
        },
        DemoPort {
            name: "ipoffice",
            alias: "IPO-smdr",
            format: Format::AvayaIpOffice,
            link: String::new(),
        },
    ];
    let n = args.records.max(LATE_CALLS + 1);
    println!(
        "billbox demo: 3 simulated PBXes send {n} records each into {}",
        dir.display()
    );
    if log_to_file {
        println!(
            "The full log (JSON lines) is in {}; --log-format json puts it on stderr.",
            log.display()
        );
    }
    println!();
    let teller = Arc::new(Teller::new());

    let system = actix_rt::System::new();
    let sent = system.block_on(async {
        // Two billing servers: the reference receiver, in this process.
        let receiver = |name: &str, listen: String| {
            billbox_receiver::serve(billbox_receiver::ReceiverOptions {
                listen,
                out: dir.join(name),
                durable: true,
            })
        };
        let primary = receiver("primary", "127.0.0.1:0".into())?;
        let secondary = receiver("secondary", "127.0.0.1:0".into())?;
        let (primary_addr, secondary_addr) = (primary.addr, secondary.addr);
        let toml = toml
            .replace("{PRIMARY}", &primary_addr.to_string())
            .replace("{SECONDARY}", &secondary_addr.to_string());
        std::fs::write(dir.join("billbox.toml"), &toml)?;
        let config = billbox_config::from_toml_str(&toml)?;

        let running = billbox_runtime::start(&config)?;
        let addr = wait_for(Duration::from_secs(10), || running.listen_addr("ipoffice"))
            .await
            .ok_or("the TCP port did not start listening")?;
        ports[2].link = format!("TCP listen {addr}");
        let narrator = Narrator::start(
            teller.clone(),
            vec![
                Character { port: "panasonic".into(), pbx: "a Panasonic on a serial line, 9600 7E1".into() },
                Character { port: "nec".into(), pbx: "an NEC on a serial line, 1200 8N1".into() },
                Character { port: "ipoffice".into(), pbx: "an Avaya IP Office sending SMDR over TCP".into() },
                Character { port: billbox_transactions::SUBMIT_STREAM.into(), pbx: "the hotel's hotspot portal".into() },
                Character { port: billbox_transactions::RELAY_STREAM.into(), pbx: "an AG 5500".into() },
            ],
            (format!("http://{primary_addr}/billing"), format!("http://{secondary_addr}/billing")),
            running.store().clone(),
        );
        let api = running
            .transactions_addr()
            .ok_or("the submit API did not start")?;
        let start = chrono::Utc::now();
        // The serial feeders hand their pty back: a pty closed right after
        // the last write takes unread bytes with it, which a real PBX that
        // stays plugged in never does.
        let feeders = vec![
            std::thread::spawn(move || {
                let sent = feed(&mut panasonic, Format::Panasonic, 1..=n, start, RECORD_GAP);
                (sent, Some(panasonic))
            }),
            std::thread::spawn(move || {
                let sent = feed(&mut nec, Format::Nec, 1..=n, start, RECORD_GAP);
                (sent, Some(nec))
            }),
            std::thread::spawn(move || {
                let sent = TcpPbx::connect(addr).and_then(|mut pbx| {
                    feed(&mut pbx, Format::AvayaIpOffice, 1..=n - LATE_CALLS, start, RECORD_GAP)
                });
                (sent, None)
            }),
        ];
        // The hotel: the portal and the AG send over the whole run, so some
        // of theirs arrive while the primary is down.
        let spread = RECORD_GAP * n as u32;
        let portal = std::thread::spawn(move || hotel_portal(api, spread));
        let ag = std::thread::spawn(move || ag_relay(api, spread));
        // Halfway through, the primary billing server goes away.
        tokio::time::sleep(RECORD_GAP * (n / 2) as u32).await;
        teller.say(&format!(
            "The primary billing server (http://{primary_addr}/billing) stops, mid-run, as planned."
        ));
        primary.stop(false).await;
        // Join the feeders off the event loop, which must keep reading.
        let mut sent = Vec::new();
        let mut ptys = Vec::new();
        for f in feeders {
            let joined = tokio::task::spawn_blocking(move || f.join()).await?;
            let (records, pty) = joined.map_err(|_| "a feeder panicked")?;
            sent.push(records?);
            ptys.extend(pty);
        }
        let hotel = (
            tokio::task::spawn_blocking(move || portal.join())
                .await?
                .map_err(|_| "the portal panicked")??,
            tokio::task::spawn_blocking(move || ag.join())
                .await?
                .map_err(|_| "the AG panicked")??,
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        teller.say("The primary billing server comes back; after failback_after (2 s) delivery returns to it.");
        let primary = receiver("primary", primary_addr.to_string())?;
        // After failback_after, the IP Office's last calls, on a new
        // connection: delivery goes back to the primary with them.
        tokio::time::sleep(FAILBACK_AFTER + Duration::from_millis(500)).await;
        let late = tokio::task::spawn_blocking(move || {
            TcpPbx::connect(addr).and_then(|mut pbx| {
                feed(&mut pbx, Format::AvayaIpOffice, n - LATE_CALLS + 1..=n, start, RECORD_GAP)
            })
        })
        .await??;
        sent[2].extend(late);
        // The last files close when their 2 s lifetime ends, and every record
        // reaches a billing server.
        let done = || {
            let total: usize = ["PANA-trunk1", "NEC-sl1100", "IPO-smdr"]
                .iter()
                .flat_map(|alias| files_of(&spool, alias))
                .filter_map(|f| std::fs::read(f).ok())
                .map(|body| split_records(&body, b"\r\n").len())
                .sum();
            let delivered = delivered_seqs(&dir)
                .values()
                .map(|s| s.len())
                .sum::<usize>();
            let (api_done, ag_done) = hotel_delivered(&dir);
            (total as u64 >= 3 * n
                && delivered as u64 >= 3 * n
                && api_done.len() as u64 >= PORTAL_TRANSACTIONS
                && ag_done.len() as u64 >= AG_PACKETS)
                .then_some(())
        };
        let settled = wait_for(SETTLE_LIMIT, done).await;
        narrator.stop();
        teller.say(if settled.is_some() {
            "Every record is in a closed file and at a billing server; billbox stops."
        } else {
            "The records did not all settle within 60 s; billbox stops (the summary says what is missing)."
        });
        running.shutdown().await;
        drop(ptys);
        primary.stop(true).await;
        secondary.stop(true).await;
        Ok::<_, Box<dyn std::error::Error>>((sent, hotel, primary_addr, secondary_addr))
    })?;
    let (sent, hotel, primary_addr, secondary_addr) = sent;

    println!();
    println!(
        "{:<10} {:<40} {:>7} {:>5}  check",
        "port", "link", "records", "files"
    );
    let mut all_ok = true;
    for (port, sent) in ports.iter().zip(&sent) {
        let files = files_of(&spool, port.alias);
        let mut in_files: HashMap<Vec<u8>, usize> = HashMap::new();
        for f in &files {
            for r in split_records(&std::fs::read(f)?, port.format.terminator()) {
                *in_files.entry(r).or_default() += 1;
            }
        }
        let once = sent.iter().filter(|r| in_files.get(*r) == Some(&1)).count();
        let ok = once == sent.len() && in_files.len() == sent.len();
        all_ok &= ok;
        println!(
            "{:<10} {:<40} {:>7} {:>5}  {}",
            port.name,
            port.link,
            once,
            files.len(),
            if ok {
                "every record in exactly one file".to_string()
            } else {
                format!("MISMATCH: {} sent, {} found once", sent.len(), once)
            }
        );
    }
    println!();
    println!("Delivery: fail-over (A-A-B-B), 2 attempts per server, failback after 2 s");
    let per_server = |name: &str| -> usize { count_ids(&dir.join(name)) };
    println!(
        "  primary    http://{primary_addr}/billing  {:>5} records acknowledged (stopped mid-run, restarted)",
        per_server("primary")
    );
    println!(
        "  secondary  http://{secondary_addr}/billing  {:>5} records acknowledged",
        per_server("secondary")
    );
    let delivered = delivered_seqs(&dir);
    let mut delivery_ok = true;
    for port in &ports {
        let seqs = delivered.get(port.name).cloned().unwrap_or_default();
        let complete = seqs.len() as u64 == n && seqs.iter().copied().eq(1..=n);
        delivery_ok &= complete;
        println!(
            "  {:<10} {:>5} of {n} records reached a billing server{}",
            port.name,
            seqs.len(),
            if complete {
                ", sequences 1..n, no gap"
            } else {
                "  MISSING RECORDS"
            }
        );
    }
    all_ok &= delivery_ok;
    all_ok &= hotel_summary(&dir, &spool, hotel);
    println!();
    println!("Files:  {}", spool.display());
    if let Some(f) = files_of(&spool, "PANA-trunk1").first() {
        println!("Sample: {}", f.display());
        let body = std::fs::read(f)?;
        for line in split_records(&body, b"\r\n").iter().take(2) {
            println!("  {}", String::from_utf8_lossy(line).trim_end());
        }
    }
    println!("Store:  {}", data.join("store").display());
    println!("Config: {}", dir.join("billbox.toml").display());
    println!(
        "Run it yourself: billbox run --config {}",
        dir.join("billbox.toml").display()
    );
    Ok(all_ok)
}

async fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn files_with_ext(spool: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(spool)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == ext))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn files_of(spool: &Path, alias: &str) -> Vec<PathBuf> {
    let prefix = format!("cyc{alias}-");
    files_with_ext(spool, "txt")
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .collect()
}

/// Sequences acknowledged per port by either billing server (from the
/// receivers' `.ids` files: one line per record, sequence first).
fn delivered_seqs(dir: &Path) -> HashMap<String, std::collections::BTreeSet<u64>> {
    let mut out: HashMap<String, std::collections::BTreeSet<u64>> = HashMap::new();
    for server in ["primary", "secondary"] {
        for (port, seq) in ids(&dir.join(server).join("demo-gw")) {
            out.entry(port).or_default().insert(seq);
        }
    }
    out
}

fn count_ids(server_dir: &Path) -> usize {
    ids(&server_dir.join("demo-gw")).len()
}

fn ids(gateway_dir: &Path) -> Vec<(String, u64)> {
    billbox_receiver::held_records(gateway_dir).unwrap_or_default()
}

fn split_records(body: &[u8], eor: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut framer = billbox_record::Framer::try_new(eor, usize::MAX).expect("valid terminator");
    let mut frames = Vec::new();
    framer.push(body, &mut frames);
    out.extend(frames.into_iter().map(|f| f.bytes));
    out.extend(framer.finish().map(|f| f.bytes));
    out
}

/// Transactions the hotspot portal submits.
const PORTAL_TRANSACTIONS: u64 = 24;
/// `ADD_REC` packets the AG relays.
const AG_PACKETS: u64 = 12;
/// A test card number (it passes the Luhn check): billbox keeps it masked.
const DEMO_CARD: &str = "4111 1111 1111 1111";

/// The hotspot portal: PMS postings and card payments (the first card
/// payment with a full test card number), spread over `spread`. Returns
/// how many were answered 201.
fn hotel_portal(api: std::net::SocketAddr, spread: Duration) -> std::io::Result<u64> {
    let mut stored = 0;
    for i in 1..=PORTAL_TRANSACTIONS {
        let mut t = serde_json::json!({
            "id": format!("portal-{i}"),
            "type": if i % 3 == 0 { "CC" } else { "PMS" },
            "room": format!("{}", 100 + i * 7),
            "amount": format!("{}.{:02}", 5 + i % 20, i * 13 % 100),
        });
        if i == 3 {
            t["card"] = DEMO_CARD.into();
        }
        let answer = http::post(
            api,
            "/v1/transactions",
            "application/json",
            t.to_string().as_bytes(),
        )?;
        stored += u64::from(answer.status == 201);
        std::thread::sleep(spread / PORTAL_TRANSACTIONS as u32);
    }
    Ok(stored)
}

/// An AG 5500 whose server is billbox: its own REC_NUMs and USG_ID. Returns
/// how many were acknowledged OK.
fn ag_relay(api: std::net::SocketAddr, spread: Duration) -> std::io::Result<u64> {
    let mut acked = 0;
    let now = chrono::Local::now().naive_local();
    for i in 1..=AG_PACKETS {
        let tx = billbox_wire::Transaction {
            rec_num: i as u32,
            usg_id: "00020c".into(),
            property_id: "Hotel-1".into(),
            date: now.date(),
            time: now.time(),
            room_num: format!("{}", 300 + i),
            amount: billbox_wire::Amount::try_new(format!("{}.00", 10 + i)).expect("an amount"),
            trans_type: billbox_wire::TransType::Pms,
            signature: None,
        };
        let mut packet = Vec::new();
        billbox_wire::encode_transaction(&tx, &mut packet).expect("a valid transaction");
        let answer = http::post(api, "/", "text/xml", &packet)?;
        acked +=
            u64::from(answer.status == 200 && answer.text().contains("<ACK_VALUE>OK</ACK_VALUE>"));
        std::thread::sleep(spread / AG_PACKETS as u32);
    }
    Ok(acked)
}

/// REC_NUMs the billing servers hold: (billbox's own, the AG's relayed).
fn hotel_delivered(
    dir: &Path,
) -> (
    std::collections::BTreeSet<u64>,
    std::collections::BTreeSet<u64>,
) {
    let held = |usg: &str| {
        ["primary", "secondary"]
            .iter()
            .flat_map(|server| {
                let files = billbox_receiver::transaction_files(&dir.join(server), usg, "Hotel-1");
                billbox_receiver::read_transactions(&files.txt).unwrap_or_default()
            })
            .map(|t| t.rec_num)
            .collect()
    };
    (held("00020b"), held("00020c"))
}

/// Prints the hotel's part of the summary; true when all of it arrived.
fn hotel_summary(dir: &Path, spool: &Path, (stored, relayed): (u64, u64)) -> bool {
    let lines = |alias: &str| -> Vec<serde_json::Value> {
        files_of(spool, alias)
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|body| {
                body.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let (api_done, ag_done) = hotel_delivered(dir);
    let filed = (lines("TRANS"), lines("TRANS_AG"));
    let gap_free = |held: &std::collections::BTreeSet<u64>, n: u64| held.iter().copied().eq(1..=n);
    let rows = [
        (
            "portal",
            "POST /v1/transactions",
            PORTAL_TRANSACTIONS,
            stored,
            filed.0.len(),
            &api_done,
        ),
        (
            "AG 5500",
            "ADD_REC relay",
            AG_PACKETS,
            relayed,
            filed.1.len(),
            &ag_done,
        ),
    ];
    println!();
    println!(
        "{:<10} {:<24} {:>4} {:>8} {:>5} {:>9}  check",
        "hotel", "via", "sent", "answered", "filed", "delivered"
    );
    let mut ok = true;
    for (who, via, sent, answered, filed, delivered) in rows {
        let good = answered == sent
            && filed as u64 == sent
            && delivered.len() as u64 == sent
            && gap_free(delivered, sent);
        ok &= good;
        println!(
            "{who:<10} {via:<24} {sent:>4} {answered:>8} {filed:>5} {:>9}  {}",
            delivered.len(),
            if good {
                "every one filed once and delivered, REC_NUM 1..n, no gap"
            } else {
                "MISMATCH"
            }
        );
    }
    if let Some(card) = filed.0.iter().find(|l| l.get("card").is_some()) {
        println!(
            "  card {DEMO_CARD:?} was submitted; billbox kept only {}",
            card["card"]
        );
    }
    ok
}
