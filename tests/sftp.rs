//! File pickup over SFTP: Debian's OpenSSH `sshd` on 127.0.0.1, running
//! deploy/sftp/sshd_config (its port, keys and chroot swapped for this
//! test's), over the spool directory a real billbox writes; the billing
//! PC's side is OpenSSH's `sftp -b`.
//!
//! Needs root (sshd chroots) and `/usr/sbin/sshd`, `sftp`, `ssh-keygen`
//! (`.ci/run` installs openssh-server and openssh-client); otherwise each
//! test prints SKIPPED.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use billbox_testkit::pbx::{Link, TcpPbx};
use billbox_testkit::*;

const SSHD: &str = "/usr/sbin/sshd";
const CONFIG: &str = include_str!("../deploy/sftp/sshd_config");

fn skip_reason() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("sshd must chroot: run as root".into());
    }
    for tool in [SSHD, "sftp", "ssh-keygen"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!(
                "{tool} is not installed (openssh-server, openssh-client)"
            ));
        }
    }
    None
}

/// A chroot for sshd: every component of its path root-owned and not
/// writable by others (so not under /tmp), removed at the end.
struct Chroot(PathBuf);

impl Chroot {
    fn new() -> Chroot {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = base.join(format!("sftp-chroot-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("spool")).unwrap();
        // The tree up to / must not be group- or world-writable.
        let mut at = dir.clone();
        loop {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&at).unwrap().permissions().mode();
            if mode & 0o022 != 0 {
                std::fs::set_permissions(&at, std::fs::Permissions::from_mode(mode & !0o022))
                    .unwrap();
            }
            if !at.pop() {
                break;
            }
        }
        Chroot(dir)
    }

    fn spool(&self) -> PathBuf {
        self.0.join("spool")
    }

    /// Beside it, root's only, as /etc/billbox-sftp is in the image: sshd's
    /// StrictModes refuses keys under a world-writable /tmp.
    fn keys(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let keys = self.0.with_extension("keys");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
        keys
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_dir_all(self.0.with_extension("keys"));
    }
}

/// A running sshd and the billing PC's key. Killed on drop.
struct Sshd {
    child: Child,
    addr: SocketAddr,
    client_key: PathBuf,
    log: PathBuf,
}

impl Sshd {
    /// sshd on deploy/sftp/sshd_config, with `force_command` as its
    /// `ForceCommand` line (the file's own, or its documented variant).
    fn start(keys: &Path, chroot: &Chroot, force_command: &str) -> Sshd {
        let keygen = |path: &Path| {
            if !path.exists() {
                let out = Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(path)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
            }
        };
        let host_key = keys.join("host_key");
        let client_key = keys.join("billing_pc");
        keygen(&host_key);
        keygen(&client_key);
        let authorized = keys.join("authorized_keys");
        std::fs::copy(keys.join("billing_pc.pub"), &authorized).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let addr = free_addr();
        let mut config = String::new();
        for line in CONFIG.lines() {
            let key = line.split_whitespace().next().unwrap_or("");
            let swapped = match key {
                "Port" => format!("Port {}\nListenAddress 127.0.0.1", addr.port()),
                "HostKey" => format!("HostKey {}", host_key.display()),
                "PidFile" => format!("PidFile {}", keys.join("sshd.pid").display()),
                // The test logs in as root: there is no `billing` user here.
                "AllowUsers" => "AllowUsers root".into(),
                "PermitRootLogin" => "PermitRootLogin prohibit-password".into(),
                "AuthorizedKeysFile" => format!("AuthorizedKeysFile {}", authorized.display()),
                "ChrootDirectory" => format!("ChrootDirectory {}", chroot.0.display()),
                "ForceCommand" => force_command.into(),
                _ => line.to_string(),
            };
            config.push_str(&swapped);
            config.push('\n');
        }
        let config_path = keys.join("sshd_config");
        std::fs::write(&config_path, config).unwrap();
        let check = Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(&config_path)
            .output()
            .unwrap();
        assert!(check.status.success(), "sshd -t: {check:?}");
        let log = keys.join("sshd.log");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
        })
        .expect("sshd listens");
        Sshd {
            child,
            addr,
            client_key,
            log,
        }
    }

    /// What sshd logged so far (for failure messages).
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `commands` with `sftp -b` as the billing PC would, in `local`.
    fn sftp(&self, local: &Path, commands: &str) -> Output {
        let batch = local.join("batch");
        std::fs::write(&batch, commands).unwrap();
        Command::new("sftp")
            .arg("-b")
            .arg(&batch)
            .arg("-i")
            .arg(&self.client_key)
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-P",
            ])
            .arg(self.addr.port().to_string())
            .arg("root@127.0.0.1")
            .current_dir(local)
            .output()
            .unwrap()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `ForceCommand` line documented in the config as the variant that
/// lets the billing PC delete what it fetched.
fn deleting_variant() -> String {
    CONFIG
        .lines()
        .find_map(|l| l.strip_prefix("# ForceCommand"))
        .map(|rest| format!("ForceCommand{rest}"))
        .expect("deploy/sftp/sshd_config documents the deleting variant")
}

/// billbox writing `chroot/spool`, one TCP port, files of 10 records.
fn billbox(site: &Site, chroot: &Chroot) -> Billbox {
    let config = site.data().with_file_name("billbox-sftp.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nname = \"gw-sftp\"\ndata_dir = \"{}\"\nspool_dir = \"{}\"\n\n\
             [[ports]]\nname = \"pbx1\"\nlisten = \"127.0.0.1:0\"\nbilling_eor = \"\\r\\n\"\n\
             billing_records = 10\nbilling_timeout = 0\n",
            site.data().display(),
            chroot.spool().display()
        ),
    )
    .unwrap();
    Billbox::start(&config)
}

