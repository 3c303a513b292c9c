//! `billing_eor`'s bytes: from ACS's escapes, to billbox's.

/// An escape ACS does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscapeError {
    #[error(
        "`\\{0}` is not an escape; use \\r, \\n, \\t, \\0, \\\\, \\\", an octal \\NNN or \\xNN"
    )]
    Unknown(char),
    #[error("`\\x` needs one or two hex digits")]
    Hex,
    #[error("a lone `\\` at the end")]
    Trailing,
    #[error("`\\{0}` is more than a byte")]
    Octal(String),
}

/// The bytes of an ACS string value: C escapes (`\r`, `\n`, `\t`, `\0`,
/// `\\`, `\"`, `\a`, `\b`, `\f`, `\v`, octal `\NNN`, hex `\xNN`) decoded,
/// every other character as its UTF-8 bytes.
pub fn decode_acs(text: &str) -> Result<Vec<u8>, EscapeError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let Some(e) = chars.next() else {
            return Err(EscapeError::Trailing);
        };
        let byte = match e {
            'r' => b'\r',
            'n' => b'\n',
            't' => b'\t',
            'a' => 0x07,
            'b' => 0x08,
            'f' => 0x0c,
            'v' => 0x0b,
            '\\' => b'\\',
            '"' => b'"',
            '\'' => b'\'',
            '0'..='7' => {
                let mut digits = e.to_string();
                while digits.len() < 3 && chars.peek().is_some_and(|d| ('0'..='7').contains(d)) {
                    digits.extend(chars.next());
                }
                u8::try_from(u32::from_str_radix(&digits, 8).unwrap_or(u32::MAX))
                    .map_err(|_| EscapeError::Octal(digits))?
            }
            'x' => {
                let mut digits = String::new();
                while digits.len() < 2 && chars.peek().is_some_and(char::is_ascii_hexdigit) {
                    digits.extend(chars.next());
                }
                u8::from_str_radix(&digits, 16).map_err(|_| EscapeError::Hex)?
            }
            other => return Err(EscapeError::Unknown(other)),
        };
        out.push(byte);
    }
    Ok(out)
}

/// `bytes` as a TOML literal string (`'...'`) in billbox's `billing_eor`
/// escapes: `\r`, `\n`, `\t`, `\0`, `\\`, printable ASCII as itself,
/// every other byte `\xNN`. billbox decodes it back into `bytes`.
pub fn billbox_literal(bytes: &[u8]) -> String {
    let mut out = String::from("'");
    for &b in bytes {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0 => out.push_str("\\0"),
            b'\\' => out.push_str("\\\\"),
            // A literal string cannot hold its own quote.
            b'\'' => out.push_str("\\x27"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acs_escapes() {
        let cases: [(&str, &[u8]); 8] = [
            ("\\n", b"\n"),
            ("\\r\\n", b"\r\n"),
            ("\\015\\012", b"\r\n"),
            ("\\x03", &[3]),
            ("\\3", &[3]),
            ("ETX\\x3", b"ETX\x03"),
            ("\\\\\\\"", b"\\\""),
            ("\\0", &[0]),
        ];
        for (text, bytes) in cases {
            assert_eq!(decode_acs(text).unwrap(), bytes, "{text}");
        }
        assert_eq!(decode_acs("\\q"), Err(EscapeError::Unknown('q')));
        assert_eq!(decode_acs("\\xg"), Err(EscapeError::Hex));
        assert_eq!(decode_acs("a\\"), Err(EscapeError::Trailing));
        assert_eq!(decode_acs("\\777"), Err(EscapeError::Octal("777".into())));
    }

    #[test]
    fn billbox_decodes_its_literal_back_into_the_same_bytes() {
        for bytes in [
            &b"\r\n"[..],
            b"\n",
            &[3, 0],
            b"'\\x",
            &[0xff, 0x7f, b' '],
            b"\t#",
        ] {
            let literal = billbox_literal(bytes);
            let toml = format!("[gateway]\nname = \"g\"\n[[ports]]\nname = \"p\"\ndevice = \"/dev/x\"\nbilling_eor = {literal}\n");
            let config =
                billbox_config::from_toml_str(&toml).unwrap_or_else(|e| panic!("{literal}: {e}"));
            assert_eq!(config.ports[0].billing_eor, bytes, "{literal}");
        }
    }
}
