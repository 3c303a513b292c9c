//! Fault injection for billbox's tests.
//!
//! Code marks a place with [`check`]`("rotator.catch_up")`. In a build
//! with the `enabled` feature (test builds: the root crate enables it
//! through a dev-dependency), the environment variable
//! `BILLBOX_FAILPOINTS` says what happens there, as comma-separated
//! `NAME=ACTION@N` entries:
//! - `panic@3`: the 3rd time the place is reached, panic (once);
//! - `panic@3+`: every time from the 3rd on;
//! - `error@3`, `error@3+`: the same, but [`check`] returns `true` and the
//!   caller fails the way an I/O error would.
//!
//! Without the feature, [`check`] is an inline `false` and the binary
//! holds no trace of this (`.ci/image` checks the release binary).
//! Shared state: the parsed variable and one hit counter per place,
//! process-wide.
#![forbid(unsafe_code)]

/// What a place does when its entry fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Panic,
    Error,
}

/// One `NAME=ACTION@N[+]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub action: Action,
    pub at: u64,
    pub and_after: bool,
}

impl Entry {
    /// Whether the `hit`-th arrival (counting from 1) fires.
    pub fn fires(&self, hit: u64) -> bool {
        hit == self.at || (self.and_after && hit > self.at)
    }
}

/// Parses `BILLBOX_FAILPOINTS`; entries that do not parse are skipped.
pub fn parse(spec: &str) -> Vec<Entry> {
    spec.split(',')
        .filter_map(|e| {
            let (name, rest) = e.trim().split_once('=')?;
            let (action, at) = rest.split_once('@')?;
            let action = match action {
                "panic" => Action::Panic,
                "error" => Action::Error,
                _ => return None,
            };
            let (at, and_after) = match at.strip_suffix('+') {
                Some(n) => (n, true),
                None => (at, false),
            };
            Some(Entry {
                name: name.to_string(),
                action,
                at: at.parse().ok().filter(|n| *n > 0)?,
                and_after,
            })
        })
        .collect()
}

/// The entries of `BILLBOX_FAILPOINTS`, read once.
#[cfg(feature = "enabled")]
fn entries() -> &'static [Entry] {
    static ENTRIES: std::sync::OnceLock<Vec<Entry>> = std::sync::OnceLock::new();
    ENTRIES.get_or_init(|| parse(&std::env::var("BILLBOX_FAILPOINTS").unwrap_or_default()))
}

#[cfg(feature = "enabled")]
fn hit(name: &str) -> Option<Action> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static HITS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    let entry = entries().iter().find(|e| e.name == name)?;
    let mut hits = HITS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let n = hits.entry(name.to_string()).or_default();
    *n += 1;
    entry.fires(*n).then_some(entry.action)
}

/// A place where a test may inject a fault: panics when told to, and
/// returns `true` when the caller must fail as if an I/O error happened.
#[cfg(feature = "enabled")]
pub fn check(name: &str) -> bool {
    act(hit(name), name)
}

/// [`check`] for one port or destination: the entry `NAME:SUBJECT` (e.g.
/// `reader.read:pbx2`) fires for that subject only, `NAME` for any.
#[cfg(feature = "enabled")]
pub fn check_at(name: &str, subject: &str) -> bool {
    // Benches run test builds too: no work when nothing is asked for.
    if entries().is_empty() {
        return false;
    }
    let specific = format!("{name}:{subject}");
    act(hit(&specific).or_else(|| hit(name)), &specific)
}

#[cfg(feature = "enabled")]
fn act(action: Option<Action>, name: &str) -> bool {
    match action {
        Some(Action::Panic) => panic!("injected panic at failpoint {name}"),
        Some(Action::Error) => true,
        None => false,
    }
}

/// Without the `enabled` feature: never fires.
#[cfg(not(feature = "enabled"))]
#[inline(always)]
pub fn check(_name: &str) -> bool {
    false
}

/// Without the `enabled` feature: never fires.
#[cfg(not(feature = "enabled"))]
#[inline(always)]
pub fn check_at(_name: &str, _subject: &str) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_fire_as_written() {
        let e = parse("rotator.catch_up=panic@3, store.commit=error@2+,bad,x=boom@1,y=panic@0");
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0],
            Entry {
                name: "rotator.catch_up".into(),
                action: Action::Panic,
                at: 3,
                and_after: false
            }
        );
        assert!(!e[0].fires(2) && e[0].fires(3) && !e[0].fires(4));
        assert_eq!(e[1].action, Action::Error);
        assert!(!e[1].fires(1) && e[1].fires(2) && e[1].fires(9));
    }

    #[cfg(not(feature = "enabled"))]
    #[test]
    fn without_the_feature_nothing_fires() {
        assert!(!check("anything"));
    }
}
