//! `faultfs BACKING MOUNTPOINT --control SOCKET`: mounts a faultfs and takes
//! line commands on a Unix socket, one answer line each (`ok ...` or
//! `err ...`), until SIGTERM or SIGINT, when it unmounts and exits.
//!
//! Commands (PATH is a substring of the path relative to the mount root;
//! `*` matches every path):
//! - `freeze`, `thaw`, `sync`
//! - `cut`, `cut random SEED KEEP`, `cut tear SEED`: answers the report
//! - `fault OP PATH NTH TIMES|forever ACTION`: answers `ok ID`; OP is `open`,
//!   `read`, `write`, `fsync`, `fsyncdir`, `create`, `mkdir`, `unlink`,
//!   `rmdir`, `rename`, `setattr`, `fallocate` or `any`; ACTION is `eio`,
//!   `enospc`, `eio-losing-writes`, `errno N`, `delay-ms N`, `freeze-before` or `freeze-after`
//! - `unfault ID`, `clear`
//! - `space TOTAL FREE` (bytes), `space backing`
//! - `stats`, `frozen`, `wait-frozen MS`
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use billbox_faultfs::{
    Action, Control, Cut, CutReport, Fault, FaultFs, FaultId, FrozenAt, Op, Space,
};
use nix::sys::signal::{SigSet, Signal};

/// Why the program cannot run.
#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("usage: faultfs BACKING MOUNTPOINT --control SOCKET")]
    Usage,
    #[error("cannot block SIGTERM and SIGINT: {0}")]
    Signals(#[source] nix::Error),
    #[error("cannot mount: {0}")]
    Mount(#[source] billbox_faultfs::MountError),
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why a command line is refused.
#[derive(Debug, thiserror::Error)]
enum CommandError {
    #[error("unknown command {0:?}")]
    Unknown(String),
    #[error("missing argument: {0}")]
    Missing(&'static str),
    #[error("bad {what}: {value:?}")]
    Bad { what: &'static str, value: String },
    #[error("no fault {0}")]
    NoFault(u64),
}

fn main() {
    if let Err(e) = run() {
        eprintln!("faultfs: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), MainError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (backing, mountpoint, socket) = match args.as_slice() {
        [b, m, flag, s] if flag == "--control" => {
            (PathBuf::from(b), PathBuf::from(m), PathBuf::from(s))
        }
        _ => return Err(MainError::Usage),
    };
    // Blocked before any thread starts, so every thread inherits the mask
    // and the signals wait for `wait` below.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.thread_block().map_err(MainError::Signals)?;

    let fs = FaultFs::mount(&backing, &mountpoint).map_err(MainError::Mount)?;
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(|source| MainError::Listen {
        path: socket.clone(),
        source,
    })?;
    let control = fs.control();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let control = control.clone();
            std::thread::spawn(move || serve(conn, &control));
        }
    });
    println!(
        "faultfs: mounted {}, control {}",
        fs.path().display(),
        socket.display()
    );
    let _ = std::io::stdout().flush();

    loop {
        match signals.wait() {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(MainError::Signals(e)),
        }
    }
    drop(fs);
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

fn serve(conn: UnixStream, control: &Control) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match command(control, &line) {
            Ok(a) if a.is_empty() => "ok".to_string(),
            Ok(a) => format!("ok {a}"),
            Err(e) => format!("err {e}"),
        };
        if writeln!(out, "{answer}").is_err() {
            return;
        }
    }
}

fn arg<'a>(
    words: &mut impl Iterator<Item = &'a str>,
    what: &'static str,
) -> Result<&'a str, CommandError> {
    words.next().ok_or(CommandError::Missing(what))
}

fn num<T: std::str::FromStr>(value: &str, what: &'static str) -> Result<T, CommandError> {
    value.parse().map_err(|_| CommandError::Bad {
        what,
        value: value.to_string(),
    })
}

