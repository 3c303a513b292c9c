//! Full disks: a real small file system (tmpfs) under the data directory and
//! under the spool directory. Nothing flushed is lost, new input waits rather
//! than being taken in and lost, it is logged at ERROR, and billbox recovers
//! by itself when space returns. Needs `mount` (root with CAP_SYS_ADMIN, as on
//! the project machines and CI); elsewhere the tests say so and do nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use billbox_testkit::billing::{BillingServer, Log};
use billbox_testkit::pbx::{Link, TcpPbx};
use billbox_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

/// A tmpfs mounted at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A record that does not compress (the store compresses chunks, and the
/// disk must fill): 100 characters of a per-record pseudo-random stream.
fn line(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let noise: String = (0..100)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect();
    format!("{i:08},2026/11/24 13:00:00,00:01:05,4321,{noise}\n").into_bytes()
}

#[test]
fn a_full_data_disk_holds_input_and_recovers_when_space_returns() {
    let site = Site::new();
    let Some(fs) = Tmpfs::mount(&site.data(), "6m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here");
        return;
    };
    let log = Log::default();
    let mut a = BillingServer::start("A", &log);
    a.down();
    // Records are not delivered (server down), so they pile up in the store.
    let config = site.config(&format!(
        "[store]\nmin_free_mb = 3\n[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nalias = \"P\"\nbilling_eor = \"\\n\"\nbilling_records = 500\nbilling_timeout = \"1s\"\n\
         [delivery]\nprimary = \"{}\"\nretry_delay = \"200ms\"\n",
        a.url()
    ));
    let bb = Billbox::start(&config);
    let addr = bb.listen_addr("p");
    let total = 40_000u64;
    let feeder = std::thread::spawn(move || {
        let mut conn = TcpPbx::connect(addr).unwrap();
        for i in 1..=total {
            conn.send(&line(i)).unwrap();
        }
    });
    bb.wait_log("disk is nearly full", None, WAIT)
        .unwrap_or_else(|| panic!("never filled up; logs: {:?}", bb.dump().len()));
    // While it is full, ingest waits (the feeder blocks on TCP) and sled never
    // sees a full disk.
    std::thread::sleep(Duration::from_secs(2));
    let held = site.records_in_files("P", b"\n").len() as u64;
    assert!(
        held < total,
        "everything was taken in: the disk never filled"
    );
    assert_eq!(
        bb.count_logs("The store's disk failed a sync", None),
        0,
        "sled hit the full disk"
    );
    assert!(!feeder.is_finished());
    // Space returns: billbox goes on by itself; the server comes back too.
    fs.resize("256m");
    a.up();
    bb.wait_log("has space again", None, WAIT)
        .expect("billbox resumed");
    feeder.join().unwrap();
    let want: Vec<Vec<u8>> = (1..=total).map(line).collect();
    let found = wait_until(WAIT, || {
        let got = site.records_in_files("P", b"\n");
        (got.len() as u64 >= total).then_some(got)
    })
    .expect("every record reached the files");
    assert_exactly_once(&want, &found, "p");
    wait_until(WAIT, || (a.acked().len() as u64 >= total).then_some(())).expect("all delivered");
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_full_spool_disk_keeps_records_in_the_store_and_files_them_later() {
    let site = Site::new();
    let Some(fs) = Tmpfs::mount(&site.spool(), "64k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here");
        return;
    };
    let config = site.config(
        "[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nalias = \"P\"\nbilling_eor = \"\\n\"\nbilling_records = 100\nbilling_timeout = \"1s\"\n",
    );
    let bb = Billbox::start(&config);
    let total = 3000u64;
    let mut conn = TcpPbx::connect(bb.listen_addr("p")).unwrap();
    for i in 1..=total {
        conn.send(&line(i)).unwrap();
    }
    bb.wait_log("cannot be written to billing files", Some("p"), WAIT)
        .expect("the full spool is reported at ERROR");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        bb.count_logs("cannot be written to billing files", Some("p")) <= 2,
        "logged once per outage"
    );
    fs.resize("64m");
    let want: Vec<Vec<u8>> = (1..=total).map(line).collect();
    let found = wait_until(WAIT, || {
        let got = site.records_in_files("P", b"\n");
        (got.len() as u64 >= total).then_some(got)
    })
    .expect("every record reached the files once space returned");
    assert_exactly_once(&want, &found, "p");
    bb.wait_log("Billing files are written again", Some("p"), WAIT)
        .unwrap();
    assert_eq!(bb.terminate(), Some(0));
}

