//! Every example in docs/wire-format.md, checked byte for byte against the
//! encoders and read back by the decoders.

mod common;

use billbox_wire::{
    decode_packet, delivery_verdict, encode_ack, encode_cdr, encode_cdr_batch, encode_transaction,
    parse_ack, Ack, AckValue, Amount, DataEncoding, Packet, Reason, TransType, Transaction,
    Verdict,
};
use chrono::{NaiveDate, NaiveTime};
use common::{base64_record, batch_records, doc_example, text_record, GATEWAY};

fn cdrs(body: &[u8]) -> Vec<billbox_wire::ReceivedCdr> {
    match decode_packet(body) {
        Ok(Packet::Cdrs(c)) => c,
        other => panic!("not a record packet: {other:?}"),
    }
}

#[test]
fn single_text_record_is_the_documented_bytes() {
    let mut out = Vec::new();
    encode_cdr(GATEWAY, &text_record(), &mut out);
    assert_eq!(String::from_utf8_lossy(&out), doc_example("cdr-text"));

    let got = cdrs(doc_example("cdr-text").as_bytes());
    assert_eq!(got.len(), 1);
    let c = &got[0];
    assert_eq!(c.rec_id, "gw-lobby/pbx1/42@3f9a0c1d2e4b5a67");
    assert_eq!(c.epoch, common::EPOCH);
    assert_eq!(c.gateway, "gw-lobby");
    assert_eq!(c.port, "pbx1");
    assert_eq!(c.seq, 42);
    assert_eq!(c.received, "2026-11-24T13:00:00.123456Z");
    assert_eq!(c.received_us, 1_795_525_200_123_456);
    assert!(!c.truncated && !c.unterminated);
    assert_eq!(c.encoding, DataEncoding::Text);
    assert_eq!(
        c.data,
        b"11/24/26 01:39PM  102 02 <I>0312345678 00:01'05 A&B\r\n"
    );
    assert_eq!(c.data, text_record().bytes);
}

#[test]
fn single_base64_record_is_the_documented_bytes() {
    let mut out = Vec::new();
    encode_cdr(GATEWAY, &base64_record(), &mut out);
    assert_eq!(String::from_utf8_lossy(&out), doc_example("cdr-base64"));

    let got = cdrs(doc_example("cdr-base64").as_bytes());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].encoding, DataEncoding::Base64);
    assert_eq!(got[0].data, base64_record().bytes);
    assert!(got[0].unterminated && !got[0].truncated);
    assert_eq!(got[0].record_flags(), base64_record().flags);
}

#[test]
fn batch_is_the_documented_bytes() {
    let records = batch_records();
    let mut out = Vec::new();
    encode_cdr_batch(GATEWAY, &records, &mut out);
    assert_eq!(String::from_utf8_lossy(&out), doc_example("cdr-batch"));

    let got = cdrs(doc_example("cdr-batch").as_bytes());
    assert_eq!(got.len(), 3);
    for (c, r) in got.iter().zip(&records) {
        assert_eq!(c.seq, r.seq);
        assert_eq!(c.port, &*r.port);
        assert_eq!(c.received_us, r.received_us);
        assert_eq!(c.record_flags(), r.flags);
        assert_eq!(c.data, r.bytes);
    }
    assert_eq!(got[2].encoding, DataEncoding::Base64);
}

fn add_rec() -> Transaction {
    Transaction {
        rec_num: 923,
        usg_id: "00020b".into(),
        property_id: "Hotel-1".into(),
        date: NaiveDate::from_ymd_opt(2001, 3, 30).expect("date"),
        time: NaiveTime::from_hms_opt(23, 41, 38).expect("time"),
        room_num: "412".into(),
        amount: Amount::try_new("234.34").expect("amount"),
        trans_type: TransType::Cc,
        signature: None,
    }
}

fn add_rec_signed() -> Transaction {
    Transaction {
        rec_num: 924,
        usg_id: "00020b".into(),
        property_id: "Hotel-1".into(),
        date: NaiveDate::from_ymd_opt(2001, 3, 31).expect("date"),
        time: NaiveTime::from_hms_opt(7, 5, 9).expect("time"),
        room_num: "1207".into(),
        amount: Amount::try_new("18.5").expect("amount"),
        trans_type: TransType::Pms,
        signature: Some("9f86d081884c7d659a2feaa0c55ad015".into()),
    }
}

