//! Property tests: record bytes survive encode → decode exactly, and no input
//! makes a decoder panic.

mod common;

use std::sync::Arc;

use billbox_record::{Record, RecordFlags};
use billbox_wire::{
    data_encoding, decode_packet, encode_ack, encode_cdr, encode_cdr_batch, encode_transaction,
    format_received, parse_ack, parse_received, Amount, DataEncoding, Packet, ReceivedCdr,
    TransType, Transaction, MAX_RECEIVED_US, MIN_RECEIVED_US,
};
use chrono::{NaiveDate, NaiveTime};
use proptest::prelude::*;

/// Bytes biased towards what breaks XML: NUL, 0xFF, lone CR, CR LF, `]]>`,
/// `&`, `<`, entity-looking text, multi-byte UTF-8 and U+FFFE.
fn nasty_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"\0".to_vec()),
        Just(b"\xff".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"]]>".to_vec()),
        Just(b"&".to_vec()),
        Just(b"<".to_vec()),
        Just(b">".to_vec()),
        Just(b"&amp;".to_vec()),
        Just(b"&#13;".to_vec()),
        Just(b"<![CDATA[".to_vec()),
        Just(b"\t".to_vec()),
        Just(" \u{e9}\u{20ac}\u{1F4DE}".as_bytes().to_vec()),
        Just("\u{FFFE}".as_bytes().to_vec()),
        Just(b"\x1b".to_vec()),
        "[ -~]{0,12}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        nasty_bytes(),
        "[ -~\t\r\n]{0,200}".prop_map(String::into_bytes),
    ]
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,16}"
}

fn record() -> impl Strategy<Value = Record> {
    (
        name(),
        any::<u64>(),
        prop_oneof![
            any::<i64>(),
            MIN_RECEIVED_US..=MAX_RECEIVED_US,
            0i64..4_102_444_800_000_000
        ],
        any::<u8>(),
        any_bytes(),
        prop_oneof![Just(0u64), any::<u64>()],
    )
        .prop_map(|(port, seq, received_us, bits, bytes, epoch)| Record {
            port: Arc::from(port.as_str()),
            seq,
            epoch: billbox_record::Epoch::from_u64(epoch),
            received_us,
            flags: RecordFlags::from_bits(bits),
            bytes,
        })
}

fn check(gateway: &str, r: &Record, c: &ReceivedCdr) -> Result<(), TestCaseError> {
    prop_assert_eq!(&c.data, &r.bytes);
    prop_assert_eq!(c.encoding, data_encoding(&r.bytes));
    prop_assert_eq!(c.seq, r.seq);
    prop_assert_eq!(&c.gateway, gateway);
    prop_assert_eq!(&c.port, &*r.port);
    let id = format!("{gateway}/{}/{}", r.port, r.seq);
    if r.epoch.is_none() {
        prop_assert_eq!(&c.rec_id, &id);
    } else {
        prop_assert_eq!(&c.rec_id, &format!("{id}@{:016x}", r.epoch.get()));
    }
    prop_assert_eq!(c.epoch, r.epoch);
    let clamped = r.received_us.clamp(MIN_RECEIVED_US, MAX_RECEIVED_US);
    prop_assert_eq!(c.received_us, clamped);
    prop_assert_eq!(&c.received, &format_received(r.received_us));
    prop_assert_eq!(c.truncated, r.flags.is_truncated());
    prop_assert_eq!(c.unterminated, r.flags.is_unterminated());
    Ok(())
}

