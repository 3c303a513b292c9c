//! Security end to end: TLS, mutual TLS and packet signatures between the
//! real binary and the real reference receiver (`billbox receive`), both as
//! child processes on 127.0.0.1, with certificates made here with rcgen.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use billbox_testkit::http::https_request;
use billbox_testkit::receiver::Receiver;
use billbox_testkit::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const KEY: &str = "billbox-test-key-0123456789abcdef";
const WRONG_KEY: &str = "not-the-right-key-0123456789abcd";

/// A CA, and what it signed; and another CA's server certificate.
struct Pki {
    dir: tempfile::TempDir,
}

fn make_ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    (params.self_signed(&key).unwrap(), key)
}

fn leaf(
    names: &[&str],
    client: bool,
    issuer: &(rcgen::Certificate, rcgen::KeyPair),
) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.extended_key_usages = vec![if client {
        rcgen::ExtendedKeyUsagePurpose::ClientAuth
    } else {
        rcgen::ExtendedKeyUsagePurpose::ServerAuth
    }];
    let cert = params.signed_by(&key, &issuer.0, &issuer.1).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca("billbox test CA");
        let other = make_ca("another CA");
        let (server, server_key) = leaf(&["127.0.0.1", "localhost"], false, &ca);
        let (client, client_key) = leaf(&["gw-test"], true, &ca);
        let (impostor, impostor_key) = leaf(&["127.0.0.1", "localhost"], false, &other);
        for (name, text) in [
            ("ca.pem", ca.0.pem()),
            ("server.pem", server),
            ("server.key", server_key),
            ("client.pem", client),
            ("client.key", client_key),
            ("impostor.pem", impostor),
            ("impostor.key", impostor_key),
            ("key.txt", format!("{KEY}\n")),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `key = "PATH"` for the file `name`, as a config line.
    fn line(&self, key: &str, name: &str) -> String {
        format!("{key} = {:?}\n", self.path(name).display().to_string())
    }
}

fn port_toml() -> &'static str {
    "[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nalias = \"P\"\nbilling_eor = \"\\n\"\nbilling_records = 100\nbilling_timeout = \"1s\"\n"
}

/// A config delivering to `url` with the given extra `[delivery]` lines.
fn config(site: &Site, url: &str, extra: &str) -> PathBuf {
    site.config(&format!(
        "{}\n[delivery]\nprimary = \"{url}\"\nretry_delay = \"50ms\"\nrequest_timeout = \"2s\"\n{extra}",
        port_toml()
    ))
}

fn record(i: u64) -> Vec<u8> {
    format!("secret call {i} to 0312345678\n").into_bytes()
}

fn send(bb: &Billbox, from: u64, to: u64) {
    let data: Vec<u8> = (from..=to).flat_map(record).collect();
    bb.send("p", &data);
}

fn records(from: u64, to: u64) -> Vec<Vec<u8>> {
    (from..=to).map(record).collect()
}

/// Waits until the receiver filed `n` records.
fn wait_received(r: &Receiver, n: usize, bb: &Billbox) {
    wait_until(WAIT, || (r.records().len() >= n).then_some(())).unwrap_or_else(|| {
        panic!(
            "the receiver has {} of {n} records; billbox: {:?}; receiver: {:?}",
            r.records().len(),
            bb.dump(),
            r.logs.lock().unwrap()
        )
    });
}

/// The WARN line of a failed delivery, with its reason.
fn delivery_failure(bb: &Billbox) -> Value {
    let v = bb
        .wait_log("Delivery failed", None, WAIT)
        .unwrap_or_else(|| panic!("no delivery failure logged: {:?}", bb.dump()));
    assert_eq!(v["level"], "WARN", "{v}");
    v
}

/// Stops billbox and says how many records its store still holds, and
/// the last sequence it took.
fn stop_and_count_held(bb: Billbox, site: &Site) -> (u64, u64) {
    assert_eq!(bb.terminate(), Some(0));
    let stats = site.inspect();
    (
        stats["p"]["records"].as_u64().unwrap(),
        stats["p"]["last_seq"].as_u64().unwrap(),
    )
}

