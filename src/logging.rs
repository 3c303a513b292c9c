//! Logs through `tracing`: JSON lines for containers, text for people.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Libraries whose own INFO lines (`starting 1 workers`, `accept thread
/// stopped`, ...) say nothing an operator acts on: WARN and above only,
/// unless the filter names them.
const QUIET_LIBRARIES: [&str; 5] = ["actix_server", "actix_http", "actix_web", "hyper", "sled"];

/// `filter` with each of [`QUIET_LIBRARIES`] it does not name set to warn.
pub fn with_quiet_libraries(filter: &str) -> String {
    let mut out = filter.trim().to_string();
    for lib in QUIET_LIBRARIES {
        if !filter.contains(lib) {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(lib);
            out.push_str("=warn");
        }
    }
    out
}

/// Installs the global subscriber, writing to stderr.
pub fn init(format: Option<LogFormat>, filter: &str) {
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    let directives = with_quiet_libraries(filter);
    let filter = EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| EnvFilter::new(with_quiet_libraries("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.with_target(false).init(),
    }
}

/// The demo's log when no `--log-format` is given: every line, as JSON, to
/// `file`; ERROR lines (data at risk) also as text on stderr, so a person
/// sees them. The person reads the demo's story on stdout instead.
pub fn init_demo(file: &std::path::Path, filter: &str) -> std::io::Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let log = std::fs::File::create(file)?;
    let directives = with_quiet_libraries(filter);
    let filter = EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| EnvFilter::new(with_quiet_libraries("info")));
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(std::sync::Mutex::new(log))
        .with_filter(filter);
    let errors = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_filter(tracing_subscriber::filter::LevelFilter::ERROR);
    tracing_subscriber::registry()
        .with(json)
        .with(errors)
        .init();
    Ok(())
}

/// A panic in an actor's work is caught and restarts that actor
/// (`billbox_runtime::supervise`). A panic anywhere else ends the process
/// with status 70 after logging it at ERROR: a half-dead collector is worse
/// than a restart. Every record acknowledged so
/// far is in the store; the container (or systemd) restarts billbox and
/// recovery picks up from there.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        if billbox_runtime::supervise::panic_is_caught() {
            // The actor's restart logs it at ERROR, with this place.
            if let Some(l) = info.location() {
                billbox_runtime::supervise::note_location(format!("{}:{}", l.file(), l.line()));
            }
            return;
        }
        if billbox_store::panic_is_caught() {
            tracing::warn!(
                panic = %info,
                "sled panicked while opening a damaged store; billbox treats the store as damaged."
            );
            return;
        }
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        tracing::error!(
            panic = %payload,
            location = %location,
            "billbox hit a bug and exits so it can be restarted; committed records are safe in the store."
        );
        std::process::exit(70);
    }));
}

#[cfg(test)]
mod tests {
    use super::with_quiet_libraries;

    #[test]
    fn libraries_are_quiet_unless_named() {
        assert_eq!(
            with_quiet_libraries("info"),
            "info,actix_server=warn,actix_http=warn,actix_web=warn,hyper=warn,sled=warn"
        );
        let named = with_quiet_libraries("debug,actix_server=info");
        assert!(named.starts_with("debug,actix_server=info,actix_http=warn"));
        assert_eq!(named.matches("actix_server").count(), 1);
    }
}