fn command(control: &Control, line: &str) -> Result<String, CommandError> {
    let mut words = line.split_whitespace();
    let verb = arg(&mut words, "command")?;
    match verb {
        "freeze" => control.freeze(),
        "thaw" => control.thaw(),
        "sync" => control.sync(),
        "cut" => {
            let how = match words.next() {
                None | Some("all") => Cut::All,
                Some("random") => Cut::RandomSubset {
                    seed: num(arg(&mut words, "SEED")?, "seed")?,
                    keep: num(arg(&mut words, "KEEP")?, "keep fraction")?,
                },
                Some("tear") => Cut::Tear {
                    seed: num(arg(&mut words, "SEED")?, "seed")?,
                },
                Some(other) => {
                    return Err(CommandError::Bad {
                        what: "cut",
                        value: other.to_string(),
                    })
                }
            };
            return Ok(report(&control.cut(how)));
        }
        "fault" => {
            let op = arg(&mut words, "OP")?;
            let op = Op::from_name(op).ok_or_else(|| CommandError::Bad {
                what: "op",
                value: op.to_string(),
            })?;
            let path = match arg(&mut words, "PATH")? {
                "*" => String::new(),
                p => p.to_string(),
            };
            let nth = num(arg(&mut words, "NTH")?, "nth")?;
            let times = match arg(&mut words, "TIMES")? {
                "forever" => None,
                t => Some(num(t, "times")?),
            };
            let action = match arg(&mut words, "ACTION")? {
                "eio" => Action::Error(libc::EIO),
                "enospc" => Action::Error(libc::ENOSPC),
                "eio-losing-writes" => Action::ErrorLosingWrites(libc::EIO),
                "errno" => {
                    let n = arg(&mut words, "N")?;
                    match num(n, "errno")? {
                        // The kernel would take ENOSYS as "not supported".
                        e if e > 0 && e != libc::ENOSYS => Action::Error(e),
                        _ => {
                            return Err(CommandError::Bad {
                                what: "errno (not 0 or ENOSYS)",
                                value: n.to_string(),
                            })
                        }
                    }
                }
                "delay-ms" => {
                    Action::Delay(Duration::from_millis(num(arg(&mut words, "N")?, "delay")?))
                }
                "freeze-before" => Action::FreezeBefore,
                "freeze-after" => Action::FreezeAfter,
                other => {
                    return Err(CommandError::Bad {
                        what: "action",
                        value: other.to_string(),
                    })
                }
            };
            let id = control.add_fault(Fault {
                op,
                path,
                nth,
                times,
                action,
            });
            return Ok(id.0.to_string());
        }
        "unfault" => {
            let id = num(arg(&mut words, "ID")?, "fault id")?;
            if !control.remove_fault(FaultId(id)) {
                return Err(CommandError::NoFault(id));
            }
        }
        "clear" => control.clear_faults(),
        "space" => match arg(&mut words, "TOTAL or backing")? {
            "backing" => control.set_space(None),
            total => control.set_space(Some(Space {
                total: num(total, "total bytes")?,
                free: num(arg(&mut words, "FREE")?, "free bytes")?,
            })),
        },
        "stats" => {
            let s = control.stats();
            return Ok(format!(
                "writes={} fsyncs={} fdatasyncs={} fsyncdirs={} renames={} unsynced_writes={} \
                 unsynced_bytes={} pending_namespace_ops={} held={} delayed={} faults_fired={} cuts={}",
                s.writes,
                s.fsyncs,
                s.fdatasyncs,
                s.fsyncdirs,
                s.renames,
                s.unsynced_writes,
                s.unsynced_bytes,
                s.pending_namespace_ops,
                s.held_requests,
                s.delayed_requests,
                s.faults_fired,
                s.cuts
            ));
        }
        "frozen" => return Ok(frozen(control.frozen())),
        "wait-frozen" => {
            let ms = num(arg(&mut words, "MS")?, "milliseconds")?;
            return Ok(frozen(control.wait_frozen(Duration::from_millis(ms))));
        }
        other => return Err(CommandError::Unknown(other.to_string())),
    }
    Ok(String::new())
}

fn frozen(at: Option<FrozenAt>) -> String {
    match at {
        None => "not-frozen".into(),
        Some(at) => format!(
            "frozen op={} path={:?} applied={}",
            at.op.map_or("manual", Op::name),
            at.path,
            at.applied
        ),
    }
}

fn report(r: &CutReport) -> String {
    let mut s = format!(
        "writes_dropped={} writes_kept={} bytes_dropped={} bytes_kept={} size_changes_dropped={} \
         size_changes_kept={} namespace_ops_dropped={} orphans_freed={} requests_failed={}",
        r.writes_dropped,
        r.writes_kept,
        r.bytes_dropped,
        r.bytes_kept,
        r.size_changes_dropped,
        r.size_changes_kept,
        r.namespace_ops_dropped,
        r.orphans_freed,
        r.requests_failed
    );
    if let Some(t) = &r.torn {
        s.push_str(&format!(
            " torn={:?}@{}+{}:{}",
            t.path, t.offset, t.len, t.kept
        ));
    }
    s
}
