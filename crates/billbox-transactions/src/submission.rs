//! The submit API's body: one transaction as JSON, checked.
//!
//! ```json
//! {"id": "pos-7-000123", "type": "CC", "room": "412", "amount": "234.34",
//!  "time": "2024-05-01T12:30:00+02:00", "card": "4111 1111 1111 1111"}
//! ```
//!
//! [`parse_submission`] takes exactly these keys (`time` and `card` may be
//! left out or `null`) and gives a [`Submission`] with the card already
//! masked, or one [`SubmitError`]. The checks run in this order, and the
//! first failing one is the answer:
//!
//! 1. the body is JSON ([`SubmitError::NotJson`]) and an object
//!    ([`SubmitError::NotAnObject`]);
//! 2. no key is a card security code ([`SubmitError::SecurityCode`]), so a
//!    body carrying one is refused whatever else it holds;
//! 3. no key is unknown ([`SubmitError::UnknownField`]);
//! 4. no key is given twice (`Invalid { reason: "given twice" }`);
//! 5. each field in turn: `id`, `type`, `room`, `amount`, `time`, `card`.
//!
//! No error ever echoes a value; the only text taken from the body is a key
//! name, with card numbers masked, control characters replaced and clipped
//! to 64 characters.

use std::fmt;

use billbox_wire::{Amount, TransType};
use chrono::{DateTime, FixedOffset};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::card::{mask_card, mask_card_numbers, CardError, MaskedCard};

/// Most characters in an `id`.
const MAX_ID_CHARS: usize = 64;
/// Most characters in a `room`: the AG's `ROOM_NUM` limit.
const MAX_ROOM_CHARS: usize = 20;
/// Most characters of a key name quoted in an error.
const MAX_KEY_CHARS: usize = 64;

/// The keys a submission may have, in the order they are checked.
const FIELDS: [&str; 6] = ["id", "type", "room", "amount", "time", "card"];

/// Card security code key names (CVV2, CVC2, CID, ...), compared after
/// [`normalise_key`]: PCI DSS 3.3.1 forbids keeping one after authorisation,
/// and billbox has no use for one at all.
const SECURITY_CODE_KEYS: &[&str] = &[
    "cvv",
    "cvv2",
    "cvc",
    "cvc2",
    "csc",
    "cav2",
    "cvn",
    "cvd",
    "securitycode",
    "cardsecuritycode",
    "cardcvv",
    "cardcvc",
];

const REASON_TWICE: &str = "given twice";
const REASON_CONTROL: &str = "must not contain control characters";
const REASON_ID_LENGTH: &str = "must be at most 64 characters";
const REASON_ROOM_LENGTH: &str = "must be at most 20 characters";
const REASON_TYPE: &str = "must be \"PMS\" or \"CC\"";
const REASON_AMOUNT: &str = "must be digits with at most 2 decimals, above zero";
const REASON_TIME: &str = "must be an RFC 3339 date and time such as \"2024-05-01T12:30:00+02:00\"";

const EXPECT_STRING: &str = "a string";
const EXPECT_TYPE: &str = "the string \"PMS\" or \"CC\"";
const EXPECT_AMOUNT: &str = "a string such as \"234.34\"";
const EXPECT_TIME: &str = "an RFC 3339 string such as \"2024-05-01T12:30:00+02:00\"";

/// A transaction posted to the submit API, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The submitter's id for the transaction, the idempotency key: 1 to 64
    /// characters, no control characters.
    pub id: String,
    /// `PMS` or `CC`.
    pub trans_type: TransType,
    /// The room: 1 to 20 characters (the AG's `ROOM_NUM` limit), no control
    /// characters.
    pub room: String,
    /// Digits with an optional `.` and 1 or 2 decimals, above zero, as given
    /// (`12.5` stays `12.5`).
    pub amount: Amount,
    /// When the transaction happened, when given. Note that `==` compares
    /// instants (chrono's rule) while [`Submission::digest`] also tells
    /// offsets apart.
    pub time: Option<DateTime<FixedOffset>>,
    /// The card, masked, when given.
    pub card: Option<MaskedCard>,
}

