//! decode_packet: what a receiver accepts and refuses.

mod common;

use billbox_wire::{
    decode_packet, decode_packet_with_limit, encode_cdr, encode_cdr_batch, DataEncoding, Packet,
    PacketError, ReceivedCdr, XmlError, MAX_DEPTH,
};
use common::{doc_example, text_record, GATEWAY};

const DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

fn one(body: &str) -> Result<ReceivedCdr, PacketError> {
    match decode_packet(body.as_bytes())? {
        Packet::Cdrs(mut c) if c.len() == 1 => Ok(c.remove(0)),
        other => panic!("not one record: {other:?}"),
    }
}

/// A single-record packet with the given children.
fn single(children: &str) -> String {
    format!("{DECL}<USG RMTLOG_COMMAND=\"ADD_CDR\">{children}</USG>")
}

const FIELDS: &str = "<REC_ID>g/p/5</REC_ID><GATEWAY>g</GATEWAY><PORT>p</PORT><SEQ>5</SEQ><RECEIVED>1970-01-01T00:00:01.000000Z</RECEIVED>";

#[test]
fn flags_absent_empty_or_listed() {
    let absent = one(&single(&format!(
        "{FIELDS}<DATA ENCODING=\"text\">x</DATA>"
    )))
    .expect("absent");
    assert!(!absent.truncated && !absent.unterminated);
    assert_eq!(absent.received_us, 1_000_000);
    let empty = one(&single(&format!(
        "{FIELDS}<FLAGS></FLAGS><DATA ENCODING=\"text\">x</DATA>"
    )))
    .expect("empty");
    assert!(!empty.truncated && !empty.unterminated);
    let both = one(&single(&format!(
        "{FIELDS}<FLAGS> unterminated\n future truncated </FLAGS><DATA ENCODING=\"text\">x</DATA>"
    )))
    .expect("both");
    assert!(both.truncated && both.unterminated);
}

#[test]
fn any_element_order_and_unknown_elements() {
    let body = single(
        "<DATA ENCODING=\"base64\" NOTE=\"x\">eA==</DATA><SIGNATURE><HMAC alg=\"sha256\">00</HMAC></SIGNATURE>\
         <SEQ>5</SEQ><PORT>p</PORT><!-- c --><GATEWAY>g</GATEWAY><RECEIVED>1970-01-01T00:00:01.000000Z</RECEIVED><REC_ID>g/p/5</REC_ID><EXTRA/>",
    );
    let c = one(&body).expect("decodes");
    assert_eq!(
        (c.seq, c.data.as_slice(), c.encoding),
        (5, &b"x"[..], DataEncoding::Base64)
    );
}

#[test]
fn pretty_printed_packet_decodes() {
    let body = format!(
        "{DECL}<USG RMTLOG_COMMAND=\"ADD_CDR\">\n  <REC_ID> g/p/5 </REC_ID>\n  <GATEWAY>g</GATEWAY>\n  <PORT>p</PORT>\n  <SEQ>5</SEQ>\n  \
<RECEIVED>1970-01-01T00:00:01.000000Z</RECEIVED>\n  <FLAGS/>\n  <DATA ENCODING=\"text\"> keep  spaces&#13;\n</DATA>\n</USG>\n"
    );
    let c = one(&body).expect("decodes");
    assert_eq!(c.data, b" keep  spaces\r\n");
}

#[test]
fn raw_cr_is_normalized_as_xml_requires() {
    // billbox never sends a raw CR; a raw CR LF from another sender reads as LF.
    let body = single(&format!("{FIELDS}<DATA ENCODING=\"text\">a\r\nb\rc</DATA>"));
    assert_eq!(one(&body).expect("decodes").data, b"a\nb\nc");
    // CDATA is accepted as text too.
    let body = single(&format!(
        "{FIELDS}<DATA ENCODING=\"text\"><![CDATA[<&>]]>&#13;</DATA>"
    ));
    assert_eq!(one(&body).expect("decodes").data, b"<&>\r");
}