/// Billbox's deliveries to `receiver` fail: returns the first failure's
/// WARN line after checking that, half a second (a few more attempts)
/// later, nothing arrived, no record was logged, and billbox stops still
/// holding all `sent` records (sequences 1 to `sent`).
fn refused_and_held(bb: Billbox, receiver: &Receiver, site: &Site, sent: u64) -> Value {
    let failure = delivery_failure(&bb);
    std::thread::sleep(Duration::from_millis(500));
    assert!(receiver.records().is_empty(), "{failure}");
    assert_no_record_in_logs(&bb);
    assert_eq!(stop_and_count_held(bb, site), (sent, sent));
    failure
}

/// No record's contents in billbox's logs at INFO or above.
fn assert_no_record_in_logs(bb: &Billbox) {
    for v in bb.dump() {
        let line = v.to_string();
        assert!(!line.contains("secret call"), "a record was logged: {line}");
        assert!(!line.contains(KEY), "the key was logged: {line}");
    }
}

#[test]
fn records_are_delivered_over_tls_to_a_server_signed_by_the_configured_ca() {
    let pki = Pki::new();
    let receiver = Receiver::start(&[
        &"--tls-cert",
        &pki.path("server.pem"),
        &"--tls-key",
        &pki.path("server.key"),
    ]);
    let site = Site::new();
    let path = config(
        &site,
        &receiver.url("https"),
        &pki.line("ca_file", "ca.pem"),
    );
    let bb = Billbox::start(&path);
    send(&bb, 1, 20);
    wait_received(&receiver, 20, &bb);
    assert_exactly_once(&records(1, 20), &receiver.records(), "over TLS");
    assert_eq!(bb.count_logs("Delivery failed", None), 0, "{:?}", bb.dump());
    assert_no_record_in_logs(&bb);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn mutual_tls_delivers_only_with_a_client_certificate() {
    let pki = Pki::new();
    let receiver = Receiver::start(&[
        &"--tls-cert",
        &pki.path("server.pem"),
        &"--tls-key",
        &pki.path("server.key"),
        &"--client-ca",
        &pki.path("ca.pem"),
    ]);
    let site = Site::new();
    let url = receiver.url("https");

    // Without a client certificate the server refuses the connection: a
    // failed delivery, logged with its reason; the records stay stored.
    let bb = Billbox::start(&config(&site, &url, &pki.line("ca_file", "ca.pem")));
    send(&bb, 1, 10);
    let failure = refused_and_held(bb, &receiver, &site, 10);
    let reason = failure["error"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("TLS failed") && reason.contains("client certificate"),
        "{failure}"
    );

    // With the certificate the CA signed: every record, once.
    let fixed = format!(
        "{}{}{}",
        pki.line("ca_file", "ca.pem"),
        pki.line("client_cert", "client.pem"),
        pki.line("client_key", "client.key")
    );
    let bb = Billbox::start(&config(&site, &url, &fixed));
    send(&bb, 11, 15);
    wait_received(&receiver, 15, &bb);
    assert_exactly_once(&records(1, 15), &receiver.records(), "mutual TLS");
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_server_certificate_from_another_ca_is_refused_and_records_are_kept() {
    let pki = Pki::new();
    let impostor = Receiver::start(&[
        &"--tls-cert",
        &pki.path("impostor.pem"),
        &"--tls-key",
        &pki.path("impostor.key"),
    ]);
    let site = Site::new();
    let url = impostor.url("https");
    let bb = Billbox::start(&config(&site, &url, &pki.line("ca_file", "ca.pem")));
    send(&bb, 1, 5);
    let failure = refused_and_held(bb, &impostor, &site, 5);
    let reason = failure["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("certificate does not verify") && reason.contains("UnknownIssuer"),
        "{failure}"
    );

    // The same records reach the real server once billbox is pointed at it.
    let genuine = Receiver::start(&[
        &"--tls-cert",
        &pki.path("server.pem"),
        &"--tls-key",
        &pki.path("server.key"),
    ]);
    let bb = Billbox::start(&config(
        &site,
        &genuine.url("https"),
        &pki.line("ca_file", "ca.pem"),
    ));
    wait_received(&genuine, 5, &bb);
    assert_exactly_once(&records(1, 5), &genuine.records(), "after the impostor");
    assert!(impostor.records().is_empty());
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn the_receiver_checks_signatures_and_billbox_retries_refused_packets() {
    let pki = Pki::new();
    let receiver = Receiver::start(&[&"--secret-key-file", &pki.path("key.txt")]);
    let site = Site::new();
    let url = receiver.url("http");

    // The right key: delivered.
    let right = format!("secret_key = \"{KEY}\"\n");
    let bb = Billbox::start(&config(&site, &url, &right));
    send(&bb, 1, 5);
    wait_received(&receiver, 5, &bb);
    assert_eq!(bb.terminate(), Some(0));
    assert_eq!(receiver.count_logs("signature does not match"), 0);

    // A wrong key: refused (WARN at the receiver, an error ack), and
    // retried; the records stay stored.
    let wrong = format!("secret_key = \"{WRONG_KEY}\"\n");
    let bb = Billbox::start(&config(&site, &url, &wrong));
    send(&bb, 6, 10);
    assert!(
        receiver.wait_log("A packet's signature does not match", 3),
        "{:?}",
        receiver.logs.lock().unwrap()
    );
    let refused = receiver
        .logs
        .lock()
        .unwrap()
        .iter()
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("signature does not match"))
        })
        .cloned()
        .unwrap();
    assert_eq!(refused["level"], "WARN", "{refused}");
    let failure = delivery_failure(&bb);
    assert!(
        failure["error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP status 403")),
        "{failure}"
    );
    assert_eq!(receiver.records().len(), 5);
    assert_no_record_in_logs(&bb);
    // Records 6 to 10 at least are still held (1 to 5 may be too, until
    // their file is closed and they are removed).
    let (held, last) = stop_and_count_held(bb, &site);
    assert!(held >= 5 && last == 10, "held {held}, last {last}");

    // The right key again (from a file this time): the rest arrives.
    let bb = Billbox::start(&config(
        &site,
        &url,
        &pki.line("secret_key_file", "key.txt"),
    ));
    wait_received(&receiver, 10, &bb);
    assert_exactly_once(&records(1, 10), &receiver.records(), "signed");
    assert_eq!(bb.terminate(), Some(0));
}

