//! [`Table`]: reads the keys of one TOML table strictly, collecting every
//! problem instead of stopping at the first.
//!
//! The `config` crate's own conversions are lenient (`speed = true` would
//! be 1, `name = 1234` would be `"1234"`), so values are read from their
//! [`ValueKind`] here: a whole number is an integer or a string of digits
//! (as environment overrides arrive), a string is a string, a boolean is a
//! boolean (or, from an environment variable, the word `true` or `false`).
//! Each key asked for is remembered, so what is left over is reported as
//! unknown, with the key that was probably meant.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use config::{Map, Value, ValueKind};

use crate::error::Problem;

/// Configuration keys (`metrics.enabled`) set by environment variables, to
/// the variable's name.
pub(crate) type EnvKeys = BTreeMap<String, String>;

static NO_ENV: EnvKeys = BTreeMap::new();

/// The unit of a bare number for a duration key.
#[derive(Clone, Copy)]
pub(crate) enum Unit {
    /// `billing_timeout = 60` is 60 minutes (the ACS convention).
    Minutes,
    /// `reconnect_max = 30` is 30 seconds.
    Seconds,
}

/// One table being read: its keys are taken out one by one.
pub(crate) struct Table<'a> {
    at: String,
    map: Map<String, Value>,
    /// The keys asked for, in order: the keys this table has.
    keys: Vec<&'static str>,
    /// Keys that were present (whatever their value).
    given: BTreeSet<&'static str>,
    /// Keys whose value has the wrong type.
    rejected: BTreeSet<&'static str>,
    /// Values of the wrong type, reported before the other problems.
    typed: Vec<Problem>,
    problems: Vec<Problem>,
    /// Keys given where they have no effect: reported, never refused.
    warnings: Vec<Problem>,
    env: &'a EnvKeys,
    /// While set, a valid value is reported as having no effect here:
    /// the message, with `{key}` standing for the key.
    unused: Option<String>,
}

impl<'a> Table<'a> {
    pub fn new(at: String, map: Map<String, Value>, env: &'a EnvKeys) -> Table<'a> {
        Table {
            at,
            map,
            keys: Vec::new(),
            given: BTreeSet::new(),
            rejected: BTreeSet::new(),
            typed: Vec::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
            env,
            unused: None,
        }
    }

    /// An empty table: reading it gives every key's default.
    pub fn empty() -> Table<'static> {
        Table::new(String::new(), Map::new(), &NO_ENV)
    }