#[test]
fn field_errors() {
    let data = "<DATA ENCODING=\"text\">x</DATA>";
    let cases: Vec<(String, PacketError)> = vec![
        (
            single(&format!("<REC_ID>g/p/6</REC_ID><GATEWAY>g</GATEWAY><PORT>p</PORT><SEQ>5</SEQ><RECEIVED>1970-01-01T00:00:01.000000Z</RECEIVED>{data}")),
            PacketError::RecIdMismatch { rec_id: "g/p/6".into(), expected: "g/p/5".into() },
        ),
        // An epoch is 16 lowercase hex digits, not 0.
        (
            single(&format!("<REC_ID>g/p/5@00ab</REC_ID><GATEWAY>g</GATEWAY><PORT>p</PORT><SEQ>5</SEQ><RECEIVED>1970-01-01T00:00:01.000000Z</RECEIVED>{data}")),
            PacketError::RecIdMismatch { rec_id: "g/p/5@00ab".into(), expected: "g/p/5".into() },
        ),
        (
            single(&format!("<REC_ID>g/p/5@0000000000000000</REC_ID><GATEWAY>g</GATEWAY><PORT>p</PORT><SEQ>5</SEQ><RECEIVED>1970-01-01T00:00:01.000000Z</RECEIVED>{data}")),
            PacketError::RecIdMismatch { rec_id: "g/p/5@0000000000000000".into(), expected: "g/p/5".into() },
        ),
        (single(FIELDS), PacketError::Missing("DATA")),
        (
            single(&format!("<GATEWAY>g</GATEWAY><PORT>p</PORT><SEQ>5</SEQ><RECEIVED>1970-01-01T00:00:01.000000Z</RECEIVED>{data}")),
            PacketError::Missing("REC_ID"),
        ),
        (single(&format!("{FIELDS}{data}{data}")), PacketError::Duplicate("DATA")),
        (single(&format!("{FIELDS}<SEQ>5</SEQ>{data}")), PacketError::Duplicate("SEQ")),
        (
            single(&format!("{FIELDS}<DATA>x</DATA>")),
            PacketError::Missing("DATA ENCODING"),
        ),
        (
            single(&format!("{FIELDS}<DATA ENCODING=\"hex\">78</DATA>")),
            PacketError::Invalid { field: "DATA ENCODING", value: "hex".into() },
        ),
        (
            single(&format!("{FIELDS}<DATA ENCODING=\"base64\">eA=</DATA>")),
            PacketError::Invalid { field: "DATA", value: "eA=".into() },
        ),
        (
            single(&format!("{FIELDS}<DATA ENCODING=\"base64\">e A==</DATA>")),
            PacketError::Invalid { field: "DATA", value: "e A==".into() },
        ),
        (
            single(&format!("<REC_ID>g/p/-5</REC_ID><GATEWAY>g</GATEWAY><PORT>p</PORT><SEQ>-5</SEQ><RECEIVED>1970-01-01T00:00:01.000000Z</RECEIVED>{data}")),
            PacketError::Invalid { field: "SEQ", value: "-5".into() },
        ),
        (
            single(&format!("<REC_ID>g/p/5</REC_ID><GATEWAY>g</GATEWAY><PORT>p</PORT><SEQ>5</SEQ><RECEIVED>1970-01-01T00:00:01Z</RECEIVED>{data}")),
            PacketError::Invalid { field: "RECEIVED", value: "1970-01-01T00:00:01Z".into() },
        ),
        (
            single(&format!("<REC_ID>//5</REC_ID><GATEWAY></GATEWAY><PORT/><SEQ>5</SEQ><RECEIVED>1970-01-01T00:00:01.000000Z</RECEIVED>{data}")),
            PacketError::Invalid { field: "GATEWAY", value: "".into() },
        ),
        (
            format!("{DECL}<USG RMTLOG_COMMAND=\"DEL_CDR\">{FIELDS}{data}</USG>"),
            PacketError::UnknownCommand(Some("DEL_CDR".into())),
        ),
        (format!("{DECL}<USG>{FIELDS}{data}</USG>"), PacketError::UnknownCommand(None)),
        (format!("{DECL}<CDR RMTLOG_COMMAND=\"ADD_CDR\"/>"), PacketError::WrongRoot("CDR".into())),
        (
            single(&format!("{FIELDS}<DATA ENCODING=\"text\">a<b/></DATA>")),
            PacketError::Xml(XmlError::UnexpectedElement("b".into())),
        ),
        (
            single(&format!("{FIELDS}<DATA ENCODING=\"text\">&#27;</DATA>")),
            PacketError::Xml(XmlError::IllegalChar(27)),
        ),
        (
            single(&format!("{FIELDS}<DATA ENCODING=\"text\">\u{1}</DATA>")),
            PacketError::Xml(XmlError::IllegalChar(1)),
        ),
        (
            single(&format!("{FIELDS}<DATA ENCODING=\"text\">&nbsp;</DATA>")),
            PacketError::Xml(XmlError::UnknownEntity("nbsp".into())),
        ),
        (
            format!("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><USG RMTLOG_COMMAND=\"ADD_CDR\">{FIELDS}{data}</USG>"),
            PacketError::Xml(XmlError::UnsupportedEncoding("ISO-8859-1".into())),
        ),
        (
            format!("<!DOCTYPE USG><USG RMTLOG_COMMAND=\"ADD_CDR\">{FIELDS}{data}</USG>"),
            PacketError::Xml(XmlError::DocType),
        ),
        (
            format!("{}<x/>", single(&format!("{FIELDS}{data}"))),
            PacketError::Xml(XmlError::TrailingContent),
        ),
        (format!("{DECL}<USG RMTLOG_COMMAND=\"ADD_CDR\">{FIELDS}{data}"), PacketError::Xml(XmlError::Truncated)),
        (String::new(), PacketError::Xml(XmlError::NoRoot)),
        ("garbage".into(), PacketError::Xml(XmlError::NoRoot)),
    ];
    for (body, want) in cases {
        assert_eq!(decode_packet(body.as_bytes()), Err(want), "{body}");
    }
}

