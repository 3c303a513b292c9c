//! End-to-end capture: the real binary, real ptys, real TCP sockets, real sled.

use std::time::Duration;

use billbox_testkit::pbx::{Format, Link, ListeningPbx, PtyPbx, TcpPbx};
use billbox_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

/// A record of `format` made longer or shorter by padding, so sizes vary.
fn sized(format: Format, n: u64) -> Vec<u8> {
    let at = chrono::DateTime::from_timestamp(1_790_000_000 + n as i64, 0).unwrap();
    let mut r = format.record(n, at);
    let eor = format.terminator().len();
    let body = r.len() - eor;
    let pad = (n * 7919) % 300;
    let filler: Vec<u8> = (0..pad).map(|i| b' ' + (i % 90) as u8).collect();
    r.splice(body..body, filler);
    r
}

fn wait_records(site: &Site, alias: &str, eor: &[u8], want: usize) -> Vec<Vec<u8>> {
    wait_until(WAIT, || {
        let got = site.records_in_files(alias, eor);
        (got.len() >= want).then_some(got)
    })
    .unwrap_or_else(|| site.records_in_files(alias, eor))
}

#[test]
fn three_ports_capture_ten_thousand_records_into_acs_files() {
    let site = Site::new();
    let mut pana = PtyPbx::open().unwrap();
    let mut fias = PtyPbx::open().unwrap();
    let config = site.config(&format!(
        r#"
[[ports]]
name = "pana"
device = "{}"
speed = 9600
data_bits = 7
parity = "even"
alias = "PANA"
billing_eor = "\r\n"
billing_records = 100
billing_timeout = "2s"

[[ports]]
name = "fias"
device = "{}"
speed = 1200
data_bits = 8
stop_bits = 2
alias = "FIAS"
billing_eor = '\x03'
billing_records = 70
billing_timeout = "2s"

[[ports]]
name = "ipo"
listen = "127.0.0.1:0"
alias = "IPO"
billing_eor = "\r\n"
billing_records = 250
billing_timeout = "2s"

[[ports]]
name = "quiet"
listen = "127.0.0.1:0"
alias = "QUIET"
billing_records = 10
billing_timeout = "1s"
"#,
        pana.path().display(),
        fias.path().display()
    ));
    let started = chrono::Local::now() - chrono::Duration::seconds(1);
    let bb = Billbox::start(&config);
    let addr = bb.listen_addr("ipo");
    bb.wait_log("Port link is up", Some("pana"), WAIT).unwrap();
    bb.wait_log("Port link is up", Some("fias"), WAIT).unwrap();

    let per_port = [3334u64, 3333, 3333];
    let pana_sent: Vec<Vec<u8>> = (1..=per_port[0])
        .map(|n| sized(Format::Panasonic, n))
        .collect();
    let fias_sent: Vec<Vec<u8>> = (1..=per_port[1]).map(|n| sized(Format::Fias, n)).collect();
    let ipo_sent: Vec<Vec<u8>> = (1..=per_port[2])
        .map(|n| sized(Format::AvayaIpOffice, n))
        .collect();
    let feeders = [
        {
            let recs = pana_sent.clone();
            std::thread::spawn(move || {
                for chunk in recs.chunks(50) {
                    pana.send(&chunk.concat()).unwrap();
                }
                pana
            })
        },
        {
            let recs = fias_sent.clone();
            std::thread::spawn(move || {
                for chunk in recs.chunks(50) {
                    fias.send(&chunk.concat()).unwrap();
                }
                fias
            })
        },
    ];
    let mut conn = TcpPbx::connect(addr).unwrap();
    // Odd-sized writes, so records and terminators are split across reads.
    let all = ipo_sent.concat();
    for piece in all.chunks(1021) {
        conn.send(piece).unwrap();
    }
    let _ptys: Vec<PtyPbx> = feeders.into_iter().map(|f| f.join().unwrap()).collect();

    let found_pana = wait_records(&site, "PANA", b"\r\n", pana_sent.len());
    let found_fias = wait_records(&site, "FIAS", b"\x03", fias_sent.len());
    let found_ipo = wait_records(&site, "IPO", b"\r\n", ipo_sent.len());
    assert_exactly_once(&pana_sent, &found_pana, "pana");
    assert_exactly_once(&fias_sent, &found_fias, "fias");
    assert_exactly_once(&ipo_sent, &found_ipo, "ipo");
    // Per port, the files hold the records in arrival order.
    assert_eq!(found_pana, pana_sent);
    assert_eq!(found_fias, fias_sent);
    assert_eq!(found_ipo, ipo_sent);

    // billing_records per file; the last, partly filled, closed by billing_timeout.
    let name_re = |alias: &str, name: &str| {
        let rest = name.strip_prefix(&format!("cyc{alias}-")).unwrap();
        let (stamp, ext) = rest.split_at(13);
        assert_eq!(&stamp[6..7], ".", "{name}");
        assert!(stamp[..6].bytes().all(|b| b.is_ascii_digit()), "{name}");
        assert!(stamp[7..].bytes().all(|b| b.is_ascii_digit()), "{name}");
        assert!(
            ext == ".txt" || (ext.starts_with('_') && ext.ends_with(".txt")),
            "{name}"
        );
        let t = chrono::NaiveDateTime::parse_from_str(stamp, "%y%m%d.%H%M%S").unwrap();
        assert!(
            t >= started.naive_local() && t <= chrono::Local::now().naive_local(),
            "{name}"
        );
    };
    for (alias, eor, per_file, total) in [
        ("PANA", &b"\r\n"[..], 100usize, per_port[0] as usize),
        ("FIAS", &b"\x03"[..], 70, per_port[1] as usize),
        ("IPO", &b"\r\n"[..], 250, per_port[2] as usize),
    ] {
        let files = site.txt_files(alias);
        let counts: Vec<usize> = files
            .iter()
            .map(|f| split_records(&std::fs::read(f).unwrap(), eor).len())
            .collect();
        let full = total / per_file;
        assert_eq!(counts.len(), full + 1, "{alias}: {counts:?}");
        assert!(
            counts[..full].iter().all(|c| *c == per_file),
            "{alias}: {counts:?}"
        );
        assert_eq!(
            counts[full],
            total % per_file,
            "{alias}: the timed-out file"
        );
        for f in &files {
            name_re(alias, &f.file_name().unwrap().to_string_lossy());
        }
    }
    // A lifetime without records saves no file.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(site.txt_files("QUIET").is_empty());
    assert!(files(&site.spool(), "QUIET", "tmp").is_empty());
    assert!(site.tmp_files().is_empty(), "{:?}", site.tmp_files());
    assert_eq!(bb.terminate(), Some(0));

    let stats = site.inspect();
    assert_eq!(stats["pana"]["last_seq"], per_port[0]);
    assert_eq!(stats["fias"]["last_seq"], per_port[1]);
    assert_eq!(stats["ipo"]["last_seq"], per_port[2]);
    assert_eq!(stats["ipo"]["file_cursor"], per_port[2]);
}