fn send(pbx: &mut TcpPbx, first: u64, n: u64) {
    for i in first..first + n {
        pbx.send(format!("11/24/26 01:41PM  105 01 5551234 00:00:12 call {i:05}\r\n").as_bytes())
            .unwrap();
    }
}

fn closed_files(spool: &Path, at_least: usize) -> Vec<PathBuf> {
    wait_until(Duration::from_secs(30), || {
        let f = files(spool, "gw-sftp", "txt");
        (f.len() >= at_least).then_some(f)
    })
    .unwrap_or_else(|| panic!("{at_least} closed files"))
}

fn names(paths: &[PathBuf]) -> Vec<String> {
    let mut n: Vec<String> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

fn fetched(local: &Path) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = std::fs::read_dir(local)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("cyc"))
        .collect();
    f.sort();
    f
}

#[test]
fn the_billing_pc_fetches_closed_files_byte_exact_and_cannot_change_them() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let chroot = Chroot::new();
    let site = Site::new();
    let sshd = Sshd::start(
        &chroot.keys(),
        &chroot,
        CONFIG
            .lines()
            .find(|l| l.starts_with("ForceCommand"))
            .unwrap(),
    );
    let bb = billbox(&site, &chroot);
    let mut pbx = TcpPbx::connect(bb.listen_addr("pbx1")).unwrap();
    send(&mut pbx, 1, 35);
    let closed = closed_files(&chroot.spool(), 3);
    // Records 31 to 35 may still be on their way to the store: wait for
    // their open file.
    wait_until(Duration::from_secs(30), || {
        (!files(&chroot.spool(), "gw-sftp", "tmp").is_empty()).then_some(())
    });
    assert_eq!(
        files(&chroot.spool(), "gw-sftp", "tmp").len(),
        1,
        "one open file"
    );

    let local = tempfile::tempdir().unwrap();
    let out = sshd.sftp(local.path(), "get *.txt\n");
    assert!(
        out.status.success(),
        "sftp get: {out:?}\nsshd: {}",
        sshd.log()
    );
    let got = fetched(local.path());
    assert_eq!(names(&got), names(&closed), "only the closed files");
    for (mine, theirs) in got.iter().zip(&closed) {
        assert_eq!(
            std::fs::read(mine).unwrap(),
            std::fs::read(theirs).unwrap(),
            "byte-exact"
        );
    }
    // Read-only: no removal, no upload.
    let name = names(&closed)[0].clone();
    let rm = sshd.sftp(local.path(), &format!("rm {name}\n"));
    assert!(!rm.status.success(), "rm refused: {rm:?}");
    let put = sshd.sftp(local.path(), &format!("put {}\n", got[0].display()));
    assert!(!put.status.success(), "put refused: {put:?}");
    assert_eq!(
        names(&files(&chroot.spool(), "gw-sftp", "txt")),
        names(&closed)
    );
    assert_eq!(bb.terminate(), Some(0));
}

/// With the documented deleting variant the billing PC removes what it
/// fetched; removing the open `.tmp` too (a collector that does not filter
/// on `.txt`) loses nothing: billbox writes it again from the store.
#[test]
fn files_deleted_after_pickup_and_a_deleted_open_file_lose_no_record() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let chroot = Chroot::new();
    let site = Site::new();
    let sshd = Sshd::start(&chroot.keys(), &chroot, &deleting_variant());
    let bb = billbox(&site, &chroot);
    let mut pbx = TcpPbx::connect(bb.listen_addr("pbx1")).unwrap();
    send(&mut pbx, 1, 25);
    closed_files(&chroot.spool(), 2);
    let local = tempfile::tempdir().unwrap();
    // Fetch, then delete, everything: the .txt files and the open .tmp.
    let out = sshd.sftp(local.path(), "get *.txt\nrm *.txt\nrm *.tmp\n");
    assert!(out.status.success(), "sftp: {out:?}\nsshd: {}", sshd.log());
    assert_eq!(fetched(local.path()).len(), 2);
    assert!(files(&chroot.spool(), "gw-sftp", "txt").is_empty());
    assert!(
        files(&chroot.spool(), "gw-sftp", "tmp").is_empty(),
        "the .tmp is gone too"
    );
    // billbox goes on: the file it had open closes with all its records.
    send(&mut pbx, 26, 15);
    bb.wait_log(
        "billbox wrote it again from the store",
        Some("pbx1"),
        Duration::from_secs(30),
    )
    .expect("the rewrite is logged");
    closed_files(&chroot.spool(), 2);
    let out = sshd.sftp(local.path(), "get *.txt\nrm *.txt\n");
    assert!(out.status.success(), "sftp: {out:?}\nsshd: {}", sshd.log());
    let mut records: Vec<String> = Vec::new();
    for file in fetched(local.path()) {
        let text = String::from_utf8(std::fs::read(&file).unwrap()).unwrap();
        records.extend(text.split_inclusive("\r\n").map(String::from));
    }
    records.sort();
    let expected: Vec<String> = (1..=40)
        .map(|i| format!("11/24/26 01:41PM  105 01 5551234 00:00:12 call {i:05}\r\n"))
        .collect();
    assert_eq!(
        records, expected,
        "every record once, none lost, none twice"
    );
    assert_eq!(bb.terminate(), Some(0));
}