#[test]
fn batch_checks() {
    let mut body = Vec::new();
    encode_cdr_batch(GATEWAY, &common::batch_records(), &mut body);
    let text = String::from_utf8(body).expect("utf-8");

    let wrong = text.replace("COUNT=\"3\"", "COUNT=\"4\"");
    assert_eq!(
        decode_packet(wrong.as_bytes()),
        Err(PacketError::CountMismatch { count: 4, found: 3 })
    );
    let missing = text.replace(" COUNT=\"3\"", "");
    assert_eq!(
        decode_packet(missing.as_bytes()),
        Err(PacketError::Missing("COUNT"))
    );
    let bad = text.replace("COUNT=\"3\"", "COUNT=\"three\"");
    assert_eq!(
        decode_packet(bad.as_bytes()),
        Err(PacketError::Invalid {
            field: "COUNT",
            value: "three".into()
        })
    );

    let mut empty = Vec::new();
    encode_cdr_batch(GATEWAY, &[], &mut empty);
    assert_eq!(
        String::from_utf8_lossy(&empty),
        format!("{DECL}<USG RMTLOG_COMMAND=\"ADD_CDR_BATCH\" COUNT=\"0\"></USG>")
    );
    assert_eq!(decode_packet(&empty), Ok(Packet::Cdrs(vec![])));
    let self_closing = format!("{DECL}<USG RMTLOG_COMMAND=\"ADD_CDR_BATCH\" COUNT=\"0\"/>");
    assert_eq!(
        decode_packet(self_closing.as_bytes()),
        Ok(Packet::Cdrs(vec![]))
    );

    // One bad record spoils the batch.
    let broken = text.replacen("<SEQ>44</SEQ>", "<SEQ>46</SEQ>", 1);
    assert!(matches!(
        decode_packet(broken.as_bytes()),
        Err(PacketError::RecIdMismatch { .. })
    ));
}

#[test]
fn size_limit_is_a_parameter() {
    let body = doc_example("cdr-text");
    assert!(decode_packet_with_limit(body.as_bytes(), body.len()).is_ok());
    assert_eq!(
        decode_packet_with_limit(body.as_bytes(), body.len() - 1),
        Err(PacketError::TooLarge {
            len: body.len(),
            max: body.len() - 1
        })
    );
}