#[test]
fn a_pty_that_disappears_and_comes_back_resumes_capture() {
    let site = Site::new();
    let link = site.dir.path().join("ttyPBX");
    let mut pty = PtyPbx::open().unwrap();
    pty.link_as(&link).unwrap();
    let config = site.config(&format!(
        r#"
[[ports]]
name = "pbx"
device = "{}"
alias = "PBX"
billing_eor = "\r\n"
billing_records = 10
billing_timeout = "1s"
reconnect_max = "300ms"
"#,
        link.display()
    ));
    let bb = Billbox::start(&config);
    bb.wait_log("Port link is up", Some("pbx"), WAIT).unwrap();
    let sent: Vec<Vec<u8>> = (1..=200).map(|n| sized(Format::Nec, n)).collect();
    pty.send(&sent[..100].concat()).unwrap();
    wait_records(&site, "PBX", b"\r\n", 100);
    // Unplugged: the device node goes away.
    drop(pty);
    bb.wait_log("Port link went down", Some("pbx"), WAIT)
        .unwrap();
    bb.wait_log("Port cannot be opened", Some("pbx"), WAIT)
        .unwrap();
    // Several retries fail while it is gone; the log says so once.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(bb.count_logs("Port cannot be opened", Some("pbx")), 1);
    // Plugged back in, under a new node behind the same name.
    let mut pty = PtyPbx::open().unwrap();
    pty.link_as(&link).unwrap();
    wait_until(WAIT, || {
        (bb.count_logs("Port link is up", Some("pbx")) >= 2).then_some(())
    })
    .expect("the port came back up");
    pty.send(&sent[100..].concat()).unwrap();
    let found = wait_records(&site, "PBX", b"\r\n", 200);
    assert_exactly_once(&sent, &found, "pbx");
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_tcp_pbx_that_disconnects_and_reconnects_loses_nothing() {
    let site = Site::new();
    // The PBX listens (IP Office listen mode, Mitel 1752); billbox connects.
    let pbx = ListeningPbx::bind().unwrap();
    let config = site.config(&format!(
        r#"
[[ports]]
name = "mitel"
connect = "{}"
alias = "MITEL"
billing_eor = "\r\n"
billing_records = 25
billing_timeout = "1s"
reconnect_max = "200ms"

[[ports]]
name = "ipo"
listen = "127.0.0.1:0"
alias = "IPO"
billing_eor = "\r\n"
billing_records = 25
billing_timeout = "1s"
"#,
        pbx.addr()
    ));
    let bb = Billbox::start(&config);
    let sent: Vec<Vec<u8>> = (1..=300).map(|n| sized(Format::Mitel, n)).collect();
    for part in sent.chunks(100) {
        let mut conn = pbx.accept(WAIT).unwrap();
        conn.send(&part.concat()).unwrap();
        drop(conn);
    }
    let found = wait_records(&site, "MITEL", b"\r\n", 300);
    assert_exactly_once(&sent, &found, "mitel");
    assert!(bb.count_logs("Port link went down", Some("mitel")) >= 1);

    // On a listening port, a new PBX connection replaces the old one; a
    // record cut off by the switch is kept, flagged unterminated.
    let addr = bb.listen_addr("ipo");
    let ipo: Vec<Vec<u8>> = (1..=60).map(|n| sized(Format::AvayaIpOffice, n)).collect();
    let mut first = TcpPbx::connect(addr).unwrap();
    first.send(&ipo[..30].concat()).unwrap();
    first.send(b"half a rec").unwrap();
    wait_records(&site, "IPO", b"\r\n", 25);
    let mut second = TcpPbx::connect(addr).unwrap();
    bb.wait_log("replaced the current one", Some("ipo"), WAIT)
        .unwrap();
    second.send(&ipo[30..].concat()).unwrap();
    let mut want = ipo.clone();
    want.insert(30, b"half a rec".to_vec());
    let found = wait_until(WAIT, || {
        let got: Vec<u8> = site
            .txt_files("IPO")
            .iter()
            .flat_map(|f| std::fs::read(f).unwrap())
            .collect();
        (got.len() >= want.concat().len()).then_some(got)
    })
    .unwrap();
    assert_eq!(found, want.concat());
    drop(first);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn bad_input_is_kept_counted_and_logged_once() {
    let site = Site::new();
    let config = site.config(
        r#"
[[ports]]
name = "noise"
listen = "127.0.0.1:0"
alias = "NOISE"
billing_eor = "\r\n"
billing_records = 1000
billing_timeout = "1s"
max_record_bytes = 4096
"#,
    );
    let mut bb = Billbox::start(&config);
    let addr = bb.listen_addr("noise");
    let mut input: Vec<u8> = Vec::new();
    // Binary garbage (a fixed pseudo-random stream), NUL padding, invalid UTF-8.
    let mut x: u32 = 0x1234_5678;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        input.push(x as u8);
    }
    input.extend_from_slice(b"\r\n\0\0\0\0good record after NULs\r\n\xff\xfe\xc3\x28 bad utf8\r\n");
    // A 10 MB line with no terminator, then a normal record.
    input.extend(std::iter::repeat_n(b'Z', 10 * 1024 * 1024));
    input.extend_from_slice(b"\r\nlast,record\r\n");
    let mut conn = TcpPbx::connect(addr).unwrap();
    conn.send(&input).unwrap();
    let found = wait_until(WAIT, || {
        let got: Vec<u8> = site
            .txt_files("NOISE")
            .iter()
            .flat_map(|f| std::fs::read(f).unwrap())
            .collect();
        (got.len() >= input.len()).then_some(got)
    })
    .expect("all input reached the files");
    assert!(found == input, "the files hold the input byte for byte");
    assert!(bb.alive());
    // Over 2,500 records were cut at 4096 bytes (the garbage, the 10 MB
    // line): one warning per run of truncated records, not one per record.
    let warnings = bb.count_logs("reached max_record_bytes", Some("noise"));
    assert!(
        (1..=3).contains(&warnings),
        "{warnings} truncation warnings"
    );
    assert!(bb.count_logs("terminator again", Some("noise")) >= 1);
    drop(conn);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn sigkill_mid_stream_loses_no_flushed_record_and_leaves_no_tmp() {
    let site = Site::new();
    let mut pty = PtyPbx::open().unwrap();
    let config = site.config(&format!(
        r#"
[[ports]]
name = "serial"
device = "{}"
alias = "SER"
billing_eor = "\r\n"
billing_records = 40
billing_timeout = "1s"

[[ports]]
name = "tcp"
listen = "127.0.0.1:0"
alias = "TCP"
billing_eor = "\r\n"
billing_records = 40
billing_timeout = "1s"
"#,
        pty.path().display()
    ));
    let sent: Vec<Vec<u8>> = (1..=6000).map(|n| sized(Format::Panasonic, n)).collect();
    let tcp_sent: Vec<Vec<u8>> = (1..=6000)
        .map(|n| sized(Format::AvayaIpOffice, n))
        .collect();
    let mut tcp_written = 0usize;
    let mut serial_written = 0usize;
    for cycle in 0..3 {
        let bb = Billbox::start(&config);
        let addr = bb.listen_addr("tcp");
        bb.wait_log("Port link is up", Some("serial"), WAIT)
            .unwrap();
        let mut conn = TcpPbx::connect(addr).unwrap();
        // Stream steadily, then kill in the middle of it.
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(400 + 200 * cycle) && tcp_written < 5000 {
            conn.send(&tcp_sent[tcp_written]).unwrap();
            pty.send(&sent[serial_written]).unwrap();
            tcp_written += 1;
            serial_written += 1;
            if tcp_written % 20 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        bb.kill9();
    }
    // The last run: the rest of the serial stream, then a clean stop.
    let bb = Billbox::start(&config);
    bb.wait_log("Port link is up", Some("serial"), WAIT)
        .unwrap();
    pty.send(&sent[serial_written..].concat()).unwrap();
    // Wait for the last record sent: the stream after the last restart is whole.
    let last = sent.last().unwrap().clone();
    let found = wait_until(WAIT, || {
        let got = site.records_in_files("SER", b"\r\n");
        (got.last() == Some(&last)).then_some(got)
    })
    .expect("the serial stream reached the files");
    // Serial bytes wait in the terminal while billbox is down, so every
    // record arrives; the TCP stream loses what was in flight at each kill
    // (never flushed, so never received), but nothing flushed.
    assert!(found.len() <= sent.len());
    // The rotators' start-up recovery wrote every record stored before this
    // start; the files it left open close when their lifetime ends.
    bb.wait_log("hold every record", Some("serial"), WAIT)
        .unwrap();
    bb.wait_log("hold every record", Some("tcp"), WAIT).unwrap();
    wait_until(WAIT, || site.tmp_files().is_empty().then_some(())).expect("no .tmp left");
    assert_eq!(bb.terminate(), Some(0));
    let stats = site.inspect();
    for (port, alias, pool) in [("serial", "SER", &sent), ("tcp", "TCP", &tcp_sent)] {
        let found = site.records_in_files(alias, b"\r\n");
        // Every flushed record (sequences 1..=last_seq, none reused) is in
        // exactly one file, and nothing else is.
        let last = stats[port]["last_seq"].as_u64().unwrap() as usize;
        if found.len() != last {
            let kept = site.dir.path().to_path_buf();
            std::mem::forget(site);
            panic!(
                "{port}: {} records in files, {last} flushed; stats {:?}; dir kept at {}",
                found.len(),
                stats[port],
                kept.display()
            );
        }
        // Filed records are removed from the store (no [delivery] here); what
        // is still held is the tail of the sequence, with no gap.
        let held = stats[port]["records"].as_u64().unwrap() as usize;
        if held > 0 {
            let first = stats[port]["first_seq"].as_u64().unwrap() as usize;
            assert_eq!(first + held - 1, last, "{port}: a gap in held sequences");
        }
        // Whole records are unique (fragments below may repeat: two kills
        // can each leave a tail as short as the terminator).
        {
            let mut all: Vec<&Vec<u8>> = found.iter().collect();
            all.sort();
            for w in all.windows(2) {
                if w[0] == w[1] {
                    eprintln!(
                        "DUPLICATE {port} whole={} {:?}",
                        pool.contains(w[0]),
                        String::from_utf8_lossy(w[0])
                    );
                }
            }
        }
        let mut unique: Vec<&Vec<u8>> = found.iter().filter(|r| pool.contains(r)).collect();
        let whole = unique.len();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), whole, "{port}: a record is in two files");
        // A record whose first bytes billbox had read but not flushed when it
        // was killed comes back as its tail alone (the head was never
        // received); when the kill fell inside the terminator, the tail
        // ("\n") joins the next record. At most one such fragment per kill.
        let is_tail = |r: &[u8]| pool.iter().any(|p| p.ends_with(r));
        let fragments = found
            .iter()
            .filter(|r| !pool.contains(r))
            .inspect(|r| {
                let tail_then_record = pool.iter().any(|p| {
                    r.len() > p.len() && r.ends_with(p) && is_tail(&r[..r.len() - p.len()])
                });
                assert!(
                    is_tail(r) || tail_then_record,
                    "{port}: a record that was never sent: {:?}",
                    String::from_utf8_lossy(r)
                )
            })
            .count();
        assert!(
            fragments <= 3,
            "{port}: {fragments} fragments after 3 kills"
        );
    }
    // The serial port lost nothing at all: the terminal kept unread bytes.
    let serial_found = site.records_in_files("SER", b"\r\n");
    // At each kill only what billbox had read and not yet flushed is gone:
    // at most a terminal buffer's worth (4 KiB, about 20 of these records).
    assert!(
        serial_found.len() + 3 * 30 >= sent.len(),
        "{} of {} serial records",
        serial_found.len(),
        sent.len()
    );
}

#[test]
fn idle_connections_connect_storms_and_exact_size_records() {
    let site = Site::new();
    let config = site.config(
        r#"
[[ports]]
name = "p"
listen = "127.0.0.1:0"
alias = "P"
billing_eor = "\r\n"
billing_records = 1000
billing_timeout = "1s"
max_record_bytes = 64
"#,
    );
    let mut bb = Billbox::start(&config);
    let addr = bb.listen_addr("p");
    // A PBX that connects and sends nothing, for a while.
    let idle = TcpPbx::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(idle);
    // Two thousand connect/disconnect cycles.
    for _ in 0..2000 {
        drop(TcpPbx::connect(addr).unwrap());
    }
    // A record exactly at max_record_bytes (terminator included) is whole;
    // one byte more is cut and flagged.
    let exact = format!("{}\r\n", "E".repeat(62)).into_bytes();
    let over = format!("{}\r\n", "O".repeat(63)).into_bytes();
    let mut conn = TcpPbx::connect(addr).unwrap();
    conn.send(&exact).unwrap();
    conn.send(&over).unwrap();
    conn.send(b"last\r\n").unwrap();
    drop(conn);
    let want = [exact.clone(), over.clone(), b"last\r\n".to_vec()].concat();
    let found = wait_until(WAIT, || {
        let got: Vec<u8> = site
            .txt_files("P")
            .iter()
            .flat_map(|f| std::fs::read(f).unwrap())
            .collect();
        (got.len() >= want.len()).then_some(got)
    })
    .expect("records filed");
    assert_eq!(found, want);
    assert!(bb.alive());
    // One truncation warning, no line per connection.
    assert_eq!(bb.count_logs("reached max_record_bytes", Some("p")), 1);
    assert!(
        bb.dump().len() < 200,
        "{} log lines for 2,000 connections",
        bb.dump().len()
    );
    assert_eq!(bb.terminate(), Some(0));
}