/// One HTTP/1.1 POST with `Connection: close`: (status, body).
fn post(addr: SocketAddr, body: &[u8], signature: Option<&str>) -> (u16, String) {
    let signature = signature.map(|s| format!("X-Billbox-Signature: {s}"));
    let mut headers = vec!["Content-Type: text/xml"];
    headers.extend(signature.as_deref());
    let (status, _, body) = http_request(addr, "POST", "/billing", &headers, body);
    (status, body)
}

fn cdr_packet(seq: u64, data: &[u8]) -> Vec<u8> {
    let record = billbox_record::Record {
        port: Arc::from("p"),
        seq,
        epoch: billbox_record::Epoch::NONE,
        received_us: 1_790_000_000_000_000,
        flags: billbox_record::RecordFlags::NONE,
        bytes: data.to_vec(),
    };
    let mut body = Vec::new();
    billbox_wire::encode_cdr("gw-test", &record, &mut body);
    body
}

fn is_error_ack(body: &str) -> bool {
    body.contains("<ACK_VALUE>ERROR</ACK_VALUE>") && body.contains("<ERROR_CODE>4</ERROR_CODE>")
}

#[test]
fn a_tampered_packet_is_refused_by_the_receiver() {
    let receiver = Receiver::start(&[&"--secret-key", &KEY]);
    let key = KEY.as_bytes();
    let body = cdr_packet(1, b"call 1 to 0312345678\n");
    let good = billbox_wire::signature_value(key, &body);

    // Tampered: the number called changed after signing.
    let tampered = cdr_packet(1, b"call 1 to 0399999999\n");
    let (status, ack) = post(receiver.addr, &tampered, Some(&good));
    assert_eq!(status, 403, "{ack}");
    assert!(is_error_ack(&ack), "{ack}");
    // No signature, or one that is not sha256=<hex>.
    for signature in [None, Some("sha256=abc"), Some("md5=00")] {
        let (status, ack) = post(receiver.addr, &body, signature);
        assert_eq!(status, 403, "{signature:?}: {ack}");
        assert!(is_error_ack(&ack), "{ack}");
    }
    // Signed with another key.
    let other = billbox_wire::signature_value(WRONG_KEY.as_bytes(), &body);
    assert_eq!(post(receiver.addr, &body, Some(&other)).0, 403);
    assert!(receiver.records().is_empty());
    assert!(receiver.wait_log("A packet's signature does not match", 5));

    // The genuine packet is filed and acknowledged.
    let (status, ack) = post(receiver.addr, &body, Some(&good));
    assert_eq!(status, 200, "{ack}");
    assert!(ack.contains("<ACK_VALUE>OK</ACK_VALUE>"), "{ack}");
    assert_eq!(receiver.records(), vec![b"call 1 to 0312345678\n".to_vec()]);

    // An AG transaction carries its signature inside too: a packet whose
    // amount was changed and whose header was signed again is still refused.
    let tx = b"<USG RMTLOG_COMMAND=\"ADD_REC\">\n<REC_NUM>00923</REC_NUM><USG_ID>00020b</USG_ID><PROPERTY_ID>Hotel-1</PROPERTY_ID>\n<DATE>03/30/2001</DATE><TIME>23:41:38</TIME><ROOM_NUM>412</ROOM_NUM>\n<AMOUNT>234.34</AMOUNT><TRANS_TYPE>CC</TRANS_TYPE>\n</USG>";
    let signed = billbox_wire::sign_transaction_packet(key, tx).unwrap();
    let (status, ack) = post(
        receiver.addr,
        &signed,
        Some(&billbox_wire::signature_value(key, &signed)),
    );
    assert_eq!(status, 200, "{ack}");
    let forged = String::from_utf8(signed)
        .unwrap()
        .replace("234.34", "2.34")
        .into_bytes();
    let (status, ack) = post(
        receiver.addr,
        &forged,
        Some(&billbox_wire::signature_value(key, &forged)),
    );
    assert_eq!(status, 403, "{ack}");
    assert!(is_error_ack(&ack), "{ack}");
    let files = billbox_receiver::transaction_files(&receiver.out, "00020b", "Hotel-1");
    let transactions = billbox_receiver::read_transactions(&files.txt).unwrap_or_default();
    assert_eq!(transactions.len(), 1, "{transactions:?}");
}