    /// A table holding the string values `pairs` only.
    pub fn with(pairs: &[(&str, &str)]) -> Table<'static> {
        let map = pairs.iter().map(|(k, v)| (k.to_string(), Value::from(*v)));
        Table::new(String::new(), map.collect(), &NO_ENV)
    }

    /// The keys this table has, in order (after every key was read).
    #[cfg(test)]
    pub fn keys(&self) -> &[&'static str] {
        &self.keys
    }

    /// The full name of `key`: `ports[0].speed`; `""` names the table.
    pub fn key(&self, key: &str) -> String {
        match (self.at.is_empty(), key.is_empty()) {
            (_, true) => self.at.clone(),
            (true, false) => key.to_string(),
            (false, false) => format!("{}.{key}", self.at),
        }
    }

    pub fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(self.key(key), message));
    }

    /// A problem at `key`, and `None`.
    pub fn fail<T>(&mut self, key: &str, message: impl Into<String>) -> Option<T> {
        self.problem(key, message);
        None
    }

    /// A required key is absent.
    pub fn missing(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem::missing(self.key(key), message));
    }

    /// Records `result`'s error as a problem at `key`.
    pub fn check<E: ToString>(&mut self, key: &str, result: Result<(), E>) {
        if let Err(e) = result {
            self.problem(key, e.to_string());
        }
    }

    pub fn problem_count(&self) -> usize {
        self.typed.len() + self.problems.len()
    }

    /// The problems so far other than values of the wrong type.
    pub fn value_problem_count(&self) -> usize {
        self.problems.len()
    }

    /// Whether `key` is in the table and not read yet.
    pub fn map_has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Whether `key` was in the table, with any value.
    pub fn given(&self, key: &str) -> bool {
        self.given.contains(key)
    }

    /// Whether `key` was in the table with a value of the right type.
    pub fn accepted(&self, key: &str) -> bool {
        self.given(key) && !self.rejected.contains(key)
    }

    /// Until called again with `None`, valid values are read as usual and
    /// each key given is also reported as without effect here (a warning,
    /// not a problem), with `message` (`{key}` is replaced by the key).
    /// Invalid values stay problems.
    pub fn unused(&mut self, message: Option<String>) {
        self.unused = message;
    }

    /// `key` is given where it has no effect: a warning, `message` saying
    /// why.
    pub fn warning(&mut self, key: &str, message: impl Into<String>) {
        let key = self.key(key);
        if !self.warnings.iter().any(|w| w.key == key) {
            self.warnings.push(Problem::new(key, message.into()));
        }
    }

    fn take(&mut self, key: &'static str) -> Option<Value> {
        self.keys.push(key);
        let value = self.map.remove(key)?;
        self.given.insert(key);
        Some(value)
    }

    /// `value`; in an [`unused`](Self::unused) stretch, with a warning.
    fn accept<T>(&mut self, key: &str, value: T) -> Option<T> {
        if let Some(message) = self.unused.clone() {
            self.warning(key, message.replace("{key}", key));
        }
        Some(value)
    }

    /// A value of the wrong type at `key`.
    fn wrong_type<T>(&mut self, key: &'static str, message: String) -> Option<T> {
        self.rejected.insert(key);
        self.typed.push(Problem::new(self.key(key), message));
        None
    }

    fn wrong<T>(&mut self, key: &'static str, expected: &str, found: &ValueKind) -> Option<T> {
        self.wrong_type(
            key,
            format!("expected {expected}, found {}", kind_name(found)),
        )
    }

    /// A string.
    pub fn text(&mut self, key: &'static str) -> Option<String> {
        match self.take(key)?.kind {
            ValueKind::String(s) => self.accept(key, s),
            other => self.wrong(key, "a string", &other),
        }
    }

    /// A secret string: no message shows the value.
    pub fn secret(&mut self, key: &'static str) -> Option<String> {
        let found = match self.take(key)?.kind {
            ValueKind::String(s) => return Some(s),
            ValueKind::Boolean(_) => "a boolean",
            ValueKind::Table(_) => "a table",
            ValueKind::Array(_) => "an array",
            ValueKind::Nil => "nothing",
            _ => "a number (write it in quotes)",
        };
        self.wrong_type(key, format!("expected a string, found {found}"))
    }

    /// A path: a string that is not empty and has no NUL.
    pub fn path(&mut self, key: &'static str) -> Option<PathBuf> {
        let text = self.text(key)?;
        match check_path(&text) {
            Ok(()) => Some(PathBuf::from(text)),
            Err(why) => self.fail(key, why),
        }
    }

    /// A whole number: an integer, or a string of digits.
    pub fn int(&mut self, key: &'static str) -> Option<i64> {
        let value = self.take(key)?;
        let n = match &value.kind {
            ValueKind::I64(n) => Ok(*n),
            ValueKind::U64(n) => i64::try_from(*n).map_err(|_| format!("{n} is far too large")),
            ValueKind::I128(n) => i64::try_from(*n).map_err(|_| format!("{n} is far too large")),
            ValueKind::U128(n) => i64::try_from(*n).map_err(|_| format!("{n} is far too large")),
            ValueKind::String(s) => match s.trim().parse() {
                Ok(n) => Ok(n),
                Err(_) => return self.wrong(key, "a whole number", &value.kind),
            },
            other => return self.wrong(key, "a whole number", other),
        };
        match n {
            Ok(n) => self.accept(key, n),
            Err(why) => self.wrong_type(key, why),
        }
    }

    /// `true` or `false`; from an environment variable, those words.
    pub fn bool(&mut self, key: &'static str) -> Option<bool> {
        let from_env = self.env.contains_key(&self.key(key));
        match self.take(key)?.kind {
            ValueKind::Boolean(b) => self.accept(key, b),
            ValueKind::String(s) if from_env && (s == "true" || s == "false") => {
                self.accept(key, s == "true")
            }
            other => self.wrong(key, "true or false", &other),
        }
    }

    /// A whole number in `range`, as `T`; `unit` ends the message of a
    /// number out of range. `default` when absent or wrong.
    pub fn num<T: TryFrom<i64>>(
        &mut self,
        key: &'static str,
        default: T,
        range: RangeInclusive<i64>,
        unit: &str,
    ) -> T {
        let why = format!(
            "is out of range; use {} to {} ({unit})",
            range.start(),
            range.end()
        );
        self.num_or(key, default, range, &why)
    }

    /// As [`num`](Self::num), with `why` after the number in the message.
    pub fn num_or<T: TryFrom<i64>>(
        &mut self,
        key: &'static str,
        default: T,
        range: RangeInclusive<i64>,
        why: &str,
    ) -> T {
        match self.int(key) {
            Some(n) if range.contains(&n) => T::try_from(n).unwrap_or(default),
            Some(n) => {
                self.problem(key, format!("{n} {why}"));
                default
            }
            None => default,
        }
    }

    /// One of an enum's names; `default` when absent or wrong.
    pub fn word<T: FromStr>(&mut self, key: &'static str, default: T) -> T
    where
        T::Err: ToString,
    {
        let Some(text) = self.text(key) else {
            return default;
        };
        text.parse().unwrap_or_else(|e: T::Err| {
            self.problem(key, e.to_string());
            default
        })
    }

    /// A duration: a humantime string (`"90s"`, `"1h 30m"`) or a whole
    /// number of `unit`, bare or quoted. Zero is [`Duration::ZERO`].
    pub fn duration(&mut self, key: &'static str, unit: Unit) -> Option<Duration> {
        let value = self.take(key)?;
        let (name, secs) = match unit {
            Unit::Minutes => ("minutes", 60),
            Unit::Seconds => ("seconds", 1),
        };
        let number = |n: i64| match u64::try_from(n) {
            Err(_) => Err(format!("{n} is negative; durations cannot be negative")),
            Ok(n) => n
                .checked_mul(secs)
                .map(Duration::from_secs)
                .ok_or_else(|| format!("{n} {name} is too long")),
        };
        if let ValueKind::U64(n) = value.kind {
            return self.wrong_type(key, format!("{n} is far too large"));
        }
        let parsed = match &value.kind {
            ValueKind::I64(n) => number(*n),
            ValueKind::String(text) => {
                let trimmed = text.trim();
                if let Ok(n) = trimmed.parse::<i64>() {
                    number(n)
                } else if trimmed.starts_with('-') {
                    Err(format!(
                        "{text:?} is negative; durations cannot be negative"
                    ))
                } else {
                    humantime::parse_duration(trimmed).map_err(|e| {
                        format!(
                            "{text:?} is not a duration ({e}); write e.g. \"90s\", \"60m\", \
                             \"1h\", \"500ms\" or a whole number of {name}"
                        )
                    })
                }
            }
            other => return self.wrong(key, "a duration such as \"90s\" or a whole number", other),
        };
        match parsed {
            Ok(d) => self.accept(key, d),
            Err(why) => self.fail(key, why),
        }
    }

    /// A duration in whole seconds from `min` to `max`; `zero`, when set,
    /// is the message for 0 (which is else a value like any other).
    pub fn seconds(
        &mut self,
        key: &'static str,
        min: Duration,
        max: Duration,
        zero: Option<&str>,
    ) -> Option<Duration> {
        let d = self.duration(key, Unit::Seconds)?;
        let show = |d: Duration| humantime::format_duration(d).to_string();
        let why = match zero {
            Some(why) if d.is_zero() => why.to_string(),
            _ if d.is_zero() => return Some(d),
            _ if d < min => format!("{} is too short; at least {}", show(d), show(min)),
            _ if d > max => format!("{} is too long; at most {}", show(d), show(max)),
            _ => return Some(d),
        };
        self.fail(key, why)
    }

    /// The table at `key`: an empty one when absent, `None` (a problem)
    /// when the value is not a table. `what` names the expected table.
    pub fn table(&mut self, key: &'static str, what: &str) -> Option<Table<'a>> {
        match self.take(key) {
            None => Some(Table::new(self.key(key), Map::new(), self.env)),
            Some(value) => self.child(self.key(key), value, what),
        }
    }

    /// The elements of the array at `key`: `None` when absent or not an
    /// array (a problem).
    pub fn array(&mut self, key: &'static str, what: &str) -> Option<Vec<Value>> {
        match self.take(key)?.kind {
            ValueKind::Array(values) => Some(values),
            // A section of the wrong shape is reported in its place.
            other => self.fail(key, format!("expected {what}, found {}", kind_name(&other))),
        }
    }

    /// An array of strings at `key`: `None` when absent; an element that is
    /// not a string is a problem (the others are kept).
    pub fn strings(&mut self, key: &'static str) -> Option<Vec<String>> {
        let values = self.array(key, "an array of strings")?;
        let mut out = Vec::new();
        for (i, value) in values.into_iter().enumerate() {
            match value.kind {
                ValueKind::String(s) => out.push(s),
                other => {
                    let message = format!("expected a string, found {}", kind_name(&other));
                    self.problems
                        .push(Problem::new(format!("{}[{i}]", self.key(key)), message));
                }
            }
        }
        self.accept(key, out)
    }

    /// `value` as the table at `at` (`ports[2]`).
    pub fn child(&mut self, at: String, value: Value, what: &str) -> Option<Table<'a>> {
        match value.kind {
            ValueKind::Table(map) => Some(Table::new(at, map, self.env)),
            other => {
                let message = format!("expected {what}, found {}", kind_name(&other));
                self.problems.push(Problem::new(at, message));
                None
            }
        }
    }

    /// Reads the table `child` with `read`, then adds its problems here.
    pub fn read<R>(&mut self, mut child: Table<'a>, read: impl FnOnce(&mut Table<'a>) -> R) -> R {
        let value = read(&mut child);
        child.finish(&mut self.problems, &mut self.warnings);
        value
    }

    /// Adds this table's problems to `out`: the unknown keys first (in
    /// sorted order), then the values of the wrong type, then the rest,
    /// each in the order found; and its warnings to `warnings`.
    pub fn finish(self, out: &mut Vec<Problem>, warnings: &mut Vec<Problem>) {
        warnings.extend(self.warnings);
        let mut unknown: Vec<String> = self.map.into_keys().collect();
        unknown.sort();
        for key in unknown {
            let full = match self.at.as_str() {
                "" => key.clone(),
                at => format!("{at}.{key}"),
            };
            out.push(Problem::new(full, unknown_key(&key, &self.keys)));
        }
        out.extend(self.typed);
        out.extend(self.problems);
    }
}

