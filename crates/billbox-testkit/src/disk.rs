//! faultfs (`billbox-faultfs`) under a test's [`Site`]: the disk that loses
//! what was not synced at a power cut, and the pieces every test on it needs.

use std::time::Duration;

use billbox_faultfs::{available, Control, Cut, FaultFs};

use crate::{Billbox, Site};

/// The faultfs under a site: the site's `data` and `spool` are symlinks to
/// directories on the mount, so the site's helpers (files, `inspect`) read
/// through it.
pub struct Disk {
    pub fs: FaultFs,
    pub control: Control,
}

impl Disk {
    /// Mounts faultfs in the site's directory, with `data` and `spool` on
    /// it; `None` (and SKIPPED printed) when faultfs cannot be used here.
    pub fn under(site: &Site) -> Option<Disk> {
        if let Err(why) = available() {
            eprintln!("SKIPPED: the power-cut suite needs faultfs: {why}");
            return None;
        }
        let mnt = site.dir.path().join("disk");
        std::fs::create_dir(&mnt).unwrap();
        let fs = FaultFs::mount(&site.dir.path().join("backing"), &mnt).unwrap();
        for name in ["data", "spool"] {
            std::fs::create_dir(mnt.join(name)).unwrap();
            std::os::unix::fs::symlink(mnt.join(name), site.dir.path().join(name)).unwrap();
        }
        // The directories exist before billbox's first start, durably.
        std::fs::File::open(&mnt).unwrap().sync_all().unwrap();
        let control = fs.control();
        Some(Disk { fs, control })
    }
}

/// Cuts the power if the disk is still frozen when it is dropped (a test
/// that failed while frozen): a process blocked on a held request cannot
/// die until it is answered. Declared after the billbox it guards, so it is
/// dropped first.
pub struct CutOnDrop(pub Control);

impl Drop for CutOnDrop {
    fn drop(&mut self) {
        if self.0.frozen().is_some() {
            self.0.cut(Cut::All);
        }
    }
}

/// `/metrics` with a short timeout (the page may wait on a frozen disk).
pub fn metrics_within(bb: &Billbox, limit: Duration) -> Option<String> {
    use std::net::TcpStream;
    let addr = bb.metrics_addr();
    let mut conn = TcpStream::connect_timeout(&addr, limit).ok()?;
    conn.set_read_timeout(Some(limit)).ok()?;
    let r =
        crate::http::request_on(&mut conn, &addr.to_string(), "GET", "/metrics", &[], b"").ok()?;
    (r.status == 200).then(|| r.text())
}
