//! The record type and its on-disk encoding.

use std::fmt;
use std::sync::Arc;

/// Flags that describe how a record ended.
///
/// A record normally ends with its port's end-of-record string. When it does
/// not, the bytes are still kept (never dropped) and the flags say why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RecordFlags(u8);

impl RecordFlags {
    const TRUNCATED: u8 = 0b0000_0001;
    const UNTERMINATED: u8 = 0b0000_0010;

    /// A record with a terminator and no flag set.
    pub const NONE: RecordFlags = RecordFlags(0);

    /// The input reached `max_record_bytes` without a terminator and was cut.
    pub fn truncated() -> Self {
        RecordFlags(Self::TRUNCATED)
    }

    /// The connection or device went away before the terminator arrived.
    pub fn unterminated() -> Self {
        RecordFlags(Self::UNTERMINATED)
    }

    pub fn is_truncated(self) -> bool {
        self.0 & Self::TRUNCATED != 0
    }

    pub fn is_unterminated(self) -> bool {
        self.0 & Self::UNTERMINATED != 0
    }

    /// The raw bits, as stored.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Flags from stored bits; unknown bits are kept so nothing is lost on a
    /// downgrade.
    pub fn from_bits(bits: u8) -> Self {
        RecordFlags(bits)
    }
}

/// The stable identity of a record: gateway, port and per-port sequence.
///
/// Sequences start at 1, grow by one per record on a port, and never repeat
/// for a given store, so a server can drop duplicates and spot gaps.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId {
    pub gateway: Arc<str>,
    pub port: Arc<str>,
    pub seq: u64,
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.gateway, self.port, self.seq)
    }
}

/// One billing record as committed to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The port the record arrived on.
    pub port: Arc<str>,
    /// The per-port sequence number (1, 2, 3, ...).
    pub seq: u64,
    /// When the record's last byte was read, in microseconds since the Unix epoch.
    pub received_us: i64,
    pub flags: RecordFlags,
    /// The bytes exactly as received, terminator included.
    pub bytes: Vec<u8>,
}

/// Why stored bytes could not be decoded into a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the stored record is {0} bytes, shorter than its 10-byte header")]
    TooShort(usize),
    #[error("the stored record has encoding version {0}, this build reads versions 1 and 2")]
    UnknownVersion(u8),
    #[error("the stored chunk of records is cut short at byte {0}")]
    ChunkCut(usize),
}

const ENCODING_VERSION: u8 = 1;
const HEADER_LEN: usize = 10;

impl Record {
    /// The record's stable id on the given gateway.
    pub fn id(&self, gateway: &Arc<str>) -> RecordId {
        RecordId {
            gateway: gateway.clone(),
            port: self.port.clone(),
            seq: self.seq,
        }
    }

    /// Encodes the parts of the record that are not in its store key:
    /// `version (1) | flags (1) | received_us (8, big endian) | bytes`.
    pub fn encode_value(&self) -> Vec<u8> {
        encode_value(self.received_us, self.flags, &self.bytes)
    }

    /// Rebuilds a record from its key parts and stored value.
    pub fn decode_value(port: Arc<str>, seq: u64, value: &[u8]) -> Result<Record, DecodeError> {
        if value.len() < HEADER_LEN {
            return Err(DecodeError::TooShort(value.len()));
        }
        if value[0] != ENCODING_VERSION {
            return Err(DecodeError::UnknownVersion(value[0]));
        }
        let flags = RecordFlags::from_bits(value[1]);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&value[2..10]);
        Ok(Record {
            port,
            seq,
            received_us: i64::from_be_bytes(ts),
            flags,
            bytes: value[HEADER_LEN..].to_vec(),
        })
    }
}

/// Encodes a record value without building a [`Record`] first.
pub fn encode_value(received_us: i64, flags: RecordFlags, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + bytes.len());
    out.push(ENCODING_VERSION);
    out.push(flags.bits());
    out.extend_from_slice(&received_us.to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_round_trips() {
        let r = Record {
            port: Arc::from("pbx1"),
            seq: 42,
            received_us: 1_700_000_000_123_456,
            flags: RecordFlags::truncated(),
            bytes: b"\x00\xffcall\r\n".to_vec(),
        };
        let v = r.encode_value();
        let back = Record::decode_value(r.port.clone(), 42, &v).unwrap();
        assert_eq!(back, r);
        assert!(back.flags.is_truncated());
        assert!(!back.flags.is_unterminated());
    }

    #[test]
    fn decode_rejects_short_and_unknown_versions() {
        assert_eq!(
            Record::decode_value(Arc::from("p"), 1, &[1, 0, 0]),
            Err(DecodeError::TooShort(3))
        );
        let mut v = encode_value(0, RecordFlags::NONE, b"x");
        v[0] = 9;
        assert_eq!(
            Record::decode_value(Arc::from("p"), 1, &v),
            Err(DecodeError::UnknownVersion(9))
        );
    }

    #[test]
    fn id_displays_gateway_port_seq() {
        let r = Record {
            port: Arc::from("pbx1"),
            seq: 7,
            received_us: 0,
            flags: RecordFlags::NONE,
            bytes: vec![],
        };
        assert_eq!(r.id(&Arc::from("gw")).to_string(), "gw/pbx1/7");
    }
}
