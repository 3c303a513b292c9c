//! Records: splitting files back into records, checking that every record
//! arrived exactly once, and the padded numbered records of the benches.

use std::collections::HashMap;

/// Splits file contents back into records: each ends after `eor`; a tail
/// without one is a record of its own.
pub fn split_records(body: &[u8], eor: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + eor.len() <= body.len() {
        if &body[i..i + eor.len()] == eor {
            out.push(body[start..i + eor.len()].to_vec());
            i += eor.len();
            start = i;
        } else {
            i += 1;
        }
    }
    if start < body.len() {
        out.push(body[start..].to_vec());
    }
    out
}

/// Asserts `found` holds every record of `sent` exactly once and nothing else.
pub fn assert_exactly_once(sent: &[Vec<u8>], found: &[Vec<u8>], what: &str) {
    let mut counts: HashMap<&[u8], i64> = HashMap::new();
    for r in found {
        *counts.entry(r.as_slice()).or_default() += 1;
    }
    let missing: Vec<String> = sent
        .iter()
        .filter(|r| !counts.contains_key(r.as_slice()))
        .take(3)
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    let dupes = counts.values().filter(|c| **c > 1).count();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} records missing, e.g. {missing:?}",
        sent.iter()
            .filter(|r| !counts.contains_key(r.as_slice()))
            .count(),
        sent.len()
    );
    assert_eq!(dupes, 0, "{what}: {dupes} records duplicated");
    assert_eq!(
        found.len(),
        sent.len(),
        "{what}: records that were never sent"
    );
}

/// Appends record `i` of a bench to `out`: its number zero-padded to 10
/// digits, an SMDR-like tail, `x` up to `size` bytes with `eor` included.
pub fn push_padded_record(out: &mut Vec<u8>, i: u64, size: usize, eor: &[u8]) {
    use std::io::Write;
    let start = out.len();
    write!(out, "{i:010},2026/11/24 13:00:00,00:01:05,4321,").expect("writes to a Vec");
    out.resize(start + size - eor.len(), b'x');
    out.extend_from_slice(eor);
}

/// Record `i` of a bench as [`push_padded_record`] makes it.
pub fn padded_record(i: u64, size: usize, eor: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    push_padded_record(&mut out, i, size, eor);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_after_each_terminator_and_keep_a_tail() {
        assert_eq!(
            split_records(b"a\r\nb\r\nc", b"\r\n"),
            vec![b"a\r\n".to_vec(), b"b\r\n".to_vec(), b"c".to_vec()]
        );
        assert!(split_records(b"", b"\n").is_empty());
    }

    #[test]
    fn padded_records_have_their_size_and_number() {
        let r = padded_record(7, 145, b"\r\n");
        assert_eq!(r.len(), 145);
        assert!(r.starts_with(b"0000000007,2026/11/24"));
        assert!(r.ends_with(b"xx\r\n"));
    }
}