#[test]
fn the_submit_api_speaks_https_and_asks_for_its_token() {
    let pki = Pki::new();
    let site = Site::new();
    let token = site.dir.path().join("submit.token");
    std::fs::write(&token, "portal-token-0123456789abcdef\n").unwrap();
    let config = site.config(&format!(
        "[transactions]\nlisten = \"127.0.0.1:0\"\nproperty_id = \"Hotel-1\"\n{}{}token_file = {:?}\n",
        pki.line("tls_cert", "server.pem"),
        pki.line("tls_key", "server.key"),
        token.display().to_string()
    ));
    let bb = Billbox::start(&config);
    let listening = bb
        .wait_log("submit API and AG relay are listening", None, WAIT)
        .unwrap_or_else(|| panic!("{:?}", bb.dump()));
    assert_eq!(listening["https"], true);
    let addr: SocketAddr = listening["listen"].as_str().unwrap().parse().unwrap();
    let body = r#"{"id":"t1","type":"PMS","room":"412","amount":"1.50"}"#;
    let request = |ca: &std::path::Path, auth: &str| {
        let mut headers = vec!["Content-Type: application/json"];
        headers.extend((!auth.is_empty()).then_some(auth));
        https_request(
            addr,
            ca,
            "POST",
            "/v1/transactions",
            &headers,
            body.as_bytes(),
        )
    };
    let ca = pki.path("ca.pem");
    let (status, answer) = request(&ca, "").unwrap();
    assert_eq!(status, 401, "{answer}");
    let auth = "Authorization: Bearer portal-token-0123456789abcdef";
    let (status, answer) = request(&ca, auth).unwrap();
    assert_eq!(status, 201, "{answer}");
    // A server certificate from another CA does not verify for the client;
    // plain HTTP gets no HTTP answer.
    assert!(request(&pki.path("impostor.pem"), auth).is_none());
    let (plain, _, _) = std::panic::catch_unwind(|| {
        http_request(addr, "POST", "/v1/transactions", &[auth], body.as_bytes())
    })
    .unwrap_or((0, String::new(), String::new()));
    assert_ne!(plain, 201);
    assert_eq!(bb.terminate(), Some(0));
}
