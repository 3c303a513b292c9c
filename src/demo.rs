//! `billbox demo`: the real pipeline fed by simulated PBXes, no hardware.
//!
//! Two serial PBXes on pseudo-terminals (a Panasonic and an NEC, each at its
//! own line settings) and an Avaya IP Office sending SMDR over TCP feed the
//! real actors into a directory of its own. The demo then checks every record
//! it sent is in exactly one closed file, and prints where everything is.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use billbox_sim::smdr::Format;
use billbox_sim::PtyPbx;

use crate::cli::DemoArgs;

/// Pause between two records of one simulated PBX.
const RECORD_GAP: Duration = Duration::from_millis(8);
/// How long the demo waits for the last files to close.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

struct DemoPort {
    name: &'static str,
    alias: &'static str,
    format: Format,
    link: String,
}

pub fn main(args: DemoArgs) -> ExitCode {
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("billbox demo failed: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: DemoArgs) -> Result<bool, Box<dyn std::error::Error>> {
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
    let n = args.records;
    println!(
        "billbox demo: 3 simulated PBXes send {n} records each into {}",
        dir.display()
    );

    let system = actix_rt::System::new();
    let (sent, primary_addr, secondary_addr) = system.block_on(async {
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
        let start = chrono::Utc::now();
        // The serial feeders hand their pty back: a pty closed right after
        // the last write takes unread bytes with it, which a real PBX that
        // stays plugged in never does.
        let feeders = vec![
            std::thread::spawn(move || {
                let sent = feed_pty(&mut panasonic, Format::Panasonic, n, start);
                (sent, Some(panasonic))
            }),
            std::thread::spawn(move || {
                let sent = feed_pty(&mut nec, Format::Nec, n, start);
                (sent, Some(nec))
            }),
            std::thread::spawn(move || (feed_tcp(addr, Format::AvayaIpOffice, n, start), None)),
        ];
        // Halfway through, the primary billing server goes away.
        tokio::time::sleep(RECORD_GAP * (n / 2) as u32).await;
        println!("  ... stopping the primary billing server {primary_addr} mid-run");
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
        tokio::time::sleep(Duration::from_secs(1)).await;
        println!("  ... the primary comes back; after failback_after (2 s) delivery returns to it");
        let primary = receiver("primary", primary_addr.to_string())?;
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
            (total as u64 >= 3 * n && delivered as u64 >= 3 * n).then_some(())
        };
        wait_for(SETTLE_LIMIT, done).await;
        running.shutdown().await;
        drop(ptys);
        primary.stop(true).await;
        secondary.stop(true).await;
        Ok::<_, Box<dyn std::error::Error>>((sent, primary_addr, secondary_addr))
    })?;

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

type Sent = Result<Vec<Vec<u8>>, std::io::Error>;

fn feed_pty(
    pty: &mut PtyPbx,
    format: Format,
    n: u64,
    start: chrono::DateTime<chrono::Utc>,
) -> Sent {
    let mut sent = Vec::new();
    for i in 1..=n {
        let rec = format.record(i, start + chrono::Duration::seconds(i as i64));
        pty.send(&rec)?;
        sent.push(rec);
        std::thread::sleep(RECORD_GAP);
    }
    Ok(sent)
}

fn feed_tcp(
    addr: std::net::SocketAddr,
    format: Format,
    n: u64,
    start: chrono::DateTime<chrono::Utc>,
) -> Sent {
    let mut conn = TcpStream::connect(addr)?;
    let mut sent = Vec::new();
    for i in 1..=n {
        let rec = format.record(i, start + chrono::Duration::seconds(i as i64));
        conn.write_all(&rec)?;
        sent.push(rec);
        std::thread::sleep(RECORD_GAP);
    }
    Ok(sent)
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
