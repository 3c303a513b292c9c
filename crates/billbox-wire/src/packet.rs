//! The receiver's side: decoding any packet a billing server may get from
//! billbox or an AG (`ADD_CDR`, `ADD_CDR_BATCH`, `ADD_REC`).

use base64::Engine as _;
use billbox_record::Epoch;

use crate::cdr::{parse_received, DataEncoding, ReceivedCdr};
use crate::transaction::{check_text, parse_date, parse_time, Amount, TransType, Transaction};
use crate::xml::{self, clip, Cursor, Node, XmlError, MAX_DEPTH};

/// The largest packet [`decode_packet`] accepts, in bytes (64 MiB).
pub const MAX_PACKET_BYTES: usize = 64 * 1024 * 1024;

/// A decoded packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// PBX records: one (`ADD_CDR`) or several (`ADD_CDR_BATCH`), in order.
    Cdrs(Vec<ReceivedCdr>),
    /// An AG transaction (`ADD_REC`).
    Transaction(Transaction),
}

/// Why a packet body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("the packet is {len} bytes, more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    #[error("the packet is not UTF-8")]
    NotUtf8,
    #[error("the packet is not acceptable XML: {0}")]
    Xml(#[from] XmlError),
    #[error("the root element is <{0}>, not <USG>")]
    WrongRoot(String),
    #[error("RMTLOG_COMMAND {0:?} is not a packet this decoder reads")]
    UnknownCommand(Option<String>),
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("{0} appears twice")]
    Duplicate(&'static str),
    #[error("{field} has a bad value {value:?}")]
    Invalid { field: &'static str, value: String },
    #[error("REC_ID {rec_id:?} is not GATEWAY/PORT/SEQ@EPOCH or GATEWAY/PORT/SEQ ({expected:?})")]
    RecIdMismatch { rec_id: String, expected: String },
    #[error("COUNT says {count} records but the batch holds {found}")]
    CountMismatch { count: u64, found: u64 },
}

impl PacketError {
    /// The problem without any text taken from the packet (record data,
    /// amounts, room numbers): what a log line at INFO or above may show.
    /// `Display` quotes the offending value, for DEBUG.
    pub fn without_contents(&self) -> String {
        match self {
            PacketError::Invalid { field, .. } => format!("{field} has a bad value"),
            PacketError::RecIdMismatch { .. } => {
                "REC_ID is not GATEWAY/PORT/SEQ@EPOCH or GATEWAY/PORT/SEQ".to_string()
            }
            PacketError::Xml(XmlError::Syntax { position, .. }) => {
                format!("the packet is not well-formed XML at byte {position}")
            }
            PacketError::Xml(XmlError::UnknownEntity(_)) => {
                "the packet is not acceptable XML: an unknown entity reference".to_string()
            }
            other => other.to_string(),
        }
    }
}

fn invalid(field: &'static str, value: &str) -> PacketError {
    PacketError::Invalid {
        field,
        value: clip(value),
    }
}

/// Decodes a packet body of at most [`MAX_PACKET_BYTES`].
pub fn decode_packet(body: &[u8]) -> Result<Packet, PacketError> {
    decode_packet_with_limit(body, MAX_PACKET_BYTES)
}

/// Decodes a packet body of at most `max_bytes`.
///
/// The body must be UTF-8 (an XML declaration may only name UTF-8), with a
/// `USG` root whose `RMTLOG_COMMAND` says what it holds. Elements may come in
/// any order; unknown elements and attributes are skipped; a known element
/// given twice, a missing one, or a bad value is an error. Nesting is
/// limited to [`MAX_DEPTH`]; no DTD is accepted and no custom entity is
/// expanded.
pub fn decode_packet_with_limit(body: &[u8], max_bytes: usize) -> Result<Packet, PacketError> {
    decode(body, max_bytes, false)
}

/// Decodes an AG transaction packet (`ADD_REC`) of at most
/// [`MAX_PACKET_BYTES`]; any other packet is
/// [`PacketError::UnknownCommand`].
pub fn decode_transaction(body: &[u8]) -> Result<Transaction, PacketError> {
    match decode(body, MAX_PACKET_BYTES, true)? {
        Packet::Transaction(tx) => Ok(tx),
        // Not reached: `decode` refuses other commands when asked to.
        Packet::Cdrs(_) => Err(PacketError::UnknownCommand(None)),
    }
}

fn decode(body: &[u8], max_bytes: usize, add_rec_only: bool) -> Result<Packet, PacketError> {
    if body.len() > max_bytes {
        return Err(PacketError::TooLarge {
            len: body.len(),
            max: max_bytes,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| PacketError::NotUtf8)?;
    let mut cur = Cursor::new(text, MAX_DEPTH, true);
    let (root, empty) = cur.root()?;
    if root.name().0 != "USG" {
        return Err(PacketError::WrongRoot(clip(root.name().0)));
    }
    let command = xml::attribute(&root, "RMTLOG_COMMAND")?;
    let packet = match command.as_deref() {
        Some("ADD_REC") => Packet::Transaction(read_transaction(&mut cur, empty)?),
        _ if add_rec_only => return Err(PacketError::UnknownCommand(command.map(|c| clip(&c)))),
        Some("ADD_CDR") => {
            let cdr = read_cdr(&mut cur, "USG", empty)?;
            Packet::Cdrs(vec![cdr])
        }
        Some("ADD_CDR_BATCH") => {
            let count = xml::attribute(&root, "COUNT")?.ok_or(PacketError::Missing("COUNT"))?;
            let count = parse_u64(&count).ok_or_else(|| invalid("COUNT", &count))?;
            let cdrs = read_batch(&mut cur, empty)?;
            let found = cdrs.len() as u64;
            if found != count {
                return Err(PacketError::CountMismatch { count, found });
            }
            Packet::Cdrs(cdrs)
        }
        _ => return Err(PacketError::UnknownCommand(command.map(|c| clip(&c)))),
    };
    cur.finish()?;
    Ok(packet)
}

/// Digits only (no sign, no blanks), fitting a u64.
fn parse_u64(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The `<CDR>` elements of a batch, up to the root's end tag.
fn read_batch(cur: &mut Cursor<'_>, empty: bool) -> Result<Vec<ReceivedCdr>, PacketError> {
    let mut cdrs = Vec::new();
    if empty {
        return Ok(cdrs);
    }
    loop {
        match cur.next()? {
            Node::Open { tag, empty } => {
                let name = tag.name().0;
                if name == "CDR" {
                    cdrs.push(read_cdr(cur, "CDR", empty)?);
                } else if !empty {
                    cur.skip(name)?;
                }
            }
            Node::Close(name) => {
                xml::check_end("USG", &name)?;
                return Ok(cdrs);
            }
            Node::Text => {}
            Node::Eof => return Err(XmlError::Truncated.into()),
        }
    }
}

/// The fields of one record, children of `parent` (whose start tag was just
/// read), up to the parent's end tag.
fn read_cdr(cur: &mut Cursor<'_>, parent: &str, empty: bool) -> Result<ReceivedCdr, PacketError> {
    let mut rec_id = None;
    let mut gateway = None;
    let mut port = None;
    let mut seq = None;
    let mut received = None;
    let mut flags: Option<String> = None;
    let mut data: Option<(DataEncoding, Vec<u8>)> = None;

    fn set<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), PacketError> {
        match slot.replace(value) {
            Some(_) => Err(PacketError::Duplicate(name)),
            None => Ok(()),
        }
    }

    if !empty {
        loop {
            match cur.next()? {
                Node::Open { tag, empty } => {
                    let Some((field, text)) = cur.field(
                        tag.name().0,
                        empty,
                        &[
                            "REC_ID", "GATEWAY", "PORT", "SEQ", "RECEIVED", "FLAGS", "DATA",
                        ],
                    )?
                    else {
                        continue;
                    };
                    match field {
                        "REC_ID" => set(&mut rec_id, text.trim().to_owned(), field)?,
                        "GATEWAY" => set(&mut gateway, text.trim().to_owned(), field)?,
                        "PORT" => set(&mut port, text.trim().to_owned(), field)?,
                        "SEQ" => {
                            let n = parse_u64(text.trim()).ok_or_else(|| invalid(field, &text))?;
                            set(&mut seq, n, field)?;
                        }
                        "RECEIVED" => {
                            let t = text.trim();
                            let us = parse_received(t).ok_or_else(|| invalid(field, t))?;
                            set(&mut received, (t.to_owned(), us), field)?;
                        }
                        "FLAGS" => set(&mut flags, text, field)?,
                        _ => {
                            let encoding = match xml::attribute(&tag, "ENCODING")?.as_deref() {
                                Some("text") => DataEncoding::Text,
                                Some("base64") => DataEncoding::Base64,
                                Some(other) => return Err(invalid("DATA ENCODING", other)),
                                None => return Err(PacketError::Missing("DATA ENCODING")),
                            };
                            let bytes = match encoding {
                                DataEncoding::Text => text.into_bytes(),
                                DataEncoding::Base64 => base64::engine::general_purpose::STANDARD
                                    .decode(text.as_bytes())
                                    .map_err(|_| invalid("DATA", &text))?,
                            };
                            set(&mut data, (encoding, bytes), field)?;
                        }
                    }
                }
                Node::Close(name) => {
                    xml::check_end(parent, &name)?;
                    break;
                }
                Node::Text => {}
                Node::Eof => return Err(XmlError::Truncated.into()),
            }
        }
    }

    let rec_id = rec_id.ok_or(PacketError::Missing("REC_ID"))?;
    let gateway = gateway.ok_or(PacketError::Missing("GATEWAY"))?;
    let port = port.ok_or(PacketError::Missing("PORT"))?;
    let seq = seq.ok_or(PacketError::Missing("SEQ"))?;
    let (received, received_us) = received.ok_or(PacketError::Missing("RECEIVED"))?;
    let (encoding, data) = data.ok_or(PacketError::Missing("DATA"))?;
    if gateway.is_empty() {
        return Err(invalid("GATEWAY", &gateway));
    }
    if port.is_empty() {
        return Err(invalid("PORT", &port));
    }
    let expected = format!("{gateway}/{port}/{seq}");
    // `GATEWAY/PORT/SEQ@EPOCH`, or `GATEWAY/PORT/SEQ` from a store older
    // than epochs.
    let epoch = match rec_id.strip_prefix(expected.as_str()) {
        Some("") => Some(Epoch::NONE),
        Some(rest) => rest.strip_prefix('@').and_then(Epoch::parse_hex),
        None => None,
    };
    let Some(epoch) = epoch else {
        return Err(PacketError::RecIdMismatch {
            rec_id: clip(&rec_id),
            expected: clip(&expected),
        });
    };
    // Unknown flag words are ignored (room for future flags).
    let flags = flags.unwrap_or_default();
    let mut words = flags.split_ascii_whitespace();
    let truncated = words.clone().any(|w| w == "truncated");
    let unterminated = words.any(|w| w == "unterminated");

    Ok(ReceivedCdr {
        rec_id,
        epoch,
        gateway,
        port,
        seq,
        received,
        received_us,
        truncated,
        unterminated,
        encoding,
        data,
    })
}

/// The fields of an `ADD_REC` packet, up to the root's end tag.
fn read_transaction(cur: &mut Cursor<'_>, empty: bool) -> Result<Transaction, PacketError> {
    let mut rec_num = None;
    let mut usg_id = None;
    let mut property_id = None;
    let mut date = None;
    let mut time = None;
    let mut room_num = None;
    let mut amount = None;
    let mut trans_type = None;
    let mut signature = None;

    fn set<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), PacketError> {
        match slot.replace(value) {
            Some(_) => Err(PacketError::Duplicate(name)),
            None => Ok(()),
        }
    }
    fn text_field(field: &'static str, text: String) -> Result<String, PacketError> {
        check_text(field, &text).map_err(|_| invalid(field, &text))?;
        Ok(text)
    }

    if !empty {
        loop {
            match cur.next()? {
                Node::Open { tag, empty } => {
                    let Some((field, text)) = cur.field(
                        tag.name().0,
                        empty,
                        &[
                            "REC_NUM",
                            "USG_ID",
                            "PROPERTY_ID",
                            "DATE",
                            "TIME",
                            "ROOM_NUM",
                            "AMOUNT",
                            "TRANS_TYPE",
                            "SIGNATURE",
                        ],
                    )?
                    else {
                        continue;
                    };
                    let t = text.trim();
                    match field {
                        "REC_NUM" => {
                            let n = parse_u64(t)
                                .and_then(|n| u32::try_from(n).ok())
                                .ok_or_else(|| invalid(field, t))?;
                            set(&mut rec_num, n, field)?;
                        }
                        "DATE" => set(
                            &mut date,
                            parse_date(t).ok_or_else(|| invalid(field, t))?,
                            field,
                        )?,
                        "TIME" => set(
                            &mut time,
                            parse_time(t).ok_or_else(|| invalid(field, t))?,
                            field,
                        )?,
                        "AMOUNT" => {
                            let a = Amount::try_new(t).map_err(|_| invalid(field, t))?;
                            set(&mut amount, a, field)?;
                        }
                        "TRANS_TYPE" => {
                            let tt = TransType::parse(t).ok_or_else(|| invalid(field, t))?;
                            set(&mut trans_type, tt, field)?;
                        }
                        "USG_ID" => set(&mut usg_id, text_field(field, text)?, field)?,
                        "PROPERTY_ID" => set(&mut property_id, text_field(field, text)?, field)?,
                        "ROOM_NUM" => set(&mut room_num, text_field(field, text)?, field)?,
                        _ => set(&mut signature, text_field(field, text)?, field)?,
                    }
                }
                Node::Close(name) => {
                    xml::check_end("USG", &name)?;
                    break;
                }
                Node::Text => {}
                Node::Eof => return Err(XmlError::Truncated.into()),
            }
        }
    }

    Ok(Transaction {
        rec_num: rec_num.ok_or(PacketError::Missing("REC_NUM"))?,
        usg_id: usg_id.ok_or(PacketError::Missing("USG_ID"))?,
        property_id: property_id.ok_or(PacketError::Missing("PROPERTY_ID"))?,
        date: date.ok_or(PacketError::Missing("DATE"))?,
        time: time.ok_or(PacketError::Missing("TIME"))?,
        room_num: room_num.ok_or(PacketError::Missing("ROOM_NUM"))?,
        amount: amount.ok_or(PacketError::Missing("AMOUNT"))?,
        trans_type: trans_type.ok_or(PacketError::Missing("TRANS_TYPE"))?,
        signature,
    })
}
