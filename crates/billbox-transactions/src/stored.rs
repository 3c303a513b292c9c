//! Transactions as records of the store: the two streams, what their
//! records hold, and how a record becomes a journal-file line and an
//! `ADD_REC` packet.
//!
//! Transactions ride the same store, rotation and delivery as call records.
//! They live in two streams of their own, named so that no configured port
//! can take the name (port names are `A-Z a-z 0-9 _ . -`):
//! - [`SUBMIT_STREAM`] (`@transactions`): transactions posted to the submit
//!   API. A record holds a [`StoredTransaction`] as JSON. Its sequence in
//!   the stream is its `REC_NUM`, so REC_NUMs never repeat (the store's
//!   sequence guard keeps them unique across restarts and quarantines).
//!   The packet is made when it is sent, always the same bytes.
//! - [`RELAY_STREAM`] (`@ag-relay`): `ADD_REC` packets an AG posted to
//!   billbox. A record holds the packet as received (card numbers masked),
//!   and is forwarded exactly so.
//!
//! Both are filed one line per transaction, a JSON object (see
//! [`file_line`] and `docs/transactions.md`).

use std::borrow::Cow;

use billbox_record::Record;
use billbox_wire::{decode_transaction, encode_transaction, Amount, TransType, Transaction};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, Timelike};
use serde::{Deserialize, Serialize};

use crate::submission::Submission;

/// The stream of transactions posted to the submit API.
pub const SUBMIT_STREAM: &str = "@transactions";
/// The stream of `ADD_REC` packets relayed from AGs.
pub const RELAY_STREAM: &str = "@ag-relay";

/// What the records of a stream hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// A PBX port: records are call-record bytes as received.
    Calls,
    /// [`SUBMIT_STREAM`]: each record a [`StoredTransaction`].
    Submitted,
    /// [`RELAY_STREAM`]: each record an AG's `ADD_REC` packet.
    Relayed,
}

impl StreamKind {
    /// The kind of the stream called `port`.
    pub fn of(port: &str) -> StreamKind {
        match port {
            SUBMIT_STREAM => StreamKind::Submitted,
            RELAY_STREAM => StreamKind::Relayed,
            _ => StreamKind::Calls,
        }
    }

    /// Whether the stream holds transactions (one `ADD_REC` per POST).
    pub fn is_transactions(self) -> bool {
        self != StreamKind::Calls
    }
}

/// Why a stored transaction could not be read back or sent.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    #[error("the stored transaction is not readable: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the stored transaction's {field} is not valid")]
    Field { field: &'static str },
    #[error("sequence {0} does not fit a REC_NUM")]
    RecNumTooLarge(u64),
    #[error("the relayed packet is not readable: {0}")]
    Packet(#[from] billbox_wire::PacketError),
    #[error("the transaction cannot be written as a packet: {0}")]
    Encode(#[from] billbox_wire::TransactionError),
}

/// A submitted transaction as the store keeps it: everything its packet
/// and file line need, fixed when it was received, so both come out the
/// same whenever they are made. The card is masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredTransaction {
    /// The submitter's id.
    pub id: String,
    /// `USG_ID` at the time it was received.
    pub usg_id: String,
    /// `PROPERTY_ID` at the time it was received.
    pub property_id: String,
    /// `DATE`, mm/dd/yyyy.
    pub date: String,
    /// `TIME`, HH:MM:SS.
    pub time: String,
    /// `ROOM_NUM`.
    pub room: String,
    /// `AMOUNT`.
    pub amount: String,
    /// `TRANS_TYPE`: `PMS` or `CC`.
    #[serde(rename = "type")]
    pub trans_type: String,
    /// The masked card number, if one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<String>,
}

fn mmddyyyy(d: NaiveDate) -> String {
    format!("{:02}/{:02}/{:04}", d.month(), d.day(), d.year())
}

fn hhmmss(t: NaiveTime) -> String {
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

impl StoredTransaction {
    /// The record of `s`, received at `now` (the gateway's local time):
    /// `DATE` and `TIME` are the submission's `time` as given (in its own
    /// offset), or else `now`.
    pub fn new(
        s: &Submission,
        usg_id: &str,
        property_id: &str,
        now: DateTime<FixedOffset>,
    ) -> StoredTransaction {
        let at = s.time.unwrap_or(now).naive_local();
        StoredTransaction {
            id: s.id.clone(),
            usg_id: usg_id.to_string(),
            property_id: property_id.to_string(),
            date: mmddyyyy(at.date()),
            time: hhmmss(at.time()),
            room: s.room.clone(),
            amount: s.amount.as_str().to_string(),
            trans_type: s.trans_type.as_str().to_string(),
            card: s.card.as_ref().map(|c| c.as_str().to_string()),
        }
    }

    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of strings serializes")
    }

    /// Reads a record's bytes back.
    pub fn decode(bytes: &[u8]) -> Result<StoredTransaction, StoredError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The AG transaction with `REC_NUM` `rec_num`.
    pub fn transaction(&self, rec_num: u32) -> Result<Transaction, StoredError> {
        let field = |field| StoredError::Field { field };
        let date = NaiveDate::parse_from_str(&self.date, "%m/%d/%Y").map_err(|_| field("date"))?;
        let time = NaiveTime::parse_from_str(&self.time, "%H:%M:%S").map_err(|_| field("time"))?;
        Ok(Transaction {
            rec_num,
            usg_id: self.usg_id.clone(),
            property_id: self.property_id.clone(),
            date,
            time,
            room_num: self.room.clone(),
            amount: Amount::try_new(self.amount.clone()).map_err(|_| field("amount"))?,
            trans_type: TransType::parse(&self.trans_type).ok_or_else(|| field("type"))?,
            signature: None,
        })
    }
}

/// The `REC_NUM` of the stream's record `seq`.
pub fn rec_num(seq: u64) -> Result<u32, StoredError> {
    u32::try_from(seq).map_err(|_| StoredError::RecNumTooLarge(seq))
}

/// The `ADD_REC` packet of a transaction record `rec` of a stream of
/// `kind`: made from the stored transaction (REC_NUM = its sequence), or
/// the relayed packet itself.
pub fn packet(kind: StreamKind, rec: &Record) -> Result<Cow<'_, [u8]>, StoredError> {
    match kind {
        StreamKind::Submitted => {
            let tx = StoredTransaction::decode(&rec.bytes)?.transaction(rec_num(rec.seq)?)?;
            let mut out = Vec::with_capacity(256);
            encode_transaction(&tx, &mut out)?;
            Ok(Cow::Owned(out))
        }
        StreamKind::Relayed | StreamKind::Calls => Ok(Cow::Borrowed(&rec.bytes)),
    }
}