/// Bit flips, byte insertions and deletions, and cuts of a valid body.
fn mutate(body: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut out = body.to_vec();
    for &(pos, byte, kind) in edits {
        if out.is_empty() {
            out.push(byte);
            continue;
        }
        let at = pos % out.len();
        match kind % 5 {
            0 => out[at] ^= 1 << (byte % 8),
            1 => out.insert(at, byte),
            2 => {
                out.remove(at);
            }
            3 => out[at] = byte,
            _ => out.truncate(at),
        }
    }
    out
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn single_record_round_trips(gateway in name(), r in record()) {
        let mut body = Vec::new();
        encode_cdr(&gateway, &r, &mut body);
        match decode_packet(&body) {
            Ok(Packet::Cdrs(c)) => {
                prop_assert_eq!(c.len(), 1);
                check(&gateway, &r, &c[0])?;
            }
            other => prop_assert!(false, "decoded as {:?}", other),
        }
    }

    #[test]
    fn nasty_bytes_round_trip(bytes in nasty_bytes()) {
        let r = Record {
            port: Arc::from("pbx1"),
            seq: 1,
            epoch: billbox_record::Epoch::NONE,
            received_us: 0,
            flags: RecordFlags::NONE,
            bytes,
        };
        let mut body = Vec::new();
        encode_cdr("gw", &r, &mut body);
        // The packet is always UTF-8 and never holds a raw CR.
        prop_assert!(std::str::from_utf8(&body).is_ok());
        prop_assert!(!body.contains(&b'\r'));
        match decode_packet(&body) {
            Ok(Packet::Cdrs(c)) => prop_assert_eq!(&c[0].data, &r.bytes),
            other => prop_assert!(false, "decoded as {:?}", other),
        }
    }

    #[test]
    fn batches_round_trip(gateway in name(), records in proptest::collection::vec(record(), 1..=20)) {
        let mut body = Vec::new();
        encode_cdr_batch(&gateway, &records, &mut body);
        match decode_packet(&body) {
            Ok(Packet::Cdrs(c)) => {
                prop_assert_eq!(c.len(), records.len());
                for (c, r) in c.iter().zip(&records) {
                    check(&gateway, r, c)?;
                }
            }
            other => prop_assert!(false, "decoded as {:?}", other),
        }
    }

    #[test]
    fn received_round_trips(us in MIN_RECEIVED_US..=MAX_RECEIVED_US) {
        let text = format_received(us);
        prop_assert_eq!(text.len(), 27);
        prop_assert_eq!(parse_received(&text), Some(us));
    }

    #[test]
    fn transactions_round_trip(
        rec_num in any::<u32>(),
        usg_id in "[0-9a-f]{0,8}",
        property_id in "[^\\p{Cc}\u{FFFE}\u{FFFF}]{0,20}",
        days in 0i64..3_000_000,
        secs in 0u32..86_400,
        room in "[ -~]{0,6}",
        amount in "[0-9]{1,9}(\\.[0-9]{1,2})?",
        pms in any::<bool>(),
        signature in proptest::option::of("[A-Za-z0-9+/=]{1,64}"),
    ) {
        let date = NaiveDate::from_ymd_opt(1, 1, 1)
            .and_then(|d| d.checked_add_signed(chrono::Duration::days(days)));
        let time = NaiveTime::from_num_seconds_from_midnight_opt(secs, 0);
        let (Some(date), Some(time), Ok(amount)) = (date, time, Amount::try_new(amount)) else {
            return Ok(());
        };
        let tx = Transaction {
            rec_num,
            usg_id,
            property_id,
            date,
            time,
            room_num: room,
            amount,
            trans_type: if pms { TransType::Pms } else { TransType::Cc },
            signature,
        };
        let mut body = Vec::new();
        prop_assert_eq!(encode_transaction(&tx, &mut body), Ok(()));
        prop_assert_eq!(decode_packet(&body), Ok(Packet::Transaction(tx)));
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode_packet(&body);
        let _ = parse_ack(&body);
        let _ = billbox_wire::delivery_verdict(200, &body);
    }

    #[test]
    fn decoders_never_panic_on_xmlish_text(body in "(<[/!?]?[A-Z_]{0,8}( [A-Z]+=\"[^\"]{0,6}\")?/?>|&[#x0-9a-z]{0,6};?|[^<&]{0,8}|<!\\[CDATA\\[|\\]\\]>){0,40}") {
        let _ = decode_packet(body.as_bytes());
        let _ = parse_ack(body.as_bytes());
    }

    #[test]
    fn decoders_never_panic_on_mutated_packets(r in record(), edits in edits(), batch in any::<bool>()) {
        let mut body = Vec::new();
        if batch {
            encode_cdr_batch("gw-lobby", &[r.clone(), r], &mut body);
        } else {
            encode_cdr("gw-lobby", &r, &mut body);
        }
        let body = mutate(&body, &edits);
        let _ = decode_packet(&body);
        let _ = parse_ack(&body);
    }

    #[test]
    fn decoders_never_panic_on_mutated_doc_examples(which in 0usize..8, edits in edits()) {
        let name = ["cdr-text", "cdr-base64", "cdr-batch", "add-rec", "add-rec-signature", "ack-ok", "ack-error", "ack-hsg"][which];
        let body = mutate(common::doc_example(name).as_bytes(), &edits);
        let _ = decode_packet(&body);
        let _ = parse_ack(&body);
    }

    #[test]
    fn mutated_acks_are_delivered_only_when_they_say_so(edits in edits()) {
        let body = mutate(&encode_ack(billbox_wire::AckValue::Ok, "11.22.33.44", 1), &edits);
        if let Ok(ack) = parse_ack(&body) {
            prop_assert_eq!(
                billbox_wire::delivery_verdict(200, &body).is_delivered(),
                ack.is_delivered()
            );
        }
    }

    #[test]
    fn text_mode_iff_legal_xml_text(bytes in any_bytes()) {
        let legal = std::str::from_utf8(&bytes).is_ok_and(|s| {
            s.chars().all(|c| matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}'))
        });
        prop_assert_eq!(data_encoding(&bytes) == DataEncoding::Text, legal);
    }
}
