//! Shared by the integration tests: the records behind the doc's examples and
//! a reader for the examples in `docs/wire-format.md`.
#![allow(dead_code)]

use std::sync::Arc;

use billbox_record::{Record, RecordFlags};

/// The contract document, compiled in so examples and tests stay in sync.
pub const DOC: &str = include_str!("../../../../docs/wire-format.md");

/// The example marked `<!-- example: NAME -->` in the doc: the body of the
/// fenced block that follows the marker, without the fence's last newline.
pub fn doc_example(name: &str) -> String {
    doc_block(&format!("<!-- example: {name} -->"))
}

/// The body of the first ```xml block after `marker` in the doc.
pub fn doc_block(marker: &str) -> String {
    let Some(at) = DOC.find(marker) else {
        panic!("the doc has no {marker}");
    };
    let rest = &DOC[at + marker.len()..];
    let Some(open) = rest.find("```xml\n") else {
        panic!("{marker} has no ```xml block");
    };
    let body = &rest[open + "```xml\n".len()..];
    let Some(close) = body.find("\n```") else {
        panic!("{marker}'s block is not closed");
    };
    body[..close].to_owned()
}

pub fn micros(rfc3339: &str) -> i64 {
    billbox_wire::parse_received(rfc3339).expect("a valid RECEIVED time")
}

pub fn record(port: &str, seq: u64, received: &str, flags: RecordFlags, bytes: &[u8]) -> Record {
    Record {
        port: Arc::from(port),
        seq,
        epoch: EPOCH,
        received_us: micros(received),
        flags,
        bytes: bytes.to_vec(),
    }
}

pub const GATEWAY: &str = "gw-lobby";

/// The epoch of the documented examples' records.
pub const EPOCH: billbox_record::Epoch = billbox_record::Epoch::from_u64(0x3f9a_0c1d_2e4b_5a67);

/// Example `cdr-text`: a Panasonic SMDR line (CR LF, and `<I>` for incoming).
pub fn text_record() -> Record {
    record(
        "pbx1",
        42,
        "2026-11-24T13:00:00.123456Z",
        RecordFlags::NONE,
        b"11/24/26 01:39PM  102 02 <I>0312345678 00:01'05 A&B\r\n",
    )
}

/// Example `cdr-base64`: a line with parity errors (bytes that are not UTF-8)
/// cut short when the PBX went away.
pub fn base64_record() -> Record {
    record(
        "pbx2",
        7,
        "2026-11-24T13:00:01.000250Z",
        RecordFlags::unterminated(),
        b"13:39 0042 \xb1\xb2 5551234\x00",
    )
}

/// Example `cdr-batch`: three records of one port.
pub fn batch_records() -> Vec<Record> {
    vec![
        record(
            "pbx1",
            43,
            "2026-11-24T13:02:10.000001Z",
            RecordFlags::NONE,
            b"11/24/26 01:41PM  105 01 5551234 00:00:12\r\n",
        ),
        record(
            "pbx1",
            44,
            "2026-11-24T13:02:11.500000Z",
            RecordFlags::truncated(),
            b"11/24/26 01:41PM  107 01 55",
        ),
        record(
            "pbx1",
            45,
            "2026-11-24T13:02:12.000000Z",
            RecordFlags::NONE,
            b"\x00\x00\r\n",
        ),
    ]
}
