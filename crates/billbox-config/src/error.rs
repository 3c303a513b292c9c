//! The error type: every problem found in one configuration, each naming its key.

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with a configuration.
///
/// `key` names where the problem is, in the file's terms: `gateway.name`,
/// `store.cache_mb`, `ports[1].data_bits`, `ports[0]` (the whole port),
/// `ports` (the list), `delivery.primary`, `carbon_copy[0].url`,
/// `metrics.listen`, the file's path (for a file that cannot be read or is not TOML) or the
/// environment variable's name (for a malformed override). Displays as
/// `key: message` on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the problem is, e.g. `ports[1].data_bits`.
    pub key: String,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
    /// Whether a required key is absent.
    missing: bool,
}

impl Problem {
    /// A problem at `key`.
    /// An empty key (TOML allows `"" = 1`) is shown as `""`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        let key = key.into();
        Problem {
            key: if key.is_empty() {
                "\"\"".to_string()
            } else {
                key
            },
            message: message.into(),
            missing: false,
        }
    }

    /// A required key is absent.
    pub(crate) fn missing(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            missing: true,
            ..Problem::new(key, message)
        }
    }

    /// Whether the problem is a required key that is absent.
    pub fn is_missing(&self) -> bool {
        self.missing
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// What kind of failure a [`ConfigError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The configuration file could not be read (missing, a directory, no
    /// permission). [`ConfigError::path`] names it; the I/O error is the
    /// error's [`source`](std::error::Error::source).
    Read,
    /// The text is not TOML (or not UTF-8). Nothing else was checked.
    Syntax,
    /// The text is TOML but one or more values are wrong. Every problem
    /// found is listed.
    Invalid,
}

/// Why a configuration was not accepted.
///
/// It lists *all* the problems found, not just the first:
/// [`problems`](Self::problems) gives them, and `Display` prints one per
/// line as `key: message`, for example
///
/// ```text
/// ports[1].data_bits: 9 is not a data bit count; use 5, 6, 7 or 8
/// ports[2]: unknown key `sped` (did you mean `speed`?)
/// ```
///
/// A file that cannot be read or is not TOML gives a single problem whose
/// key is the file's path.
#[derive(Debug, thiserror::Error)]
#[error("{}", Lines(problems))]
pub struct ConfigError {
    kind: ConfigErrorKind,
    path: Option<PathBuf>,
    problems: Vec<Problem>,
    #[source]
    source: Option<std::io::Error>,
}

struct Lines<'a>(&'a [Problem]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// The file `path` could not be read.
    pub(crate) fn read(path: &Path, source: std::io::Error) -> Self {
        ConfigError {
            kind: ConfigErrorKind::Read,
            path: Some(path.to_path_buf()),
            problems: vec![Problem::new(
                path.display().to_string(),
                format!("cannot read the configuration file: {source}"),
            )],
            source: Some(source),
        }
    }

    /// The text from `path` (or a string, when `None`) is not TOML.
    pub(crate) fn syntax(path: Option<&Path>, message: impl Into<String>) -> Self {
        let key = match path {
            Some(path) => path.display().to_string(),
            None => "<string>".to_string(),
        };
        ConfigError {
            kind: ConfigErrorKind::Syntax,
            path: path.map(Path::to_path_buf),
            problems: vec![Problem::new(key, message)],
            source: None,
        }
    }

    /// The configuration from `path` (or a string) has `problems`, which
    /// must not be empty.
    pub(crate) fn invalid(path: Option<&Path>, problems: Vec<Problem>) -> Self {
        debug_assert!(!problems.is_empty());
        ConfigError {
            kind: ConfigErrorKind::Invalid,
            path: path.map(Path::to_path_buf),
            problems,
            source: None,
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The configuration file, when the configuration came from one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Every problem found: problems with environment variables first,
    /// then unknown top-level keys, `[gateway]`, `[store]`, each port,
    /// problems between ports, `[delivery]`, each carbon copy, problems
    /// between carbon copies, `[metrics]`, `[transactions]`. Within a
    /// table: unknown keys, then values of the wrong type, then the other
    /// problems, each in the order of the reference. Never empty.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}
