//! Packet signatures: HMAC-SHA256 with a key shared by billbox and a
//! server (`docs/security.md`).
//!
//! - Every POST body is signed as a whole: the header
//!   [`SIGNATURE_HEADER`]` = sha256=<64 lowercase hex digits>` is the
//!   HMAC-SHA256 of the exact body bytes ([`signature_value`],
//!   [`verify_signature`]).
//! - An AG transaction packet (`ADD_REC`) also carries one inside, as its
//!   `SIGNATURE` element `sha256=<hex>`: the HMAC-SHA256 of the packet
//!   without that element and the line break after it
//!   ([`sign_transaction_packet`], [`verify_transaction_signature`]).

use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The HTTP header that carries a body's signature.
pub const SIGNATURE_HEADER: &str = "X-Billbox-Signature";

/// What a signature value starts with: the algorithm.
pub const SIGNATURE_PREFIX: &str = "sha256=";

/// Why a signature was refused. Never holds the key or the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the packet has no signature")]
    Missing,
    #[error("the signature is not sha256= and 64 hex digits")]
    Malformed,
    #[error("the signature does not match the packet")]
    Mismatch,
}

/// HMAC-SHA256 of `body` under `key`.
pub fn hmac_sha256(key: &[u8], body: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// `sha256=` and the lowercase hex HMAC-SHA256 of `body` under `key`: the
/// value of [`SIGNATURE_HEADER`].
pub fn signature_value(key: &[u8], body: &[u8]) -> String {
    let mac = hmac_sha256(key, body);
    let mut out = String::with_capacity(SIGNATURE_PREFIX.len() + 64);
    out.push_str(SIGNATURE_PREFIX);
    for b in mac {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The 32 bytes of a `sha256=<hex>` value (hex digits in either case).
fn parse_value(value: &[u8]) -> Option<[u8; 32]> {
    let hex = value.strip_prefix(SIGNATURE_PREFIX.as_bytes())?;
    if hex.len() != 64 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Checks a [`SIGNATURE_HEADER`] value (`None` when the header is absent)
/// against `body`, in constant time.
pub fn verify_signature(
    key: &[u8],
    body: &[u8],
    value: Option<&[u8]>,
) -> Result<(), SignatureError> {
    let value = value.ok_or(SignatureError::Missing)?;
    let expected = parse_value(value.trim_ascii()).ok_or(SignatureError::Malformed)?;
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

const ADD_REC: &[u8] = b"RMTLOG_COMMAND=\"ADD_REC\"";
const OPEN: &[u8] = b"<SIGNATURE>";
const CLOSE: &[u8] = b"</SIGNATURE>";
const END: &[u8] = b"</USG>";

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether `packet` is an AG transaction packet (`ADD_REC`): its root's
/// start tag names the command.
pub fn is_transaction_packet(packet: &[u8]) -> bool {
    let head = &packet[..packet.len().min(256)];
    find(head, b"<USG")
        .and_then(|at| {
            let tag_end = find(&head[at..], b">")? + at;
            Some(find(&head[at..tag_end], ADD_REC).is_some())
        })
        .unwrap_or(false)
}

/// Signs an AG transaction packet: inserts `<SIGNATURE>sha256=<hex></SIGNATURE>`
/// and a line break before its closing `</USG>`, the HMAC-SHA256 of the
/// packet as it was. `None` when `packet` is not an `ADD_REC` packet, or
/// already holds a `SIGNATURE` (the AG's own, which is left as it is).
pub fn sign_transaction_packet(key: &[u8], packet: &[u8]) -> Option<Vec<u8>> {
    if !is_transaction_packet(packet) || find(packet, OPEN).is_some() {
        return None;
    }
    let end = packet.len() - packet.ends_with(END).then_some(END.len())?;
    let value = signature_value(key, packet);
    let mut out = Vec::with_capacity(packet.len() + OPEN.len() + CLOSE.len() + value.len() + 1);
    out.extend_from_slice(&packet[..end]);
    out.extend_from_slice(OPEN);
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(CLOSE);
    out.push(b'\n');
    out.extend_from_slice(&packet[end..]);
    Some(out)
}

/// Checks the `SIGNATURE` of an AG transaction packet when it is billbox's
/// (`sha256=...`): the HMAC-SHA256 of the packet without the element and
/// the line break that follows it. `Ok(false)` when the packet carries no
/// such signature (none, or the AG's own opaque one).
pub fn verify_transaction_signature(key: &[u8], packet: &[u8]) -> Result<bool, SignatureError> {
    let Some(open) = find(packet, OPEN) else {
        return Ok(false);
    };
    let content = open + OPEN.len();
    let Some(len) = find(&packet[content..], CLOSE) else {
        return Ok(false);
    };
    let value = &packet[content..content + len];
    if !value.starts_with(SIGNATURE_PREFIX.as_bytes()) {
        return Ok(false);
    }
    let expected = parse_value(value).ok_or(SignatureError::Malformed)?;
    let mut after = content + len + CLOSE.len();
    if packet.get(after) == Some(&b'\n') {
        after += 1;
    }
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(&packet[..open]);
    mac.update(&packet[after..]);
    mac.verify_slice(&expected)
        .map(|()| true)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 4231, test cases 1, 2 and 6 (HMAC-SHA-256).
    #[test]
    fn rfc_4231_test_vectors() {
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(
            signature_value(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn headers_verify_only_with_the_key_and_the_body() {
        let (key, body) = (b"0123456789abcdef".as_slice(), b"<USG/>".as_slice());
        let value = signature_value(key, body);
        assert_eq!(verify_signature(key, body, Some(value.as_bytes())), Ok(()));
        let upper = format!("sha256={}", value[7..].to_uppercase());
        assert_eq!(verify_signature(key, body, Some(upper.as_bytes())), Ok(()));
        assert_eq!(
            verify_signature(b"another key, 16+", body, Some(value.as_bytes())),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(key, b"<USG />", Some(value.as_bytes())),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(key, body, None),
            Err(SignatureError::Missing)
        );
        for bad in [
            "",
            "sha256=",
            "sha1=00",
            &value[7..],
            &value[..70],
            &format!("{}zz", &value[..69]),
            &format!("md5={}", &value[7..]),
        ] {
            assert_eq!(
                verify_signature(key, body, Some(bad.as_bytes())),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }

    const PACKET: &[u8] = b"<USG RMTLOG_COMMAND=\"ADD_REC\">\n<REC_NUM>00923</REC_NUM>\n</USG>";

    #[test]
    fn transaction_packets_carry_their_signature() {
        let key = b"0123456789abcdef";
        let signed = sign_transaction_packet(key, PACKET).unwrap();
        let value = signature_value(key, PACKET);
        let expected = format!(
            "<USG RMTLOG_COMMAND=\"ADD_REC\">\n<REC_NUM>00923</REC_NUM>\n<SIGNATURE>{value}</SIGNATURE>\n</USG>"
        );
        assert_eq!(String::from_utf8_lossy(&signed), expected);
        assert_eq!(verify_transaction_signature(key, &signed), Ok(true));
        assert_eq!(
            verify_transaction_signature(b"0123456789abcdeF", &signed),
            Err(SignatureError::Mismatch)
        );
        let tampered = String::from_utf8_lossy(&signed).replace("00923", "00924");
        assert_eq!(
            verify_transaction_signature(key, tampered.as_bytes()),
            Err(SignatureError::Mismatch)
        );
        // Signed once only; the AG's own signature is kept.
        assert_eq!(sign_transaction_packet(key, &signed), None);
        let ag = b"<USG RMTLOG_COMMAND=\"ADD_REC\">\n<SIGNATURE>9f86d081</SIGNATURE>\n</USG>";
        assert_eq!(sign_transaction_packet(key, ag), None);
        assert_eq!(verify_transaction_signature(key, ag), Ok(false));
        assert_eq!(verify_transaction_signature(key, PACKET), Ok(false));
        // Record packets are not transactions.
        let cdr = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<USG RMTLOG_COMMAND=\"ADD_CDR\"><DATA>RMTLOG_COMMAND=\"ADD_REC\"</DATA></USG>";
        assert!(!is_transaction_packet(cdr));
        assert_eq!(sign_transaction_packet(key, cdr), None);
        assert!(is_transaction_packet(PACKET));
    }
}
