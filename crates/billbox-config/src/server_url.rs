//! [`ServerUrl`]: the `http://` or `https://` address of a billing server
//! (`delivery.primary`, `delivery.secondary`, `carbon_copy.url`), parsed
//! with the `url` crate after billbox's stricter rules.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// An example for messages.
const EXAMPLE: &str = "write e.g. \"http://billing-a:8080/billing\"";

/// A checked `http://` or `https://` URL of a billing server.
///
/// Rules: the scheme is `http` or `https` (any case), the host is not
/// empty (a host name, an IPv4 address or an IPv6 address in brackets),
/// the port is optional (default 80 for `http`, 443 for `https`, else 1 to
/// 65535), the path is optional (default `/`) and may be followed by a
/// `?query`. The URL holds no credentials (`user:pw@`), no `#fragment`, no
/// spaces or control characters and only ASCII.
///
/// Equality (`==`) compares the text as given; `Display` and
/// [`as_str`](Self::as_str) give it back unchanged. The parts are the
/// parsed URL's: the host in lower case, the port without a default one.
///
/// ```
/// let url: billbox_config::ServerUrl = "http://billing-a:8080/billing?gw=1".parse().unwrap();
/// assert_eq!(url.host(), "billing-a");
/// assert_eq!(url.port(), 8080);
/// assert_eq!(url.authority(), "billing-a:8080");
/// assert_eq!(url.path_and_query(), "/billing?gw=1");
/// assert_eq!(url.to_string(), "http://billing-a:8080/billing?gw=1");
///
/// let url: billbox_config::ServerUrl = "http://[fd00::1]".parse().unwrap();
/// assert_eq!((url.host(), url.port(), url.path_and_query()), ("[fd00::1]", 80, "/"));
///
/// let url: billbox_config::ServerUrl = "https://billing-a/rmtlog".parse().unwrap();
/// assert!(url.is_https());
/// assert_eq!(url.port(), 443);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ServerUrl {
    text: String,
    url: url::Url,
}

impl ServerUrl {
    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed URL.
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// The host: a host name (lower case), an IPv4 address, or an IPv6
    /// address *with* its brackets (`[fd00::1]`), so that
    /// `format!("{host}:{port}")` is an address to connect to.
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// The TCP port: the one given, or 80 (`http`) or 443 (`https`).
    pub fn port(&self) -> u16 {
        self.url.port_or_known_default().unwrap_or_default()
    }

    /// Whether the scheme is `https`: the server is reached over TLS.
    pub fn is_https(&self) -> bool {
        self.url.scheme() == "https"
    }

    /// `host[:port]` for the HTTP `Host` header (no port when it is the
    /// scheme's default).
    pub fn authority(&self) -> &str {
        &self.url[url::Position::BeforeHost..url::Position::AfterPort]
    }

    /// The request target: the path (`/` when none is given) and the
    /// `?query`, if any, e.g. `/billing?gw=1`.
    pub fn path_and_query(&self) -> &str {
        &self.url[url::Position::BeforePath..url::Position::AfterQuery]
    }

    /// Whether `self` and `other` name the same server and path: the
    /// parsed URLs are equal (so `http://h/x` and `http://H:80/x` are).
    pub(crate) fn same_target(&self, other: &ServerUrl) -> bool {
        self.url == other.url
    }
}

impl fmt::Debug for ServerUrl {
    /// `ServerUrl("http://billing-a:8080/billing")`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ServerUrl").field(&self.text).finish()
    }
}

