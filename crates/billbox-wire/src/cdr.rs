//! billbox's PBX record packets: `ADD_CDR` (one record) and `ADD_CDR_BATCH`
//! (several), the text-or-base64 rule for the record bytes, and the
//! receiver's view of a decoded record ([`ReceivedCdr`]).

use base64::Engine as _;
use billbox_record::{Record, RecordFlags};

use crate::xml::escape_text_into;

/// The XML declaration that opens every billbox packet (and its line break).
pub(crate) const XML_DECL: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// The earliest receive time RFC 3339 can show (0000-01-01T00:00:00Z), in
/// microseconds since the Unix epoch. Earlier times are written as this one.
pub const MIN_RECEIVED_US: i64 = -62_167_219_200_000_000;

/// The latest receive time RFC 3339 can show (9999-12-31T23:59:59.999999Z),
/// in microseconds since the Unix epoch. Later times are written as this one.
pub const MAX_RECEIVED_US: i64 = 253_402_300_799_999_999;

/// How the bytes of a record travel in `<DATA>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataEncoding {
    /// `ENCODING="text"`: the bytes are UTF-8 text, escaped.
    Text,
    /// `ENCODING="base64"`: standard base64 (RFC 4648, with padding).
    Base64,
}

impl DataEncoding {
    /// The `ENCODING` attribute value: `text` or `base64`.
    pub fn as_str(self) -> &'static str {
        match self {
            DataEncoding::Text => "text",
            DataEncoding::Base64 => "base64",
        }
    }
}

/// The encoding billbox uses for `bytes`: [`DataEncoding::Text`] when they are
/// valid UTF-8 and every character is legal in XML 1.0 (tab, LF, CR, and
/// U+0020 and above except U+FFFE and U+FFFF), else [`DataEncoding::Base64`].
pub fn data_encoding(bytes: &[u8]) -> DataEncoding {
    match std::str::from_utf8(bytes) {
        Ok(s) if crate::xml::first_illegal_char(s).is_none() => DataEncoding::Text,
        _ => DataEncoding::Base64,
    }
}

/// Appends the `ADD_CDR` packet for one record to `out` (nothing is cleared;
/// the XML declaration is included).
///
/// `gateway` and the record's port are expected to be names from the config
/// (`[A-Za-z0-9_.-]`); they are escaped all the same. A `received_us`
/// outside the years 0000-9999 is written clamped to that range.
pub fn encode_cdr(gateway: &str, record: &Record, out: &mut Vec<u8>) {
    out.reserve(estimate(gateway, record) + XML_DECL.len() + 40);
    out.extend_from_slice(XML_DECL);
    out.extend_from_slice(b"<USG RMTLOG_COMMAND=\"ADD_CDR\">");
    write_cdr_children(gateway, record, out);
    out.extend_from_slice(b"</USG>");
}

/// Appends the `ADD_CDR_BATCH` packet for `records` to `out` (nothing is
/// cleared; the XML declaration is included). One acknowledgement covers
/// the whole batch. An empty slice gives a packet with `COUNT="0"`.
pub fn encode_cdr_batch(gateway: &str, records: &[Record], out: &mut Vec<u8>) {
    let total: usize = records
        .iter()
        .map(|r| estimate(gateway, r) + 11)
        .fold(0usize, usize::saturating_add);
    out.reserve(total.saturating_add(XML_DECL.len() + 64));
    out.extend_from_slice(XML_DECL);
    out.extend_from_slice(b"<USG RMTLOG_COMMAND=\"ADD_CDR_BATCH\" COUNT=\"");
    write_u64(records.len() as u64, out);
    out.extend_from_slice(b"\">");
    for record in records {
        out.extend_from_slice(b"<CDR>");
        write_cdr_children(gateway, record, out);
        out.extend_from_slice(b"</CDR>");
    }
    out.extend_from_slice(b"</USG>");
}

/// A generous guess of one record's children's size, for one reservation.
fn estimate(gateway: &str, record: &Record) -> usize {
    let names = 2 * (gateway.len() + record.port.len());
    let data = record.bytes.len() / 3 * 4 + 8;
    200usize.saturating_add(names).saturating_add(data)
}