/// Why a submission was refused: a short sentence naming the field, for the
/// `error` of an HTTP 400 answer (`field` from [`SubmitError::field`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The body is not JSON (or not UTF-8).
    #[error("the body is not JSON")]
    NotJson,
    /// The body is JSON but not an object.
    #[error("the body must be a JSON object")]
    NotAnObject,
    /// A key other than `id`, `type`, `room`, `amount`, `time`, `card`.
    /// `field` is the key with card numbers masked, control characters
    /// replaced by `?`, clipped to 64 characters.
    #[error("unknown field {field:?}")]
    UnknownField { field: String },
    /// A card security code key (`cvv`, `cvc`, `cvv2`, `csc`, ... in any
    /// letter case): refused, PCI DSS 3.3.1. `field` is the key as given
    /// (cleaned as for [`SubmitError::UnknownField`]), never its value.
    #[error("{field:?} is a card security code, which billbox must never receive")]
    SecurityCode { field: String },
    /// A required field is absent or `null`.
    #[error("{field} is missing")]
    Missing { field: &'static str },
    /// A field is the empty string.
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    /// A field is not a JSON string (every field is one, `amount` too).
    #[error("{field} must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    /// A field's value is wrong; `reason` is a fixed sentence, never the value.
    #[error("{field} {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    /// The `card` field is not a card number billbox can take.
    #[error(transparent)]
    Card(CardError),
}

impl SubmitError {
    /// The field the error is about; `None` for [`SubmitError::NotJson`] and
    /// [`SubmitError::NotAnObject`].
    pub fn field(&self) -> Option<&str> {
        match self {
            SubmitError::NotJson | SubmitError::NotAnObject => None,
            SubmitError::UnknownField { field } | SubmitError::SecurityCode { field } => {
                Some(field)
            }
            SubmitError::Missing { field }
            | SubmitError::Empty { field }
            | SubmitError::WrongType { field, .. }
            | SubmitError::Invalid { field, .. } => Some(field),
            SubmitError::Card(_) => Some("card"),
        }
    }
}

/// Parses and checks a submit API body (see the [module docs](self) for the
/// order of the checks).
///
/// - `id`: 1 to 64 characters, no control characters;
/// - `type`: `PMS` or `CC` in any letter case;
/// - `room`: 1 to 20 characters, no control characters;
/// - `amount`: a string (never a JSON number) of digits with an optional `.`
///   and 1 or 2 decimals, not zero (`0`, `0.00` are refused);
/// - `time` (optional): an RFC 3339 date and time;
/// - `card` (optional): a card number, full or masked, see [`mask_card`].
///
/// `null` for `time` or `card` is the same as leaving it out; for the other
/// fields it is [`SubmitError::Missing`]. The empty string is
/// [`SubmitError::Empty`] for every field. Every field must be a JSON
/// string, otherwise [`SubmitError::WrongType`].
pub fn parse_submission(body: &[u8]) -> Result<Submission, SubmitError> {
    let pairs = match serde_json::from_slice::<Body>(body) {
        Ok(Body::Object(pairs)) => pairs,
        Ok(Body::Other) => return Err(SubmitError::NotAnObject),
        Err(_) => return Err(SubmitError::NotJson),
    };
    if let Some((key, _)) = pairs.iter().find(|(key, _)| is_security_code(key)) {
        return Err(SubmitError::SecurityCode {
            field: clean_key(key),
        });
    }
    if let Some((key, _)) = pairs.iter().find(|(key, _)| field_index(key).is_none()) {
        return Err(SubmitError::UnknownField {
            field: clean_key(key),
        });
    }
    let mut slots: [Option<Value>; FIELDS.len()] = Default::default();
    for (key, value) in pairs {
        let Some(index) = field_index(&key) else {
            continue; // refused above
        };
        if slots[index].is_some() {
            return Err(SubmitError::Invalid {
                field: FIELDS[index],
                reason: REASON_TWICE,
            });
        }
        slots[index] = Some(value);
    }
    let [id, trans_type, room, amount, time, card] = slots;

    let id = required(id, "id", EXPECT_STRING)?;
    check_text("id", &id, MAX_ID_CHARS, REASON_ID_LENGTH)?;

    let trans_type = required(trans_type, "type", EXPECT_TYPE)?;
    let trans_type = TransType::parse(&trans_type).ok_or(SubmitError::Invalid {
        field: "type",
        reason: REASON_TYPE,
    })?;

    let room = required(room, "room", EXPECT_STRING)?;
    check_text("room", &room, MAX_ROOM_CHARS, REASON_ROOM_LENGTH)?;

    let amount = required(amount, "amount", EXPECT_AMOUNT)?;
    let amount = parse_amount(amount)?;

    let time = match optional(time, "time", EXPECT_TIME)? {
        Some(text) => {
            Some(
                DateTime::parse_from_rfc3339(&text).map_err(|_| SubmitError::Invalid {
                    field: "time",
                    reason: REASON_TIME,
                })?,
            )
        }
        None => None,
    };

    let card = match optional(card, "card", EXPECT_STRING)? {
        Some(text) => Some(mask_card(&text).map_err(SubmitError::Card)?),
        None => None,
    };

    Ok(Submission {
        id,
        trans_type,
        room,
        amount,
        time,
        card,
    })
}

