//! billbox's configuration: a TOML file plus `BILLBOX__SECTION__KEY`
//! environment overrides, read into checked structs.
//!
//! ```
//! let config = billbox_config::from_toml_str(r#"
//!     [gateway]
//!     name = "gw-lobby"
//!
//!     [[ports]]
//!     name = "pbx1"
//!     device = "/dev/ttyUSB0"
//!     billing_timeout = 60   # minutes, as in ACS
//! "#).unwrap();
//! assert_eq!(config.ports[0].billing_records, 50);
//! assert_eq!(config.ports[0].file_prefix(&config.gateway.name), "gw-lobby");
//! ```
//!
//! Entry points: [`load`] (file + the process environment), [`load_with_env`]
//! (file + a given environment, for tests) and [`from_toml_str`] (text
//! only). They return a [`Config`] or a [`ConfigError`] that lists every
//! problem found, one `key: message` per line. The reference for users is
//! `docs/configuration.md`.
//!
//! # Layout
//!
//! - `model` (re-exported here): the public, validated types — [`Config`],
//!   [`GatewayConfig`], [`StoreConfig`], [`WhenFull`], [`PortConfig`],
//!   [`PortSource`], [`SerialSettings`], [`Parity`], [`Flow`],
//!   [`DeliveryConfig`], [`Method`], [`CarbonCopyConfig`],
//!   [`MetricsConfig`] — each next to the function that reads its
//!   section. Every key is in one place: its doc comment on the field is
//!   the reference, its default and bounds are the one line that reads it
//!   (`t.num("cache_mb", 8, 1..=4096, "MiB")`); the `Default`s read an
//!   empty table.
//! - `feed` (re-exported here): [`TcpFeedConfig`], `[[tcp_feed]]`, with
//!   [`AllowedNet`] (client networks) and [`FeedStart`].
//! - `transactions` (re-exported here): [`TransactionsConfig`], the same
//!   for `[transactions]`.
//! - `server_url` (re-exported here): [`ServerUrl`], the checked `http://`
//!   or `https://` address of a billing server (parsed with the `url`
//!   crate), and [`UrlError`].
//! - `security` (re-exported here): [`ServerSecurity`], a server's TLS
//!   files ([`TlsFiles`], plain paths, read and checked at load time) and
//!   signing key ([`SecretKey`], never shown), and the PEM readers other
//!   crates build their rustls configurations with ([`read_certificates`],
//!   [`read_private_key`], [`read_roots`], [`crypto_provider`]).
//! - `error`: [`ConfigError`], [`ConfigErrorKind`] and [`Problem`].
//! - `read`: the strict reader of one table (`Table`): typed values from
//!   the `config` crate's values without its lenient conversions, bounds,
//!   durations (humantime strings or bare numbers), and every unknown
//!   key, with a suggestion.
//! - `escape`: [`decode_escapes`] for `billing_eor`.
//! - `env`: the first pass over `BILLBOX__*` variables before they reach
//!   `config::Environment`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod env;
mod error;
mod escape;
mod feed;
mod model;
mod read;
mod security;
mod server_url;
mod transactions;

use std::collections::HashMap;
use std::path::Path;

pub use error::{ConfigError, ConfigErrorKind, Problem};
pub use escape::{decode_escapes, EscapeError};
pub use feed::{AllowedNet, FeedStart, TcpFeedConfig};
pub use model::{
    default_file_limits, CarbonCopyConfig, Config, DeliveryConfig, Flow, GatewayConfig, Method,
    MetricsConfig, Parity, PortConfig, PortSource, SerialSettings, StoreConfig, UnknownName,
    WhenFull, DEFAULT_WINDOW, MAX_PORTS,
};
pub use security::{
    crypto_provider, read_certificates, read_private_key, read_roots, KeyError, SecretKey,
    ServerSecurity, TlsFileError, TlsFiles, MIN_SECRET_KEY_BYTES,
};
pub use server_url::{ServerUrl, UrlError};
pub use transactions::TransactionsConfig;

/// Reads the TOML file at `path` and applies the overrides in the process
/// environment (`BILLBOX__GATEWAY__NAME=gw2`, ...).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let (vars, problems) = env::process_env();
    load_inner(path, vars, problems)
}

/// Like [`load`], with the environment given as `env` instead of read
/// from the process. Variables without the `BILLBOX__` prefix are ignored.
pub fn load_with_env(path: &Path, env: HashMap<String, String>) -> Result<Config, ConfigError> {
    load_inner(path, env, Vec::new())
}

/// Reads configuration text, without environment overrides.
pub fn from_toml_str(toml: &str) -> Result<Config, ConfigError> {
    from_text(toml, None, None)
}

fn load_inner(
    path: &Path,
    vars: HashMap<String, String>,
    problems: Vec<Problem>,
) -> Result<Config, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError::read(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        ConfigError::syntax(
            Some(path),
            format!(
                "not a TOML file: not valid UTF-8 text (at byte {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    let mut overrides = env::scan(vars);
    overrides.problems.splice(0..0, problems);
    from_text(&text, Some(path), Some(overrides))
}

fn from_text(
    text: &str,
    path: Option<&Path>,
    overrides: Option<env::Overrides>,
) -> Result<Config, ConfigError> {
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml));
    if let Some(overrides) = &overrides {
        builder = builder.add_source(
            config::Environment::with_prefix("BILLBOX")
                .prefix_separator("__")
                .separator("__")
                .source(Some(overrides.vars.clone().into_iter().collect())),
        );
    }
    let built = builder
        .build()
        .map_err(|e| ConfigError::syntax(path, syntax_message(&e)))?;
    let root: config::Map<String, config::Value> = built
        .try_deserialize()
        .map_err(|e| ConfigError::syntax(path, format!("not a TOML table: {e}")))?;

    let no_env = env::Overrides::default();
    let env = overrides.as_ref().unwrap_or(&no_env);
    let mut top = read::Table::new(String::new(), root, &env.keys);
    let config = Config::read(&mut top);
    let mut problems = env.problems.clone();
    let mut warnings = Vec::new();
    let first = problems.len();
    top.finish(&mut problems, &mut warnings);
    for problem in &mut problems[first..] {
        // `delivery.primary: missing` when variables made [delivery].
        let note = env.note(&problem.key).or_else(|| {
            let section = problem.is_missing().then(|| env.section_note(&problem.key));
            section.flatten()
        });
        if let Some(note) = note {
            problem.message.push_str(&note);
        }
    }
    match config {
        Some(config) if problems.is_empty() => Ok(Config { warnings, ..config }),
        _ => Err(ConfigError::invalid(path, problems)),
    }
}

/// The TOML parser's message on one line: its position line and the lines
/// that say what is wrong, without the quoted source and caret.
fn syntax_message(err: &config::ConfigError) -> String {
    let text = match err {
        config::ConfigError::FileParse { cause, .. } => cause.to_string(),
        other => other.to_string(),
    };
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.contains('|') && *line != "^")
        .collect();
    format!("not a TOML file: {}", parts.join(": "))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod security_tests;
