//! The server's acknowledgement (`RMTLOG_ACK`): parsing it (billbox's side),
//! the delivery verdict for one HTTP exchange, and writing it (the reference
//! receiver's side).

use std::fmt;

use crate::xml::{self, clip, escape_text_lossy_into, Cursor, Node, XmlError, MAX_DEPTH};

/// The largest ack body accepted, in bytes (64 KiB).
pub const MAX_ACK_BYTES: usize = 64 * 1024;

/// `ACK_VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AckValue {
    /// `OK` (any letter case).
    Ok,
    /// `ERROR` (any letter case).
    Error,
    /// Anything else, as sent (trimmed).
    Other(String),
}

impl AckValue {
    /// `OK`, `ERROR`, or the other value.
    pub fn as_str(&self) -> &str {
        match self {
            AckValue::Ok => "OK",
            AckValue::Error => "ERROR",
            AckValue::Other(s) => s,
        }
    }

    fn parse(text: &str) -> AckValue {
        if text.eq_ignore_ascii_case("OK") {
            AckValue::Ok
        } else if text.eq_ignore_ascii_case("ERROR") {
            AckValue::Error
        } else {
            AckValue::Other(clip(text))
        }
    }
}

impl fmt::Display for AckValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub value: AckValue,
    /// `ERROR_CODE`; `None` when absent or empty.
    pub error_code: Option<i64>,
    /// `IP_ADDR` as sent (trimmed); `None` when absent or empty.
    pub ip_addr: Option<String>,
}

impl Ack {
    /// The server took the packet: `ACK_VALUE` OK and `ERROR_CODE` 1.
    pub fn is_delivered(&self) -> bool {
        self.value == AckValue::Ok && self.error_code == Some(1)
    }
}

/// Why an ack body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("the ack body is empty")]
    Empty,
    #[error("the ack body is {len} bytes, more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    #[error("the ack is not acceptable XML: {0}")]
    Xml(#[from] XmlError),
    #[error("the ack's root element is <{0}>, not <USG>")]
    WrongRoot(String),
    #[error("the ack's root has COMMAND={0:?}, not \"RMTLOG_ACK\"")]
    WrongCommand(Option<String>),
    #[error("the ack has no ACK_VALUE")]
    MissingAckValue,
    #[error("the ack has more than one {0}")]
    Duplicate(&'static str),
    #[error("the ack's ERROR_CODE {0:?} is not an integer")]
    BadErrorCode(String),
}

/// Parses a server's acknowledgement body.
///
/// Lenient about: an XML declaration (any encoding name), a byte order mark,
/// whitespace, comments, attribute and element order, unknown elements and
/// attributes, the letter case of `ACK_VALUE`'s text, bytes that are not
/// UTF-8 (read as U+FFFD), and `</HSG>` closing the root (an AG firmware
/// bug). Strict about: the root is `USG` with `COMMAND="RMTLOG_ACK"`, one
/// `ACK_VALUE` (no field twice), a numeric `ERROR_CODE` when present, at most
/// [`MAX_ACK_BYTES`] bytes, nesting at most [`MAX_DEPTH`] deep, no DTD, and
/// no entity other than the predefined ones and character references (an
/// unknown entity such as `&xxe;` is an error, never expanded).
pub fn parse_ack(body: &[u8]) -> Result<Ack, AckError> {
    if body.len() > MAX_ACK_BYTES {
        return Err(AckError::TooLarge {
            len: body.len(),
            max: MAX_ACK_BYTES,
        });
    }
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(AckError::Empty);
    }
    let text = String::from_utf8_lossy(body);
    let mut cur = Cursor::new(&text, MAX_DEPTH, false);

    let (root, empty) = cur.root()?;
    let root_name = root.name().0;
    if root_name != "USG" {
        return Err(AckError::WrongRoot(clip(root_name)));
    }
    let command = xml::attribute(&root, "COMMAND")?;
    if command.as_deref() != Some("RMTLOG_ACK") {
        return Err(AckError::WrongCommand(command.map(|c| clip(&c))));
    }

    let mut value: Option<AckValue> = None;
    let mut error_code: Option<Option<i64>> = None;
    let mut ip_addr: Option<Option<String>> = None;
    if !empty {
        loop {
            match cur.next()? {
                Node::Open { tag, empty } => {
                    let Some((field, text)) =
                        cur.field(tag.name().0, empty, &["ACK_VALUE", "ERROR_CODE", "IP_ADDR"])?
                    else {
                        continue;
                    };
                    let text = text.trim();
                    match field {
                        "ACK_VALUE" => set_once(&mut value, AckValue::parse(text), field)?,
                        "ERROR_CODE" => {
                            let code = if text.is_empty() {
                                None
                            } else {
                                Some(
                                    text.parse::<i64>()
                                        .map_err(|_| AckError::BadErrorCode(clip(text)))?,
                                )
                            };
                            set_once(&mut error_code, code, field)?;
                        }
                        _ => set_once(&mut ip_addr, (!text.is_empty()).then(|| clip(text)), field)?,
                    }
                }
                Node::Close(name) => {
                    if name != "USG" && name != "HSG" {
                        xml::check_end("USG", &name)?;
                    }
                    break;
                }
                Node::Text => {}
                Node::Eof => return Err(XmlError::Truncated.into()),
            }
        }
    }
    cur.finish()?;

    Ok(Ack {
        value: value.ok_or(AckError::MissingAckValue)?,
        error_code: error_code.flatten(),
        ip_addr: ip_addr.flatten(),
    })
}