impl Submission {
    /// SHA-256 over a canonical encoding of every field: two submissions with
    /// the same id are the same transaction exactly when their digests are
    /// equal.
    ///
    /// The encoding is a sequence of fields, each either absent, one byte
    /// `0x00`, or present, one byte `0x01`, its length in bytes as a
    /// big-endian `u64`, then its bytes. The fields, in this order:
    ///
    /// 1. the tag `billbox-submission-v1` (always present);
    /// 2. `id`, UTF-8;
    /// 3. `type`, `PMS` or `CC` (upper case whatever the submitter wrote);
    /// 4. `room`, UTF-8;
    /// 5. `amount`, as given (`12.5` and `12.50` differ);
    /// 6. `time`, 16 bytes: seconds since the Unix epoch (`i64`), nanoseconds
    ///    (`u32`, at or above 10⁹ in a leap second) and the offset from UTC
    ///    in seconds (`i32`), all big-endian. The same instant written with
    ///    another offset is another value; `10:00:00.5Z` and `10:00:00.500Z`
    ///    are the same one;
    /// 7. `card`, the masked number (`411111******1111`).
    ///
    /// The encoding never changes within `v1`: digests can be kept.
    pub fn digest(&self) -> [u8; 32] {
        let time = self.time.map(|t| {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&t.timestamp().to_be_bytes());
            bytes[8..12].copy_from_slice(&t.timestamp_subsec_nanos().to_be_bytes());
            bytes[12..].copy_from_slice(&t.offset().local_minus_utc().to_be_bytes());
            bytes
        });
        let mut hash = Sha256::new();
        let fields: [Option<&[u8]>; 7] = [
            Some(b"billbox-submission-v1"),
            Some(self.id.as_bytes()),
            Some(self.trans_type.as_str().as_bytes()),
            Some(self.room.as_bytes()),
            Some(self.amount.as_str().as_bytes()),
            time.as_ref().map(|t| &t[..]),
            self.card.as_ref().map(|c| c.as_str().as_bytes()),
        ];
        for field in fields {
            match field {
                None => hash.update([0u8]),
                Some(bytes) => {
                    hash.update([1u8]);
                    hash.update((bytes.len() as u64).to_be_bytes());
                    hash.update(bytes);
                }
            }
        }
        hash.finalize().into()
    }
}

fn field_index(key: &str) -> Option<usize> {
    FIELDS.iter().position(|field| *field == key)
}

/// `key` in ASCII lower case without `_`, `-`, `.` and whitespace, so that
/// `CVV`, `Cvv2`, `card_cvv` and `security-code` are all recognised.
fn normalise_key(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '_' | '-' | '.') && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn is_security_code(key: &str) -> bool {
    // Longer keys cannot match: skip the allocation for them.
    key.len() <= 64 && SECURITY_CODE_KEYS.contains(&normalise_key(key).as_str())
}

/// A key name as an error may quote it: card numbers masked, control
/// characters replaced by `?`, at most [`MAX_KEY_CHARS`] characters.
fn clean_key(key: &str) -> String {
    let (masked, _) = mask_card_numbers(key.as_bytes());
    String::from_utf8_lossy(&masked)
        .chars()
        .take(MAX_KEY_CHARS)
        .map(|c| if is_text_char(c) { c } else { '?' })
        .collect()
}

