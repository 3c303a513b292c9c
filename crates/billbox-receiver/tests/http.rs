//! The receiver's HTTP: keep-alive, pipelining, limits and stops, over
//! real sockets on 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use common::{answer_of, connect, head, send, Receiver};

/// An `ADD_CDR_BATCH` of `count` records from gw/p1, from `first` on.
fn batch(first: u64, count: u64) -> Vec<u8> {
    let records: Vec<_> = (first..first + count)
        .map(|seq| billbox_record::Record {
            port: Arc::from("p1"),
            seq,
            epoch: billbox_record::Epoch::NONE,
            received_us: 1_790_000_000_000_000,
            flags: billbox_record::RecordFlags::NONE,
            bytes: format!("11/24/26 01:41PM  105 01 5551234 00:00:12 call {seq}\r\n").into_bytes(),
        })
        .collect();
    let mut body = Vec::new();
    billbox_wire::encode_cdr_batch("gw", &records, &mut body);
    body
}

/// Reads until `n` whole answers are in (or the connection ends):
/// (status, ack body, head) each.
fn read_answers(conn: &mut std::net::TcpStream, n: usize) -> Vec<(u16, String, String)> {
    let mut bytes = Vec::new();
    let mut answers = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while answers.len() < n {
        while let Some((status, body, len)) = answer_of(&bytes) {
            let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let head = String::from_utf8_lossy(&bytes[..head_end]).to_lowercase();
            answers.push((status, String::from_utf8_lossy(body).into_owned(), head));
            bytes.drain(..len);
        }
        if answers.len() >= n {
            break;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(k) => bytes.extend_from_slice(&chunk[..k]),
        }
    }
    answers
}

/// actix-http 3.20 closed the connection when the next pipelined request's
/// body was still arriving as an answer went out: billbox had to send the
/// rest of its window again on a new connection.
#[test]
fn pipelined_packets_are_all_answered_on_one_connection() {
    let out = tempfile::tempdir().unwrap();
    let r = Receiver::start(out.path(), None);
    let addr = r.addr();
    let (packets, per_packet) = (16u64, 400u64);
    let mut requests = Vec::new();
    for i in 0..packets {
        let body = batch(1 + i * per_packet, per_packet);
        requests.extend_from_slice(head(addr, body.len(), "").as_bytes());
        requests.extend_from_slice(&body);
    }
    let mut conn = connect(addr);
    let mut writer = conn.try_clone().unwrap();
    // One write for them all, beside the reads (a server may answer
    // before it has read everything).
    let written = std::thread::spawn(move || writer.write_all(&requests).is_ok());
    let answers = read_answers(&mut conn, packets as usize);
    assert!(written.join().unwrap(), "the server read every request");
    assert_eq!(answers.len(), packets as usize, "every packet is answered");
    for (status, body, head) in &answers {
        assert!(
            common::delivered(&(*status, body.clone())),
            "{status} {body}"
        );
        assert!(!head.contains("connection: close"), "kept open: {head}");
    }
    // The connection still serves.
    send(&mut conn, addr, &batch(1 + packets * per_packet, 1));
    assert_eq!(read_answers(&mut conn, 1)[0].0, 200);
    assert_eq!(r.running.counts(), (packets * per_packet + 1, 0));
    r.stop();
}

#[test]
fn a_packet_over_the_size_limit_is_refused_with_413_and_nothing_is_filed() {
    let out = tempfile::tempdir().unwrap();
    let r = Receiver::start(out.path(), None);
    let mut conn = connect(r.addr());
    let too_large = billbox_wire::MAX_PACKET_BYTES + 1;
    conn.write_all(head(r.addr(), too_large, "").as_bytes())
        .unwrap();
    conn.write_all(&batch(1, 10)).unwrap();
    let answers = read_answers(&mut conn, 1);
    assert_eq!(answers[0].0, 413);
    assert!(!common::delivered(&(answers[0].0, answers[0].1.clone())));
    assert_eq!(r.running.counts(), (0, 0));
    r.stop();
}

#[test]
fn a_request_that_is_not_a_post_gets_405_and_an_error_ack() {
    let out = tempfile::tempdir().unwrap();
    let r = Receiver::start(out.path(), None);
    let mut conn = connect(r.addr());
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let answers = read_answers(&mut conn, 1);
    assert_eq!(answers[0].0, 405);
    assert!(answers[0].1.contains("ERROR"), "{}", answers[0].1);
    r.stop();
}

#[test]
fn a_stop_at_once_closes_open_connections() {
    let out = tempfile::tempdir().unwrap();
    let r = Receiver::start(out.path(), None);
    let mut conn = connect(r.addr());
    send(&mut conn, r.addr(), &batch(1, 1));
    assert_eq!(read_answers(&mut conn, 1)[0].0, 200);
    r.stop_with(false);
    let mut rest = [0u8; 64];
    // EOF or a reset: closed, either way.
    assert!(matches!(conn.read(&mut rest), Ok(0) | Err(_)));
    assert!(std::net::TcpStream::connect_timeout(&r.addr(), Duration::from_secs(2)).is_err());
}

#[test]
fn a_graceful_stop_answers_the_request_in_progress_first() {
    let out = tempfile::tempdir().unwrap();
    let r = Arc::new(Receiver::start(out.path(), None));
    let addr = r.addr();
    let mut conn = connect(addr);
    let body = batch(1, 5);
    let (first, second) = body.split_at(body.len() / 2);
    conn.write_all(head(addr, body.len(), "").as_bytes())
        .unwrap();
    conn.write_all(first).unwrap();
    // Until the server has the head, the request is not in progress.
    std::thread::sleep(Duration::from_millis(200));
    let stopping = {
        let r = r.clone();
        std::thread::spawn(move || r.stop_with(true))
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(!stopping.is_finished(), "the stop waits for the request");
    conn.write_all(second).unwrap();
    let answers = read_answers(&mut conn, 1);
    assert_eq!(answers[0].0, 200);
    stopping.join().unwrap();
    assert_eq!(r.running.counts(), (5, 0));
    let mut rest = [0u8; 64];
    assert!(matches!(conn.read(&mut rest), Ok(0) | Err(_)));
}