/// REC_ID, GATEWAY, PORT, SEQ, RECEIVED, FLAGS and DATA, in that order.
fn write_cdr_children(gateway: &str, record: &Record, out: &mut Vec<u8>) {
    let gateway = gateway.as_bytes();
    let port = record.port.as_bytes();

    out.extend_from_slice(b"<REC_ID>");
    escape_text_into(gateway, out);
    out.push(b'/');
    escape_text_into(port, out);
    out.push(b'/');
    write_u64(record.seq, out);
    if !record.epoch.is_none() {
        write_epoch(record.epoch, out);
    }
    out.extend_from_slice(b"</REC_ID><GATEWAY>");
    escape_text_into(gateway, out);
    out.extend_from_slice(b"</GATEWAY><PORT>");
    escape_text_into(port, out);
    out.extend_from_slice(b"</PORT><SEQ>");
    write_u64(record.seq, out);
    out.extend_from_slice(b"</SEQ><RECEIVED>");
    write_received(record.received_us, out);
    out.extend_from_slice(b"</RECEIVED>");
    write_flags(record.flags, out);

    match data_encoding(&record.bytes) {
        DataEncoding::Text => {
            out.extend_from_slice(b"<DATA ENCODING=\"text\">");
            escape_text_into(&record.bytes, out);
        }
        DataEncoding::Base64 => {
            out.extend_from_slice(b"<DATA ENCODING=\"base64\">");
            write_base64(&record.bytes, out);
        }
    }
    out.extend_from_slice(b"</DATA>");
}

/// `<FLAGS/>` or `<FLAGS>truncated unterminated</FLAGS>` (known flags only).
fn write_flags(flags: RecordFlags, out: &mut Vec<u8>) {
    match (flags.is_truncated(), flags.is_unterminated()) {
        (false, false) => out.extend_from_slice(b"<FLAGS/>"),
        (true, false) => out.extend_from_slice(b"<FLAGS>truncated</FLAGS>"),
        (false, true) => out.extend_from_slice(b"<FLAGS>unterminated</FLAGS>"),
        (true, true) => out.extend_from_slice(b"<FLAGS>truncated unterminated</FLAGS>"),
    }
}

fn write_base64(bytes: &[u8], out: &mut Vec<u8>) {
    let engine = &base64::engine::general_purpose::STANDARD;
    let start = out.len();
    if let Some(len) = base64::encoded_len(bytes.len(), true) {
        out.resize(start + len, 0);
        if let Ok(written) = engine.encode_slice(bytes, &mut out[start..]) {
            out.truncate(start + written);
            return;
        }
        out.truncate(start);
    }
    // Not reached in practice (the length always fits); kept panic-free.
    out.extend_from_slice(engine.encode(bytes).as_bytes());
}

/// `@` and the epoch's 16 lowercase hex digits, without allocating.
fn write_epoch(epoch: billbox_record::Epoch, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'@');
    let v = epoch.get();
    for shift in (0..16).rev() {
        out.push(HEX[((v >> (shift * 4)) & 0xf) as usize]);
    }
}

