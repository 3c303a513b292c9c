//! How a run of one port's records is laid out in one sled value (a *chunk*).
//!
//! One sled insert costs several microseconds whatever its size, so the store
//! writes the records of one append in chunks of up to [`TARGET_BYTES`]: one
//! insert per chunk, not per record. The chunk's key is its first sequence;
//! its records have consecutive sequences.
//!
//! | bytes | field |
//! |---|---|
//! | 1 | [`VERSION`] (2) |
//! | 4 | record count, u32 big endian |
//! | per record: 1 | flags |
//! | per record: 8 | received time, µs since the epoch, i64 big endian |
//! | per record: 4 | length of the bytes, u32 big endian |
//! | per record: n | the bytes as received |
//!
//! A chunk whose records section compresses by at least an eighth is stored
//! as version 3: the same header, then the section's uncompressed length
//! (u32 big endian) and the section compressed with LZ4 (block format);
//! [`expand`] turns it back into version 2. SMDR text compresses about 3 ×,
//! which shrinks both the store on disk and what sled keeps in memory.
//!
//! A value of version 1 (one record, [`billbox_record::record::encode_value`],
//! as stores written before chunks hold) reads as a chunk of one record.
//!
//! Values stay well under sled's inline limit (a leaf node of 16 chunks of
//! 4 KiB is under the 128 KiB a log message may take before sled writes it to
//! a separate blob file); a single record larger than the target is a chunk
//! of its own.

use billbox_record::{DecodeError, RecordFlags};

use crate::NewRecord;

/// The encoding version of a chunk.
pub const VERSION: u8 = 2;
/// The encoding version of a compressed chunk: the version 2 records
/// section, compressed with LZ4 (block format).
pub const VERSION_LZ4: u8 = 3;
/// A chunk is closed before the record that would take it past this size.
pub const TARGET_BYTES: usize = 4096;

const HEADER: usize = 5;
const PER_RECORD: usize = 13;
const V1_HEADER: usize = 10;

/// Splits `records` into runs that each make one chunk: every run has at
/// least one record, and a run of more than one stays within [`TARGET_BYTES`].
pub fn runs(records: &[NewRecord]) -> impl Iterator<Item = &[NewRecord]> {
    let mut rest = records;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut size = HEADER;
        let mut n = 0;
        for r in rest {
            let add = PER_RECORD + r.bytes.len();
            if n > 0 && size + add > TARGET_BYTES {
                break;
            }
            size += add;
            n += 1;
        }
        let (run, after) = rest.split_at(n);
        rest = after;
        Some(run)
    })
}

/// Encodes one chunk, compressed when that saves at least an eighth.
pub fn encode(records: &[NewRecord]) -> Vec<u8> {
    let plain = encode_plain(records);
    let body = &plain[HEADER..];
    let packed = lz4_flex::block::compress(body);
    if packed.len() + 4 > body.len() - body.len() / 8 {
        return plain;
    }
    let mut out = Vec::with_capacity(HEADER + 4 + packed.len());
    out.push(VERSION_LZ4);
    out.extend_from_slice(&plain[1..HEADER]);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&packed);
    out
}

