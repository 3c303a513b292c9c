//! The receiver files the AG's `ADD_REC` transactions: real HTTP on
//! 127.0.0.1, real files in temporary directories.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use billbox_receiver::{read_packets, read_transactions, transaction_files};
use billbox_wire::{encode_transaction, Amount, TransType, Transaction};
use chrono::{NaiveDate, NaiveTime};
use common::{delivered, post, Receiver};

/// The contract, where the receiver's files are documented.
const DOC: &str = include_str!("../../../docs/wire-format.md");

const KEY: &str = "0123456789abcdef-receiver-test-key";

fn tx(property_id: &str, rec_num: u32) -> Transaction {
    Transaction {
        rec_num,
        usg_id: "00020b".into(),
        property_id: property_id.into(),
        date: NaiveDate::from_ymd_opt(2001, 3, 30).unwrap(),
        time: NaiveTime::from_hms_opt(23, 41, 38).unwrap(),
        room_num: "412".into(),
        amount: Amount::try_new("234.34").unwrap(),
        trans_type: TransType::Cc,
        signature: None,
    }
}

fn packet(tx: &Transaction) -> Vec<u8> {
    let mut out = Vec::new();
    encode_transaction(tx, &mut out).unwrap();
    out
}

/// The `.txt` file of `property_id` (USG_ID `00020b`), "" when absent.
fn lines(out: &Path, property_id: &str) -> String {
    std::fs::read_to_string(transaction_files(out, "00020b", property_id).txt).unwrap_or_default()
}

fn packets(out: &Path, property_id: &str) -> Vec<Vec<u8>> {
    read_packets(&transaction_files(out, "00020b", property_id).packets).unwrap()
}

fn rec_nums(out: &Path, property_id: &str) -> Vec<u64> {
    read_transactions(&transaction_files(out, "00020b", property_id).txt)
        .unwrap()
        .iter()
        .map(|t| t.rec_num)
        .collect()
}

#[test]
fn a_transaction_is_filed_once_and_acknowledged() {
    let out = tempfile::tempdir().unwrap();
    let r = Receiver::start(out.path(), None);
    let first = packet(&tx("Hotel-1", 923));
    let answer = r.post(&first);
    assert!(delivered(&answer), "{answer:?}");
    let line = lines(out.path(), "Hotel-1");
    assert!(
        DOC.contains(&format!("```json\n  {line}  ```")),
        "docs/wire-format.md shows {line}"
    );
    assert_eq!(
        line,
        "{\"rec_num\":923,\"usg_id\":\"00020b\",\"property_id\":\"Hotel-1\",\"date\":\"03/30/2001\",\
         \"time\":\"23:41:38\",\"room\":\"412\",\"amount\":\"234.34\",\"type\":\"CC\",\"signed\":false}\n"
    );
    assert_eq!(packets(out.path(), "Hotel-1"), vec![first.clone()]);
    assert_eq!(r.running.transaction_counts(), (1, 0));
    assert_eq!(r.running.counts(), (0, 0), "no call record was filed");

    // The same REC_NUM again: acknowledged, not filed again.
    let answer = r.post(&first);
    assert!(delivered(&answer), "{answer:?}");
    assert_eq!(lines(out.path(), "Hotel-1").lines().count(), 1);
    assert_eq!(packets(out.path(), "Hotel-1"), vec![first.clone()]);
    assert_eq!(r.running.transaction_counts(), (1, 1));

    // Text is escaped in JSON, the amount kept as written, names made safe
    // for file names; packets with line breaks and a PMS posting.
    let mut odd = tx("Inn \"A\\B\" <1>", 924);
    odd.amount = Amount::try_new("007.5").unwrap();
    odd.trans_type = TransType::Pms;
    odd.room_num = "Suite é".into();
    let second = packet(&odd);
    assert!(delivered(&r.post(&second)));
    let files = transaction_files(out.path(), "00020b", "Inn \"A\\B\" <1>");
    assert!(files.txt.ends_with("transactions/00020b/Inn__A_B___1_.txt"));
    assert_eq!(
        std::fs::read_to_string(&files.txt).unwrap(),
        "{\"rec_num\":924,\"usg_id\":\"00020b\",\"property_id\":\"Inn \\\"A\\\\B\\\" <1>\",\"date\":\"03/30/2001\",\
         \"time\":\"23:41:38\",\"room\":\"Suite é\",\"amount\":\"007.5\",\"type\":\"PMS\",\"signed\":false}\n"
    );
    assert_eq!(read_packets(&files.packets).unwrap(), vec![second]);
    assert_eq!(r.running.transaction_counts(), (2, 1));
    r.stop();
    assert!(!out.path().join("transactions.txt").exists());
}

