//! `billbox import-acs`: a Cyclades ACS `pslave.conf` into billbox TOML.

use std::path::Path;
use std::process::ExitCode;

use billbox_acs::{import, ImportOptions, Pslave};

/// Prints the TOML on stdout and a summary on stderr: exit 0; a file that
/// cannot be read or imported, or whose import would not be valid: exit 1,
/// saying why.
pub fn main(file: &Path, gateway: Option<String>) -> ExitCode {
    let fail = |why: String| {
        eprintln!("billbox: {}: {why}", file.display());
        ExitCode::from(1)
    };
    let text = match std::fs::read(file) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => return fail(format!("cannot read it: {e}")),
    };
    let parsed = match Pslave::parse(&text) {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    let options = ImportOptions {
        source: file.display().to_string(),
        gateway,
    };
    let imported = match import(&parsed, &options) {
        Ok(i) => i,
        Err(e) => return fail(e.to_string()),
    };
    // What is printed must start billbox: checked as `validate` would.
    if let Err(e) = billbox_config::from_toml_str(&imported.toml) {
        return fail(format!(
            "its values do not make a valid billbox config (ports are named sN):\n{e}"
        ));
    }
    print!("{}", imported.toml);
    eprintln!(
        "billbox: imported {} billing port{} ({}); {} setting{} not mapped, kept as comments.",
        imported.ports.len(),
        if imported.ports.len() == 1 { "" } else { "s" },
        imported.ports.join(", "),
        imported.not_mapped.len(),
        if imported.not_mapped.len() == 1 {
            ""
        } else {
            "s"
        },
    );
    ExitCode::SUCCESS
}
