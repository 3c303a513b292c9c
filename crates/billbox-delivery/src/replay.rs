//! Replay: a range of one port's stored records sent again, as ordinary
//! packets with their original ids, to a server (which drops the ones it
//! already has). The rules here: which sequences a range is
//! ([`resolve`]), and the sending loop ([`replay`]) with a durable cursor
//! of its own, so a replay stopped half way resumes where it stopped.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use billbox_record::Record;
use billbox_store::Store;

use crate::acks::{record_with_retries, Ack, AckSink};
use crate::endpoint::{Endpoint, PostFuture};

/// One end of a range, as the operator gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeEnd {
    /// A sequence number.
    Seq(u64),
    /// A time (microseconds since the Unix epoch): the first record that
    /// arrived at or after it (as a `--to`: the last record before it).
    TimeUs(i64),
}

/// The sequences a range covers, and what of it is gone from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The first and last sequence to send (`first > last`: nothing held).
    pub first: u64,
    pub last: u64,
    /// Sequences of the range the store no longer holds (removed once filed
    /// and delivered, or past `store.retain`): they are in the ACS files.
    pub gone: Option<(u64, u64)>,
    /// Whether `gone` is exactly the range's part: a range given by time
    /// that starts before the oldest record held can only say that the
    /// removed records up to `gone`'s end may hold some of it.
    pub gone_exact: bool,
}

/// Why a range cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("the store has no record of port {0:?}")]
    NoRecords(String),
    #[error("the range ends before it starts ({from} > {to})")]
    Backwards { from: u64, to: u64 },
    #[error("the range starts after the port's last record ({last})")]
    AfterLast { last: u64 },
    #[error("the store failed: {0}")]
    Store(String),
}

/// The sequences of `port` that `from` .. `to` (default: the last
/// committed record) cover.
pub fn resolve(
    store: &Store,
    port: &str,
    from: RangeEnd,
    to: Option<RangeEnd>,
) -> Result<Resolved, RangeError> {
    let last_committed = store.durable_seq(port);
    if last_committed == 0 {
        return Err(RangeError::NoRecords(port.to_string()));
    }
    let held_from = store.first_held(port).unwrap_or(last_committed + 1);
    // The first held record that arrived at or after `us`.
    let first_at = |us: i64| -> Result<u64, RangeError> {
        for rec in store.records(port, held_from, last_committed) {
            let rec = rec.map_err(|e| RangeError::Store(e.to_string()))?;
            if rec.received_us >= us {
                return Ok(rec.seq);
            }
        }
        Ok(last_committed + 1)
    };
    let first = match from {
        RangeEnd::Seq(s) => s.max(1),
        RangeEnd::TimeUs(us) => first_at(us)?,
    };
    let last = match to {
        None => last_committed,
        Some(RangeEnd::Seq(s)) => s.min(last_committed),
        Some(RangeEnd::TimeUs(us)) => first_at(us)?.saturating_sub(1),
    };
    // By time, before the oldest record held: the removed records may hold
    // some of the range (when they arrived is no longer known).
    let by_time_before_held =
        matches!(from, RangeEnd::TimeUs(_)) && first == held_from && held_from > 1;
    let unknown_part = Resolved {
        first,
        last,
        gone: Some((1, held_from.saturating_sub(1))),
        gone_exact: false,
    };
    if by_time_before_held && first > last {
        return Ok(unknown_part);
    }
    if first > last_committed {
        return Err(RangeError::AfterLast {
            last: last_committed,
        });
    }
    if first > last {
        return Err(RangeError::Backwards {
            from: first,
            to: last,
        });
    }
    if by_time_before_held {
        return Ok(unknown_part);
    }
    let gone = (first < held_from).then(|| (first, last.min(held_from - 1)));
    Ok(Resolved {
        first: first.max(held_from),
        last,
        gone,
        gone_exact: true,
    })
}

/// How far a replay is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    /// Records per second since this run began.
    pub rate: f64,
}

