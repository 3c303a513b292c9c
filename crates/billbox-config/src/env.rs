//! Environment overrides: `BILLBOX__SECTION__KEY=value`.
//!
//! The variables are handed to the `config` crate's `Environment` source,
//! after a first pass here that mirrors its key mapping (case-insensitive
//! `BILLBOX__` prefix, `__` between levels, keys lowercased) to reject
//! what it would silently misread: malformed names, `[[ports]]` and
//! `[[carbon_copy]]` and `[[tcp_feed]]` overrides (arrays cannot be addressed), and two
//! variables that differ only in
//! case. Values are kept as strings (`try_parsing` is off) so a gateway
//! name like `007` stays `007`; the readers of numbers, durations and
//! booleans take the strings of variables (see [`crate::read`]).

use std::collections::{BTreeMap, HashMap};

use crate::error::Problem;
use crate::read::EnvKeys;

/// The prefix, with its separator, in the lower case that keys are compared in.
const PREFIX: &str = "billbox__";

/// The sections that are arrays of tables, which variables cannot address.
const ARRAYS: [&str; 3] = ["ports", "carbon_copy", "tcp_feed"];

/// The overrides found in an environment.
#[derive(Debug, Default)]
pub(crate) struct Overrides {
    /// The variables to hand to `config::Environment::source`.
    pub vars: HashMap<String, String>,
    /// Configuration key (`gateway.name`) to the variable that sets it.
    pub keys: EnvKeys,
    /// Variables with the prefix that cannot be used.
    pub problems: Vec<Problem>,
}

impl Overrides {
    /// The note added to a problem at `key` when variables set it (or, for
    /// a section, keys inside it).
    pub fn note(&self, key: &str) -> Option<String> {
        let vars = self.vars_under(key, "variable", "variables")?;
        Some(format!(" (set by environment {vars})"))
    }

    /// The note added to a problem about a missing key (`delivery.primary`)
    /// when variables set other keys of its section: they may be what
    /// created the section.
    pub fn section_note(&self, key: &str) -> Option<String> {
        let (section, _) = key.rsplit_once('.')?;
        let (one, many) = (
            "a key from environment variable",
            "keys from environment variables",
        );
        Some(format!(
            " ([{section}] has {})",
            self.vars_under(section, one, many)?
        ))
    }

    /// The variables that set `key` or keys inside it, after `one` or
    /// `many`; `None` when there are none.
    fn vars_under(&self, key: &str, one: &str, many: &str) -> Option<String> {
        let inside = format!("{key}.");
        let vars: Vec<&str> = (self.keys.iter())
            .filter(|(k, _)| *k == key || k.starts_with(&inside))
            .map(|(_, var)| var.as_str())
            .collect();
        let word = if vars.len() == 1 { one } else { many };
        (!vars.is_empty()).then(|| format!("{word} {}", vars.join(", ")))
    }
}

/// Sorts an environment's variables into usable overrides and problems.
/// Variables without the `BILLBOX__` prefix (any case) are ignored.
pub(crate) fn scan(env: HashMap<String, String>) -> Overrides {
    let mut out = Overrides::default();
    // Sorted so problems come out in a stable order.
    let env: BTreeMap<String, String> = env.into_iter().collect();
    for (var, value) in env {
        let lower = var.to_lowercase();
        let Some(rest) = lower.strip_prefix(PREFIX) else {
            continue;
        };
        let path: Vec<&str> = rest.split("__").collect();
        if let Some(&array) = ARRAYS.iter().find(|a| **a == path[0]) {
            out.problems.push(Problem::new(
                array,
                format!(
                    "{array} cannot be set from the environment ({var}); \
                     configure [[{array}]] in the file"
                ),
            ));
            continue;
        }
        let well_formed = path.iter().all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
        if !well_formed || path.len() != 2 {
            out.problems.push(Problem::new(
                var,
                "not a configuration key; override variables are named \
                 BILLBOX__SECTION__KEY, e.g. BILLBOX__GATEWAY__NAME",
            ));
            continue;
        }
        let key = path.join(".");
        if let Some(first) = out.keys.get(&key) {
            out.problems.push(Problem::new(
                key,
                format!("set by both environment variables {first} and {var}; keep one"),
            ));
            continue;
        }
        out.keys.insert(key, var.clone());
        out.vars.insert(var, value);
    }
    out
}