/// Not a control character (C0, DEL, C1) and a character XML can carry, so
/// that the text fits the AG's packet.
fn is_text_char(c: char) -> bool {
    !c.is_control() && !matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

/// A field that must be present: absent or `null` is [`SubmitError::Missing`].
fn required(
    value: Option<Value>,
    field: &'static str,
    expected: &'static str,
) -> Result<String, SubmitError> {
    optional(value, field, expected)?.ok_or(SubmitError::Missing { field })
}

/// A string field that may be absent or `null`; never empty.
fn optional(
    value: Option<Value>,
    field: &'static str,
    expected: &'static str,
) -> Result<Option<String>, SubmitError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Err(SubmitError::Empty { field }),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(SubmitError::WrongType { field, expected }),
    }
}

fn check_text(
    field: &'static str,
    text: &str,
    max_chars: usize,
    too_long: &'static str,
) -> Result<(), SubmitError> {
    if text.chars().count() > max_chars {
        return Err(SubmitError::Invalid {
            field,
            reason: too_long,
        });
    }
    if !text.chars().all(is_text_char) {
        return Err(SubmitError::Invalid {
            field,
            reason: REASON_CONTROL,
        });
    }
    Ok(())
}

fn parse_amount(text: String) -> Result<Amount, SubmitError> {
    let invalid = SubmitError::Invalid {
        field: "amount",
        reason: REASON_AMOUNT,
    };
    if text.bytes().all(|b| b == b'0' || b == b'.') {
        return Err(invalid);
    }
    Amount::try_new(text).map_err(|_| invalid)
}

