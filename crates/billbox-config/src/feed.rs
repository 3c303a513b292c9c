//! `[[tcp_feed]]`: raw TCP feeds for billing software that connects in and
//! reads the records as the PBX sent them.

use std::net::{IpAddr, SocketAddr};

use crate::read::Table;

/// Where a client that connects starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FeedStart {
    /// Every record the feed has not written yet (to this client or an
    /// earlier one), as far as the store still holds it: a client that
    /// reconnects resumes after the last record written to the feed.
    #[default]
    Unsent,
    /// Only records stored after the client connected.
    New,
}

impl std::str::FromStr for FeedStart {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "unsent" => Ok(FeedStart::Unsent),
            "new" => Ok(FeedStart::New),
            other => Err(format!(
                "{other:?} is not a feed start; use \"unsent\" or \"new\""
            )),
        }
    }
}

/// One allowed client address or network (`10.0.0.5`, `10.0.0.0/24`,
/// `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowedNet {
    /// The network's address.
    pub addr: IpAddr,
    /// Its prefix length: 32 (IPv4) or 128 (IPv6) for one address.
    pub prefix: u8,
}

impl AllowedNet {
    /// Parses `IP` or `IP/PREFIX`.
    pub fn parse(text: &str) -> Result<AllowedNet, String> {
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = ip.trim().parse().map_err(|_| {
            format!(
                "{text:?} is not an IP address or network (e.g. \"10.0.0.5\" or \"10.0.0.0/24\")"
            )
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{text:?}: the prefix must be 0 to {max}")),
            },
        };
        Ok(AllowedNet { addr, prefix })
    }

    /// Whether `ip` is in this network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let bits = |a: IpAddr| -> (u128, u32) {
            match a {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let ((net, width), (have, have_width)) = (bits(self.addr), bits(ip));
        if width != have_width {
            return false;
        }
        let shift = width - u32::from(self.prefix);
        shift >= width || (net >> shift) == (have >> shift)
    }
}

/// One `[[tcp_feed]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpFeedConfig {
    /// The feed's name, in logs, metrics and its cursor. Default `feed1`,
    /// `feed2`, ... by position; unique.
    pub name: String,
    /// Where billing software connects, `IP:PORT`. Required.
    pub listen: SocketAddr,
    /// Client addresses allowed to connect (IPs or networks). Empty: any.
    pub allow: Vec<AllowedNet>,
    /// The ports whose records the feed carries, by name. Empty: every port
    /// of the config.
    pub ports: Vec<String>,
    /// Where a connecting client starts. Default [`FeedStart::Unsent`].
    pub from: FeedStart,
}

impl TcpFeedConfig {
    /// The store cursor of this feed.
    pub fn cursor(&self) -> String {
        format!("feed:{}", self.name)
    }

    /// Whether `ip` may connect.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(ip))
    }

    /// The `index`th table; `port_names` are the config's ports.
    pub(crate) fn read(
        t: &mut Table,
        index: usize,
        port_names: &[String],
    ) -> Option<TcpFeedConfig> {
        let name = t
            .text("name")
            .unwrap_or_else(|| format!("feed{}", index + 1));
        if let Err(why) = crate::model::check_name(&name) {
            t.problem("name", why);
        }
        let listen = match t.text("listen") {
            Some(addr) => addr.parse::<SocketAddr>().ok().or_else(|| {
                let why = "is not an address; write IP:PORT, e.g. \"0.0.0.0:1752\"";
                t.fail("listen", format!("{addr:?} {why}"))
            }),
            None if t.given("listen") => None,
            None => {
                let why =
                    "missing; a feed needs an address to listen on, e.g. listen = \"0.0.0.0:1752\"";
                t.missing("listen", why);
                None
            }
        };
        let mut allow = Vec::new();
        for (i, text) in t.strings("allow").unwrap_or_default().iter().enumerate() {
            match AllowedNet::parse(text) {
                Ok(net) => allow.push(net),
                Err(why) => t.problem(&format!("allow[{i}]"), why),
            }
        }
        let ports = t.strings("ports").unwrap_or_default();
        for (i, port) in ports.iter().enumerate() {
            if !port_names.contains(port) {
                let known = port_names.join(", ");
                t.problem(
                    &format!("ports[{i}]"),
                    format!("{port:?} is not a port of this config ({known})"),
                );
            }
        }
        let from = t.word("from", FeedStart::Unsent);
        Some(TcpFeedConfig {
            name,
            listen: listen?,
            allow,
            ports,
            from,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses() {
        let net = AllowedNet::parse("10.0.0.0/24").unwrap();
        assert!(net.contains("10.0.0.77".parse().unwrap()));
        assert!(!net.contains("10.0.1.1".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.0.0.3".parse().unwrap()),
            "IPv4-mapped"
        );
        let one = AllowedNet::parse("192.168.1.5").unwrap();
        assert!(one.contains("192.168.1.5".parse().unwrap()));
        assert!(!one.contains("192.168.1.6".parse().unwrap()));
        assert!(AllowedNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        let v6 = AllowedNet::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "host", "10.0.0.0/x", "::/129"] {
            assert!(AllowedNet::parse(bad).is_err(), "{bad}");
        }
    }
}
