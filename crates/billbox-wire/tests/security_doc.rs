//! The worked signature example of docs/security.md, checked against the
//! code: the key, the bodies and the expected signatures are read from the
//! document.

mod common;

use billbox_wire::{
    sign_transaction_packet, signature_value, verify_signature, verify_transaction_signature,
    SIGNATURE_HEADER,
};

const DOC: &str = include_str!("../../../docs/security.md");

/// The body of the fenced block after `<!-- signature-example: NAME -->`,
/// without the fence's last newline.
fn example(name: &str) -> String {
    let marker = format!("<!-- signature-example: {name} -->");
    let Some(at) = DOC.find(&marker) else {
        panic!("docs/security.md has no {marker}");
    };
    let rest = &DOC[at + marker.len()..];
    let open = rest.find("```").expect("a fenced block");
    let body = &rest[open..];
    let body = &body[body.find('\n').expect("a fence line") + 1..];
    let close = body.find("\n```").expect("a closed block");
    body[..close].to_owned()
}

fn header_value(name: &str) -> String {
    let line = example(name);
    let Some(value) = line.strip_prefix(&format!("{SIGNATURE_HEADER}: ")) else {
        panic!("{line:?} is not a {SIGNATURE_HEADER} header");
    };
    value.to_owned()
}

#[test]
fn the_worked_example_is_what_billbox_sends() {
    let key = example("key");
    let body = example("body");
    // The body is the wire format's own example, byte for byte.
    assert_eq!(body, common::doc_example("cdr-text"));
    let header = header_value("header");
    assert_eq!(signature_value(key.as_bytes(), body.as_bytes()), header);
    assert_eq!(
        verify_signature(key.as_bytes(), body.as_bytes(), Some(header.as_bytes())),
        Ok(())
    );
}

#[test]
fn the_worked_transaction_example_is_what_billbox_sends() {
    let key = example("key");
    let plain = common::doc_example("add-rec");
    let signed = sign_transaction_packet(key.as_bytes(), plain.as_bytes()).expect("signed");
    assert_eq!(String::from_utf8_lossy(&signed), example("add-rec"));
    assert_eq!(
        verify_transaction_signature(key.as_bytes(), example("add-rec").as_bytes()),
        Ok(true)
    );
    assert_eq!(
        signature_value(key.as_bytes(), &signed),
        header_value("add-rec-header")
    );
}
