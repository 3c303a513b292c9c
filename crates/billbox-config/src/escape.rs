//! Decoding of `billing_eor`: backslash escapes that survive TOML.

/// A backslash sequence in `billing_eor` that is not one of the known escapes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{sequence}` is not a valid escape; use \\r, \\n, \\t, \\0, \\\\ or \\xNN (two hex digits)"
)]
pub struct EscapeError {
    /// The offending sequence as written, e.g. `\xZZ` or `\q`.
    pub sequence: String,
}

/// Decodes the escapes of a `billing_eor` value into bytes.
///
/// `\r` `\n` `\t` `\0` `\\` give their control byte (or a backslash) and
/// `\xNN` (exactly two hex digits, either case) gives the byte `0xNN`, so
/// any byte 0x00-0xFF can be written. Every other character is taken as its
/// UTF-8 bytes. A backslash followed by anything else, or a lone backslash
/// at the end, is an error.
///
/// ```
/// assert_eq!(billbox_config::decode_escapes(r"\r\n").unwrap(), b"\r\n");
/// assert_eq!(billbox_config::decode_escapes(r"\xff\x03").unwrap(), [0xff, 0x03]);
/// assert_eq!(billbox_config::decode_escapes("\u{3}").unwrap(), [0x03]);
/// assert!(billbox_config::decode_escapes(r"\xZZ").is_err());
/// ```
pub fn decode_escapes(text: &str) -> Result<Vec<u8>, EscapeError> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let byte = match chars.next() {
            Some('r') => b'\r',
            Some('n') => b'\n',
            Some('t') => b'\t',
            Some('0') => 0,
            Some('\\') => b'\\',
            Some('x') => {
                let hi = chars.next();
                let lo = chars.next();
                match (hi.and_then(hex), lo.and_then(hex)) {
                    (Some(hi), Some(lo)) => hi << 4 | lo,
                    _ => {
                        let mut sequence = String::from("\\x");
                        sequence.extend(hi);
                        sequence.extend(lo);
                        return Err(EscapeError { sequence });
                    }
                }
            }
            Some(other) => {
                return Err(EscapeError {
                    sequence: format!("\\{other}"),
                })
            }
            None => {
                return Err(EscapeError {
                    sequence: "\\".to_string(),
                })
            }
        };
        out.push(byte);
    }
    Ok(out)
}

fn hex(c: char) -> Option<u8> {
    c.to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_escapes() {
        assert_eq!(decode_escapes(r"\r\n\t\0\\").unwrap(), b"\r\n\t\0\\");
        assert_eq!(decode_escapes(r"\x03\x00").unwrap(), [3, 0]);
        assert_eq!(decode_escapes(r"\xfF").unwrap(), [0xff]);
        assert_eq!(decode_escapes("a\u{e9}").unwrap(), "a\u{e9}".as_bytes());
        assert_eq!(decode_escapes("").unwrap(), b"");
    }

    #[test]
    fn bad_escapes() {
        #[rustfmt::skip]
        let cases = [
            (r"\xZZ", r"\xZZ"),
            (r"\x4", r"\x4"),
            (r"\x", r"\x"),
            (r"\q", r"\q"),
            (r"ab\", r"\"),
            (r"\R", r"\R"),
        ];
        for (text, sequence) in cases {
            let err = decode_escapes(text).unwrap_err();
            assert_eq!(err.sequence, sequence, "{text}");
            assert!(err.to_string().contains(sequence), "{err}");
        }
    }

    proptest! {
        #[test]
        fn hex_escapes_give_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let text: String = bytes.iter().map(|b| format!("\\x{b:02x}")).collect();
            prop_assert_eq!(decode_escapes(&text).unwrap(), bytes);
        }

        #[test]
        fn text_without_backslash_is_its_utf8(text in "[^\\\\]{0,16}") {
            prop_assert_eq!(decode_escapes(&text).unwrap(), text.as_bytes());
        }
    }
}
