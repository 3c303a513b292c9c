//! The billbox TOML for the billing ports of a `pslave.conf`.

use std::fmt::Write as _;

use crate::escape::{billbox_literal, decode_acs};
use crate::pslave::{Entry, Pslave, Scope};
use crate::AcsError;

/// Where ACS keeps closed files when `billing_dir` is not given.
pub const ACS_BILLING_DIR: &str = "/var/run/DB";

/// What the caller knows that `pslave.conf` does not say.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The file's name, for the header comment.
    pub source: String,
    /// `gateway.name`. `None`: `acs`, with a comment (ACS names files after
    /// its hostname when a port has no alias).
    pub gateway: Option<String>,
}

/// The result: the TOML text, and what the operator should know.
#[derive(Debug, Clone)]
pub struct Imported {
    pub toml: String,
    /// The billing ports imported, as `sN`.
    pub ports: Vec<String>,
    /// Keys that were not mapped, `key value` as written (they are also
    /// comments in `toml`).
    pub not_mapped: Vec<String>,
}

/// The keys mapped onto billbox keys (plus `protocol`, which selects the
/// ports).
const MAPPED: [&str; 11] = [
    "protocol",
    "tty",
    "speed",
    "datasize",
    "stopbits",
    "parity",
    "flow",
    "alias",
    "billing_records",
    "billing_timeout",
    "billing_eor",
];

/// Why a known key has no billbox counterpart.
fn why_not(key: &str) -> &'static str {
    match key {
        "authtype" | "users" | "admin_users" => "billbox takes no logins on billing ports",
        "dcd" => "billbox does not watch DCD",
        "serverfarm" | "socket_port" | "ipno" => {
            "billbox has no per-port socket service; it files and forwards records"
        }
        "sniff_mode" | "DB_mode" | "DB_timestamp" | "data_buffering" | "syslog_buffering" => {
            "billbox has no console buffering"
        }
        k if k.starts_with("eth") || k == "dhcp" || k == "hostname" || k == "domain" => {
            "network settings belong to the host or container"
        }
        _ => "no billbox setting does this",
    }
}

/// The billbox TOML for the ports of `p` with `protocol billing`.
pub fn import(p: &Pslave, opts: &ImportOptions) -> Result<Imported, AcsError> {
    let mut billing = Vec::new();
    let mut others = Vec::new();
    for n in p.ports() {
        match p.port_value(n, "protocol") {
            Some(e) if e.value == "billing" => billing.push(n),
            found => others.push((n, found.map_or("none", |e| e.value.as_str()).to_string())),
        }
    }
    if billing.is_empty() {
        return Err(AcsError::NoBillingPort);
    }
    let mut not_mapped = Vec::new();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# billbox configuration from {} (`billbox import-acs`).",
        opts.source
    );
    out.push_str("# Check it with `billbox validate --config FILE`; the keys ACS had that\n");
    out.push_str("# billbox does not map are comments below, each with why.\n\n");

    // One spool directory for all ports: the first port's billing_dir.
    let dirs: Vec<(u32, Option<&Entry>)> = billing
        .iter()
        .map(|&n| (n, p.port_value(n, "billing_dir")))
        .collect();
    let spool = dirs[0].1.map_or(ACS_BILLING_DIR, |e| e.value.as_str());
    out.push_str("[gateway]\n");
    match &opts.gateway {
        Some(name) => {
            let _ = writeln!(out, "name = {}", toml_string(name));
        }
        None => {
            out.push_str("# ACS named the files of a port without an alias after its hostname:\n");
            out.push_str("# put that hostname here (or run import-acs --gateway NAME).\n");
            out.push_str("name = \"acs\"\n");
        }
    }
    let _ = writeln!(out, "spool_dir = {}", toml_string(spool));
    let conf: Vec<&Entry> = p
        .entries()
        .iter()
        .filter(|e| e.scope == Scope::Conf)
        .collect();
    if !conf.is_empty() {
        out.push_str("# Not mapped, the unit's own settings:\n");
        for e in conf {
            comment(&mut out, &mut not_mapped, e);
        }
    }

    for (i, &n) in billing.iter().enumerate() {
        out.push_str("\n[[ports]]\n");
        let _ = writeln!(out, "name = \"s{n}\"");
        port_keys(p, n, &mut out)?;
        let mut unmapped: Vec<&Entry> = p
            .entries()
            .iter()
            .filter(|e| e.scope == Scope::Port(n) || e.scope == Scope::All)
            .filter(|e| !MAPPED.contains(&e.key.as_str()) && e.key != "billing_dir")
            // all.KEY counts only where the port has no sN.KEY.
            .filter(|e| p.port_value(n, &e.key) == Some(*e))
            .collect();
        unmapped.sort_by_key(|e| e.line);
        if let (Some(dir), true) = (dirs[i].1, i > 0) {
            if dir.value != spool {
                let _ = writeln!(
                    out,
                    "# Not mapped: {}: billbox writes the files of every port to one \
                     spool_dir ({spool}); the port's alias tells its files apart.",
                    dir.as_written()
                );
                not_mapped.push(dir.as_written());
            }
        }
        if !unmapped.is_empty() {
            out.push_str("# Not mapped:\n");
            for e in unmapped {
                comment(&mut out, &mut not_mapped, e);
            }
        }
    }
    for (n, protocol) in &others {
        let _ = writeln!(
            out,
            "\n# s{n} is not a billing port (protocol {protocol}): not imported. Its settings:"
        );
        for e in p.entries().iter().filter(|e| e.scope == Scope::Port(*n)) {
            let _ = writeln!(out, "#   {}", e.as_written());
            not_mapped.push(e.as_written());
        }
    }
    Ok(Imported {
        toml: out,
        ports: billing.iter().map(|n| format!("s{n}")).collect(),
        not_mapped,
    })
}

