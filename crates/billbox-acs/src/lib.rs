//! From a Cyclades ACS console server to billbox: `billbox import-acs`.
//!
//! Layout:
//! - [`pslave`]: [`Pslave::parse`] reads a `pslave.conf` (`conf.`, `all.`
//!   and `sN.` keys, `#` comments, `\` continuations, quoted values) into
//!   [`Entry`]s, each with its line number; [`Pslave::port_value`] gives a
//!   port's effective value (`sN.key`, else `all.key`).
//! - [`escape`]: ACS's C-style string escapes ([`decode_acs`]) and the
//!   TOML literal string billbox decodes back into the same bytes
//!   ([`billbox_literal`]).
//! - [`import`]: [`import`] turns the billing ports (`protocol billing`)
//!   into billbox TOML: serial settings, alias, `billing_records`,
//!   `billing_timeout` (minutes, as in ACS), `billing_eor` and the files
//!   directory (`billing_dir`, one `spool_dir` for all). Every key it does
//!   not map is written as a comment with the reason, never dropped.
//!
//! Nothing here touches files or the network: the caller reads the
//! `pslave.conf` and checks the output with `billbox-config`.
#![forbid(unsafe_code)]

pub mod escape;
pub mod import;
pub mod pslave;

pub use escape::{billbox_literal, decode_acs, EscapeError};
pub use import::{import, ImportOptions, Imported};
pub use pslave::{Entry, Pslave, Scope};

/// Why a `pslave.conf` could not be imported. Each names the line (from 1).
#[derive(Debug, thiserror::Error)]
pub enum AcsError {
    /// A line that is neither a comment nor `conf.|all.|sN.` key and value.
    #[error("line {line}: {text:?} is not a pslave.conf setting (`conf.KEY`, `all.KEY` or `sN.KEY`, then its value)")]
    NotASetting { line: usize, text: String },
    /// A quoted value without its closing quote.
    #[error("line {line}: the value of {key} has no closing quote")]
    Unterminated { line: usize, key: String },
    /// A value billbox cannot take for a key it maps.
    #[error("line {line}: {key} {value:?}: {why}")]
    Value {
        line: usize,
        key: String,
        value: String,
        why: String,
    },
    /// `billing_eor` with an escape ACS does not have.
    #[error("line {line}: {key}: {source}")]
    Escape {
        line: usize,
        key: String,
        #[source]
        source: EscapeError,
    },
    /// No port has `protocol billing`.
    #[error("no port has protocol billing (sN.protocol or all.protocol): nothing to import")]
    NoBillingPort,
}
