//! The `faultfs` binary: mount, a few commands over its socket, SIGTERM.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::WAIT;

#[test]
fn faultfs_binary_takes_commands_and_unmounts_on_sigterm() {
    // Only for the skip check: the binary mounts its own.
    drop(rig!());
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let sock = dir.path().join("control.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultfs"))
        .arg(dir.path().join("backing"))
        .arg(&mnt)
        .arg("--control")
        .arg(&sock)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.starts_with("faultfs: mounted"), "{ready}");

    let conn = UnixStream::connect(&sock).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    let mut lines = BufReader::new(conn.try_clone().unwrap()).lines();
    let mut ask = |cmd: &str| {
        writeln!(&conn, "{cmd}").unwrap();
        lines.next().unwrap().unwrap()
    };
    std::fs::write(mnt.join("f"), b"volatile").unwrap();
    assert!(ask("stats").contains("unsynced_bytes=8"));
    assert_eq!(ask("fault write * 1 forever eio"), "ok 1");
    assert!(std::fs::write(mnt.join("g"), b"x").is_err());
    assert_eq!(ask("clear"), "ok");
    assert_eq!(ask("space 4096000 0"), "ok");
    assert_eq!(nix::sys::statvfs::statvfs(&mnt).unwrap().blocks_free(), 0);
    assert!(ask("cut").starts_with("ok writes_dropped=1 "));
    assert!(!mnt.join("f").exists());
    assert!(ask("bogus").starts_with("err "));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "faultfs exits on SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success());
    let st = nix::sys::statfs::statfs(&mnt).unwrap();
    assert_ne!(st.filesystem_type(), nix::sys::statfs::FUSE_SUPER_MAGIC);
}