impl fmt::Display for ServerUrl {
    /// The URL as given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a text is not a [`ServerUrl`]. Displays as a message for the
/// key's problem, e.g. `"ftp://x": ftp:// is not supported; use http:// or https://`.
/// A URL holding credentials is not repeated in the message, nor kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The text is empty.
    #[error("must not be empty; {EXAMPLE}")]
    Empty,
    /// No `scheme://`.
    #[error("{0:?} is not an absolute URL; {EXAMPLE}")]
    NotAbsolute(String),
    /// `user:password@` before the host (never repeated in the message).
    #[error(
        "contains credentials (user:password@ before the host); \
         credentials in the URL are not supported, remove them"
    )]
    Credentials,
    /// A space or a control character.
    #[error("{0:?} contains a space or a control character; percent-encode it (a space is %20)")]
    SpaceOrControl(String),
    /// Characters beyond ASCII.
    #[error(
        "{0:?} contains non-ASCII characters; percent-encode them in the path \
         and write host names in ASCII (punycode)"
    )]
    NonAscii(String),
    /// Not `http://` or `https://`: the URL, the scheme.
    #[error("{0:?}: {1}:// is not supported; use http:// or https://")]
    Scheme(String, String),
    /// A `#fragment`.
    #[error("{0:?} has a #fragment, which is never sent to a server; remove it")]
    Fragment(String),
    /// No host before the path.
    #[error("{0:?} has no host; {EXAMPLE}")]
    NoHost(String),
    /// `[...]` that is not an IPv6 address: the URL, the bracketed part.
    #[error("{0:?}: {1:?} is not an IPv6 address in brackets")]
    NotIpv6(String, String),
    /// Something after `]` other than `:port`: the URL, `host[:port]`.
    #[error("{0:?}: {1:?} is not host:port; {EXAMPLE}")]
    NotHostPort(String, String),
    /// An IPv6 address without its brackets.
    #[error("{0:?}: write an IPv6 address in brackets, e.g. \"http://[fd00::1]:8080/billing\"")]
    Ipv6WithoutBrackets(String),
    /// A host with characters a host name cannot have: the URL, the host.
    #[error("{0:?}: {1:?} is not a host name or address")]
    NotAHost(String, String),
    /// A port that is not 1 to 65535: the URL, the port as given.
    #[error("{0:?}: {1:?} is not a port; use 1 to 65535")]
    NotAPort(String, String),
    /// Refused by the URL parser after billbox's own rules.
    #[error("{0:?} is not a valid URL: {1}")]
    Parse(String, #[source] url::ParseError),
}

impl FromStr for ServerUrl {
    type Err = UrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let url = || text.to_string();
        if text.is_empty() {
            return Err(UrlError::Empty);
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(UrlError::NotAbsolute(url()));
        };
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        // Before anything that might echo the text: never repeat a password.
        if authority.contains('@') {
            return Err(UrlError::Credentials);
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::SpaceOrControl(url()));
        }
        if !text.is_ascii() {
            return Err(UrlError::NonAscii(url()));
        }
        if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
            return Err(UrlError::Scheme(url(), scheme.to_string()));
        }
        if text.contains('#') {
            return Err(UrlError::Fragment(url()));
        }
        check_authority(text, authority)?;
        let parsed = url::Url::parse(text).map_err(|e| UrlError::Parse(url(), e))?;
        Ok(ServerUrl {
            text: url(),
            url: parsed,
        })
    }
}