/// A JSON body: an object's pairs in order, duplicates kept (serde_json's
/// `Map` would keep only the last), or anything else.
enum Body {
    Object(Vec<(String, Value)>),
    Other,
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BodyVisitor)
    }
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Body;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body, A::Error> {
        let mut pairs = Vec::new();
        while let Some(pair) = map.next_entry::<String, Value>()? {
            pairs.push(pair);
        }
        Ok(Body::Object(pairs))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Body, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Body::Other)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Body, E> {
        Ok(Body::Other)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Body, E> {
        Ok(Body::Other)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Body, E> {
        Ok(Body::Other)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Body, E> {
        Ok(Body::Other)
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Body, E> {
        Ok(Body::Other)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Body, E> {
        Ok(Body::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = r#"{"id": "pos-7-000123", "type": "CC", "room": "412", "amount": "234.34",
        "time": "2024-05-01T12:30:00+02:00", "card": "4111 1111 1111 1111"}"#;

    fn parse(body: &str) -> Result<Submission, SubmitError> {
        parse_submission(body.as_bytes())
    }

    /// A minimal good body with `extra` (`, "key": value` pairs) appended.
    fn with(extra: &str) -> String {
        format!(r#"{{"id": "a1", "type": "PMS", "room": "412", "amount": "12.50"{extra}}}"#)
    }

    /// The minimal good body with `field` set to `value` (raw JSON), or left
    /// out when `value` is `None`.
    fn setting(field: &str, value: Option<&str>) -> String {
        let mut parts = Vec::new();
        for (key, default) in [
            ("id", "\"a1\""),
            ("type", "\"PMS\""),
            ("room", "\"412\""),
            ("amount", "\"12.50\""),
        ] {
            if key == field {
                if let Some(v) = value {
                    parts.push(format!("\"{key}\": {v}"));
                }
            } else {
                parts.push(format!("\"{key}\": {default}"));
            }
        }
        if !["id", "type", "room", "amount"].contains(&field) {
            if let Some(v) = value {
                parts.push(format!("\"{field}\": {v}"));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }

    #[test]
    fn parses_a_full_submission() {
        let sub = parse(GOOD).unwrap();
        assert_eq!(sub.id, "pos-7-000123");
        assert_eq!(sub.trans_type, TransType::Cc);
        assert_eq!(sub.room, "412");
        assert_eq!(sub.amount.as_str(), "234.34");
        assert_eq!(
            sub.time,
            Some(DateTime::parse_from_rfc3339("2024-05-01T12:30:00+02:00").unwrap())
        );
        assert_eq!(sub.card.as_ref().unwrap().as_str(), "411111******1111");
        assert!(!format!("{sub:?}").contains("4111111111111111"));
    }

    #[test]
    fn optional_fields_may_be_absent_or_null() {
        for body in [with(""), with(r#", "time": null, "card": null"#)] {
            let sub = parse(&body).unwrap();
            assert_eq!(sub.trans_type, TransType::Pms);
            assert_eq!(sub.time, None);
            assert_eq!(sub.card, None);
        }
    }

    #[test]
    fn type_in_any_letter_case() {
        for (text, want) in [
            ("PMS", TransType::Pms),
            ("pms", TransType::Pms),
            ("Pms", TransType::Pms),
            ("CC", TransType::Cc),
            ("cc", TransType::Cc),
        ] {
            let sub = parse(&setting("type", Some(&format!("\"{text}\"")))).unwrap();
            assert_eq!(sub.trans_type, want);
        }
        for text in ["\"VISA\"", "\" CC\"", "\"CCC\""] {
            assert_eq!(
                parse(&setting("type", Some(text))),
                Err(SubmitError::Invalid {
                    field: "type",
                    reason: REASON_TYPE
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn not_json_or_not_an_object() {
        let bodies: [&[u8]; 8] = [
            b"",
            b"{",
            b"{\"id\": }",
            b"hello",
            b"{\"id\": \"a\"} trailing",
            b"{\"id\": \"\xff\xfe\"}",
            b"\xef\xbb\xbf{}",
            b"{'id': 'a'}",
        ];
        for body in bodies {
            assert_eq!(
                parse_submission(body),
                Err(SubmitError::NotJson),
                "{body:?}"
            );
        }
        for body in [
            "[]",
            "[1, {\"cvv\": 1}]",
            "\"text\"",
            "12",
            "-1.5",
            "true",
            "null",
        ] {
            assert_eq!(parse(body), Err(SubmitError::NotAnObject), "{body}");
        }
        assert_eq!(SubmitError::NotJson.field(), None);
        assert_eq!(SubmitError::NotAnObject.field(), None);
    }

    #[test]
    fn refuses_security_codes_in_any_case() {
        for key in [
            "cvv",
            "CVV",
            "Cvc",
            "cvv2",
            "CVV2",
            "csc",
            "CSC",
            "cvc2",
            "card_cvv",
            "security-code",
        ] {
            let body = with(&format!(r#", "{key}": "123""#));
            let err = parse(&body).unwrap_err();
            assert_eq!(
                err,
                SubmitError::SecurityCode {
                    field: key.to_owned()
                },
                "{key}"
            );
            assert_eq!(err.field(), Some(key));
            assert!(!err.to_string().contains("123"), "{err}");
        }
    }

    #[test]
    fn security_codes_come_before_every_other_check_of_keys_and_values() {
        // Unknown fields, duplicates and bad values elsewhere do not hide it.
        let body = r#"{"zzz": 1, "id": 5, "id": 6, "card": "4111111111111112", "CVV": "987"}"#;
        let err = parse(body).unwrap_err();
        assert_eq!(
            err,
            SubmitError::SecurityCode {
                field: "CVV".to_owned()
            }
        );
        let text = format!("{err} {err:?}");
        assert!(!text.contains("987") && !text.contains("4111"), "{text}");
        // A security code given as a number or an object too.
        for value in ["987", "{\"x\": 1}", "null"] {
            let body = format!(r#"{{"cvc": {value}}}"#);
            assert!(matches!(
                parse(&body),
                Err(SubmitError::SecurityCode { .. })
            ));
        }
    }

    #[test]
    fn refuses_unknown_fields() {
        let err = parse(&with(r#", "note": "x""#)).unwrap_err();
        assert_eq!(
            err,
            SubmitError::UnknownField {
                field: "note".to_owned()
            }
        );
        assert_eq!(err.field(), Some("note"));
        assert_eq!(err.to_string(), "unknown field \"note\"");
        // Keys are case-sensitive.
        assert!(matches!(
            parse(&with(r#", "ID": "x""#)),
            Err(SubmitError::UnknownField { .. })
        ));
        // Unknown fields come before duplicates.
        assert!(matches!(
            parse(&with(r#", "id": "b", "x": 1"#)),
            Err(SubmitError::UnknownField { .. })
        ));
    }

    #[test]
    fn unknown_field_names_are_cleaned() {
        let long = "k".repeat(100);
        let err = parse(&with(&format!(r#", "{long}": 1"#))).unwrap_err();
        assert_eq!(err.field(), Some(&long[..64]));

        let err = parse(&with(r#", "a\u0000b\nc\u009f": 1"#)).unwrap_err();
        assert_eq!(err.field(), Some("a?b?c?"));

        let err = parse(&with(r#", "4111 1111 1111 1111": 1"#)).unwrap_err();
        assert_eq!(err.field(), Some("411111******1111"));
        assert!(!format!("{err} {err:?}").contains("1111 1111"));
    }

    #[test]
    fn refuses_duplicate_keys() {
        for field in FIELDS {
            let body = with(&format!(r#", "{field}": null, "{field}": null"#));
            let err = parse(&body).unwrap_err();
            assert_eq!(
                err,
                SubmitError::Invalid {
                    field,
                    reason: "given twice"
                },
                "{body}"
            );
            assert_eq!(err.to_string(), format!("{field} given twice"));
        }
        // Even when the values agree.
        assert!(matches!(
            parse(r#"{"id": "a", "id": "a", "type": "CC", "room": "1", "amount": "1"}"#),
            Err(SubmitError::Invalid { field: "id", .. })
        ));
    }

    #[test]
    fn required_fields_missing_null_or_empty() {
        for field in ["id", "type", "room", "amount"] {
            for value in [None, Some("null")] {
                let err = parse(&setting(field, value)).unwrap_err();
                assert_eq!(err, SubmitError::Missing { field }, "{field} {value:?}");
                assert_eq!(err.field(), Some(field));
                assert_eq!(err.to_string(), format!("{field} is missing"));
            }
        }
        for field in FIELDS {
            let err = parse(&setting(field, Some("\"\""))).unwrap_err();
            assert_eq!(err, SubmitError::Empty { field }, "{field}");
            assert_eq!(err.to_string(), format!("{field} must not be empty"));
        }
    }

    #[test]
    fn every_field_must_be_a_string() {
        for field in FIELDS {
            for value in ["12", "12.5", "true", "[\"a\"]", "{\"a\": \"b\"}"] {
                let err = parse(&setting(field, Some(value))).unwrap_err();
                assert!(
                    matches!(err, SubmitError::WrongType { field: f, .. } if f == field),
                    "{field} {value}: {err:?}"
                );
            }
        }
        let err = parse(&setting("amount", Some("234.34"))).unwrap_err();
        assert_eq!(
            err,
            SubmitError::WrongType {
                field: "amount",
                expected: "a string such as \"234.34\""
            }
        );
        assert_eq!(
            err.to_string(),
            "amount must be a string such as \"234.34\""
        );
        assert_eq!(err.field(), Some("amount"));
    }

    #[test]
    fn id_and_room_limits() {
        let id64 = "é".repeat(64);
        assert_eq!(
            parse(&setting("id", Some(&format!("\"{id64}\""))))
                .unwrap()
                .id,
            id64
        );
        let id65 = "x".repeat(65);
        assert_eq!(
            parse(&setting("id", Some(&format!("\"{id65}\"")))),
            Err(SubmitError::Invalid {
                field: "id",
                reason: "must be at most 64 characters"
            })
        );
        let room20 = "R".repeat(20);
        assert_eq!(
            parse(&setting("room", Some(&format!("\"{room20}\""))))
                .unwrap()
                .room,
            room20
        );
        let room21 = "R".repeat(21);
        assert_eq!(
            parse(&setting("room", Some(&format!("\"{room21}\"")))),
            Err(SubmitError::Invalid {
                field: "room",
                reason: "must be at most 20 characters"
            })
        );
        for field in ["id", "room"] {
            for text in [
                r#""a\tb""#,
                r#""a\u0000""#,
                r#""\u007f""#,
                r#""\u0085""#,
                r#""a\uffffb""#,
            ] {
                let err = parse(&setting(field, Some(text))).unwrap_err();
                assert!(
                    matches!(err, SubmitError::Invalid { field: f, reason: REASON_CONTROL } if f == field),
                    "{field} {text}: {err:?}"
                );
                assert_eq!(
                    err.to_string(),
                    format!("{field} must not contain control characters")
                );
            }
        }
    }

    #[test]
    fn amounts() {
        for text in ["234.34", "12", "0.5", "0.01", "007.50", "1000000"] {
            let sub = parse(&setting("amount", Some(&format!("\"{text}\"")))).unwrap();
            assert_eq!(sub.amount.as_str(), text);
        }
        for text in [
            "0", "0.00", "0.0", "000", "-1", "+1", "1.", ".5", "1.234", "1,00", "1e3", " 1", "1 ",
            "12.5.0", "١٢",
        ] {
            let err = parse(&setting("amount", Some(&format!("\"{text}\"")))).unwrap_err();
            assert_eq!(
                err,
                SubmitError::Invalid {
                    field: "amount",
                    reason: REASON_AMOUNT
                },
                "{text:?}"
            );
            assert_eq!(
                err.to_string(),
                "amount must be digits with at most 2 decimals, above zero"
            );
        }
    }

    #[test]
    fn times() {
        for text in [
            "2024-05-01T12:30:00Z",
            "2024-05-01T12:30:00+02:00",
            "2024-05-01t12:30:00.123456-05:30",
            "2024-05-01 12:30:00Z",
        ] {
            let sub = parse(&setting("time", Some(&format!("\"{text}\"")))).unwrap();
            assert_eq!(sub.time, Some(DateTime::parse_from_rfc3339(text).unwrap()));
        }
        for text in [
            "2023-06-02",
            "08:15:00",
            "2023-06-02T08:15:00",
            "yesterday",
            "2023-13-02T08:15:00Z",
            "2023-06-02T08:15:00+25:00",
        ] {
            let err = parse(&setting("time", Some(&format!("\"{text}\"")))).unwrap_err();
            assert_eq!(
                err,
                SubmitError::Invalid {
                    field: "time",
                    reason: REASON_TIME
                },
                "{text}"
            );
            assert!(!err.to_string().contains(text));
        }
    }

    #[test]
    fn cards() {
        let sub = parse(&setting("card", Some("\"411111XXXXXX1111\""))).unwrap();
        assert_eq!(sub.card.unwrap().as_str(), "411111******1111");
        for (text, want) in [
            ("4111111111111112", CardError::FailsLuhn),
            ("4111111*****1111", CardError::MaskShowsTooMuch),
            ("411111111111", CardError::NotACardNumber),
            ("abc", CardError::NotACardNumber),
        ] {
            let err = parse(&setting("card", Some(&format!("\"{text}\"")))).unwrap_err();
            assert_eq!(err, SubmitError::Card(want.clone()));
            assert_eq!(err.field(), Some("card"));
            assert_eq!(err.to_string(), want.to_string());
            assert!(!format!("{err} {err:?}").contains("41111"));
        }
    }

    #[test]
    fn fields_are_checked_in_order() {
        let body =
            r#"{"card": "bad", "time": "bad", "amount": "0", "room": "", "type": "X", "id": 1}"#;
        assert!(matches!(
            parse(body),
            Err(SubmitError::WrongType { field: "id", .. })
        ));
        let body =
            r#"{"card": "bad", "time": "bad", "amount": "0", "room": "", "type": "X", "id": "a"}"#;
        assert!(matches!(
            parse(body),
            Err(SubmitError::Invalid { field: "type", .. })
        ));
        let body =
            r#"{"card": "bad", "time": "bad", "amount": "0", "room": "", "type": "CC", "id": "a"}"#;
        assert_eq!(parse(body), Err(SubmitError::Empty { field: "room" }));
        let body = r#"{"card": "bad", "time": "bad", "amount": "0", "room": "1", "type": "CC", "id": "a"}"#;
        assert!(matches!(
            parse(body),
            Err(SubmitError::Invalid {
                field: "amount",
                ..
            })
        ));
        let body = r#"{"card": "bad", "time": "bad", "amount": "1", "room": "1", "type": "CC", "id": "a"}"#;
        assert!(matches!(
            parse(body),
            Err(SubmitError::Invalid { field: "time", .. })
        ));
        let body = r#"{"card": "bad", "amount": "1", "room": "1", "type": "CC", "id": "a"}"#;
        assert!(matches!(parse(body), Err(SubmitError::Card(_))));
    }

    #[test]
    fn field_names_every_error() {
        assert_eq!(SubmitError::Missing { field: "id" }.field(), Some("id"));
        assert_eq!(
            SubmitError::SecurityCode {
                field: "CVV".into()
            }
            .field(),
            Some("CVV")
        );
        assert_eq!(
            SubmitError::Card(CardError::FailsLuhn).field(),
            Some("card")
        );
    }

    #[test]
    fn digest_is_equal_exactly_for_the_same_submission() {
        let a = parse(GOOD).unwrap();
        assert_eq!(a.digest(), a.clone().digest());
        // The same transaction written differently.
        let same = r#"{"card": "411111******1111", "time": "2024-05-01t12:30:00.000+02:00",
            "amount": "234.34", "room": "412", "type": "cc", "id": "pos-7-000123"}"#;
        assert_eq!(parse(same).unwrap().digest(), a.digest());

        let mut changed = Vec::new();
        let mut b = a.clone();
        b.id.push('x');
        changed.push(b);
        let mut b = a.clone();
        b.trans_type = TransType::Pms;
        changed.push(b);
        let mut b = a.clone();
        b.room = "413".into();
        changed.push(b);
        let mut b = a.clone();
        b.amount = Amount::try_new("234.3").unwrap();
        changed.push(b);
        let mut b = a.clone();
        b.time = None;
        changed.push(b);
        let mut b = a.clone();
        b.time = Some(DateTime::parse_from_rfc3339("2024-05-01T10:30:00Z").unwrap());
        assert_eq!(b, a, "chrono compares instants");
        changed.push(b);
        let mut b = a.clone();
        b.card = None;
        changed.push(b);
        let mut b = a.clone();
        b.card = Some(mask_card("5555555555554444").unwrap());
        changed.push(b);
        let mut digests: Vec<[u8; 32]> = changed.iter().map(Submission::digest).collect();
        digests.push(a.digest());
        let count = digests.len();
        digests.sort();
        digests.dedup();
        assert_eq!(digests.len(), count);
    }

    #[test]
    fn digest_fields_are_length_prefixed() {
        // Moving characters between fields changes the digest.
        let a = parse(r#"{"id": "ab", "type": "CC", "room": "c", "amount": "1"}"#).unwrap();
        let b = parse(r#"{"id": "a", "type": "CC", "room": "bc", "amount": "1"}"#).unwrap();
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn digest_is_stable() {
        // The v1 encoding, written out by hand.
        let sub = parse(GOOD).unwrap();
        let mut enc = Vec::new();
        let mut put = |bytes: &[u8]| {
            enc.push(1);
            enc.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            enc.extend_from_slice(bytes);
        };
        put(b"billbox-submission-v1");
        put(b"pos-7-000123");
        put(b"CC");
        put(b"412");
        put(b"234.34");
        let mut time = Vec::new();
        time.extend_from_slice(&1_714_559_400i64.to_be_bytes());
        time.extend_from_slice(&0u32.to_be_bytes());
        time.extend_from_slice(&7200i32.to_be_bytes());
        put(&time);
        put(b"411111******1111");
        let want: [u8; 32] = Sha256::digest(&enc).into();
        assert_eq!(sub.digest(), want);

        let bare = parse(r#"{"id": "a", "type": "PMS", "room": "1", "amount": "1"}"#).unwrap();
        let mut enc = Vec::new();
        for bytes in [&b"billbox-submission-v1"[..], b"a", b"PMS", b"1", b"1"] {
            enc.push(1);
            enc.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            enc.extend_from_slice(bytes);
        }
        enc.extend_from_slice(&[0, 0]);
        let want: [u8; 32] = Sha256::digest(&enc).into();
        assert_eq!(bare.digest(), want);
    }

    proptest! {
        #[test]
        fn never_panics_on_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_submission(&body);
        }

        #[test]
        fn never_panics_on_json_like_text(body in r#"[{}\[\]":, a-z0-9.\\u-]{0,200}"#) {
            let _ = parse_submission(body.as_bytes());
        }

        #[test]
        fn errors_never_echo_a_card_or_security_code(
            digits in "[0-9]{13,19}",
            code in "[0-9]{3,4}",
            key in "(cvv|CVV|Cvc|csc|CVV2)",
            with_code in any::<bool>(),
        ) {
            let extra = if with_code { format!(r#", "{key}": "{code}""#) } else { String::new() };
            let body = with(&format!(r#", "card": "{digits}"{extra}"#));
            match parse(&body) {
                Ok(sub) => {
                    prop_assert!(!with_code);
                    let card = sub.card.as_ref().unwrap();
                    prop_assert_eq!(card.as_str().len(), digits.len());
                    let shown = format!("{sub:?}");
                    prop_assert!(!shown.contains(&digits), "{}", shown);
                }
                Err(err) => {
                    let shown = format!("{err} {err:?}");
                    prop_assert!(!shown.contains(&digits), "{}", shown);
                    if with_code {
                        let is_code = matches!(err, SubmitError::SecurityCode { .. });
                        prop_assert!(is_code, "{}", shown);
                        prop_assert!(!shown.contains(&code), "{}", shown);
                    }
                }
            }
        }
    }
}
