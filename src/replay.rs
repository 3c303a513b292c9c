//! `billbox replay`: asks the running billbox, over its admin socket, to
//! send a range of records again, and prints what it says.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use billbox_runtime::admin::{socket_path, Bound, ReplayEvent, ReplayRequest, Request, Target};

use crate::cli::Command;

fn bound(text: &str) -> Bound {
    match text.trim().parse::<u64>() {
        Ok(seq) => Bound::Seq(seq),
        Err(_) => Bound::Time(text.trim().to_string()),
    }
}

/// Exit 0 when the whole range was sent, 1 when it stopped or was refused,
/// 2 when the daemon cannot be reached.
pub fn main(command: Command) -> ExitCode {
    let Command::Replay {
        config,
        port,
        from,
        to,
        url,
        destination,
        again,
    } = command
    else {
        unreachable!("replay::main is given the replay command")
    };
    let cfg = match crate::load(&config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let target = match (url, destination) {
        (Some(u), _) => Target::Url(u),
        (None, Some(d)) => Target::Destination(d),
        (None, None) => unreachable!("clap requires --url or --destination"),
    };
    let request = Request::Replay(ReplayRequest {
        port: port.clone(),
        from: bound(&from),
        to: to.as_deref().map(bound),
        target,
        again,
    });
    let path = socket_path(&cfg.gateway.data_dir);
    let mut stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            let why = match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    "permission denied: run it as billbox's user (or root)".to_string()
                }
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    "billbox is not running with this config (no admin socket)".to_string()
                }
                _ => e.to_string(),
            };
            eprintln!("billbox replay: {}: {why}", path.display());
            return ExitCode::from(2);
        }
    };
    let mut line = serde_json::to_vec(&request).expect("a request serializes");
    line.push(b'\n');
    if let Err(e) = stream.write_all(&line) {
        eprintln!("billbox replay: {}: {e}", path.display());
        return ExitCode::from(2);
    }
    let terminal = std::io::stderr().is_terminal();
    let mut progress_shown = false;
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let Ok(event) = serde_json::from_str::<ReplayEvent>(&line) else {
            continue;
        };
        if progress_shown && terminal && !matches!(event, ReplayEvent::Progress { .. }) {
            eprintln!();
            progress_shown = false;
        }
        match event {
            ReplayEvent::Range {
                first,
                last,
                total,
                resume_from,
                gone,
                gone_exact,
            } => {
                match gone {
                    Some((a, b)) if gone_exact => eprintln!(
                        "replay {port}: records {a} to {b} can no longer be replayed: the store removed them \
                         (filed and delivered, or older than store.retain); the ACS files still hold them."
                    ),
                    Some((_, b)) => eprintln!(
                        "replay {port}: records up to {b} are no longer in the store (filed and delivered, or \
                         older than store.retain); those of them stored after --from can no longer be \
                         replayed; the ACS files still hold them."
                    ),
                    None => {}
                }
                if first > last {
                    eprintln!("replay {port}: nothing of the range is in the store any more.");
                }
                match resume_from {
                    Some(r) => eprintln!("replay {port}: records {first} to {last}; resuming at {r}, {total} to send."),
                    None if total == 0 && first <= last => {
                        eprintln!("replay {port}: records {first} to {last} were all sent by an earlier run (--again sends them again).")
                    }
                    None => eprintln!("replay {port}: records {first} to {last}, {total} to send."),
                }
            }
            ReplayEvent::Progress { done, total, rate } => {
                let eta = (rate > 0.0).then(|| (total.saturating_sub(done)) as f64 / rate);
                let eta = eta.map_or("?".to_string(), |s| format!("{s:.0} s"));
                let text =
                    format!("replay {port}: {done} of {total} records, {rate:.0}/s, ETA {eta}");
                if terminal {
                    eprint!("\r{text}   ");
                    progress_shown = true;
                } else {
                    eprintln!("{text}");
                }
            }
            ReplayEvent::Done { records } => {
                println!("replay {port}: done, {records} records sent.");
                return ExitCode::SUCCESS;
            }
            ReplayEvent::Failed { reason, next_seq } => {
                let resume = next_seq.map_or(String::new(), |s| {
                    format!("; run it again to resume at {s}")
                });
                eprintln!("replay {port}: stopped: {reason}{resume}.");
                return ExitCode::from(1);
            }
            ReplayEvent::Refused { reason } => {
                eprintln!("billbox replay: {reason}");
                return ExitCode::from(1);
            }
        }
    }
    eprintln!("billbox replay: billbox closed the connection before the replay ended; run it again to resume.");
    ExitCode::from(1)
}