/// `host[:port]`: a non-empty host (IPv6 in brackets) and an optional port
/// from 1 to 65535. The `url` crate takes more (an empty port, port 0,
/// host names with any punctuation), hence these rules first.
fn check_authority(text: &str, authority: &str) -> Result<(), UrlError> {
    let url = || text.to_string();
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let close = inner.find(']').map(|i| i + 2).unwrap_or(authority.len());
        let (host, after) = authority.split_at(close);
        let ip = host[1..].strip_suffix(']').map(str::parse::<Ipv6Addr>);
        if !matches!(ip, Some(Ok(_))) {
            return Err(UrlError::NotIpv6(url(), host.to_string()));
        }
        match after.strip_prefix(':') {
            _ if after.is_empty() => (host, None),
            Some(port) => (host, Some(port)),
            None => return Err(UrlError::NotHostPort(url(), authority.to_string())),
        }
    } else if authority.matches(':').count() > 1 {
        return Err(UrlError::Ipv6WithoutBrackets(url()));
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::NoHost(url()));
    }
    let host_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    if !host.starts_with('[') && !host.bytes().all(host_byte) {
        return Err(UrlError::NotAHost(url(), host.to_string()));
    }
    match port {
        Some(digits)
            if !digits.bytes().all(|b| b.is_ascii_digit())
                || !matches!(digits.parse::<u16>(), Ok(1..)) =>
        {
            Err(UrlError::NotAPort(url(), digits.to_string()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> ServerUrl {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} refused: {e}"))
    }

    fn err(text: &str) -> String {
        match text.parse::<ServerUrl>() {
            Ok(url) => panic!("{text:?} accepted: {url:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parts() {
        #[rustfmt::skip]
        let cases = [
            ("http://h", "h", 80, "h", "/"),
            ("http://h/", "h", 80, "h", "/"),
            ("http://h:8080", "h", 8080, "h:8080", "/"),
            ("http://billing-a:8080/billing", "billing-a", 8080, "billing-a:8080", "/billing"),
            ("http://h?x=1", "h", 80, "h", "/?x=1"),
            ("http://h/a/b?x=1&y=%20", "h", 80, "h", "/a/b?x=1&y=%20"),
            ("HTTP://H.example:1/", "h.example", 1, "h.example:1", "/"),
            ("http://10.0.0.1:65535/cc", "10.0.0.1", 65535, "10.0.0.1:65535", "/cc"),
            ("http://[::1]/x", "[::1]", 80, "[::1]", "/x"),
            ("https://h/x", "h", 443, "h", "/x"),
            ("HTTPS://h:8443", "h", 8443, "h:8443", "/"),
            ("http://[fd00::1]:9000", "[fd00::1]", 9000, "[fd00::1]:9000", "/"),
        ];
        for (text, host, port, authority, target) in cases {
            let url = ok(text);
            assert_eq!(url.as_str(), text);
            assert_eq!(url.to_string(), text);
            assert_eq!(url.host(), host, "{text}");
            assert_eq!(url.port(), port, "{text}");
            assert_eq!(url.authority(), authority, "{text}");
            assert_eq!(url.path_and_query(), target, "{text}");
        }
    }

    #[test]
    fn refusals() {
        #[rustfmt::skip]
        let cases = [
            ("", "must not be empty"),
            ("billing-a:8080", "\"billing-a:8080\" is not an absolute URL"),
            ("ftp://x", "\"ftp://x\": ftp:// is not supported; use http:// or https://"),
            ("https://", "\"https://\" has no host"),
            ("http://", "\"http://\" has no host"),
            ("http:///path", "\"http:///path\" has no host"),
            ("http://:80/", "\"http://:80/\" has no host"),
            ("http://h:0/", "\"http://h:0/\": \"0\" is not a port"),
            ("http://h:65536/", "\"http://h:65536/\": \"65536\" is not a port"),
            ("http://h:/", "\"http://h:/\": \"\" is not a port"),
            ("http://h:+80/", "\"http://h:+80/\": \"+80\" is not a port"),
            ("http://h:x/", "is not a port"),
            ("http://h /", "contains a space"),
            ("http://h/a b", "contains a space"),
            ("http://h/\u{e9}", "contains non-ASCII"),
            ("http://h/#top", "has a #fragment"),
            ("http://[zz]/", "\"[zz]\" is not an IPv6 address"),
            ("http://[::1/", "is not an IPv6 address"),
            ("http://[::1]x/", "is not host:port"),
            ("http://fd00::1/", "write an IPv6 address in brackets"),
            ("http://a,b/", "\"a,b\" is not a host name"),
            // Refused by the url crate: a host of numbers and dots is an IPv4 address.
            ("http://999.1.1.1/", "\"http://999.1.1.1/\" is not a valid URL: invalid IPv4 address"),
            ("http://1.2.3.4.5/", "is not a valid URL"),
        ];
        for (text, message) in cases {
            let found = err(text);
            assert!(found.contains(message), "{text:?}: {found}");
        }
    }

    #[test]
    fn credentials_are_refused_and_not_echoed() {
        #[rustfmt::skip]
        let cases = [
            "http://user:pw@h/",
            "http://user@h/",
            "http://u:secret@h:80",
        ];
        for text in cases {
            let found = err(text);
            assert!(found.contains("credentials"), "{found}");
            assert!(
                !found.contains("pw") && !found.contains("secret"),
                "{found}"
            );
        }
        // An @ in the path or query is not a credential.
        assert_eq!(ok("http://h/a@b?c=d@e").path_and_query(), "/a@b?c=d@e");
    }

    #[test]
    fn same_target_ignores_host_case_and_default_port() {
        assert!(ok("http://h/x").same_target(&ok("http://H:80/x")));
        assert!(ok("http://h").same_target(&ok("http://h/")));
        assert!(ok("http://h/a/../x").same_target(&ok("http://h/x")));
        assert!(!ok("http://h/x").same_target(&ok("http://h/X")));
        assert!(!ok("http://h/x").same_target(&ok("http://h:81/x")));
        assert!(ok("https://h/x").same_target(&ok("HTTPS://h:443/x")));
        assert!(!ok("https://h:80/x").same_target(&ok("http://h/x")));
        assert_ne!(ok("http://h/x"), ok("http://H:80/x"));
    }

    #[test]
    fn debug_shows_the_url() {
        assert_eq!(
            format!("{:?}", ok("http://h:1/x")),
            "ServerUrl(\"http://h:1/x\")"
        );
    }
}
