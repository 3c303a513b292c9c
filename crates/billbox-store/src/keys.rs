//! Keys of the `journal` tree.
//!
//! | key | value |
//! |---|---|
//! | `r` port `0x00` seq (u64 big endian) | a chunk of records whose first has sequence `seq` ([`crate::chunk`]) |
//! | `s` port | the port's last handed-out sequence (u64 big endian) |
//! | `m` port `0x00` name | a metadata entry of the port (rotator state, cursors, the removal watermark) |
//!
//! Port names never contain NUL (the config refuses them), so the `0x00`
//! separator keeps one port's keys from running into another's, and big-endian
//! sequences sort records in order.

/// Prefix byte of record keys.
pub const RECORD: u8 = b'r';
/// Prefix byte of sequence counters.
pub const SEQ: u8 = b's';
/// Prefix byte of metadata entries.
pub const META: u8 = b'm';

/// The key prefix under which a port's records sort.
pub fn record_prefix(port: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(port.len() + 2);
    k.push(RECORD);
    k.extend_from_slice(port.as_bytes());
    k.push(0);
    k
}

/// The key of one record.
pub fn record_key(port: &str, seq: u64) -> Vec<u8> {
    let mut k = record_prefix(port);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number in a record key.
pub fn seq_of_record_key(key: &[u8]) -> Option<u64> {
    if key.len() < 10 || key[0] != RECORD {
        return None;
    }
    decode_u64(&key[key.len() - 8..])
}

/// The key of a port's sequence counter.
pub fn seq_key(port: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(port.len() + 1);
    k.push(SEQ);
    k.extend_from_slice(port.as_bytes());
    k
}

/// The port named by a sequence counter key.
pub fn port_of_seq_key(key: &[u8]) -> Option<String> {
    if key.first() != Some(&SEQ) {
        return None;
    }
    String::from_utf8(key[1..].to_vec()).ok()
}

/// The key of a port's metadata entry.
pub fn meta_key(port: &str, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(port.len() + name.len() + 2);
    k.push(META);
    k.extend_from_slice(port.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

/// Reads a big-endian u64 of exactly 8 bytes.
pub fn decode_u64(v: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = v.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}