/// Regression: with the data disk below its reserve, SIGTERM took about
/// 40 s (each stop step waited out its grace for appends the reserve
/// held). A stop commits what the readers read, into the reserve, and ends.
#[test]
fn sigterm_with_the_data_disk_below_its_reserve_commits_what_was_read_and_stops() {
    let site = Site::new();
    let Some(_fs) = Tmpfs::mount(&site.data(), "16m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here");
        return;
    };
    // The reserve is larger than the disk: below it from the start.
    let config = site.config(
        "[store]\nmin_free_mb = 64\n[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nalias = \"P\"\nbilling_eor = \"\\n\"\nbilling_records = 500\nbilling_timeout = \"1s\"\n",
    );
    let bb = Billbox::start(&config);
    let mut conn = TcpPbx::connect(bb.listen_addr("p")).unwrap();
    for i in 1..=10 {
        conn.send(&line(i)).unwrap();
    }
    bb.wait_log("disk is nearly full", None, WAIT)
        .expect("the low disk is reported");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        site.records_in_files("P", b"\n").is_empty(),
        "held while low"
    );
    // terminate() gives up (and fails the test) after 30 s.
    assert_eq!(bb.terminate(), Some(0));
    assert_eq!(site.inspect()["p"]["last_seq"].as_u64(), Some(10));
}

/// A long outage fills the data disk to its reserve with a backlog; the
/// server comes back and the backlog drains. billbox must then take
/// records again. KNOWN BUG (issue 15 note): sled does not shrink its file
/// when records are removed (it reuses the space inside the file), but the
/// reserve is checked against the file system's free space, so the ports
/// stay held after the drain, with an empty store. Run it with
/// `cargo test --test fulldisk -- --ignored`.
#[test]
#[ignore = "known bug: the disk reserve does not see the space sled reuses inside its file"]
fn a_store_drained_after_filling_the_disk_takes_records_again() {
    let site = Site::new();
    let Some(_fs) = Tmpfs::mount(&site.data(), "24m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here");
        return;
    };
    let log = Log::default();
    let mut a = BillingServer::start("A", &log);
    a.down();
    let config = site.config(&format!(
        "[store]\nmin_free_mb = 8\n[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nalias = \"P\"\nbilling_eor = \"\\n\"\nbilling_records = 500\nbilling_timeout = \"1s\"\n\
         [delivery]\nprimary = \"{}\"\nretry_delay = \"200ms\"\nbatch_max = 100\n",
        a.url()
    ));
    let bb = Billbox::start(&config);
    let addr = bb.listen_addr("p");
    let total = 200_000u64;
    let feeder = std::thread::spawn(move || {
        let mut conn = TcpPbx::connect(addr).unwrap();
        for i in 1..=total {
            if conn.send(&line(i)).is_err() {
                return false;
            }
        }
        true
    });
    bb.wait_log("disk is nearly full", None, WAIT)
        .expect("the backlog fills the disk");
    // The outage ends: everything stored is delivered and removed.
    a.up();
    wait_until(WAIT, || {
        (metric(&bb.metrics(), "billbox_store_records") == Some(0.0)).then_some(())
    })
    .expect("the backlog drains");
    let held = |what: &str| {
        let m = bb.metrics();
        let store: Vec<String> = m
            .lines()
            .filter(|l| l.starts_with("billbox_store_") || l.starts_with("billbox_port_committed"))
            .map(String::from)
            .collect();
        let lows = bb.count_logs("disk is nearly full", None);
        panic!("{what}: the ports stay held ({lows} times low): {store:#?}")
    };
    if bb.wait_log("has space again", None, WAIT).is_none() {
        held("with an empty store, billbox takes records again");
    }
    if wait_until(WAIT, || feeder.is_finished().then_some(())).is_none() {
        held("the feeder finishes");
    }
    assert!(feeder.join().unwrap());
    assert_eq!(bb.terminate(), Some(0));
}
