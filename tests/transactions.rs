//! Hotel PMS and card transactions end to end: the real binary's submit API
//! and AG relay over HTTP on 127.0.0.1, its real store, files and delivery
//! to test billing servers, and SIGKILL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use billbox_testkit::billing::{BillingServer, Log};
use billbox_testkit::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);
const PROPERTY: &str = "00020b/Hotel-1";
const TEST_CARD: &str = "4111111111111111";
const TEST_CARD_MASKED: &str = "411111******1111";
const TOKEN: &str = "hotspot-portal-token-0123456789";

/// A gateway with a primary and a fire-once carbon copy, taking
/// transactions. `extra` goes at the end of `[transactions]`.
struct Hotel {
    site: Site,
    primary: BillingServer,
    cc: BillingServer,
    config: PathBuf,
}

impl Hotel {
    fn new(store: &str, extra: &str) -> Hotel {
        let site = Site::new();
        let log = Log::default();
        let primary = BillingServer::start("primary", &log);
        let cc = BillingServer::start("cc", &log);
        let config = site.config(&format!(
            r#"
[[ports]]
name = "pbx"
listen = "127.0.0.1:0"

[store]
{store}

[delivery]
primary = "{}"
retry_delay = "100ms"
failback_after = 0

[[carbon_copy]]
name = "audit"
url = "{}"

[transactions]
listen = "127.0.0.1:0"
property_id = "Hotel-1"
usg_id = "00020b"
billing_records = 100
billing_timeout = "1s"
{extra}
"#,
            primary.url(),
            cc.url()
        ));
        Hotel {
            site,
            primary,
            cc,
            config,
        }
    }

    fn start(&self) -> (Billbox, SocketAddr) {
        self.start_with_env(&[])
    }

    fn start_with_env(&self, vars: &[(&str, &str)]) -> (Billbox, SocketAddr) {
        let b = Billbox::start_with_env(&self.config, vars);
        let v = b
            .wait_log("submit API and AG relay are listening", None, WAIT)
            .unwrap_or_else(|| panic!("no submit API: {:?}", b.dump()));
        let addr = v["listen"].as_str().unwrap().parse().unwrap();
        (b, addr)
    }

