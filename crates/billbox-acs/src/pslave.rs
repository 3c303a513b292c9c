//! `pslave.conf`, as the ACS reads it: one `prefix.key value` per line.
//!
//! `conf.KEY` is the unit's own setting, `all.KEY` the default of every
//! port, `sN.KEY` port N's (from 1), which wins over `all.`. A line
//! starting with `#` is a comment; a line ending in `\` goes on on the next
//! line; a value may be quoted (`"\r\n"`), its escapes kept as written.

use crate::AcsError;

/// Whose setting a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// `conf.`: the unit's.
    Conf,
    /// `all.`: every port's, unless the port has its own.
    All,
    /// `sN.`: port N's.
    Port(u32),
}

/// One setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its line in the file, from 1 (the first line of a continued one).
    pub line: usize,
    pub scope: Scope,
    /// The key without its prefix, e.g. `billing_eor`.
    pub key: String,
    /// The value: without its quotes, escapes as written.
    pub value: String,
    /// Whether the value was quoted.
    pub quoted: bool,
}

impl Entry {
    /// The key as written, e.g. `s1.billing_eor`.
    pub fn full_key(&self) -> String {
        match self.scope {
            Scope::Conf => format!("conf.{}", self.key),
            Scope::All => format!("all.{}", self.key),
            Scope::Port(n) => format!("s{n}.{}", self.key),
        }
    }

    /// The line as it could be written again: `key value`.
    pub fn as_written(&self) -> String {
        match self.quoted {
            true => format!("{} \"{}\"", self.full_key(), self.value),
            false if self.value.is_empty() => self.full_key(),
            false => format!("{} {}", self.full_key(), self.value),
        }
    }
}

/// A parsed `pslave.conf`: its settings in file order. A key given twice
/// for one scope counts once, the later line (as the ACS reads it).
#[derive(Debug, Clone, Default)]
pub struct Pslave {
    entries: Vec<Entry>,
}

impl Pslave {
    /// Reads `text`. Errors name the line.
    pub fn parse(text: &str) -> Result<Pslave, AcsError> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut pending: Option<(usize, String)> = None;
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let (line, mut joined) = match pending.take() {
                Some((first, mut text)) => {
                    text.push_str(raw.trim_start());
                    (first, text)
                }
                None => (number, raw.to_string()),
            };
            if joined.trim_start().starts_with('#') {
                continue;
            }
            if joined.ends_with('\\') && !joined.trim_end().ends_with("\\\\") {
                joined.pop();
                pending = Some((line, joined));
                continue;
            }
            let trimmed = joined.trim();
            if trimmed.is_empty() {
                continue;
            }
            keep(&mut entries, parse_line(line, trimmed)?);
        }
        if let Some((line, text)) = pending {
            keep(&mut entries, parse_line(line, text.trim())?);
        }
        Ok(Pslave { entries })
    }

    /// Every setting, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The setting `key` of `scope`, if given.
    pub fn get(&self, scope: Scope, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.scope == scope && e.key == key)
    }

    /// Port `n`'s value of `key`: its own, else `all.`'s.
    pub fn port_value(&self, n: u32, key: &str) -> Option<&Entry> {
        self.get(Scope::Port(n), key)
            .or_else(|| self.get(Scope::All, key))
    }

    /// The ports with at least one `sN.` line, in order.
    pub fn ports(&self) -> Vec<u32> {
        let mut ports: Vec<u32> = self
            .entries
            .iter()
            .filter_map(|e| match e.scope {
                Scope::Port(n) => Some(n),
                _ => None,
            })
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// Adds `entry`; an earlier line of the same scope and key gives way (the
/// ACS reads the later one).
fn keep(entries: &mut Vec<Entry>, entry: Entry) {
    entries.retain(|e| !(e.scope == entry.scope && e.key == entry.key));
    entries.push(entry);
}

fn parse_line(line: usize, text: &str) -> Result<Entry, AcsError> {
    let not_a_setting = || AcsError::NotASetting {
        line,
        text: text.to_string(),
    };
    let (name, rest) = match text.find(char::is_whitespace) {
        Some(at) => (&text[..at], text[at..].trim()),
        None => (text, ""),
    };
    let (prefix, key) = name.split_once('.').ok_or_else(not_a_setting)?;
    let scope = match prefix {
        "conf" => Scope::Conf,
        "all" => Scope::All,
        s => match s.strip_prefix('s').map(str::parse::<u32>) {
            Some(Ok(n)) if n > 0 => Scope::Port(n),
            _ => return Err(not_a_setting()),
        },
    };
    let key_ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !key_ok {
        return Err(not_a_setting());
    }
    let (value, quoted) = match rest.strip_prefix('"') {
        Some(inner) => (
            closing_quote(inner).ok_or_else(|| AcsError::Unterminated {
                line,
                key: name.to_string(),
            })?,
            true,
        ),
        None => (rest.to_string(), false),
    };
    Ok(Entry {
        line,
        scope,
        key: key.to_string(),
        value,
        quoted,
    })
}

/// What comes before the closing quote of `inner` (escapes kept).
fn closing_quote(inner: &str) -> Option<String> {
    let mut escaped = false;
    for (at, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(inner[..at].to_string()),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_quotes_comments_and_continuations() {
        let text = "# a comment\n\
                    conf.eth_ip\t192.168.160.10\n\
                    all.speed 9600\n\
                    s1.tty ttyS1\n\
                    s1.billing_eor \"\\r\\n\"\n\
                    s2.alias PABX-\\\n  trunk9\n\
                    \n\
                    all.speed 19200\n";
        let p = Pslave::parse(text).unwrap();
        assert_eq!(
            p.get(Scope::Conf, "eth_ip").unwrap().value,
            "192.168.160.10"
        );
        let eor = p.port_value(1, "billing_eor").unwrap();
        assert_eq!(
            (eor.value.as_str(), eor.quoted, eor.line),
            ("\\r\\n", true, 5)
        );
        assert_eq!(p.port_value(2, "alias").unwrap().value, "PABX-trunk9");
        // The later line wins; all. is every port's default.
        assert_eq!(p.port_value(2, "speed").unwrap().value, "19200");
        assert_eq!(p.port_value(2, "speed").unwrap().line, 9);
        assert_eq!(p.ports(), [1, 2]);
        // A continued last line replaces an earlier copy of its key too.
        let p = Pslave::parse("s1.alias A\ns1.alias B\\").unwrap();
        assert_eq!(p.port_value(1, "alias").unwrap().value, "B");
    }

    #[test]
    fn a_line_that_is_not_a_setting_is_an_error_naming_it() {
        for bad in ["speed 9600", "s0.tty ttyS0", "sx.tty a", "x.y z", "s1. a"] {
            let err = Pslave::parse(&format!("all.speed 9600\n{bad}\n")).unwrap_err();
            assert!(err.to_string().starts_with("line 2: "), "{bad}: {err}");
        }
        let err = Pslave::parse("s1.billing_eor \"\\r\\n\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 1: the value of s1.billing_eor has no closing quote"
        );
    }
}
