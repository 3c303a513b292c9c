//! parse_ack and delivery_verdict: the table from the brief, plus hostile
//! input (size, depth, entities, truncation, garbage).

use billbox_wire::{
    delivery_verdict, encode_ack, parse_ack, Ack, AckError, AckValue, Reason, Verdict, XmlError,
    MAX_ACK_BYTES, MAX_DEPTH,
};

const OK: &str = r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><IP_ADDR>11.22.33.44</IP_ADDR><ERROR_CODE>1</ERROR_CODE></USG>"#;

fn ack(value: AckValue, code: Option<i64>, ip: Option<&str>) -> Ack {
    Ack {
        value,
        error_code: code,
        ip_addr: ip.map(str::to_owned),
    }
}

fn refused(value: AckValue, code: Option<i64>) -> Verdict {
    Verdict::NotDelivered(Reason::Refused { value, code })
}

#[test]
fn table_of_answers() {
    let ip = Some("11.22.33.44");
    let cases: Vec<(&str, Result<Ack, AckError>, bool)> = vec![
        (OK, Ok(ack(AckValue::Ok, Some(1), ip)), true),
        (
            r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><IP_ADDR>11.22.33.44</IP_ADDR><ERROR_CODE>2</ERROR_CODE></USG>"#,
            Ok(ack(AckValue::Ok, Some(2), ip)),
            false,
        ),
        (
            r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>ERROR</ACK_VALUE><IP_ADDR>11.22.33.44</IP_ADDR><ERROR_CODE>1</ERROR_CODE></USG>"#,
            Ok(ack(AckValue::Error, Some(1), ip)),
            false,
        ),
        // Missing ERROR_CODE.
        (
            r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><IP_ADDR>11.22.33.44</IP_ADDR></USG>"#,
            Ok(ack(AckValue::Ok, None, ip)),
            false,
        ),
        // Empty ERROR_CODE counts as missing.
        (
            r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><ERROR_CODE/></USG>"#,
            Ok(ack(AckValue::Ok, None, None)),
            false,
        ),
        // AG firmware bug: </HSG> closes the root.
        (
            r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><IP_ADDR>11.22.33.44</IP_ADDR><ERROR_CODE>1</ERROR_CODE></HSG>"#,
            Ok(ack(AckValue::Ok, Some(1), ip)),
            true,
        ),
        // Lower case ok, whitespace everywhere, declaration, comments, other
        // attributes first, elements in another order, an unknown element.
        (
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\r\n<!-- ack -->\n<USG  VERSION=\"2\"\n COMMAND = 'RMTLOG_ACK' >\n  <ERROR_CODE> 1 </ERROR_CODE>\n  <EXTRA><X a=\"1\">y</X></EXTRA>\n  <ACK_VALUE>\n ok \n</ACK_VALUE>\n</USG>\n\n",
            Ok(ack(AckValue::Ok, Some(1), None)),
            true,
        ),
        // A byte order mark.
        (
            "\u{FEFF}<USG COMMAND=\"RMTLOG_ACK\"><ACK_VALUE>Ok</ACK_VALUE><ERROR_CODE>+1</ERROR_CODE></USG>",
            Ok(ack(AckValue::Ok, Some(1), None)),
            true,
        ),
        // An unknown value.
        (
            r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>BUSY</ACK_VALUE><ERROR_CODE>1</ERROR_CODE></USG>"#,
            Ok(ack(AckValue::Other("BUSY".into()), Some(1), None)),
            false,
        ),
        // Predefined entities and character references are fine.
        (
            r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>&#79;&#x4B;</ACK_VALUE><IP_ADDR>a&amp;b</IP_ADDR><ERROR_CODE>1</ERROR_CODE></USG>"#,
            Ok(ack(AckValue::Ok, Some(1), Some("a&b"))),
            true,
        ),
        // Self-closing root: no ACK_VALUE.
        (r#"<USG COMMAND="RMTLOG_ACK"/>"#, Err(AckError::MissingAckValue), false),
        (
            r#"<USG COMMAND="RMTLOG_ACK"><ERROR_CODE>1</ERROR_CODE></USG>"#,
            Err(AckError::MissingAckValue),
            false,
        ),
        (
            r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><ACK_VALUE>ERROR</ACK_VALUE><ERROR_CODE>1</ERROR_CODE></USG>"#,
            Err(AckError::Duplicate("ACK_VALUE")),
            false,
        ),
        (
            r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><ERROR_CODE>1</ERROR_CODE><ERROR_CODE>1</ERROR_CODE></USG>"#,
            Err(AckError::Duplicate("ERROR_CODE")),
            false,
        ),
        (
            r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><ERROR_CODE>one</ERROR_CODE></USG>"#,
            Err(AckError::BadErrorCode("one".into())),
            false,
        ),
        (
            r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><ERROR_CODE>99999999999999999999</ERROR_CODE></USG>"#,
            Err(AckError::BadErrorCode("99999999999999999999".into())),
            false,
        ),
        // Strict about the root and its COMMAND.
        (
            r#"<HSG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><ERROR_CODE>1</ERROR_CODE></HSG>"#,
            Err(AckError::WrongRoot("HSG".into())),
            false,
        ),
        (
            r#"<USG RMTLOG_COMMAND="ADD_CDR"><ACK_VALUE>OK</ACK_VALUE><ERROR_CODE>1</ERROR_CODE></USG>"#,
            Err(AckError::WrongCommand(None)),
            false,
        ),
        (
            r#"<USG COMMAND="rmtlog_ack"><ACK_VALUE>OK</ACK_VALUE><ERROR_CODE>1</ERROR_CODE></USG>"#,
            Err(AckError::WrongCommand(Some("rmtlog_ack".into()))),
            false,
        ),
        // A child may not close with </HSG>, and other end tags must match.
        (
            r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</HSG><ERROR_CODE>1</ERROR_CODE></USG>"#,
            Err(AckError::Xml(XmlError::MismatchedEnd {
                expected: "ACK_VALUE".into(),
                found: "HSG".into(),
            })),
            false,
        ),
        (
            r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><ERROR_CODE>1</ERROR_CODE></XSG>"#,
            Err(AckError::Xml(XmlError::MismatchedEnd {
                expected: "USG".into(),
                found: "XSG".into(),
            })),
            false,
        ),
        // Markup inside a value.
        (
            r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE><b>OK</b></ACK_VALUE><ERROR_CODE>1</ERROR_CODE></USG>"#,
            Err(AckError::Xml(XmlError::UnexpectedElement("b".into()))),
            false,
        ),
        // Two roots.
        (
            r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><ERROR_CODE>1</ERROR_CODE></USG><USG/>"#,
            Err(AckError::Xml(XmlError::TrailingContent)),
            false,
        ),
    ];
    for (body, want, delivered) in cases {
        let got = parse_ack(body.as_bytes());
        assert_eq!(got, want, "{body}");
        let verdict = delivery_verdict(200, body.as_bytes());
        assert_eq!(verdict.is_delivered(), delivered, "{body}: {verdict:?}");
        assert_eq!(
            got.map(|a| a.is_delivered()).unwrap_or(false),
            delivered,
            "{body}"
        );
    }
}

#[test]
fn verdicts() {
    assert_eq!(delivery_verdict(200, OK.as_bytes()), Verdict::Delivered);
    assert_eq!(delivery_verdict(204, OK.as_bytes()), Verdict::Delivered);
    assert_eq!(delivery_verdict(299, OK.as_bytes()), Verdict::Delivered);
    for status in [0, 100, 199, 300, 302, 404, 500, 503, 999] {
        assert_eq!(
            delivery_verdict(status, OK.as_bytes()),
            Verdict::NotDelivered(Reason::HttpStatus(status))
        );
    }
    let ok2 = OK.replace("<ERROR_CODE>1<", "<ERROR_CODE>2<");
    assert_eq!(
        delivery_verdict(200, ok2.as_bytes()),
        refused(AckValue::Ok, Some(2))
    );
    assert_eq!(
        delivery_verdict(200, b""),
        Verdict::NotDelivered(Reason::AckError(AckError::Empty))
    );
    // The reasons read well in a log line.
    let r = Reason::Refused {
        value: AckValue::Error,
        code: None,
    };
    assert_eq!(
        r.to_string(),
        "the server refused: ACK_VALUE ERROR, ERROR_CODE absent"
    );
    assert_eq!(
        Reason::HttpStatus(503).to_string(),
        "HTTP status 503 is not 2xx"
    );
}

#[test]
fn garbage_and_empty() {
    assert_eq!(parse_ack(b""), Err(AckError::Empty));
    assert_eq!(parse_ack(b"  \r\n\t "), Err(AckError::Empty));
    for body in [
        &b"hello"[..],
        b"OK",
        b"\x00\x01\x02\xff\xfe",
        b"{\"ack\":\"OK\"}",
        b"<",
        b"</USG>",
        b"<!-- only a comment -->",
        b"<?xml version=\"1.0\"?>",
        b"<<<>>>",
        b"<USG COMMAND=\"RMTLOG_ACK\"",
        b"<USG COMMAND=\"RMTLOG_ACK>",
        b"<USG COMMAND=RMTLOG_ACK><ACK_VALUE>OK</ACK_VALUE></USG>",
        b"<html><body>502 Bad Gateway</body></html>",
    ] {
        let got = parse_ack(body);
        assert!(
            got.is_err(),
            "{:?} parsed as {got:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn non_utf8_bytes_are_read_lossily() {
    let body = b"<USG COMMAND=\"RMTLOG_ACK\"><ACK_VALUE>OK</ACK_VALUE><IP_ADDR>\xe9</IP_ADDR><ERROR_CODE>1</ERROR_CODE></USG>";
    assert_eq!(
        parse_ack(body),
        Ok(ack(AckValue::Ok, Some(1), Some("\u{FFFD}")))
    );
}

#[test]
fn truncated_acks_are_errors() {
    // Every proper prefix of a valid ack fails (none is a whole document).
    let body = OK.as_bytes();
    for cut in 0..body.len() {
        let got = parse_ack(&body[..cut]);
        assert!(got.is_err(), "prefix of {cut} bytes parsed: {got:?}");
    }
    assert_eq!(
        parse_ack(
            br#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><ERROR_CODE>1</ERROR_CODE>"#
        ),
        Err(AckError::Xml(XmlError::Truncated))
    );
    assert_eq!(
        parse_ack(br#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK"#),
        Err(AckError::Xml(XmlError::Truncated))
    );
}

#[test]
fn size_limit() {
    // 100 KiB of text inside a valid ack.
    let big = format!(
        r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><ERROR_CODE>1</ERROR_CODE><PAD>{}</PAD></USG>"#,
        "x".repeat(100 * 1024)
    );
    assert_eq!(
        parse_ack(big.as_bytes()),
        Err(AckError::TooLarge {
            len: big.len(),
            max: MAX_ACK_BYTES
        })
    );
    assert!(!delivery_verdict(200, big.as_bytes()).is_delivered());

    // Just under the limit is fine, and a huge value is clipped in the ack.
    let head =
        r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><ERROR_CODE>1</ERROR_CODE><IP_ADDR>"#;
    let tail = "</IP_ADDR></USG>";
    let fill = MAX_ACK_BYTES - head.len() - tail.len();
    let body = format!("{head}{}{tail}", "y".repeat(fill));
    assert_eq!(body.len(), MAX_ACK_BYTES);
    let got = parse_ack(body.as_bytes()).expect("a body of exactly the limit parses");
    assert!(got.is_delivered());
    assert!(got.ip_addr.map(|s| s.len() < 100).unwrap_or(false));
}

#[test]
fn depth_limit() {
    let mut body = String::from(
        r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><ERROR_CODE>1</ERROR_CODE>"#,
    );
    body.push_str(&"<a>".repeat(1000));
    body.push_str(&"</a>".repeat(1000));
    body.push_str("</USG>");
    assert_eq!(
        parse_ack(body.as_bytes()),
        Err(AckError::Xml(XmlError::TooDeep { max: MAX_DEPTH }))
    );
    // Unclosed nesting, and self-closing at the limit.
    let open_only = format!(r#"<USG COMMAND="RMTLOG_ACK">{}"#, "<a>".repeat(20_000));
    assert_eq!(
        parse_ack(open_only.as_bytes()),
        Err(AckError::Xml(XmlError::TooDeep { max: MAX_DEPTH }))
    );
    // Nesting within the limit in an unknown element is skipped.
    let mut ok = String::from(
        r#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><ERROR_CODE>1</ERROR_CODE>"#,
    );
    ok.push_str(&"<a>".repeat(MAX_DEPTH - 1));
    ok.push_str(&"</a>".repeat(MAX_DEPTH - 1));
    ok.push_str("</USG>");
    assert!(parse_ack(ok.as_bytes())
        .map(|a| a.is_delivered())
        .unwrap_or(false));
}

#[test]
fn entities_are_never_expanded() {
    // An unknown entity is an error (decided: not kept literally).
    assert_eq!(
        parse_ack(br#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>&xxe;</ACK_VALUE><ERROR_CODE>1</ERROR_CODE></USG>"#),
        Err(AckError::Xml(XmlError::UnknownEntity("xxe".into())))
    );
    // Also between elements and in attributes.
    assert_eq!(
        parse_ack(br#"<USG COMMAND="RMTLOG_ACK">&xxe;<ACK_VALUE>OK</ACK_VALUE><ERROR_CODE>1</ERROR_CODE></USG>"#),
        Err(AckError::Xml(XmlError::UnknownEntity("xxe".into())))
    );
    assert_eq!(
        parse_ack(
            br#"<USG COMMAND="&cmd;"><ACK_VALUE>OK</ACK_VALUE><ERROR_CODE>1</ERROR_CODE></USG>"#
        ),
        Err(AckError::Xml(XmlError::UnknownEntity("cmd".into())))
    );
    // A DTD (external entity, billion laughs) is refused outright.
    let xxe = br#"<?xml version="1.0"?>
<!DOCTYPE USG [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>&xxe;</ACK_VALUE><ERROR_CODE>1</ERROR_CODE></USG>"#;
    assert_eq!(parse_ack(xxe), Err(AckError::Xml(XmlError::DocType)));
    let laughs =
        br#"<!DOCTYPE USG [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>&b;</ACK_VALUE><ERROR_CODE>1</ERROR_CODE></USG>"#;
    assert_eq!(parse_ack(laughs), Err(AckError::Xml(XmlError::DocType)));
    // A character reference to a character XML forbids.
    assert_eq!(
        parse_ack(br#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK&#1;</ACK_VALUE><ERROR_CODE>1</ERROR_CODE></USG>"#),
        Err(AckError::Xml(XmlError::IllegalChar(1)))
    );
    assert!(
        parse_ack(br#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK&#0;</ACK_VALUE></USG>"#).is_err()
    );
    assert!(
        parse_ack(br#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK&#xD800;</ACK_VALUE></USG>"#).is_err()
    );
    assert!(
        parse_ack(br#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK & more</ACK_VALUE></USG>"#).is_err()
    );
}

#[test]
fn many_attributes_are_bounded() {
    let attrs: String = (0..5000).map(|i| format!(" a{i}=\"\"")).collect();
    let body = format!(r#"<USG{attrs} COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE></USG>"#);
    assert!(matches!(
        parse_ack(body.as_bytes()),
        Err(AckError::Xml(XmlError::TooManyAttributes { .. }))
    ));
    let dup = br#"<USG COMMAND="RMTLOG_ACK" COMMAND="X"><ACK_VALUE>OK</ACK_VALUE><ERROR_CODE>1</ERROR_CODE></USG>"#;
    // The first COMMAND is taken; the duplicate is not reached.
    assert!(parse_ack(dup).is_ok());
}

#[test]
fn encode_ack_round_trips_and_stays_well_formed() {
    for (value, ip, code) in [
        (AckValue::Ok, "11.22.33.44", 1),
        (AckValue::Error, "::1", -7),
        (
            AckValue::Other("BUSY <now> & \r later".into()),
            "a\u{1}b",
            i64::MIN,
        ),
    ] {
        let body = encode_ack(value.clone(), ip, code);
        let got = parse_ack(&body).expect("encode_ack output parses");
        assert_eq!(got.error_code, Some(code));
        match value {
            AckValue::Other(s) => assert_eq!(got.value, AckValue::Other(s.trim().to_owned())),
            v => assert_eq!(got.value, v),
        }
        let ip_back = got.ip_addr.unwrap_or_default();
        assert_eq!(ip_back, ip.replace('\u{1}', "\u{FFFD}"));
    }
}