    /// Requests to `server` that were acknowledged, per REC_NUM of the
    /// property's transactions.
    fn acked(&self, server: &BillingServer) -> Vec<(u64, Vec<u8>)> {
        server
            .requests()
            .into_iter()
            .filter(|r| r.acked())
            .flat_map(|r| {
                r.records
                    .iter()
                    .filter(|(p, _)| p == PROPERTY)
                    .map(|(_, n)| (*n, r.body.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn wait_acked(&self, server: &BillingServer, count: usize) -> Vec<(u64, Vec<u8>)> {
        wait_until(WAIT, || {
            let got = self.acked(server);
            let mut distinct: Vec<u64> = got.iter().map(|(n, _)| *n).collect();
            distinct.sort();
            distinct.dedup();
            (distinct.len() >= count).then_some(got)
        })
        .unwrap_or_else(|| {
            panic!(
                "{} acknowledged {} transactions, not {count}",
                server.name,
                self.acked(server).len()
            )
        })
    }

    /// The JSON lines of the closed transaction journal files.
    fn filed(&self, alias: &str) -> Vec<Value> {
        self.site
            .txt_files(alias)
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn wait_filed(&self, alias: &str, count: usize) -> Vec<Value> {
        wait_until(WAIT, || {
            let got = self.filed(alias);
            (got.len() >= count).then_some(got)
        })
        .unwrap_or_else(|| panic!("{} lines filed, not {count}", self.filed(alias).len()))
    }
}

/// Transaction `n` of a test: unique room and amount, a fixed time, every
/// third one a card payment with the test card.
fn transaction(n: u64) -> Value {
    let mut t = json!({
        "id": format!("order-{n}"),
        "type": if n % 2 == 0 { "PMS" } else { "CC" },
        "room": format!("{}", 100 + n),
        "amount": format!("{}.{:02}", n, n % 100),
        "time": "2026-12-01T10:00:00+01:00",
    });
    if n % 3 == 0 {
        t["card"] = TEST_CARD.into();
    }
    t
}

/// The packet billbox must send for transaction `n` as REC_NUM `rec_num`.
fn expected_packet(n: u64, rec_num: u64) -> Vec<u8> {
    let t = transaction(n);
    let tx = billbox_wire::Transaction {
        rec_num: rec_num as u32,
        usg_id: "00020b".into(),
        property_id: "Hotel-1".into(),
        date: chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        time: chrono::NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
        room_num: t["room"].as_str().unwrap().into(),
        amount: billbox_wire::Amount::try_new(t["amount"].as_str().unwrap()).unwrap(),
        trans_type: billbox_wire::TransType::parse(t["type"].as_str().unwrap()).unwrap(),
        signature: None,
    };
    let mut out = Vec::new();
    billbox_wire::encode_transaction(&tx, &mut out).unwrap();
    out
}

fn post(addr: SocketAddr, body: &[u8], headers: &[&str]) -> (u16, String, Value) {
    let mut all = vec!["Content-Type: application/json"];
    all.extend_from_slice(headers);
    let (status, head, body) = http_request(addr, "POST", "/v1/transactions", &all, body);
    let v = serde_json::from_str(&body).unwrap_or(Value::Null);
    (status, head, v)
}

fn submit(addr: SocketAddr, t: &Value) -> (u16, Value) {
    let (status, _, v) = post(addr, t.to_string().as_bytes(), &[]);
    (status, v)
}

fn relay(addr: SocketAddr, packet: &[u8]) -> (u16, String) {
    let (status, _, body) = http_request(addr, "POST", "/", &["Content-Type: text/xml"], packet);
    (status, body)
}

fn ack_ok(body: &str) -> bool {
    body.contains("<ACK_VALUE>OK</ACK_VALUE>") && body.contains("<ERROR_CODE>1</ERROR_CODE>")
}

/// Every file under `dir`, read whole.
fn every_byte_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_thousand_submitted_transactions_reach_the_servers_byte_exact_once_each() {
    let hotel = Hotel::new("", "");
    let (billbox, addr) = hotel.start();
    let submitters: Vec<_> = (0..8u64)
        .map(|s| {
            std::thread::spawn(move || {
                (0..125u64)
                    .map(|i| {
                        let n = s * 125 + i + 1;
                        let (status, v) = submit(addr, &transaction(n));
                        assert_eq!(status, 201, "transaction {n}: {v}");
                        assert_eq!(v["stored"], true);
                        (n, v["rec_num"].as_u64().unwrap())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut numbered: Vec<(u64, u64)> = submitters
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    numbered.sort_by_key(|(_, r)| *r);
    let rec_nums: Vec<u64> = numbered.iter().map(|(_, r)| *r).collect();
    assert_eq!(
        rec_nums,
        (1..=1000).collect::<Vec<_>>(),
        "REC_NUMs 1..1000, no gap"
    );

    for server in [&hotel.primary, &hotel.cc] {
        let acked = hotel.wait_acked(server, 1000);
        assert_eq!(acked.len(), 1000, "{}: each transaction once", server.name);
        for (rec_num, body) in &acked {
            let n = numbered[*rec_num as usize - 1].0;
            assert_eq!(
                String::from_utf8_lossy(body),
                String::from_utf8_lossy(&expected_packet(n, *rec_num)),
                "{}: REC_NUM {rec_num}",
                server.name
            );
        }
    }
    let filed = hotel.wait_filed("TRANS", 1000);
    assert_eq!(filed.len(), 1000, "each transaction filed once");
    for line in &filed {
        let r = line["rec_num"].as_u64().unwrap();
        let n = numbered[r as usize - 1].0;
        assert_eq!(line["id"], format!("order-{n}"));
        assert_eq!(line["source"], "api");
        let card = if n % 3 == 0 {
            json!(TEST_CARD_MASKED)
        } else {
            Value::Null
        };
        assert_eq!(line["card"], card, "{line}");
    }
    // Counted like call records.
    let (_, page) = billbox.get("/metrics");
    assert_eq!(
        metric(
            &page,
            "billbox_records_received_total{port=\"@transactions\"}"
        ),
        Some(1000.0),
        "{page}"
    );
    // Its status says where it went.
    let (status, _, body) = http_request(addr, "GET", "/v1/transactions/order-3", &[], b"");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["destinations"]["delivery"]["acknowledged"], true, "{v}");
    assert_eq!(v["destinations"]["delivery"]["server"], "primary", "{v}");
    assert_eq!(v["destinations"]["cc:audit"]["server"], "mirror", "{v}");
    assert_eq!(billbox.terminate(), Some(0));
}

#[test]
fn a_transaction_answered_201_survives_sigkill_and_keeps_its_rec_num() {
    let mut hotel = Hotel::new("", "");
    hotel.primary.down();
    let (billbox, addr) = hotel.start();
    let (status, v) = submit(addr, &transaction(1));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["rec_num"], 1);
    billbox.kill9();

    hotel.primary.up();
    let (billbox, addr) = hotel.start();
    let acked = hotel.wait_acked(&hotel.primary, 1);
    assert_eq!(acked[0].1, expected_packet(1, 1));
    // The submitter retries after the restart: the same record.
    let (status, v) = submit(addr, &transaction(1));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rec_num"], 1);
    // The same id with other content is refused.
    let mut other = transaction(1);
    other["amount"] = "9.99".into();
    let (status, v) = submit(addr, &other);
    assert_eq!(
        (status, &v["field"], &v["rec_num"]),
        (409, &json!("id"), &json!(1))
    );
    assert_eq!(billbox.terminate(), Some(0));
}

#[test]
fn sigkill_during_a_stream_of_submissions_loses_no_answered_transaction() {
    let hotel = Hotel::new("", "");
    let (billbox, addr) = hotel.start();
    let stream = std::thread::spawn(move || {
        let mut answered = Vec::new();
        for n in 1..=400u64 {
            let t = transaction(n);
            let result = std::panic::catch_unwind(|| submit(addr, &t));
            match result {
                Ok((201, v)) => answered.push((n, v["rec_num"].as_u64().unwrap())),
                // The kill cut this one off: no answer, or no 201.
                _ => break,
            }
        }
        answered
    });
    wait_until(WAIT, || {
        (hotel.acked(&hotel.primary).len() >= 100).then_some(())
    });
    billbox.kill9();
    let answered = stream.join().unwrap();
    assert!(answered.len() >= 100, "only {} answered", answered.len());

    let (billbox, addr) = hotel.start();
    // Every submitter retries what it sent: answered ones get their number.
    for (n, rec_num) in &answered {
        let (status, v) = submit(addr, &transaction(*n));
        assert_eq!(
            (status, v["rec_num"].as_u64()),
            (200, Some(*rec_num)),
            "{n}"
        );
    }
    let unanswered = answered.len() as u64 + 1;
    let (status, _) = submit(addr, &transaction(unanswered));
    assert!(status == 200 || status == 201, "{status}");
    let acked = hotel.wait_acked(&hotel.primary, answered.len() + 1);
    let mut by_rec_num = std::collections::HashMap::new();
    for (rec_num, body) in &acked {
        // Sent again after the kill is fine; another content under one
        // REC_NUM is not.
        let seen = by_rec_num.entry(*rec_num).or_insert_with(|| body.clone());
        assert_eq!(seen, body, "REC_NUM {rec_num} was sent with two contents");
    }
    for (n, rec_num) in &answered {
        assert_eq!(by_rec_num[rec_num], expected_packet(*n, *rec_num), "{n}");
    }
    assert_eq!(billbox.terminate(), Some(0));
}

/// Starts a hotel (with a token), posts `body` with `headers`, and checks
/// the answer's status and field; then that nothing was stored, filed or
/// logged of it.
fn refused(body: &[u8], headers: &[&str], status: u16, field: Option<&str>) {
    let hotel = Hotel::new("", "token_file = \"TOKEN\"");
    let token_file = hotel.site.dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let text = std::fs::read_to_string(&hotel.config).unwrap().replace(
        "\"TOKEN\"",
        &format!("{:?}", token_file.display().to_string()),
    );
    std::fs::write(&hotel.config, text).unwrap();
    let (billbox, addr) = hotel.start();
    let (got, head, v) = http_request_json(addr, body, headers);
    assert_eq!(got, status, "{head}\n{v}");
    assert_eq!(v["field"].as_str(), field, "{v}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    let logs = serde_json::to_string(&billbox.dump()).unwrap();
    assert_eq!(billbox.terminate(), Some(0));
    assert!(
        !hotel.site.inspect().contains_key("@transactions"),
        "a refused transaction reached the store"
    );
    assert!(hotel.site.txt_files("TRANS").is_empty() && hotel.site.tmp_files().is_empty());
    assert!(
        !logs.contains(TEST_CARD) && !logs.contains("4111 1111"),
        "card digits in the logs"
    );
    assert!(hotel.acked(&hotel.primary).is_empty());
}

fn http_request_json(addr: SocketAddr, body: &[u8], headers: &[&str]) -> (u16, String, Value) {
    let (status, head, body) = http_request(addr, "POST", "/v1/transactions", headers, body);
    (
        status,
        head,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

const JSON: &str = "Content-Type: application/json";
const AUTH: &str = "Authorization: Bearer hotspot-portal-token-0123456789";

fn with(change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut t = transaction(3);
    change(&mut t);
    t.to_string().into_bytes()
}

#[test]
fn refused_without_a_token() {
    refused(&with(|_| {}), &[JSON], 401, None);
}

#[test]
fn refused_with_a_wrong_token() {
    refused(
        &with(|_| {}),
        &[JSON, "Authorization: Bearer wrong-token-0123456789"],
        401,
        None,
    );
}

#[test]
fn refused_when_not_json() {
    refused(
        b"id=1&amount=2",
        &[AUTH, "Content-Type: application/x-www-form-urlencoded"],
        415,
        None,
    );
    refused(b"{not json", &[AUTH, JSON], 415, None);
}

#[test]
fn refused_when_too_large() {
    let big = with(|t| t["room"] = "1".repeat(20 * 1024).into());
    refused(&big, &[AUTH, JSON], 413, None);
}

#[test]
fn refused_without_an_id() {
    refused(
        &with(|t| t.as_object_mut().unwrap().remove("id").map(drop).unwrap()),
        &[AUTH, JSON],
        400,
        Some("id"),
    );
}

#[test]
fn refused_with_an_empty_room() {
    refused(
        &with(|t| t["room"] = "".into()),
        &[AUTH, JSON],
        400,
        Some("room"),
    );
}

#[test]
fn refused_with_a_room_longer_than_the_ags() {
    refused(
        &with(|t| t["room"] = "R".repeat(21).into()),
        &[AUTH, JSON],
        400,
        Some("room"),
    );
}

#[test]
fn refused_with_three_decimals() {
    refused(
        &with(|t| t["amount"] = "12.345".into()),
        &[AUTH, JSON],
        400,
        Some("amount"),
    );
}

#[test]
fn refused_with_a_zero_amount() {
    refused(
        &with(|t| t["amount"] = "0.00".into()),
        &[AUTH, JSON],
        400,
        Some("amount"),
    );
}

#[test]
fn refused_with_a_negative_amount() {
    refused(
        &with(|t| t["amount"] = "-5".into()),
        &[AUTH, JSON],
        400,
        Some("amount"),
    );
}

#[test]
fn refused_with_an_unknown_type() {
    refused(
        &with(|t| t["type"] = "CASH".into()),
        &[AUTH, JSON],
        400,
        Some("type"),
    );
}

#[test]
fn refused_with_a_time_that_is_not_rfc3339() {
    refused(
        &with(|t| t["time"] = "yesterday 10pm".into()),
        &[AUTH, JSON],
        400,
        Some("time"),
    );
}

#[test]
fn refused_with_an_unknown_field() {
    refused(
        &with(|t| t["tip"] = "1.00".into()),
        &[AUTH, JSON],
        400,
        Some("tip"),
    );
}

#[test]
fn refused_with_a_security_code() {
    refused(
        &with(|t| t["CVV2"] = "123".into()),
        &[AUTH, JSON],
        400,
        Some("CVV2"),
    );
}

#[test]
fn refused_with_a_card_number_that_fails_luhn() {
    refused(
        &with(|t| t["card"] = "4111111111111112".into()),
        &[AUTH, JSON],
        400,
        Some("card"),
    );
}

#[test]
fn accepted_on_a_loopback_listener_without_a_token_file() {
    let hotel = Hotel::new("", "");
    let (billbox, addr) = hotel.start();
    let (status, _, v) = http_request_json(addr, &with(|_| {}), &[JSON]);
    assert_eq!(status, 201, "{v}");
    assert_eq!(billbox.terminate(), Some(0));
}

#[test]
fn a_full_card_number_is_kept_nowhere() {
    let hotel = Hotel::new("", "");
    let (billbox, addr) = hotel.start();
    let spaced = "4111 1111 1111 1111";
    let (status, v) = submit(
        addr,
        &json!({"id": "c1", "type": "CC", "room": "7", "amount": "1.00", "card": spaced}),
    );
    assert_eq!(status, 201, "{v}");
    // A card number inside a relayed AG packet is masked too.
    let packet = format!(
        "<USG RMTLOG_COMMAND=\"ADD_REC\">\n<REC_NUM>00001</REC_NUM><USG_ID>ag7</USG_ID><PROPERTY_ID>Hotel-1</PROPERTY_ID>\n\
         <DATE>12/01/2026</DATE><TIME>10:00:00</TIME><ROOM_NUM>8</ROOM_NUM>\n\
         <AMOUNT>2.00</AMOUNT><TRANS_TYPE>CC</TRANS_TYPE>\n<CARD>{TEST_CARD}</CARD>\n</USG>"
    );
    let (status, body) = relay(addr, packet.as_bytes());
    assert!(status == 200 && ack_ok(&body), "{status} {body}");
    let (_, _, status_body) = http_request(addr, "GET", "/v1/transactions/c1", &[], b"");
    let filed = hotel.wait_filed("TRANS", 1);
    assert_eq!(filed[0]["card"], TEST_CARD_MASKED);
    wait_until(WAIT, || {
        (hotel
            .primary
            .requests()
            .iter()
            .filter(|r| r.acked())
            .count()
            >= 2)
            .then_some(())
    })
    .expect("both delivered");
    let logs = serde_json::to_string(&billbox.dump()).unwrap();
    assert_eq!(billbox.terminate(), Some(0));

    let needles: [&[u8]; 2] = [TEST_CARD.as_bytes(), spaced.as_bytes()];
    let mut haystacks = every_byte_under(&hotel.site.data());
    haystacks.extend(every_byte_under(&hotel.site.spool()));
    haystacks.push(("logs".into(), logs.into_bytes()));
    haystacks.push(("status".into(), status_body.clone().into_bytes()));
    for r in hotel
        .primary
        .requests()
        .iter()
        .chain(hotel.cc.requests().iter())
    {
        haystacks.push((r.server.into(), r.body.clone()));
    }
    for (path, bytes) in &haystacks {
        for needle in needles {
            assert!(
                !contains(bytes, needle),
                "the full card number is in {}",
                path.display()
            );
        }
    }
    assert!(status_body.contains(TEST_CARD_MASKED), "{status_body}");
    let relayed: Vec<_> = hotel
        .primary
        .requests()
        .into_iter()
        .filter(|r| contains(&r.body, b"<USG_ID>ag7</USG_ID>"))
        .collect();
    assert!(contains(&relayed[0].body, TEST_CARD_MASKED.as_bytes()));
}

fn ag_packet(rec_num: u32, room: &str) -> Vec<u8> {
    let tx = billbox_wire::Transaction {
        rec_num,
        usg_id: "00020c".into(),
        property_id: "Hotel-1".into(),
        date: chrono::NaiveDate::from_ymd_opt(2001, 3, 30).unwrap(),
        time: chrono::NaiveTime::from_hms_opt(23, 41, 38).unwrap(),
        room_num: room.into(),
        amount: billbox_wire::Amount::try_new("234.34").unwrap(),
        trans_type: billbox_wire::TransType::Pms,
        signature: None,
    };
    let mut out = Vec::new();
    billbox_wire::encode_transaction(&tx, &mut out).unwrap();
    out
}

#[test]
fn an_ag_relaying_through_billbox_gets_ok_after_the_flush_and_its_packets_go_on_unchanged() {
    let mut hotel = Hotel::new("", "");
    hotel.primary.down();
    let (billbox, addr) = hotel.start();
    let key = b"the-ags-shared-key-0123456789";
    let mut sent = Vec::new();
    for n in 1..=4u32 {
        let mut p = ag_packet(n, &format!("{}", 200 + n));
        if n % 2 == 0 {
            p = billbox_wire::sign_transaction_packet(key, &p).unwrap();
        }
        let (status, body) = relay(addr, &p);
        assert!(status == 200 && ack_ok(&body), "{status} {body}");
        sent.push(p);
    }
    // The AG times out and sends packet 2 again: kept once.
    let (status, body) = relay(addr, &sent[1]);
    assert!(status == 200 && ack_ok(&body), "{status} {body}");
    // Malformed: an ERROR ack, nothing stored.
    let (status, body) = relay(
        addr,
        b"<USG RMTLOG_COMMAND=\"ADD_REC\"><REC_NUM>x</REC_NUM></USG>",
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("<ACK_VALUE>ERROR</ACK_VALUE>")
            && body.contains("<ERROR_CODE>2</ERROR_CODE>"),
        "{body}"
    );
    // Acknowledged means flushed: a SIGKILL now loses nothing.
    billbox.kill9();
    hotel.primary.up();
    let (billbox, _) = hotel.start();
    let got = wait_until(WAIT, || {
        let got: Vec<Vec<u8>> = hotel
            .primary
            .requests()
            .into_iter()
            .filter(|r| r.acked() && r.records.iter().any(|(p, _)| p == "00020c/Hotel-1"))
            .map(|r| r.body)
            .collect();
        (got.len() >= 4).then_some(got)
    })
    .expect("the relayed packets were delivered");
    assert_eq!(got, sent, "delivered unchanged, in order, once each");
    let filed = hotel.wait_filed("TRANS_AG", 4);
    let nums: Vec<u64> = filed
        .iter()
        .map(|l| l["rec_num"].as_u64().unwrap())
        .collect();
    assert_eq!(nums, [1, 2, 3, 4]);
    assert_eq!(filed[1]["signed"], true);
    assert_eq!(billbox.terminate(), Some(0));
}

#[test]
fn relayed_signatures_are_checked_when_the_ags_key_is_configured() {
    let hotel = Hotel::new("", "ag_secret_key = \"the-ags-shared-key-0123456789\"");
    let (billbox, addr) = hotel.start();
    let plain = ag_packet(1, "1");
    let (status, body) = relay(addr, &plain);
    assert!(
        status == 403 && body.contains("<ERROR_CODE>4</ERROR_CODE>"),
        "{status} {body}"
    );
    let wrong =
        billbox_wire::sign_transaction_packet(b"another-key-0123456789abc", &plain).unwrap();
    assert_eq!(relay(addr, &wrong).0, 403);
    let signed =
        billbox_wire::sign_transaction_packet(b"the-ags-shared-key-0123456789", &plain).unwrap();
    let (status, body) = relay(addr, &signed);
    assert!(status == 200 && ack_ok(&body), "{status} {body}");
    let got = hotel.wait_acked(&hotel.primary, 0);
    drop(got);
    wait_until(WAIT, || {
        hotel
            .primary
            .requests()
            .iter()
            .any(|r| r.acked() && r.body == signed)
            .then_some(())
    })
    .expect("the signed packet went on");
    assert_eq!(billbox.terminate(), Some(0));
}

#[test]
fn a_full_store_answers_503_and_loses_nothing_once_space_returns() {
    let mut hotel = Hotel::new("max_records = 5\nwhen_full = \"block\"", "");
    hotel.primary.down();
    let (billbox, addr) = hotel.start();
    for n in 1..=5 {
        assert_eq!(submit(addr, &transaction(n)).0, 201);
    }
    let (status, head, v) = post(addr, transaction(6).to_string().as_bytes(), &[]);
    assert_eq!(status, 503, "{v}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 5"),
        "{head}"
    );
    assert_eq!(v["stored"], false);
    hotel.primary.up();
    let acked = hotel.wait_acked(&hotel.primary, 5);
    let mut nums: Vec<u64> = acked.iter().map(|(n, _)| *n).collect();
    nums.sort();
    nums.dedup();
    assert_eq!(nums, [1, 2, 3, 4, 5]);
    // Space returned: the submitter's retry is stored.
    let v = wait_until(WAIT, || {
        let (status, v) = submit(addr, &transaction(6));
        (status == 201).then_some(v)
    })
    .expect("the retry is stored once space returns");
    assert_eq!(v["rec_num"], 6);
    hotel.wait_acked(&hotel.primary, 6);
    assert_eq!(billbox.terminate(), Some(0));
}

#[test]
fn a_failed_store_flush_stops_billbox_without_acknowledging_and_a_restart_takes_the_retry() {
    let hotel = Hotel::new("", "");
    // The second flush fails (test builds' fault injection).
    let (mut billbox, addr) =
        hotel.start_with_env(&[("BILLBOX_FAILPOINTS", "store.flush=error@2")]);
    assert_eq!(submit(addr, &transaction(1)).0, 201);
    // This one's flush fails: it is never acknowledged, and billbox stops
    // (exit 3), for its unit or container to start it again.
    let waiting =
        std::thread::spawn(move || std::panic::catch_unwind(|| submit(addr, &transaction(2))).ok());
    assert_eq!(billbox.wait_exit(WAIT), Some(3), "{:?}", billbox.dump());
    assert_eq!(
        billbox.count_logs("The store's disk failed a sync", None),
        1
    );
    assert_ne!(waiting.join().unwrap().map(|(s, _)| s), Some(201));
    // Started again, it writes the store again first and takes the retry.
    let (billbox, addr) = hotel.start();
    assert_eq!(billbox.count_logs("were written again", None), 1);
    let (status, v) = submit(addr, &transaction(2));
    assert!(status == 201 || status == 200, "{status} {v}");
    assert_eq!(
        submit(addr, &transaction(1)).0,
        200,
        "stored before the failure"
    );
    assert_eq!(billbox.terminate(), Some(0));
}