#[test]
fn add_rec_is_the_ag_bytes() {
    for (tx, name) in [
        (add_rec(), "add-rec"),
        (add_rec_signed(), "add-rec-signature"),
    ] {
        let mut out = Vec::new();
        assert_eq!(encode_transaction(&tx, &mut out), Ok(()));
        assert_eq!(String::from_utf8_lossy(&out), doc_example(name), "{name}");
        assert_eq!(
            decode_packet(doc_example(name).as_bytes()),
            Ok(Packet::Transaction(tx)),
            "{name}"
        );
    }
}

#[test]
fn add_rec_matches_the_product_spec_text() {
    // The packet exactly as PRODUCT.md quotes the AG 5500.
    let spec = "<USG RMTLOG_COMMAND=\"ADD_REC\">\n\
<REC_NUM>00923</REC_NUM><USG_ID>00020b</USG_ID><PROPERTY_ID>Hotel-1</PROPERTY_ID>\n\
<DATE>03/30/2001</DATE><TIME>23:41:38</TIME><ROOM_NUM>412</ROOM_NUM>\n\
<AMOUNT>234.34</AMOUNT><TRANS_TYPE>CC</TRANS_TYPE>\n\
</USG>";
    let mut out = Vec::new();
    assert_eq!(encode_transaction(&add_rec(), &mut out), Ok(()));
    assert_eq!(String::from_utf8_lossy(&out), spec);
}

#[test]
fn ack_examples() {
    let ok = doc_example("ack-ok");
    assert_eq!(
        String::from_utf8_lossy(&encode_ack(AckValue::Ok, "11.22.33.44", 1)),
        ok
    );
    assert_eq!(
        parse_ack(ok.as_bytes()),
        Ok(Ack {
            value: AckValue::Ok,
            error_code: Some(1),
            ip_addr: Some("11.22.33.44".into()),
        })
    );
    assert_eq!(delivery_verdict(200, ok.as_bytes()), Verdict::Delivered);

    let err = doc_example("ack-error");
    assert_eq!(
        String::from_utf8_lossy(&encode_ack(AckValue::Error, "11.22.33.44", 3)),
        err
    );
    assert_eq!(
        delivery_verdict(200, err.as_bytes()),
        Verdict::NotDelivered(Reason::Refused {
            value: AckValue::Error,
            code: Some(3)
        })
    );

    let hsg = doc_example("ack-hsg");
    assert_eq!(delivery_verdict(200, hsg.as_bytes()), Verdict::Delivered);
}

#[test]
fn doc_states_the_limits_the_code_has() {
    assert!(common::DOC.contains("at most 64 KiB"));
    assert_eq!(billbox_wire::MAX_ACK_BYTES, 64 * 1024);
    assert!(common::DOC.contains("at most 64 MiB"));
    assert_eq!(billbox_wire::MAX_PACKET_BYTES, 64 * 1024 * 1024);
    assert!(common::DOC.contains("at most 16 levels"));
    assert_eq!(billbox_wire::MAX_DEPTH, 16);
}

#[test]
fn xsd_is_well_formed_and_names_every_element() {
    use quick_xml::events::Event;
    let xsd = common::doc_block("<!-- xsd: cdr -->");
    let mut reader = quick_xml::Reader::from_str(&xsd);
    let mut names = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                for a in e.attributes().flatten() {
                    if a.key.0 == "name" || a.key.0 == "value" {
                        names.push(a.value.into_owned());
                    }
                }
            }
            Ok(_) => {}
            Err(e) => panic!("the XSD is not well-formed: {e}"),
        }
    }
    for n in [
        "USG",
        "CDR",
        "REC_ID",
        "GATEWAY",
        "PORT",
        "SEQ",
        "RECEIVED",
        "FLAGS",
        "DATA",
        "ENCODING",
        "RMTLOG_COMMAND",
        "COUNT",
        "ADD_CDR",
        "ADD_CDR_BATCH",
        "text",
        "base64",
        "truncated",
        "unterminated",
    ] {
        assert!(names.iter().any(|x| x == n), "the XSD does not name {n}");
    }
}