fn kind_name(kind: &ValueKind) -> String {
    match kind {
        ValueKind::Nil => "nothing".to_string(),
        ValueKind::Boolean(b) => format!("boolean {b}"),
        ValueKind::I64(n) => format!("integer {n}"),
        ValueKind::I128(n) => format!("integer {n}"),
        ValueKind::U64(n) => format!("integer {n}"),
        ValueKind::U128(n) => format!("integer {n}"),
        ValueKind::Float(x) => format!("number {x}"),
        ValueKind::String(s) => format!("string {s:?}"),
        ValueKind::Table(_) => "a table".to_string(),
        ValueKind::Array(_) => "an array".to_string(),
    }
}

/// Not empty and no NUL: the rules of every path.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        Err("must not be empty".to_string())
    } else if path.contains('\0') {
        Err(format!("{path:?} contains a NUL character"))
    } else {
        Ok(())
    }
}

/// The message for an unknown key: a suggestion when a known key is
/// close, else the list of known keys.
fn unknown_key(key: &str, fields: &[&str]) -> String {
    let lower = key.to_lowercase();
    let closest = fields
        .iter()
        .map(|f| (edit_distance(key, f), *f))
        .min()
        .filter(|(d, f)| *d <= 2 && *d < key.len().max(f.len()))
        // A shortened key: `cache` for `cache_mb`.
        .or_else(|| {
            let prefix_of = |f: &&&str| lower.len() >= 3 && f.starts_with(lower.as_str());
            fields.iter().find(prefix_of).map(|f| (0, *f))
        });
    match closest {
        Some((_, field)) => format!("unknown key; did you mean `{field}`?"),
        None => format!("unknown key; the keys here are {}", fields.join(", ")),
    }
}

/// Levenshtein distance over chars, case-insensitive.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances_and_suggestions() {
        assert_eq!(edit_distance("sped", "speed"), 1);
        assert_eq!(edit_distance("Name", "name"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let fields = ["name", "data_dir", "spool_dir"];
        assert_eq!(
            unknown_key("nmae", &fields),
            "unknown key; did you mean `name`?"
        );
        assert_eq!(
            unknown_key("colour", &fields),
            "unknown key; the keys here are name, data_dir, spool_dir"
        );
    }
}