/// Fills `slot`, or fails if the field was already given.
fn set_once<T>(slot: &mut Option<T>, value: T, field: &'static str) -> Result<(), AckError> {
    if slot.is_some() {
        return Err(AckError::Duplicate(field));
    }
    *slot = Some(value);
    Ok(())
}

/// Writes an acknowledgement body (for the reference receiver), in the
/// form the AG's servers use:
/// `<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><IP_ADDR>..</IP_ADDR><ERROR_CODE>1</ERROR_CODE></USG>`.
/// Text is escaped; characters XML cannot carry become U+FFFD.
pub fn encode_ack(value: AckValue, ip_addr: &str, error_code: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(120 + ip_addr.len());
    out.extend_from_slice(b"<USG COMMAND=\"RMTLOG_ACK\"><ACK_VALUE>");
    escape_text_lossy_into(value.as_str(), &mut out);
    out.extend_from_slice(b"</ACK_VALUE><IP_ADDR>");
    escape_text_lossy_into(ip_addr, &mut out);
    out.extend_from_slice(b"</IP_ADDR><ERROR_CODE>");
    out.extend_from_slice(error_code.to_string().as_bytes());
    out.extend_from_slice(b"</ERROR_CODE></USG>");
    out
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A 2xx answer whose ack says `ACK_VALUE` OK and `ERROR_CODE` 1.
    Delivered,
    /// Anything else: billbox keeps the record and tries again.
    NotDelivered(Reason),
}

impl Verdict {
    pub fn is_delivered(&self) -> bool {
        matches!(self, Verdict::Delivered)
    }
}

/// Why an answer does not count as delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("HTTP status {0} is not 2xx")]
    HttpStatus(u16),
    #[error("unreadable ack: {0}")]
    AckError(#[from] AckError),
    #[error("the server refused: ACK_VALUE {value}, ERROR_CODE {}", code.map_or_else(|| "absent".to_owned(), |c| c.to_string()))]
    Refused { value: AckValue, code: Option<i64> },
}

/// The verdict on one HTTP answer: delivered only on a 2xx status whose
/// body parses as an ack that [`Ack::is_delivered`].
pub fn delivery_verdict(status: u16, body: &[u8]) -> Verdict {
    if !(200..=299).contains(&status) {
        return Verdict::NotDelivered(Reason::HttpStatus(status));
    }
    match parse_ack(body) {
        Ok(ack) if ack.is_delivered() => Verdict::Delivered,
        Ok(ack) => Verdict::NotDelivered(Reason::Refused {
            value: ack.value,
            code: ack.error_code,
        }),
        Err(e) => Verdict::NotDelivered(Reason::AckError(e)),
    }
}