#[test]
fn gaps_in_rec_num_are_reported_per_property() {
    let out = tempfile::tempdir().unwrap();
    let r = Receiver::start(out.path(), None);
    for (property, n) in [
        ("Hotel-1", 1),
        ("Hotel-1", 2),
        ("Hotel-1", 5),
        ("Hotel-2", 1),
    ] {
        assert!(delivered(&r.post(&packet(&tx(property, n)))));
    }
    let key = |p: &str| ("00020b".to_string(), p.to_string());
    assert_eq!(
        r.running.transaction_gaps(),
        vec![(key("Hotel-1"), vec![(3, 4)]), (key("Hotel-2"), vec![])]
    );
    assert!(r.running.gaps().is_empty(), "the CDR ledger is apart");
    // Late transactions fill the gap.
    for n in [4, 3] {
        assert!(delivered(&r.post(&packet(&tx("Hotel-1", n)))));
    }
    assert_eq!(r.running.transaction_gaps()[0], (key("Hotel-1"), vec![]));
    assert_eq!(rec_nums(out.path(), "Hotel-1"), vec![1, 2, 5, 4, 3]);
    assert_eq!(r.running.transaction_counts(), (6, 0));
    r.stop();
}

#[test]
fn duplicates_are_dropped_across_restarts() {
    let out = tempfile::tempdir().unwrap();
    let r = Receiver::start(out.path(), None);
    for n in [1, 2, 4] {
        assert!(delivered(&r.post(&packet(&tx("Hotel-1", n)))));
    }
    r.stop();

    let r = Receiver::start(out.path(), None);
    let answer = r.post(&packet(&tx("Hotel-1", 2)));
    assert!(delivered(&answer), "{answer:?}");
    assert_eq!(r.running.transaction_counts(), (0, 1));
    assert_eq!(rec_nums(out.path(), "Hotel-1"), vec![1, 2, 4]);
    // The gap found before the restart is still known, and fills.
    let key = ("00020b".to_string(), "Hotel-1".to_string());
    assert_eq!(
        r.running.transaction_gaps(),
        vec![(key.clone(), vec![(3, 3)])]
    );
    assert!(delivered(&r.post(&packet(&tx("Hotel-1", 3)))));
    assert_eq!(r.running.transaction_gaps(), vec![(key, vec![])]);
    assert_eq!(r.running.transaction_counts(), (1, 1));
    let want: Vec<_> = [1, 2, 4, 3].map(|n| packet(&tx("Hotel-1", n))).into();
    assert_eq!(packets(out.path(), "Hotel-1"), want);
    r.stop();
}

