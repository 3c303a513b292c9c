//! Reading one TOML table into its raw struct while collecting every
//! unknown key and every value of the wrong type, not just the first.
//!
//! serde stops at the first error. So a table that fails as a whole is
//! probed key by key (each raw struct has only optional fields, so a
//! one-key table deserializes on its own); the keys that fail are reported
//! and left out, and the rest is deserialized again so its values can
//! still be checked.

use std::collections::BTreeSet;

use config::{Map, Value, ValueKind};
use serde::de::DeserializeOwned;

use crate::error::Problem;
use crate::raw::field_names;

/// The keys of a table whose values were rejected (and are left out).
pub(crate) type Broken = BTreeSet<&'static str>;

/// `prefix.key`, or `key` at the top level.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Deserializes `table`, found at `prefix` (`""` for the top level), into
/// `T`. Every problem is pushed to `problems`; the result holds the values
/// that were accepted, and [`Broken`] names the keys that were not.
pub(crate) fn read_table<T: DeserializeOwned + Default>(
    prefix: &str,
    table: Map<String, Value>,
    problems: &mut Vec<Problem>,
) -> (T, Broken) {
    let fields = field_names::<T>();
    let mut known: Vec<(&'static str, Value)> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut table = table;
    for &field in fields {
        if let Some(value) = table.remove(field) {
            known.push((field, value));
        }
    }
    unknown.extend(table.into_keys());
    unknown.sort();
    for key in unknown {
        problems.push(Problem::new(join(prefix, &key), unknown_key(&key, fields)));
    }

    let whole =
        |known: &[(&str, Value)]| to_table(known.iter().map(|(k, v)| (k.to_string(), v.clone())));
    if let Ok(value) = whole(&known).try_deserialize::<T>() {
        return (value, Broken::new());
    }

    let mut broken = Broken::new();
    for (key, value) in &known {
        let one = to_table([(key.to_string(), value.clone())]);
        if let Err(e) = one.try_deserialize::<T>() {
            problems.push(Problem::new(join(prefix, key), describe(&e)));
            broken.insert(key);
        }
    }
    known.retain(|(k, _)| !broken.contains(k));
    match whole(&known).try_deserialize::<T>() {
        Ok(value) => (value, broken),
        Err(e) => {
            // Values that pass one by one but not together: not expected
            // with optional fields, but never drop a problem.
            let key = if prefix.is_empty() {
                "(top level)"
            } else {
                prefix
            };
            problems.push(Problem::new(key, describe(&e)));
            broken.extend(known.iter().map(|(k, _)| *k));
            (T::default(), broken)
        }
    }
}

/// The entries of `value`, which must be a table, or a problem at `key`.
pub(crate) fn expect_table(
    key: &str,
    value: Value,
    what: &str,
    problems: &mut Vec<Problem>,
) -> Option<Map<String, Value>> {
    match value.kind {
        ValueKind::Table(map) => Some(map),
        other => {
            problems.push(Problem::new(
                key,
                format!("expected {what}, found {}", kind_name(&other)),
            ));
            None
        }
    }
}

/// The elements of `value`, which must be an array, or a problem at `key`.
pub(crate) fn expect_array(
    key: &str,
    value: Value,
    what: &str,
    problems: &mut Vec<Problem>,
) -> Option<Vec<Value>> {
    match value.kind {
        ValueKind::Array(values) => Some(values),
        other => {
            problems.push(Problem::new(
                key,
                format!("expected {what}, found {}", kind_name(&other)),
            ));
            None
        }
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

fn to_table(entries: impl IntoIterator<Item = (String, Value)>) -> Value {
    let map: Map<String, Value> = entries.into_iter().collect();
    Value::new(None, ValueKind::Table(map))
}

/// The message of a deserialization error without the `config` crate's
/// " for key `...`" and " in origin" tails (the problem's key says where).
fn describe(err: &config::ConfigError) -> String {
    match err {
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => format!("expected {expected}, found {unexpected}"),
        config::ConfigError::At { error, .. } => describe(error),
        config::ConfigError::Message(message) => message.clone(),
        config::ConfigError::NotFound(key) => format!("missing {key}"),
        other => other.to_string(),
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
        .or_else(|| {
            // A shortened key: `cache` for `cache_mb`.
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
    fn edit_distances() {
        assert_eq!(edit_distance("sped", "speed"), 1);
        assert_eq!(edit_distance("Name", "name"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
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