/// Decimal digits of `n`, without allocating.
pub(crate) fn write_u64(mut n: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// `n` as exactly `width` digits (n must fit).
fn write_padded(n: u32, width: usize, out: &mut Vec<u8>) {
    let mut buf = [b'0'; 10];
    let mut n = n;
    let mut i = buf.len();
    while i > buf.len() - width {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf[i..]);
}

/// Writes a receive time as RFC 3339 UTC with exactly six fractional digits
/// and `Z`: `2026-11-24T13:00:00.123456Z`. Clamped to years 0000-9999.
pub(crate) fn write_received(received_us: i64, out: &mut Vec<u8>) {
    use chrono::{Datelike, Timelike};
    let us = received_us.clamp(MIN_RECEIVED_US, MAX_RECEIVED_US);
    let Some(t) = chrono::DateTime::from_timestamp_micros(us) else {
        // Not reached: the clamped range is well inside chrono's.
        out.extend_from_slice(b"0000-01-01T00:00:00.000000Z");
        return;
    };
    let t = t.naive_utc();
    // In range by the clamp: 0..=9999.
    write_padded(t.year().clamp(0, 9999) as u32, 4, out);
    out.push(b'-');
    write_padded(t.month(), 2, out);
    out.push(b'-');
    write_padded(t.day(), 2, out);
    out.push(b'T');
    write_padded(t.hour(), 2, out);
    out.push(b':');
    write_padded(t.minute(), 2, out);
    out.push(b':');
    write_padded(t.second(), 2, out);
    out.push(b'.');
    write_padded(us.rem_euclid(1_000_000) as u32, 6, out);
    out.push(b'Z');
}

/// A receive time as billbox writes it in `<RECEIVED>`:
/// `2026-11-24T13:00:00.123456Z`.
pub fn format_received(received_us: i64) -> String {
    let mut out = Vec::with_capacity(27);
    write_received(received_us, &mut out);
    // Only ASCII digits and punctuation were written.
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a `<RECEIVED>` value in exactly the form billbox writes
/// (`YYYY-MM-DDTHH:MM:SS.ffffffZ`) into microseconds since the Unix epoch.
pub fn parse_received(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 27
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[26] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        let digits = b.get(from..to)?;
        digits.iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
    let time = chrono::NaiveTime::from_hms_micro_opt(
        num(11, 13)?,
        num(14, 16)?,
        num(17, 19)?,
        num(20, 26)?,
    )?;
    Some(date.and_time(time).and_utc().timestamp_micros())
}

/// One record as a receiver decodes it from an `ADD_CDR` or `ADD_CDR_BATCH`
/// packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedCdr {
    /// `gateway/port/seq@epoch` (or `gateway/port/seq` from a store older
    /// than epochs): the record's stable id (checked against the parts).
    pub rec_id: String,
    /// The store run that committed the record, from `REC_ID`
    /// ([`Epoch::NONE`](billbox_record::Epoch::NONE) when it has none).
    pub epoch: billbox_record::Epoch,
    pub gateway: String,
    pub port: String,
    /// The per-port sequence number.
    pub seq: u64,
    /// `<RECEIVED>` as sent (RFC 3339 UTC, six fractional digits).
    pub received: String,
    /// The same time in microseconds since the Unix epoch.
    pub received_us: i64,
    /// The record was cut at `max_record_bytes` (flag `truncated`).
    pub truncated: bool,
    /// The link went away before the terminator (flag `unterminated`).
    pub unterminated: bool,
    /// How `<DATA>` was encoded on the wire.
    pub encoding: DataEncoding,
    /// The record's bytes, exactly as billbox received them.
    pub data: Vec<u8>,
}

impl ReceivedCdr {
    /// The flags as billbox's [`RecordFlags`].
    pub fn record_flags(&self) -> RecordFlags {
        let mut bits = 0;
        if self.truncated {
            bits |= RecordFlags::truncated().bits();
        }
        if self.unterminated {
            bits |= RecordFlags::unterminated().bits();
        }
        RecordFlags::from_bits(bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn rec(seq: u64, received_us: i64, flags: RecordFlags, bytes: &[u8]) -> Record {
        Record {
            port: Arc::from("pbx1"),
            seq,
            epoch: billbox_record::Epoch::NONE,
            received_us,
            flags,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn received_format_has_six_digits_and_z() {
        assert_eq!(format_received(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_received(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(
            format_received(1_795_525_200_123_456),
            "2026-11-24T13:00:00.123456Z"
        );
        assert_eq!(format_received(i64::MIN), "0000-01-01T00:00:00.000000Z");
        assert_eq!(format_received(i64::MAX), "9999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn clamp_bounds_match_chrono() {
        let min = chrono::NaiveDate::from_ymd_opt(0, 1, 1)
            .and_then(|d| d.and_hms_micro_opt(0, 0, 0, 0))
            .map(|t| t.and_utc().timestamp_micros());
        let max = chrono::NaiveDate::from_ymd_opt(9999, 12, 31)
            .and_then(|d| d.and_hms_micro_opt(23, 59, 59, 999_999))
            .map(|t| t.and_utc().timestamp_micros());
        assert_eq!(min, Some(MIN_RECEIVED_US));
        assert_eq!(max, Some(MAX_RECEIVED_US));
    }

    #[test]
    fn parse_received_is_strict() {
        assert_eq!(parse_received("1970-01-01T00:00:00.000000Z"), Some(0));
        assert_eq!(parse_received("1969-12-31T23:59:59.999999Z"), Some(-1));
        for bad in [
            "",
            "1970-01-01T00:00:00Z",
            "1970-01-01T00:00:00.000000+00:00",
            "1970-01-01 00:00:00.000000Z",
            "1970-13-01T00:00:00.000000Z",
            "1970-02-30T00:00:00.000000Z",
            "1970-01-01T24:00:00.000000Z",
            "1970-01-01T00:00:60.000000Z",
            "1970-01-01T00:00:00.00000aZ",
            "+970-01-01T00:00:00.000000Z",
            "1970-01-01T00:00:00.000000z",
            "1970-01-01T00:00:00.0000000",
            "١٩٧٠-01-01T00:00:00.000000Z",
        ] {
            assert_eq!(parse_received(bad), None, "{bad}");
        }
    }

    #[test]
    fn data_encoding_rule() {
        assert_eq!(data_encoding(b""), DataEncoding::Text);
        assert_eq!(data_encoding(b"call\r\n\t]]>&<"), DataEncoding::Text);
        assert_eq!(
            data_encoding("caf\u{e9} \u{85}".as_bytes()),
            DataEncoding::Text
        );
        assert_eq!(data_encoding(b"a\0b"), DataEncoding::Base64);
        assert_eq!(data_encoding(b"\x1b[0m"), DataEncoding::Base64);
        assert_eq!(data_encoding(b"\xff"), DataEncoding::Base64);
        assert_eq!(data_encoding("\u{FFFE}".as_bytes()), DataEncoding::Base64);
        assert_eq!(data_encoding("\u{FFFF}".as_bytes()), DataEncoding::Base64);
        assert_eq!(data_encoding(b"\xed\xa0\x80"), DataEncoding::Base64); // a surrogate
    }

    #[test]
    fn encode_appends_without_clearing() {
        let mut out = b"prefix".to_vec();
        encode_cdr("gw", &rec(1, 0, RecordFlags::NONE, b"x"), &mut out);
        assert!(out.starts_with(b"prefix<?xml"));
        assert!(out.ends_with(b"</USG>"));
    }

    #[test]
    fn flags_forms() {
        let mut out = Vec::new();
        write_flags(RecordFlags::from_bits(0b11), &mut out);
        assert_eq!(out, b"<FLAGS>truncated unterminated</FLAGS>");
        out.clear();
        // Unknown bits are not sent.
        write_flags(RecordFlags::from_bits(0b1000_0000), &mut out);
        assert_eq!(out, b"<FLAGS/>");
    }

    #[test]
    fn names_are_escaped_anyway() {
        let mut out = Vec::new();
        let mut r = rec(3, 0, RecordFlags::NONE, b"");
        r.port = Arc::from("a<b");
        encode_cdr("g&w", &r, &mut out);
        let text = String::from_utf8(out).unwrap_or_default();
        assert!(text.contains("<REC_ID>g&amp;w/a&lt;b/3</REC_ID>"), "{text}");
        assert!(text.contains("<DATA ENCODING=\"text\"></DATA>"), "{text}");
    }

    #[test]
    fn base64_is_standard_with_padding() {
        let mut out = Vec::new();
        write_base64(b"\xff\xec\x20\x55\0", &mut out);
        assert_eq!(out, b"/+wgVQA=");
        out.clear();
        write_base64(b"", &mut out);
        assert_eq!(out, b"");
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        write_u64(0, &mut out);
        out.push(b' ');
        write_u64(u64::MAX, &mut out);
        out.push(b' ');
        write_padded(7, 5, &mut out);
        assert_eq!(out, b"0 18446744073709551615 00007");
    }
}