#[test]
fn a_receiver_stopped_in_the_middle_of_filing_repairs_its_files() {
    let out = tempfile::tempdir().unwrap();
    let r = Receiver::start(out.path(), None);
    let one = packet(&tx("Hotel-1", 1));
    assert!(delivered(&r.post(&one)));
    r.stop();

    // As if the receiver had died while filing: the packet of 2 whole but
    // not its line, then a torn packet of 3 and a torn line.
    let files = transaction_files(out.path(), "00020b", "Hotel-1");
    let two = packet(&tx("Hotel-1", 2));
    let append = |path: &Path, bytes: &[u8]| {
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(bytes).unwrap();
    };
    append(
        &files.packets,
        &[format!("{}\n", two.len()).as_bytes(), &two, b"\n"].concat(),
    );
    append(
        &files.packets,
        b"300\n<USG RMTLOG_COMMAND=\"ADD_REC\">\n<REC",
    );
    append(&files.txt, b"{\"rec_num\":3,\"usg_");

    let r = Receiver::start(out.path(), None);
    assert_eq!(rec_nums(out.path(), "Hotel-1"), vec![1, 2]);
    assert_eq!(
        packets(out.path(), "Hotel-1"),
        vec![one.clone(), two.clone()]
    );
    // 2 is held (it was never acknowledged; billbox sends it again).
    assert!(delivered(&r.post(&two)));
    assert!(delivered(&r.post(&packet(&tx("Hotel-1", 3)))));
    assert_eq!(r.running.transaction_counts(), (1, 1));
    assert_eq!(rec_nums(out.path(), "Hotel-1"), vec![1, 2, 3]);
    assert_eq!(packets(out.path(), "Hotel-1").len(), 3);
    r.stop();
}

/// A record packet (`ADD_CDR`) from `gateway`/`port`.
fn cdr(gateway: &str, port: &str, seq: u64) -> Vec<u8> {
    let record = billbox_record::Record {
        port: Arc::from(port),
        seq,
        epoch: billbox_record::Epoch::NONE,
        received_us: 1_790_000_000_000_000,
        flags: billbox_record::RecordFlags::NONE,
        bytes: b"call\r\n".to_vec(),
    };
    let mut body = Vec::new();
    billbox_wire::encode_cdr(gateway, &record, &mut body);
    body
}

#[test]
fn a_gateway_named_like_a_usg_id_is_not_mistaken_for_it() {
    let out = tempfile::tempdir().unwrap();
    let r = Receiver::start(out.path(), None);
    assert!(delivered(&r.post(&cdr("00020b", "Hotel-1", 1))));
    assert!(delivered(&r.post(&packet(&tx("Hotel-1", 1)))));
    // A gateway named `transactions` shares OUT/transactions with them.
    assert!(delivered(&r.post(&cdr("transactions", "00020b", 1))));
    assert_eq!(r.running.counts(), (2, 0));
    assert_eq!(r.running.transaction_counts(), (1, 0));
    assert_eq!(rec_nums(out.path(), "Hotel-1"), vec![1]);
    r.stop();

    let r = Receiver::start(out.path(), None);
    assert!(delivered(&r.post(&cdr("00020b", "Hotel-1", 2))));
    assert!(delivered(&r.post(&cdr("transactions", "00020b", 1))));
    assert!(delivered(&r.post(&packet(&tx("Hotel-1", 2)))));
    assert_eq!(r.running.counts(), (3, 1), "2 held at start, 1 new");
    assert_eq!(r.running.transaction_counts(), (1, 0));
    assert_eq!(rec_nums(out.path(), "Hotel-1"), vec![1, 2]);
    assert_eq!(
        billbox_receiver::held_records(&out.path().join("transactions")).unwrap(),
        vec![("00020b".to_string(), 1)]
    );
    r.stop();
}

