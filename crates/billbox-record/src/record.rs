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

/// The run of billbox's store that committed a record: a random 64-bit
/// number drawn each time the store is opened, stored beside the records of
/// that run, and part of every record's id (`REC_ID`).
///
/// Why: sequences are per port and come from a counter in the store. A store
/// put back from a backup (with its `sequences` guard) hands out sequences
/// again that a server already holds for other records. The epoch of the run
/// after the restore is new, so those records still get ids no server has
/// seen; an old record sent again keeps the epoch it was stored with, so
/// duplicates are still recognized.
///
/// [`Epoch::NONE`] is the epoch of records stored before billbox kept epochs:
/// their id is the old `GATEWAY/PORT/SEQ`, unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epoch(u64);

impl Epoch {
    /// Records stored before epochs existed.
    pub const NONE: Epoch = Epoch(0);

    /// An epoch from its stored value (0 is [`Epoch::NONE`]).
    pub const fn from_u64(value: u64) -> Epoch {
        Epoch(value)
    }

    /// A new epoch from `random` bits (never [`Epoch::NONE`]).
    pub fn from_random(random: u64) -> Epoch {
        Epoch(if random == 0 { 1 } else { random })
    }

    /// The stored value.
    pub fn get(self) -> u64 {
        self.0
    }

    pub fn is_none(self) -> bool {
        self.0 == 0
    }

    /// Reads the 16 lowercase hex digits of an id's epoch.
    pub fn parse_hex(text: &str) -> Option<Epoch> {
        if text.len() != 16 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        u64::from_str_radix(text, 16)
            .ok()
            .filter(|&v| v != 0)
            .map(Epoch)
    }
}

/// 16 lowercase hex digits (what `REC_ID` carries after `@`).
impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The stable identity of a record: gateway, port, per-port sequence and the
/// [`Epoch`] of the store run that committed it.
///
/// Sequences start at 1 and grow by one per record on a port. Within one
/// store they never repeat; across a store restored from a backup they can,
/// and the epoch keeps the ids apart. Displayed as the wire's `REC_ID`:
/// `GATEWAY/PORT/SEQ@EPOCH`, or `GATEWAY/PORT/SEQ` for [`Epoch::NONE`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId {
    pub gateway: Arc<str>,
    pub port: Arc<str>,
    pub seq: u64,
    pub epoch: Epoch,
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.gateway, self.port, self.seq)?;
        if !self.epoch.is_none() {
            write!(f, "@{}", self.epoch)?;
        }
        Ok(())
    }
}

/// One billing record as committed to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The port the record arrived on.
    pub port: Arc<str>,
    /// The per-port sequence number (1, 2, 3, ...).
    pub seq: u64,
    /// The store run that committed it (part of its id).
    pub epoch: Epoch,
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
            epoch: self.epoch,
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
            epoch: Epoch::NONE,
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
            epoch: Epoch::NONE,
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
            epoch: Epoch::NONE,
            received_us: 0,
            flags: RecordFlags::NONE,
            bytes: vec![],
        };
        assert_eq!(r.id(&Arc::from("gw")).to_string(), "gw/pbx1/7");
        let r = Record {
            epoch: Epoch::from_u64(0x3f9a_0c1d_2e4b_5a67),
            ..r
        };
        assert_eq!(
            r.id(&Arc::from("gw")).to_string(),
            "gw/pbx1/7@3f9a0c1d2e4b5a67"
        );
    }

    #[test]
    fn epochs_read_back_from_their_hex_only() {
        let e = Epoch::from_u64(0xab);
        assert_eq!(Epoch::parse_hex(&e.to_string()), Some(e));
        for bad in [
            "",
            "ab",
            "00000000000000ab0",
            "000000000000000G",
            "00000000000000AB",
            "0000000000000000",
        ] {
            assert_eq!(Epoch::parse_hex(bad), None, "{bad:?}");
        }
        assert_eq!(Epoch::from_random(0), Epoch::from_u64(1));
    }
}