/// The process environment, for [`scan`]. Variables whose name is not
/// Unicode are skipped (no such name can carry the prefix in a usable
/// form); a prefixed variable whose value is not Unicode is a problem.
pub(crate) fn process_env() -> (HashMap<String, String>, Vec<Problem>) {
    let mut vars = HashMap::new();
    let mut problems = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Ok(name) = name.into_string() else {
            continue;
        };
        match value.into_string() {
            Ok(value) => {
                vars.insert(name, value);
            }
            Err(_) if name.to_lowercase().starts_with(PREFIX) => {
                problems.push(Problem::new(name, "the value is not valid UTF-8"));
            }
            Err(_) => {}
        }
    }
    (vars, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn maps_keys_and_ignores_other_variables() {
        let o = scan(env(&[
            ("BILLBOX__GATEWAY__NAME", "gw2"),
            ("billbox__store__cache_mb", "64"),
            ("BILLBOX_OTHER", "x"),
            ("BILLBOX", "x"),
            ("PATH", "/bin"),
        ]));
        assert!(o.problems.is_empty(), "{:?}", o.problems);
        assert_eq!(o.keys["gateway.name"], "BILLBOX__GATEWAY__NAME");
        assert_eq!(o.keys["store.cache_mb"], "billbox__store__cache_mb");
        assert_eq!(o.vars.len(), 2);
    }

    #[test]
    fn notes() {
        let o = scan(env(&[
            ("BILLBOX__DELIVERY__ATTEMPTS", "3"),
            ("BILLBOX__DELIVERY__METHOD", "failover"),
            ("BILLBOX__STORE__CACHE_MB", "64"),
        ]));
        assert_eq!(
            o.note("store.cache_mb").as_deref(),
            Some(" (set by environment variable BILLBOX__STORE__CACHE_MB)")
        );
        assert_eq!(o.note("delivery.primary"), None);
        assert_eq!(
            o.section_note("delivery.primary").as_deref(),
            Some(
                " ([delivery] has keys from environment variables \
                 BILLBOX__DELIVERY__ATTEMPTS, BILLBOX__DELIVERY__METHOD)"
            )
        );
        assert_eq!(o.section_note("gateway.name"), None);
        assert_eq!(o.section_note("ports"), None);
    }

    #[test]
    fn rejects_malformed_names_ports_and_duplicates() {
        let o = scan(env(&[
            ("BILLBOX__GATEWAY", "x"),
            ("BILLBOX__GATEWAY__NAME__X", "x"),
            ("BILLBOX__GATEWAY__", "x"),
            ("BILLBOX__GATEWAY.NAME", "x"),
            ("BILLBOX__PORTS__0__NAME", "x"),
            ("BILLBOX__CARBON_COPY__0__URL", "x"),
            ("BILLBOX__CARBON_COPY__URL", "x"),
            ("BILLBOX__STORE__CACHE_MB", "1"),
            ("Billbox__Store__Cache_Mb", "2"),
        ]));
        assert!(o.vars.len() == 1);
        let text: Vec<String> = o.problems.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 8, "{text:#?}");
        assert!(text.iter().any(|p| p.starts_with("ports: ")));
        assert_eq!(
            text.iter()
                .filter(|p| p.starts_with("carbon_copy: carbon_copy cannot be set"))
                .count(),
            2
        );
        assert!(text
            .iter()
            .any(|p| p.starts_with("store.cache_mb: set by both")));
        assert!(text
            .iter()
            .any(|p| p.starts_with("BILLBOX__GATEWAY.NAME: not a configuration key")));
    }
}