#[test]
fn hostile_bodies() {
    assert_eq!(decode_packet(b"\xff\xfe<USG/>"), Err(PacketError::NotUtf8));
    let mut deep = format!("{DECL}<USG RMTLOG_COMMAND=\"ADD_CDR\">");
    deep.push_str(&"<x>".repeat(1000));
    assert_eq!(
        decode_packet(deep.as_bytes()),
        Err(PacketError::Xml(XmlError::TooDeep { max: MAX_DEPTH }))
    );
    let deep_batch = format!(
        "{DECL}<USG RMTLOG_COMMAND=\"ADD_CDR_BATCH\" COUNT=\"1\"><CDR>{}",
        "<DATA>".repeat(100)
    );
    assert!(decode_packet(deep_batch.as_bytes()).is_err());
    let xxe = format!(
        "<!DOCTYPE USG [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}",
        single(&format!("{FIELDS}<DATA ENCODING=\"text\">&x;</DATA>"))
    );
    assert_eq!(
        decode_packet(xxe.as_bytes()),
        Err(PacketError::Xml(XmlError::DocType))
    );
    // A huge value in an error is clipped.
    let huge = single(&format!(
        "{FIELDS}<DATA ENCODING=\"base64\">{}</DATA>",
        "!".repeat(1 << 20)
    ));
    match decode_packet(huge.as_bytes()) {
        Err(PacketError::Invalid {
            field: "DATA",
            value,
        }) => assert!(value.len() < 100),
        other => panic!("{other:?}"),
    }
    // Truncated at every point: never a panic, never a success.
    let mut full = Vec::new();
    encode_cdr(GATEWAY, &text_record(), &mut full);
    for cut in 0..full.len() {
        assert!(decode_packet(&full[..cut]).is_err(), "prefix {cut}");
    }
}

#[test]
fn transactions_are_validated() {
    let rec = doc_example("add-rec");
    for (from, to, want) in [
        ("<AMOUNT>234.34</AMOUNT>", "<AMOUNT>-1</AMOUNT>", "AMOUNT"),
        ("<DATE>03/30/2001</DATE>", "<DATE>2001-03-30</DATE>", "DATE"),
        ("<TIME>23:41:38</TIME>", "<TIME>25:00:00</TIME>", "TIME"),
        (
            "<TRANS_TYPE>CC</TRANS_TYPE>",
            "<TRANS_TYPE>CASH</TRANS_TYPE>",
            "TRANS_TYPE",
        ),
        (
            "<REC_NUM>00923</REC_NUM>",
            "<REC_NUM>4294967296</REC_NUM>",
            "REC_NUM",
        ),
        (
            "<ROOM_NUM>412</ROOM_NUM>",
            "<ROOM_NUM>4&#9;12</ROOM_NUM>",
            "ROOM_NUM",
        ),
    ] {
        let body = rec.replace(from, to);
        assert!(
            matches!(decode_packet(body.as_bytes()), Err(PacketError::Invalid { field, .. }) if field == want),
            "{to}"
        );
    }
    let missing = rec.replace("<ROOM_NUM>412</ROOM_NUM>", "");
    assert_eq!(
        decode_packet(missing.as_bytes()),
        Err(PacketError::Missing("ROOM_NUM"))
    );
    let lower = rec.replace(">CC<", ">pms<");
    assert!(matches!(
        decode_packet(lower.as_bytes()),
        Ok(Packet::Transaction(t)) if t.trans_type == billbox_wire::TransType::Pms
    ));
}

#[test]
fn decode_transaction_reads_add_rec_only() {
    let rec = doc_example("add-rec");
    let tx = billbox_wire::decode_transaction(rec.as_bytes()).expect("ADD_REC decodes");
    assert_eq!(tx.rec_num, 923);
    assert_eq!(tx.amount.as_str(), "234.34");
    assert_eq!(
        billbox_wire::decode_transaction(doc_example("cdr-text").as_bytes()),
        Err(PacketError::UnknownCommand(Some("ADD_CDR".into())))
    );
}