/// Why a replay stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayStopped {
    #[error(
        "the server did not take the packet starting at {seq} after {attempts} attempts: {reason}"
    )]
    Server {
        seq: u64,
        attempts: u32,
        reason: String,
    },
    #[error("stopped at {seq}: the client went away")]
    Cancelled { seq: u64 },
    #[error("the store failed at {seq}: {reason}")]
    Store { seq: u64, reason: String },
}

/// A replay to run.
pub struct Replay {
    pub gateway: Arc<str>,
    pub port: Arc<str>,
    /// Records `from..=last` are sent (`from` is where a resumed replay
    /// goes on).
    pub from: u64,
    pub last: u64,
    /// The servers, tried in turn after a failed attempt.
    pub endpoints: Vec<Endpoint>,
    pub batch_max: usize,
    /// Packets awaiting an answer at most.
    pub window: usize,
    /// Attempts per packet before the replay stops.
    pub attempts: u32,
    pub retry_delay: Duration,
    pub store: Store,
    pub acks: Rc<dyn AckSink>,
    /// The replay's own cursor (moved as packets are acknowledged).
    pub cursor: String,
}

impl Replay {
    /// Sends the records, pipelined, in order; `progress` is called after
    /// each acknowledged packet and says whether to go on. Returns the
    /// records sent.
    pub async fn run(
        self,
        mut progress: impl FnMut(Progress) -> bool,
    ) -> Result<u64, ReplayStopped> {
        let total = self.last + 1 - self.from;
        let began = Instant::now();
        let mut next = self.from;
        let mut done = 0u64;
        let mut in_flight: VecDeque<(u64, u64, Vec<u8>, PostFuture)> = VecDeque::new();
        let mut server = 0usize;
        loop {
            while in_flight.len() < self.window.max(1) && next <= self.last {
                let upto = self.last.min(next + self.batch_max.max(1) as u64 - 1);
                let records: Vec<Record> = self
                    .store
                    .records(&self.port, next, upto)
                    .collect::<Result<_, _>>()
                    .map_err(|e| ReplayStopped::Store {
                        seq: next,
                        reason: e.to_string(),
                    })?;
                let Some(end) = records.last().map(|r| r.seq) else {
                    // Removed meanwhile (past retain): nothing more to send.
                    next = self.last + 1;
                    break;
                };
                let mut body = Vec::new();
                if records.len() == 1 {
                    billbox_wire::encode_cdr(&self.gateway, &records[0], &mut body);
                } else {
                    billbox_wire::encode_cdr_batch(&self.gateway, &records, &mut body);
                }
                let answer = self.endpoints[server].send(0, &body);
                in_flight.push_back((records[0].seq, end, body, answer));
                next = end + 1;
            }
            let Some((first, last, body, answer)) = in_flight.pop_front() else {
                return Ok(done);
            };
            let mut result = answer.await;
            let mut attempt = 1;
            while let Err(e) = result {
                if attempt >= self.attempts {
                    return Err(ReplayStopped::Server {
                        seq: first,
                        attempts: attempt,
                        reason: e.to_string(),
                    });
                }
                // What was behind it goes again after it, in order.
                let behind: Vec<_> = in_flight.drain(..).collect();
                tokio::time::sleep(self.retry_delay).await;
                server = (server + 1) % self.endpoints.len();
                result = self.endpoints[server].send(0, &body).await;
                attempt += 1;
                for (f, l, b, _) in behind {
                    let again = self.endpoints[server].send(0, &b);
                    in_flight.push_back((f, l, b, again));
                }
            }
            let ack = Ack {
                port: self.port.clone(),
                cursor: Some(self.cursor.clone()),
                first,
                last,
                note: None,
            };
            record_with_retries(&*self.acks, ack)
                .await
                .map_err(|e| ReplayStopped::Store {
                    seq: first,
                    reason: e.to_string(),
                })?;
            done += last + 1 - first;
            let secs = began.elapsed().as_secs_f64().max(1e-3);
            let go_on = progress(Progress {
                done,
                total,
                rate: done as f64 / secs,
            });
            if !go_on {
                return Err(ReplayStopped::Cancelled { seq: last + 1 });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use billbox_record::RecordFlags;
    use billbox_store::NewRecord;

    const T0: i64 = 1_790_000_000_000_000;

    /// A store with `n` records of port `p`, one a second from T0.
    fn store(n: u64) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s"), 8 << 20).unwrap();
        let news: Vec<NewRecord> = (0..n)
            .map(|i| NewRecord {
                received_us: T0 + i as i64 * 1_000_000,
                flags: RecordFlags::NONE,
                bytes: format!("r{}\n", i + 1).into_bytes(),
            })
            .collect();
        let a = store.append(&[(Arc::from("p"), &news[..])]).unwrap();
        store.flush_blocking().unwrap();
        store.mark_durable("p", a[0].last());
        (dir, store)
    }

    #[test]
    fn ranges_by_sequence_and_by_time() {
        let (_d, s) = store(10);
        let r = |from, to| resolve(&s, "p", from, to);
        let seq = RangeEnd::Seq;
        assert_eq!(
            r(seq(3), Some(seq(7))),
            Ok(Resolved {
                first: 3,
                last: 7,
                gone: None,
                gone_exact: true,
            })
        );
        assert_eq!(r(seq(3), None).unwrap().last, 10, "to the last record");
        assert_eq!(r(seq(8), Some(seq(99))).unwrap().last, 10);
        // Record i arrived at T0 + (i - 1) s.
        let at = |secs: i64| RangeEnd::TimeUs(T0 + secs * 1_000_000);
        assert_eq!(
            r(at(2), Some(at(5))),
            Ok(Resolved {
                first: 3,
                last: 5,
                gone: None,
                gone_exact: true,
            })
        );
        assert_eq!(
            r(RangeEnd::TimeUs(T0 + 1), None).unwrap().first,
            2,
            "the first at or after"
        );
        assert_eq!(r(seq(11), None), Err(RangeError::AfterLast { last: 10 }));
        assert_eq!(
            r(seq(7), Some(seq(3))),
            Err(RangeError::Backwards { from: 7, to: 3 })
        );
        assert_eq!(
            resolve(&s, "q", seq(1), None),
            Err(RangeError::NoRecords("q".into()))
        );
    }

    #[test]
    fn a_range_partly_removed_says_exactly_what_is_gone() {
        let (_d, s) = store(10);
        s.remove_through("p", 4).unwrap();
        let r = resolve(&s, "p", RangeEnd::Seq(2), Some(RangeEnd::Seq(8))).unwrap();
        assert_eq!(
            r,
            Resolved {
                first: 5,
                last: 8,
                gone: Some((2, 4)),
                gone_exact: true,
            }
        );
        // By time, from before the oldest held record: what is gone is not
        // known exactly (records 1 to 4 may hold some of the range).
        let r = resolve(&s, "p", RangeEnd::TimeUs(T0), Some(RangeEnd::Seq(8))).unwrap();
        assert_eq!(
            (r.first, r.last, r.gone, r.gone_exact),
            (5, 8, Some((1, 4)), false)
        );
        let r = resolve(
            &s,
            "p",
            RangeEnd::TimeUs(T0),
            Some(RangeEnd::TimeUs(T0 + 2_000_000)),
        )
        .unwrap();
        assert_eq!((r.gone, r.gone_exact), (Some((1, 4)), false));
        assert!(r.first > r.last, "all of it may be gone");
        let all_gone = resolve(&s, "p", RangeEnd::Seq(1), Some(RangeEnd::Seq(3))).unwrap();
        assert_eq!(all_gone.gone, Some((1, 3)));
        assert!(all_gone.first > all_gone.last, "nothing to send");
    }
}
