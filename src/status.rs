//! `billbox status`: the status page of a running billbox, as a table in
//! the terminal. Exit 0 healthy, 1 when an alarm holds, 2 when billbox
//! cannot be reached (or its answer is not a status).

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use billbox_status::Snapshot;

/// Where to ask: `--addr`, else the `metrics.listen` of `--config` (an
/// unspecified address is asked on loopback), else the default listener.
pub fn address(addr: Option<SocketAddr>, config: Option<&Path>) -> Result<SocketAddr, String> {
    if let Some(a) = addr {
        return Ok(a);
    }
    let Some(path) = config else {
        return Ok(billbox_config::MetricsConfig::default().listen);
    };
    let config = billbox_config::load(path).map_err(|e| e.to_string())?;
    if !config.metrics.enabled {
        return Err(format!(
            "{}: metrics.enabled is false, so this billbox serves no status",
            path.display()
        ));
    }
    let mut a = config.metrics.listen;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(a)
}

pub fn main(
    addr: Option<SocketAddr>,
    config: Option<&Path>,
    json: bool,
    timeout: Duration,
) -> ExitCode {
    let addr = match address(addr, config) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("billbox status: {e}");
            return ExitCode::from(2);
        }
    };
    let snapshot = match crate::health::ask(addr, "/status.json", timeout) {
        Ok((200, body)) => match serde_json::from_str::<Snapshot>(&body) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("billbox status: {addr} answered /status.json with something that is not a billbox status ({e})");
                return ExitCode::from(2);
            }
        },
        Ok((code, _)) => {
            eprintln!("billbox status: {addr} answered /status.json with HTTP {code}; is it a billbox metrics listener?");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("billbox status: cannot reach billbox at {addr}: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&snapshot).expect("a snapshot serializes")
        );
    } else {
        print!("{}", snapshot.table());
    }
    if snapshot.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
