//! A PBX on a pseudo-terminal.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::pty::openpty;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};

/// A pseudo-terminal pair: billbox opens [`PtyPbx::path`] like a serial port;
/// the simulator writes records into the master side.
///
/// The slave side is put in raw mode and closed again: bytes written while
/// billbox has not opened the device (or is restarting) wait in the
/// terminal's buffer, and when billbox dies the device is fully closed, as a
/// real serial port is (so its exclusive-open flag is cleared). Dropping the
/// `PtyPbx` makes the device disappear, as an unplugged USB adapter does.
pub struct PtyPbx {
    master: File,
    path: PathBuf,
}

impl PtyPbx {
    /// Opens a new pseudo-terminal in raw mode.
    pub fn open() -> io::Result<PtyPbx> {
        let pair = openpty(None, None).map_err(io::Error::from)?;
        // Not inherited by child processes: a billbox started by a test must
        // not hold another pty's master open, or that pty could never vanish.
        for fd in [&pair.master, &pair.slave] {
            fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
                .map_err(io::Error::from)?;
        }
        let mut t = tcgetattr(&pair.slave).map_err(io::Error::from)?;
        cfmakeraw(&mut t);
        tcsetattr(&pair.slave, SetArg::TCSANOW, &t).map_err(io::Error::from)?;
        let path = nix::unistd::ttyname(&pair.slave).map_err(io::Error::from)?;
        drop(pair.slave);
        Ok(PtyPbx {
            master: File::from(pair.master),
            path,
        })
    }

    /// The device path billbox opens (`/dev/pts/N`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Points `link` at this device (replacing an older link), the way udev
    /// names a serial adapter that comes back under a new node.
    pub fn link_as(&self, link: &Path) -> io::Result<()> {
        let tmp = link.with_extension("new-link");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&self.path, &tmp)?;
        std::fs::rename(&tmp, link)
    }

    /// Writes bytes as the PBX sends them.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.master.write_all(bytes)?;
        self.master.flush()
    }
}
