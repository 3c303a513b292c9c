//! The AG 5500's own transaction packet (`ADD_REC`) for hotel PMS and credit
//! card records, written byte for byte as the AG writes it.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};

use crate::cdr::write_u64;
use crate::xml::{clip, escape_text_into, first_illegal_char};

/// Why a transaction (or one of its fields) cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    #[error("{field} holds a control character")]
    ControlChar { field: &'static str },
    #[error("the date's year {0} does not fit mm/dd/yyyy")]
    YearOutOfRange(i32),
    #[error("amount {0:?} is not digits with an optional '.' and at most 2 decimals")]
    InvalidAmount(String),
}

/// A money amount as the AG writes it: digits, optionally `.` and one or
/// two more digits (`234.34`, `12`, `0.5`). No sign, no exponent, no
/// thousands separator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Amount(String);

impl Amount {
    /// Validates `text` as an amount.
    pub fn try_new(text: impl Into<String>) -> Result<Amount, TransactionError> {
        let text = text.into();
        if is_amount(&text) {
            Ok(Amount(text))
        } else {
            Err(TransactionError::InvalidAmount(clip(&text)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_amount(s: &str) -> bool {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    !int.is_empty() && digits(int) && frac.is_none_or(|f| (1..=2).contains(&f.len()) && digits(f))
}

impl FromStr for Amount {
    type Err = TransactionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Amount::try_new(s)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `TRANS_TYPE`: a credit card or a PMS (hotel property management) posting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransType {
    /// `CC`
    Cc,
    /// `PMS`
    Pms,
}

impl TransType {
    pub fn as_str(self) -> &'static str {
        match self {
            TransType::Cc => "CC",
            TransType::Pms => "PMS",
        }
    }

    /// `CC` or `PMS`, in any letter case.
    pub fn parse(text: &str) -> Option<TransType> {
        if text.eq_ignore_ascii_case("CC") {
            Some(TransType::Cc)
        } else if text.eq_ignore_ascii_case("PMS") {
            Some(TransType::Pms)
        } else {
            None
        }
    }
}

/// One AG transaction (`ADD_REC` packet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// `REC_NUM`, written with at least 5 digits (`00923`).
    pub rec_num: u32,
    /// `USG_ID`, the AG's id (`00020b`).
    pub usg_id: String,
    /// `PROPERTY_ID` (`Hotel-1`).
    pub property_id: String,
    /// `DATE`, written mm/dd/yyyy.
    pub date: NaiveDate,
    /// `TIME`, written HH:MM:SS (24-hour); fractions of a second are dropped.
    pub time: NaiveTime,
    /// `ROOM_NUM` (`412`).
    pub room_num: String,
    /// `AMOUNT` (`234.34`).
    pub amount: Amount,
    /// `TRANS_TYPE`: `CC` or `PMS`.
    pub trans_type: TransType,
    /// `SIGNATURE`, sent by older AG firmware; written last when present.
    pub signature: Option<String>,
}

impl Transaction {
    /// Checks that the transaction can be written: no control character in
    /// a text field and a four-digit year.
    pub fn validate(&self) -> Result<(), TransactionError> {
        check_text("USG_ID", &self.usg_id)?;
        check_text("PROPERTY_ID", &self.property_id)?;
        check_text("ROOM_NUM", &self.room_num)?;
        if let Some(sig) = &self.signature {
            check_text("SIGNATURE", sig)?;
        }
        let year = self.date.year();
        if !(0..=9999).contains(&year) {
            return Err(TransactionError::YearOutOfRange(year));
        }
        Ok(())
    }
}

/// Text fields carry no control characters (C0, DEL, C1) and nothing XML
/// cannot carry.
pub(crate) fn check_text(field: &'static str, text: &str) -> Result<(), TransactionError> {
    if text.chars().any(char::is_control) || first_illegal_char(text).is_some() {
        Err(TransactionError::ControlChar { field })
    } else {
        Ok(())
    }
}

/// Appends the `ADD_REC` packet for `tx` to `out`, laid out exactly as the
/// AG 5500 sends it (no XML declaration, a line break after the root's start
/// tag, after `PROPERTY_ID`, `ROOM_NUM`, `TRANS_TYPE` and `SIGNATURE`).
/// Nothing is written when the transaction does not validate.
pub fn encode_transaction(tx: &Transaction, out: &mut Vec<u8>) -> Result<(), TransactionError> {
    tx.validate()?;
    out.extend_from_slice(b"<USG RMTLOG_COMMAND=\"ADD_REC\">\n<REC_NUM>");
    if tx.rec_num < 100_000 {
        let n = tx.rec_num;
        out.extend_from_slice(&[
            b'0' + (n / 10_000 % 10) as u8,
            b'0' + (n / 1_000 % 10) as u8,
            b'0' + (n / 100 % 10) as u8,
            b'0' + (n / 10 % 10) as u8,
            b'0' + (n % 10) as u8,
        ]);
    } else {
        write_u64(u64::from(tx.rec_num), out);
    }
    out.extend_from_slice(b"</REC_NUM><USG_ID>");
    escape_text_into(tx.usg_id.as_bytes(), out);
    out.extend_from_slice(b"</USG_ID><PROPERTY_ID>");
    escape_text_into(tx.property_id.as_bytes(), out);
    out.extend_from_slice(b"</PROPERTY_ID>\n<DATE>");
    let d = tx.date;
    out.extend_from_slice(format!("{:02}/{:02}/{:04}", d.month(), d.day(), d.year()).as_bytes());
    out.extend_from_slice(b"</DATE><TIME>");
    let t = tx.time;
    out.extend_from_slice(
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()).as_bytes(),
    );
    out.extend_from_slice(b"</TIME><ROOM_NUM>");
    escape_text_into(tx.room_num.as_bytes(), out);
    out.extend_from_slice(b"</ROOM_NUM>\n<AMOUNT>");
    out.extend_from_slice(tx.amount.as_str().as_bytes());
    out.extend_from_slice(b"</AMOUNT><TRANS_TYPE>");
    out.extend_from_slice(tx.trans_type.as_str().as_bytes());
    out.extend_from_slice(b"</TRANS_TYPE>\n");
    if let Some(sig) = &tx.signature {
        out.extend_from_slice(b"<SIGNATURE>");
        escape_text_into(sig.as_bytes(), out);
        out.extend_from_slice(b"</SIGNATURE>\n");
    }
    out.extend_from_slice(b"</USG>");
    Ok(())
}

/// Parses `mm/dd/yyyy`.
pub(crate) fn parse_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    if b.len() != 10 || b[2] != b'/' || b[5] != b'/' {
        return None;
    }
    let m = digits(&b[0..2])?;
    let d = digits(&b[3..5])?;
    let y = digits(&b[6..10])?;
    NaiveDate::from_ymd_opt(y as i32, m, d)
}

/// Parses `HH:MM:SS` (24-hour).
pub(crate) fn parse_time(text: &str) -> Option<NaiveTime> {
    let b = text.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    NaiveTime::from_hms_opt(digits(&b[0..2])?, digits(&b[3..5])?, digits(&b[6..8])?)
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        for ok in ["234.34", "0", "12", "0.5", "1000000.00", "007"] {
            assert!(Amount::try_new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", ".", "1.", ".5", "1.234", "-1", "+1", "1e3", "1,00", " 1", "1.2.3", "١",
        ] {
            assert_eq!(
                Amount::try_new(bad),
                Err(TransactionError::InvalidAmount(bad.to_owned())),
                "{bad}"
            );
        }
        assert_eq!(
            "9.99".parse::<Amount>().map(|a| a.to_string()),
            Ok("9.99".into())
        );
    }

    #[test]
    fn trans_types() {
        assert_eq!(TransType::parse("cc"), Some(TransType::Cc));
        assert_eq!(TransType::parse("PMS"), Some(TransType::Pms));
        assert_eq!(TransType::parse("CASH"), None);
        assert_eq!(TransType::Pms.as_str(), "PMS");
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(
            parse_date("03/30/2001"),
            NaiveDate::from_ymd_opt(2001, 3, 30)
        );
        assert_eq!(parse_date("02/30/2001"), None);
        assert_eq!(parse_date("3/30/2001"), None);
        assert_eq!(parse_date("2001-03-30"), None);
        assert_eq!(parse_time("23:41:38"), NaiveTime::from_hms_opt(23, 41, 38));
        assert_eq!(parse_time("24:00:00"), None);
        assert_eq!(parse_time("11:41:38PM"), None);
    }

    fn tx() -> Option<Transaction> {
        Some(Transaction {
            rec_num: 923,
            usg_id: "00020b".into(),
            property_id: "Hotel-1".into(),
            date: NaiveDate::from_ymd_opt(2001, 3, 30)?,
            time: NaiveTime::from_hms_opt(23, 41, 38)?,
            room_num: "412".into(),
            amount: Amount::try_new("234.34").ok()?,
            trans_type: TransType::Cc,
            signature: None,
        })
    }

    #[test]
    fn a_signed_packet_is_the_packet_with_its_signature_field() {
        let Some(mut t) = tx() else { return };
        let key = b"0123456789abcdef";
        let mut plain = Vec::new();
        assert_eq!(encode_transaction(&t, &mut plain), Ok(()));
        let signed = crate::sign_transaction_packet(key, &plain).unwrap_or_default();
        t.signature = Some(crate::signature_value(key, &plain));
        let mut with_field = Vec::new();
        assert_eq!(encode_transaction(&t, &mut with_field), Ok(()));
        assert_eq!(signed, with_field);
        assert_eq!(crate::verify_transaction_signature(key, &signed), Ok(true));
        assert_eq!(
            crate::decode_transaction(&signed).map(|d| d.signature),
            Ok(t.signature)
        );
    }

    #[test]
    fn packet_errors_can_leave_the_contents_out() {
        let body = b"<USG RMTLOG_COMMAND=\"ADD_REC\"><REC_NUM>1</REC_NUM><USG_ID>a</USG_ID><PROPERTY_ID>p</PROPERTY_ID><DATE>03/30/2001</DATE><TIME>23:41:38</TIME><ROOM_NUM>412</ROOM_NUM><AMOUNT>SECRET-AMOUNT</AMOUNT><TRANS_TYPE>CC</TRANS_TYPE></USG>";
        let e = crate::decode_packet(body).unwrap_err();
        assert!(e.to_string().contains("SECRET-AMOUNT"), "{e}");
        assert_eq!(e.without_contents(), "AMOUNT has a bad value");
    }

    #[test]
    fn control_chars_are_rejected_and_nothing_is_written() {
        let Some(mut t) = tx() else { return };
        t.room_num = "41\n2".into();
        let mut out = Vec::new();
        assert_eq!(
            encode_transaction(&t, &mut out),
            Err(TransactionError::ControlChar { field: "ROOM_NUM" })
        );
        assert!(out.is_empty());
        t.room_num = "412".into();
        t.signature = Some("ab\u{0}".into());
        assert_eq!(
            encode_transaction(&t, &mut out),
            Err(TransactionError::ControlChar { field: "SIGNATURE" })
        );
        t.signature = Some("\u{85}".into());
        assert!(encode_transaction(&t, &mut out).is_err());
        t.signature = None;
        t.date = NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap_or(t.date);
        assert_eq!(
            encode_transaction(&t, &mut out),
            Err(TransactionError::YearOutOfRange(10_000))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn text_fields_are_escaped_and_big_rec_nums_kept() {
        let Some(mut t) = tx() else { return };
        t.property_id = "A&B <Inn>".into();
        t.rec_num = 1_234_567;
        let mut out = Vec::new();
        assert_eq!(encode_transaction(&t, &mut out), Ok(()));
        let s = String::from_utf8(out).unwrap_or_default();
        assert!(
            s.contains("<PROPERTY_ID>A&amp;B &lt;Inn&gt;</PROPERTY_ID>"),
            "{s}"
        );
        assert!(s.contains("<REC_NUM>1234567</REC_NUM>"), "{s}");
    }
}