fn comment(out: &mut String, not_mapped: &mut Vec<String>, e: &Entry) {
    let _ = writeln!(out, "#   {}   ({})", e.as_written(), why_not(&e.key));
    not_mapped.push(e.as_written());
}

/// The mapped keys of port `n`, each checked as far as ACS's meaning goes
/// (billbox's own bounds are checked by validating the whole text).
fn port_keys(p: &Pslave, n: u32, out: &mut String) -> Result<(), AcsError> {
    let bad = |e: &Entry, why: &str| AcsError::Value {
        line: e.line,
        key: e.full_key(),
        value: e.value.clone(),
        why: why.to_string(),
    };
    let device = match p.port_value(n, "tty") {
        // ACS's default: port N is ttySN.
        None => format!("/dev/ttyS{n}"),
        Some(e) if e.value.starts_with('/') => e.value.clone(),
        Some(e)
            if !e.value.is_empty()
                && e.value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') =>
        {
            format!("/dev/{}", e.value)
        }
        Some(e) => return Err(bad(e, "is not a serial device (e.g. ttyS1 or /dev/ttyS1)")),
    };
    let _ = writeln!(out, "device = {}", toml_string(&device));
    let whole = |e: &Entry, what: &str| match e.value.trim().parse::<u32>() {
        Ok(n) => Ok(n),
        Err(_) => Err(bad(e, &format!("is not a whole number{what}"))),
    };
    let number = |key: &str, billbox: &str, out: &mut String| -> Result<(), AcsError> {
        if let Some(e) = p.port_value(n, key) {
            let _ = writeln!(out, "{billbox} = {}", whole(e, "")?);
        }
        Ok(())
    };
    number("speed", "speed", out)?;
    number("datasize", "data_bits", out)?;
    number("stopbits", "stop_bits", out)?;
    if let Some(e) = p.port_value(n, "parity") {
        match e.value.to_ascii_lowercase().as_str() {
            v @ ("none" | "odd" | "even" | "mark" | "space") => {
                let _ = writeln!(out, "parity = \"{v}\"");
            }
            _ => return Err(bad(e, "is not a parity; ACS has none, odd and even")),
        }
    }
    if let Some(e) = p.port_value(n, "flow") {
        let flow = match e.value.to_ascii_lowercase().as_str() {
            "none" => "none",
            "hard" => "hardware",
            "soft" => "software",
            _ => return Err(bad(e, "is not a flow control; ACS has none, hard and soft")),
        };
        let _ = writeln!(out, "flow = \"{flow}\"");
    }
    if let Some(e) = p.port_value(n, "alias") {
        if !e.value.is_empty() {
            let _ = writeln!(out, "alias = {}", toml_string(&e.value));
        }
    }
    number("billing_records", "billing_records", out)?;
    if let Some(e) = p.port_value(n, "billing_timeout") {
        let minutes = whole(e, " of minutes")?;
        let _ = writeln!(out, "billing_timeout = {minutes}   # minutes, as in ACS");
    }
    if let Some(e) = p.port_value(n, "billing_eor") {
        let bytes = decode_acs(&e.value).map_err(|source| AcsError::Escape {
            line: e.line,
            key: e.full_key(),
            source,
        })?;
        let _ = writeln!(out, "billing_eor = {}", billbox_literal(&bytes));
    }
    Ok(())
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
