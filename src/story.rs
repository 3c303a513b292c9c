//! The demo's story: one line per event that matters, told from the
//! status board (the same facts the status page shows), and a live
//! progress line when stdout is a terminal.
//!
//! The log itself goes to a file (JSON lines) unless `--log-format` asks
//! for it on stderr; see `logging::init_demo`.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use billbox_status::board::{Board, Change, Link};
use billbox_status::snapshot::number;
use billbox_store::{Store, DELIVERY_CURSOR, FILES_CURSOR};

/// How often the board is looked at.
const LOOK_EVERY: Duration = Duration::from_millis(40);
/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Prints story lines; on a terminal, keeps a progress line under them.
pub struct Teller {
    tty: bool,
    /// The progress line now shown (empty: none).
    progress: Mutex<String>,
    started: Instant,
}

impl Teller {
    pub fn new() -> Teller {
        Teller {
            tty: std::io::stdout().is_terminal(),
            progress: Mutex::new(String::new()),
            started: Instant::now(),
        }
    }

    /// Prints one line of the story, stamped with the seconds since the
    /// demo began.
    pub fn say(&self, line: &str) {
        let progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = std::io::stdout().lock();
        let t = self.started.elapsed().as_secs_f64();
        if self.tty && !progress.is_empty() {
            let _ = write!(out, "\r\x1b[2K");
        }
        let _ = writeln!(out, "{t:>5.1}s  {line}");
        if self.tty && !progress.is_empty() {
            let _ = write!(out, "{progress}");
        }
        let _ = out.flush();
    }

    /// Shows `line` as the progress line (terminals only).
    fn progress(&self, line: String) {
        if !self.tty {
            return;
        }
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[2K{line}");
        let _ = out.flush();
        *progress = line;
    }

    /// Clears the progress line for good.
    pub fn end_progress(&self) {
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        if self.tty && !progress.is_empty() {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K");
            let _ = out.flush();
        }
        progress.clear();
    }
}

/// One port of the story: its name and what to call its PBX.
pub struct Character {
    pub port: String,
    pub pbx: String,
}

/// What the narrator remembers.
#[derive(Default)]
struct Seen {
    /// The last change of the board's journal told.
    last: u64,
    /// An outage began: once it ends and nothing waits, say so.
    draining: bool,
    resumed: bool,
}

/// Watches the board and tells what changes, until stopped.
pub struct Narrator {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Narrator {
    pub fn start(
        teller: Arc<Teller>,
        characters: Vec<Character>,
        urls: (String, String),
        store: Store,
    ) -> Narrator {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("demo-story".into())
            .spawn(move || {
                let board = billbox_status::board();
                let mut seen = Seen::default();
                let mut drawn = Instant::now() - PROGRESS_EVERY;
                while !stopping.load(Ordering::Acquire) {
                    look(board, &teller, &characters, &urls, &store, &mut seen);
                    if drawn.elapsed() >= PROGRESS_EVERY {
                        drawn = Instant::now();
                        teller.progress(progress(&store, &characters));
                    }
                    std::thread::sleep(LOOK_EVERY);
                }
                // The last changes before the stop.
                look(board, &teller, &characters, &urls, &store, &mut seen);
                teller.end_progress();
            })
            .expect("a thread for the story");
        Narrator {
            stop,
            thread: Some(thread),
        }
    }

    /// Tells the last changes and stops.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `stored 240 · in files 200 · acknowledged 180 · waiting 60`.
fn progress(store: &Store, characters: &[Character]) -> String {
    let (mut stored, mut filed, mut acked) = (0, 0, 0);
    for c in characters {
        stored += store.durable_seq(&c.port);
        filed += store.cursor(&c.port, FILES_CURSOR).unwrap_or(0);
        acked += store.cursor(&c.port, DELIVERY_CURSOR).unwrap_or(0);
    }
    let waiting = store.total_backlog(DELIVERY_CURSOR).unwrap_or(0);
    format!(
        "       records stored {} · in closed files {} · acknowledged {} · waiting {}",
        number(stored),
        number(filed),
        number(acked),
        number(waiting)
    )
}

fn look(
    board: &Board,
    teller: &Teller,
    characters: &[Character],
    (primary, secondary): &(String, String),
    store: &Store,
    seen: &mut Seen,
) {
    let pbx = |port: &str| {
        characters
            .iter()
            .find(|c| c.port == port)
            .map(|c| c.pbx.as_str())
    };
    let url = |server: Option<&str>| match server {
        Some("secondary") => secondary.as_str(),
        _ => primary.as_str(),
    };
    let waiting = || store.total_backlog(DELIVERY_CURSOR).unwrap_or(0);
    for (n, change) in board.changes_since(seen.last) {
        seen.last = n;
        match change {
            Change::Link { port, link } => {
                let Some(who) = pbx(&port) else { continue };
                let detail = link.detail().unwrap_or("");
                match link {
                    Link::Up { .. } => teller.say(&format!("Port {port} is up: {who} ({detail}).")),
                    Link::Listening { .. } => {
                        teller.say(&format!("Port {port} listens on {detail} for {who}."))
                    }
                    Link::Down { .. } => teller.say(&format!("Port {port} went down: {detail}.")),
                    Link::CannotOpen { .. } => {
                        teller.say(&format!("Port {port} cannot open: {detail}."))
                    }
                    Link::Starting => {}
                }
            }
            Change::FileClosed { port, file } if pbx(&port).is_some() => {
                teller.say(&format!(
                    "File closed: {} ({} records, port {port}).",
                    file.name,
                    number(file.records)
                ));
            }
            Change::OutageBegan {
                destination,
                server,
                error,
            } if destination == "delivery" => {
                seen.draining = true;
                seen.resumed = false;
                teller.say(&format!(
                    "Delivery failed: the {} ({}) does not answer ({error}); records wait in the store.",
                    server.unwrap_or("primary"),
                    url(server)
                ));
            }
            Change::Server {
                destination,
                from,
                to,
            } if destination == "delivery" => match (from, to) {
                (Some(_), "secondary") => teller.say(&format!(
                    "Fail-over: delivery goes to the secondary ({secondary})."
                )),
                (Some("secondary"), "primary") => teller.say(&format!(
                    "Fail-back: delivery is back on the primary ({primary})."
                )),
                _ => {}
            },
            Change::OutageEnded {
                destination,
                server,
            } if destination == "delivery" => {
                seen.resumed = true;
                teller.say(&format!(
                    "Delivery resumed on the {}: {} records wait and drain.",
                    server.unwrap_or("primary"),
                    number(waiting())
                ));
            }
            _ => {}
        }
    }
    if seen.draining && seen.resumed && waiting() == 0 {
        seen.draining = false;
        teller.say("The backlog is drained: every stored record so far is acknowledged.");
    }
}
