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
//!   [`DeliveryConfig`], [`Method`], [`CarbonCopyConfig`], [`MetricsConfig`].
//! - `server_url` (re-exported here): [`ServerUrl`], the checked `http://`
//!   or `https://` address of a billing server, and [`UrlError`].
//! - `security` (re-exported here): [`ServerSecurity`], a server's TLS
//!   files ([`TlsFiles`]) and signing key ([`SecretKey`], never shown),
//!   checked and read at load time; it travels inside the server's
//!   [`ServerUrl`].
//! - `error`: [`ConfigError`], [`ConfigErrorKind`] and [`Problem`].
//! - `raw`: the serde structs as written in TOML (`deny_unknown_fields`,
//!   every field optional, doc comment per key, `default_*` functions) and
//!   the strict leaf types (`Text`, `Int`, `Bool`, `DurationValue`) that
//!   stop the `config` crate from turning `true` into 1 or `1234` into a
//!   name.
//! - `section`: reads one table into its raw struct, reporting every
//!   unknown key and wrongly typed value (serde alone stops at the first).
//! - `check`: turns raw tables into the public types, filling defaults and
//!   collecting every rule broken, including those between ports and
//!   between carbon copies.
//! - `escape`: [`decode_escapes`] for `billing_eor`.
//! - `duration`: durations as humantime strings or bare numbers.
//! - `env`: the first pass over `BILLBOX__*` variables before they reach
//!   `config::Environment`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod check;
mod duration;
mod env;
mod error;
mod escape;
mod model;
mod raw;
mod section;
mod security;
mod server_url;
mod transactions;

use std::collections::HashMap;
use std::path::Path;

pub use error::{ConfigError, ConfigErrorKind, Problem};
pub use escape::{decode_escapes, EscapeError};
pub use model::{
    CarbonCopyConfig, Config, DeliveryConfig, Flow, GatewayConfig, Method, MetricsConfig, Parity,
    PortConfig, PortSource, SerialSettings, StoreConfig, UnknownName, WhenFull, MAX_PORTS,
};
pub use security::{
    crypto_provider, read_certificates, read_private_key, read_roots, webpki_roots, SecretKey,
    ServerSecurity, TlsFiles, MIN_SECRET_KEY_BYTES,
};
pub use server_url::{ServerUrl, UrlError};
pub use transactions::TransactionsConfig;

/// The defaults of a port's `billing_records` and `billing_timeout` (for
/// finishing the files of a port the config no longer names).
pub fn default_file_limits() -> (u32, Option<std::time::Duration>) {
    (
        raw::default_billing_records(),
        raw::default_billing_timeout(),
    )
}

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
    let mut root: config::Map<String, config::Value> = built
        .try_deserialize()
        .map_err(|e| ConfigError::syntax(path, format!("not a TOML table: {e}")))?;
    if let Some(overrides) = &overrides {
        overrides.read_booleans(&mut root);
    }

    let mut problems = Vec::new();
    let config = check::check(root, &mut problems);
    if let Some(overrides) = overrides {
        for problem in &mut problems {
            let note = overrides.note(&problem.key).or_else(|| {
                // `delivery.primary: missing` when variables made [delivery].
                problem
                    .message
                    .starts_with("missing")
                    .then(|| overrides.section_note(&problem.key))
                    .flatten()
            });
            if let Some(note) = note {
                problem.message.push_str(&note);
            }
        }
        problems.splice(0..0, overrides.problems);
    }
    match config {
        Some(config) if problems.is_empty() => Ok(config),
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