#[test]
fn a_signed_transaction_verifies_with_the_receivers_key() {
    let out = tempfile::tempdir().unwrap();
    let r = Receiver::start(out.path(), Some(KEY));
    let key = KEY.as_bytes();
    let signed = billbox_wire::sign_transaction_packet(key, &packet(&tx("Hotel-1", 7))).unwrap();
    let header = billbox_wire::signature_value(key, &signed);
    let answer = post(r.running.addr, &signed, Some(&header));
    assert!(delivered(&answer), "{answer:?}");
    let filed = read_transactions(&transaction_files(out.path(), "00020b", "Hotel-1").txt).unwrap();
    assert_eq!(filed.len(), 1);
    assert!(filed[0].signed);
    assert_eq!(packets(out.path(), "Hotel-1"), vec![signed.clone()]);

    // The AG's own (opaque) SIGNATURE is kept and noted as signed too.
    let mut ag = tx("Hotel-1", 8);
    ag.signature = Some("9f86d081884c7d659a2feaa0c55ad015".into());
    let ag = packet(&ag);
    let answer = post(
        r.running.addr,
        &ag,
        Some(&billbox_wire::signature_value(key, &ag)),
    );
    assert!(delivered(&answer), "{answer:?}");

    // Changed after signing (the header signed again): refused, not filed.
    let forged = String::from_utf8(signed.clone())
        .unwrap()
        .replace("<REC_NUM>00007", "<REC_NUM>00009")
        .into_bytes();
    let (status, body) = post(
        r.running.addr,
        &forged,
        Some(&billbox_wire::signature_value(key, &forged)),
    );
    assert_eq!(status, 403, "{body}");
    assert!(!delivered(&(status, body)));
    // Signed with another key: refused.
    let other = billbox_wire::signature_value(b"another key, long enough", &signed);
    assert_eq!(post(r.running.addr, &signed, Some(&other)).0, 403);

    let filed = read_transactions(&transaction_files(out.path(), "00020b", "Hotel-1").txt).unwrap();
    assert_eq!(
        filed
            .iter()
            .map(|t| (t.rec_num, t.signed))
            .collect::<Vec<_>>(),
        vec![(7, true), (8, true)]
    );
    assert_eq!(packets(out.path(), "Hotel-1"), vec![signed, ag]);
    assert_eq!(r.running.transaction_counts(), (2, 0));
    r.stop();
}

#[test]
fn a_malformed_transaction_gets_an_error_ack_and_nothing_is_filed() {
    let out = tempfile::tempdir().unwrap();
    let r = Receiver::start(out.path(), None);
    let good = String::from_utf8(packet(&tx("Hotel-1", 1))).unwrap();
    for bad in [
        good.replace("<AMOUNT>234.34", "<AMOUNT>-234.34"),
        good.replace("<TRANS_TYPE>CC</TRANS_TYPE>", ""),
        good.replace("<TRANS_TYPE>CC", "<TRANS_TYPE>CASH"),
        good.replace("03/30/2001", "2001-03-30"),
        good.replace("<REC_NUM>00001", "<REC_NUM>x"),
        good.replace("</USG>", ""),
    ] {
        let (status, body) = r.post(bad.as_bytes());
        assert_eq!(status, 400, "{bad}: {body}");
        let ack = billbox_wire::parse_ack(body.as_bytes()).unwrap();
        assert_eq!(ack.value, billbox_wire::AckValue::Error, "{body}");
        assert!(!delivered(&(status, body)));
    }
    assert_eq!(r.running.transaction_counts(), (0, 0));
    assert!(r.running.transaction_gaps().is_empty());
    assert!(!out.path().join("transactions").exists());
    r.stop();
}

#[test]
fn a_record_whose_filing_failed_is_filed_when_billbox_sends_it_again() {
    let out = tempfile::tempdir().unwrap();
    let r = Receiver::start(out.path(), None);
    // The port's record file cannot be opened: a directory stands there.
    let blocker = out.path().join("gw").join("p.txt");
    std::fs::create_dir_all(&blocker).unwrap();
    let (status, body) = r.post(&cdr("gw", "p", 1));
    assert!(!delivered(&(status, body.clone())), "{status} {body}");
    std::fs::remove_dir(&blocker).unwrap();
    // billbox sends it again: it is new to the receiver, and filed.
    assert!(delivered(&r.post(&cdr("gw", "p", 1))));
    assert_eq!(r.running.counts(), (1, 0));
    assert_eq!(
        std::fs::read(out.path().join("gw").join("p.txt")).unwrap(),
        b"call\r\n"
    );
    r.stop();
}