/// The chunk in its uncompressed layout (version 1 or 2), decompressing a
/// version 3 chunk.
pub fn expand(value: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, DecodeError> {
    if value.first() != Some(&VERSION_LZ4) {
        return Ok(std::borrow::Cow::Borrowed(value));
    }
    let len: [u8; 4] = value
        .get(HEADER..HEADER + 4)
        .and_then(|b| b.try_into().ok())
        .ok_or(DecodeError::ChunkCut(value.len()))?;
    let len = u32::from_be_bytes(len) as usize;
    let mut out = Vec::with_capacity(HEADER + len);
    out.push(VERSION);
    out.extend_from_slice(&value[1..HEADER]);
    out.resize(HEADER + len, 0);
    let n = lz4_flex::block::decompress_into(&value[HEADER + 4..], &mut out[HEADER..])
        .map_err(|_| DecodeError::ChunkCut(HEADER + 4))?;
    if n != len {
        return Err(DecodeError::ChunkCut(HEADER + 4 + n));
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// Encodes one chunk without compression.
pub fn encode_plain(records: &[NewRecord]) -> Vec<u8> {
    let size = HEADER
        + records
            .iter()
            .map(|r| PER_RECORD + r.bytes.len())
            .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.push(VERSION);
    out.extend_from_slice(&(records.len() as u32).to_be_bytes());
    for r in records {
        out.push(r.flags.bits());
        out.extend_from_slice(&r.received_us.to_be_bytes());
        out.extend_from_slice(&(r.bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&r.bytes);
    }
    out
}

/// How many records a chunk holds (reads only its header).
pub fn count(value: &[u8]) -> Result<u64, DecodeError> {
    match value.first() {
        None => Err(DecodeError::TooShort(0)),
        Some(1) if value.len() >= V1_HEADER => Ok(1),
        Some(1) => Err(DecodeError::TooShort(value.len())),
        Some(&VERSION) | Some(&VERSION_LZ4) => {
            let bytes: [u8; 4] = value
                .get(1..HEADER)
                .and_then(|b| b.try_into().ok())
                .ok_or(DecodeError::ChunkCut(value.len()))?;
            Ok(u64::from(u32::from_be_bytes(bytes)))
        }
        Some(&v) => Err(DecodeError::UnknownVersion(v)),
    }
}

/// One record read from a chunk, borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub received_us: i64,
    pub flags: RecordFlags,
    pub bytes: &'a [u8],
}

/// Reads a chunk's records in order.
pub fn entries(value: &[u8]) -> impl Iterator<Item = Result<Entry<'_>, DecodeError>> {
    let mut state: Result<(usize, u64), Option<DecodeError>> = match value.first() {
        Some(1) => Ok((0, 1)),
        _ => count(value).map(|n| (HEADER, n)).map_err(Some),
    };
    std::iter::from_fn(move || match &mut state {
        Err(e) => e.take().map(Err),
        Ok((_, 0)) => None,
        Ok((pos, left)) if value[0] == 1 => {
            debug_assert_eq!(*pos, 0);
            *left = 0;
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&value[2..10]);
            Some(Ok(Entry {
                received_us: i64::from_be_bytes(ts),
                flags: RecordFlags::from_bits(value[1]),
                bytes: &value[V1_HEADER..],
            }))
        }
        Ok((pos, left)) => {
            let at = *pos;
            let Some(head) = value.get(at..at + PER_RECORD) else {
                state = Err(None);
                return Some(Err(DecodeError::ChunkCut(at)));
            };
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&head[1..9]);
            let len = u32::from_be_bytes(head[9..13].try_into().expect("4 bytes")) as usize;
            let start = at + PER_RECORD;
            let Some(bytes) = value.get(start..start.saturating_add(len)) else {
                state = Err(None);
                return Some(Err(DecodeError::ChunkCut(start)));
            };
            *pos = start + len;
            *left -= 1;
            Some(Ok(Entry {
                received_us: i64::from_be_bytes(ts),
                flags: RecordFlags::from_bits(head[0]),
                bytes,
            }))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(bytes: Vec<u8>, us: i64, truncated: bool) -> NewRecord {
        NewRecord {
            received_us: us,
            flags: if truncated {
                RecordFlags::truncated()
            } else {
                RecordFlags::default()
            },
            bytes,
        }
    }

    proptest! {
        #[test]
        fn chunks_round_trip_and_respect_the_target(
            recs in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..3000), any::<i64>(), any::<bool>()),
                0..40,
            )
        ) {
            let recs: Vec<NewRecord> = recs.into_iter().map(|(b, t, f)| rec(b, t, f)).collect();
            let mut back = Vec::new();
            for run in runs(&recs) {
                prop_assert!(!run.is_empty());
                let v = encode(run);
                prop_assert!(run.len() == 1 || v.len() <= TARGET_BYTES);
                prop_assert_eq!(count(&v).unwrap(), run.len() as u64);
                let v = expand(&v).unwrap();
                for e in entries(&v) {
                    let e = e.unwrap();
                    back.push(NewRecord { received_us: e.received_us, flags: e.flags, bytes: e.bytes.to_vec() });
                }
            }
            prop_assert_eq!(back, recs);
        }

        #[test]
        fn a_cut_chunk_is_an_error_not_a_panic(cut in 0usize..200) {
            let recs: Vec<NewRecord> = (0..5).map(|i| rec(vec![b'x'; 30], i, false)).collect();
            let v = encode_plain(&recs);
            let cut = cut.min(v.len() - 1);
            let short = &v[..cut];
            let ok = count(short).is_ok() && entries(short).all(|e| e.is_ok())
                && entries(short).count() == 5;
            prop_assert!(!ok);
        }
    }

    #[test]
    fn smdr_text_is_compressed_and_a_cut_compressed_chunk_is_an_error() {
        let recs: Vec<NewRecord> = (0..20)
            .map(|i| {
                rec(
                    format!("2026/11/24 09:28:{i:02},00:00:{i:02},9,80042060{i:02},O,4324,4324,,0,10000141{i:02},0,E4324,Ext 4324,T9161,LINE 5.1,0,0\r\n").into_bytes(),
                    i,
                    false,
                )
            })
            .collect();
        let v = encode(&recs);
        assert_eq!(v[0], VERSION_LZ4);
        assert!(v.len() * 2 < encode_plain(&recs).len(), "{} bytes", v.len());
        let back: Vec<Vec<u8>> = entries(&expand(&v).unwrap())
            .map(|e| e.unwrap().bytes.to_vec())
            .collect();
        assert_eq!(
            back,
            recs.iter().map(|r| r.bytes.clone()).collect::<Vec<_>>()
        );
        for cut in [1, 5, 9, v.len() / 2, v.len() - 1] {
            assert!(expand(&v[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_version_1_value_reads_as_one_record() {
        let v = billbox_record::record::encode_value(7, RecordFlags::truncated(), b"call\r\n");
        assert_eq!(count(&v).unwrap(), 1);
        let e: Vec<_> = entries(&v).collect::<Result<_, _>>().unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].received_us, e[0].bytes), (7, &b"call\r\n"[..]));
        assert!(e[0].flags.is_truncated());
    }

    #[test]
    fn unknown_versions_are_refused() {
        assert_eq!(count(&[9, 0, 0, 0, 1]), Err(DecodeError::UnknownVersion(9)));
        assert!(matches!(
            entries(&[9]).next(),
            Some(Err(DecodeError::UnknownVersion(9)))
        ));
        assert!(entries(&[]).next().unwrap().is_err());
    }
}