/// One line of a transaction journal file.
#[derive(Serialize)]
struct Line<'a> {
    rec_num: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    usg_id: &'a str,
    property_id: &'a str,
    date: Cow<'a, str>,
    time: Cow<'a, str>,
    room: &'a str,
    amount: &'a str,
    #[serde(rename = "type")]
    trans_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    card: Option<&'a str>,
    source: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    signed: bool,
}

/// What record `rec` of a stream of `kind` writes to its file: call
/// records their bytes as received; transactions one JSON line, e.g.
/// `{"rec_num":923,"id":"A-17","usg_id":"00020b","property_id":"Hotel-1",
/// "date":"03/30/2001","time":"23:41:38","room":"412","amount":"234.34",
/// "type":"CC","card":"411111******1111","source":"api"}` (submitted) or
/// with `"source":"ag"` and the AG's `REC_NUM` (relayed; no `id`, no
/// `card`, `"signed":true` when it carried a `SIGNATURE`). A record that
/// cannot be read (a damaged store) is filed as a line saying so, with its
/// bytes in hex, so nothing is dropped.
pub fn file_line(kind: StreamKind, rec: &Record) -> Cow<'_, [u8]> {
    let line = match kind {
        StreamKind::Calls => return Cow::Borrowed(&rec.bytes),
        StreamKind::Submitted => StoredTransaction::decode(&rec.bytes).map(|t| {
            serde_json::to_vec(&Line {
                rec_num: rec.seq,
                id: Some(&t.id),
                usg_id: &t.usg_id,
                property_id: &t.property_id,
                date: Cow::Borrowed(&t.date),
                time: Cow::Borrowed(&t.time),
                room: &t.room,
                amount: &t.amount,
                trans_type: &t.trans_type,
                card: t.card.as_deref(),
                source: "api",
                signed: false,
            })
        }),
        StreamKind::Relayed => decode_transaction(&rec.bytes)
            .map_err(StoredError::from)
            .map(|t| {
                serde_json::to_vec(&Line {
                    rec_num: u64::from(t.rec_num),
                    id: None,
                    usg_id: &t.usg_id,
                    property_id: &t.property_id,
                    date: Cow::Owned(mmddyyyy(t.date)),
                    time: Cow::Owned(hhmmss(t.time)),
                    room: &t.room_num,
                    amount: t.amount.as_str(),
                    trans_type: t.trans_type.as_str(),
                    card: None,
                    source: "ag",
                    signed: t.signature.is_some(),
                })
            }),
    };
    let mut out = match line {
        Ok(Ok(bytes)) => bytes,
        _ => {
            let hex: String = rec.bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("{{\"seq\":{},\"unreadable\":\"{hex}\"}}", rec.seq).into_bytes()
        }
    };
    out.push(b'\n');
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use billbox_record::RecordFlags;

    use super::*;

    fn submission(card: Option<&str>, time: Option<&str>) -> Submission {
        let mut body = serde_json::json!({
            "id": "A-17", "type": "CC", "room": "412", "amount": "234.34",
        });
        if let Some(c) = card {
            body["card"] = c.into();
        }
        if let Some(t) = time {
            body["time"] = t.into();
        }
        crate::parse_submission(body.to_string().as_bytes()).unwrap()
    }

    fn record(port: &str, seq: u64, bytes: Vec<u8>) -> Record {
        Record {
            port: Arc::from(port),
            seq,
            epoch: billbox_record::Epoch::NONE,
            received_us: 0,
            flags: RecordFlags::NONE,
            bytes,
        }
    }

    #[test]
    fn streams_have_kinds() {
        assert_eq!(StreamKind::of(SUBMIT_STREAM), StreamKind::Submitted);
        assert_eq!(StreamKind::of(RELAY_STREAM), StreamKind::Relayed);
        assert_eq!(StreamKind::of("pbx1"), StreamKind::Calls);
        assert!(!StreamKind::Calls.is_transactions());
    }

    #[test]
    fn a_submission_becomes_the_ags_packet_and_a_json_line() {
        let now = DateTime::parse_from_rfc3339("2001-03-30T23:41:38+02:00").unwrap();
        let s = submission(Some("4111 1111 1111 1111"), None);
        let t = StoredTransaction::new(&s, "00020b", "Hotel-1", now);
        assert_eq!(
            (t.date.as_str(), t.time.as_str()),
            ("03/30/2001", "23:41:38")
        );
        let rec = record(SUBMIT_STREAM, 923, t.encode());
        assert_eq!(StoredTransaction::decode(&rec.bytes).unwrap(), t);
        let packet = packet(StreamKind::Submitted, &rec).unwrap();
        assert_eq!(
            std::str::from_utf8(&packet).unwrap(),
            "<USG RMTLOG_COMMAND=\"ADD_REC\">\n<REC_NUM>00923</REC_NUM><USG_ID>00020b</USG_ID><PROPERTY_ID>Hotel-1</PROPERTY_ID>\n\
             <DATE>03/30/2001</DATE><TIME>23:41:38</TIME><ROOM_NUM>412</ROOM_NUM>\n\
             <AMOUNT>234.34</AMOUNT><TRANS_TYPE>CC</TRANS_TYPE>\n</USG>"
        );
        let line = file_line(StreamKind::Submitted, &rec);
        assert_eq!(
            std::str::from_utf8(&line).unwrap(),
            "{\"rec_num\":923,\"id\":\"A-17\",\"usg_id\":\"00020b\",\"property_id\":\"Hotel-1\",\
             \"date\":\"03/30/2001\",\"time\":\"23:41:38\",\"room\":\"412\",\"amount\":\"234.34\",\
             \"type\":\"CC\",\"card\":\"411111******1111\",\"source\":\"api\"}\n"
        );
    }

    #[test]
    fn the_time_given_is_kept_as_given() {
        let now = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z").unwrap();
        let s = submission(None, Some("2026-12-01T08:05:09-05:00"));
        let t = StoredTransaction::new(&s, "u", "p", now);
        assert_eq!(
            (t.date.as_str(), t.time.as_str()),
            ("12/01/2026", "08:05:09")
        );
        assert_eq!(t.card, None);
        assert!(!String::from_utf8(t.encode()).unwrap().contains("card"));
    }

    #[test]
    fn relayed_packets_go_as_they_are_and_are_filed_as_lines() {
        let tx = StoredTransaction::new(
            &submission(None, None),
            "00020b",
            "Hotel-1",
            DateTime::parse_from_rfc3339("2001-03-30T23:41:38Z").unwrap(),
        )
        .transaction(77)
        .unwrap();
        let mut bytes = Vec::new();
        encode_transaction(&tx, &mut bytes).unwrap();
        let rec = record(RELAY_STREAM, 5, bytes.clone());
        assert_eq!(
            packet(StreamKind::Relayed, &rec).unwrap().as_ref(),
            &bytes[..]
        );
        let line = String::from_utf8(file_line(StreamKind::Relayed, &rec).into_owned()).unwrap();
        assert!(
            line.starts_with("{\"rec_num\":77,\"usg_id\":\"00020b\""),
            "{line}"
        );
        assert!(line.ends_with("\"source\":\"ag\"}\n"), "{line}");
    }

    #[test]
    fn unreadable_records_are_filed_not_dropped() {
        let rec = record(SUBMIT_STREAM, 3, b"{nope".to_vec());
        assert_eq!(
            file_line(StreamKind::Submitted, &rec).as_ref(),
            b"{\"seq\":3,\"unreadable\":\"7b6e6f7065\"}\n"
        );
        assert!(packet(StreamKind::Submitted, &rec).is_err());
        let calls = record("pbx1", 1, b"raw\r\n".to_vec());
        assert_eq!(file_line(StreamKind::Calls, &calls).as_ref(), b"raw\r\n");
        assert!(rec_num(u64::from(u32::MAX) + 1).is_err());
    }
}
