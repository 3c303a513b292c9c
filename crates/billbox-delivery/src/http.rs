//! A pipelined HTTP/1.1 client connection.
//!
//! [`Pipeline::send`] queues a whole request (head and body in one buffer)
//! and returns at once with a future of its answer. A task of the
//! connection writes queued requests as they come (what is queued together
//! goes in one write), and reads the answers in the order the requests were
//! written: HTTP/1.1 pipelining, so several requests wait for their answers
//! on one keep-alive connection and reach the server in the order they were
//! queued. `TCP_NODELAY` is set: a request is not held back waiting for the
//! previous one's ACK; and after every read `TCP_QUICKACK` ([`quick_acks`]):
//! a server's answer is not held back waiting for billbox's ACK.
//!
//! Answers are parsed strictly ([`AnswerError`]): a status line and headers
//! (`httparse`), a body by `Content-Length`, `chunked`, or up to the close,
//! at most [`ANSWER_LIMIT`] bytes. An answer saying `Connection: close`
//! (or an HTTP/1.0 one without keep-alive) ends the connection after it;
//! the requests queued behind it get [`HttpError::NotTaken`] (they were
//! not answered and should be sent again on a new connection).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// The largest answer body read from a server (an ack is a few hundred bytes).
pub const ANSWER_LIMIT: usize = 64 * 1024;
/// The largest status line and headers of an answer.
const HEAD_LIMIT: usize = 16 * 1024;
/// At most this much queued request data goes into one write.
const WRITE_BATCH: usize = 256 * 1024;

/// A server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
    /// The server closes the connection after this answer.
    pub close: bool,
}

/// Why an answer is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the status line or a header is malformed ({0})")]
    Head(httparse::Error),
    #[error("the status line and headers are longer than {HEAD_LIMIT} bytes")]
    HeadTooLong,
    #[error("the body is longer than {ANSWER_LIMIT} bytes")]
    BodyTooLong,
    #[error("Content-Length is not a number or is given twice")]
    BadLength,
    #[error("a chunk size is malformed")]
    BadChunk,
    #[error("the transfer encoding {0:?} is not chunked")]
    Encoding(String),
    #[error("the server sent {0} bytes no request asked for")]
    Unasked(usize),
}

/// Why a request got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    #[error("connecting failed: {0}")]
    Connect(#[source] Arc<io::Error>),
    #[error("the connection failed: {0}")]
    Io(#[source] Arc<io::Error>),
    #[error("the server closed the connection without answering")]
    Closed,
    #[error("the answer is not HTTP: {0}")]
    Malformed(#[source] AnswerError),
    /// The server said it would close the connection after answering an
    /// earlier request; this one was not answered (send it again).
    #[error("the server closed the connection after answering an earlier request")]
    NotTaken,
}

impl HttpError {
    /// The I/O error underneath, if any (a TLS failure is one).
    pub fn io(&self) -> Option<&io::Error> {
        match self {
            HttpError::Connect(e) | HttpError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// What a connection's task gets for each request.
struct Queued {
    bytes: Bytes,
    answer: oneshot::Sender<Result<Answer, HttpError>>,
}

/// One connection, pipelined. Dropping it ends the connection (requests
/// still waiting get [`HttpError::Closed`]).
pub struct Pipeline {
    queue: mpsc::UnboundedSender<Queued>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The future of one request's answer.
pub type AnswerFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Answer, HttpError>>>>;

impl Pipeline {
    /// Starts a connection: `connect` makes the stream (TCP, maybe TLS)
    /// and gives, beside it, the TCP socket under it, on which every
    /// read asks for quick ACKs ([`quick_acks`]); requests queue meanwhile.
    /// Must run on a `LocalSet` (an actix arbiter is one).
    pub fn start<S, F>(connect: F) -> Pipeline
    where
        S: AsyncRead + AsyncWrite + 'static,
        F: std::future::Future<Output = io::Result<(S, Option<std::net::TcpStream>)>> + 'static,
    {
        let (queue, rx) = mpsc::unbounded_channel();
        let task = tokio::task::spawn_local(run(connect, rx));
        Pipeline { queue, task }
    }

    /// Whether the connection ended (a request sent now would fail).
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed() || self.task.is_finished()
    }

    /// Queues `request` (a whole HTTP/1.1 request) and returns the future
    /// of its answer; requests are written in the order they are queued.
    pub fn send(&self, request: Bytes) -> AnswerFuture {
        let (answer, rx) = oneshot::channel();
        let queued = self.queue.send(Queued {
            bytes: request,
            answer,
        });
        Box::pin(async move {
            if queued.is_err() {
                return Err(HttpError::Closed);
            }
            rx.await.unwrap_or(Err(HttpError::Closed))
        })
    }
}

/// The answers still owed, oldest first.
type Owed = Rc<RefCell<VecDeque<oneshot::Sender<Result<Answer, HttpError>>>>>;

async fn run<S, F>(connect: F, mut rx: mpsc::UnboundedReceiver<Queued>)
where
    S: AsyncRead + AsyncWrite + 'static,
    F: std::future::Future<Output = io::Result<(S, Option<std::net::TcpStream>)>>,
{
    let (stream, socket) = match connect.await {
        Ok(s) => s,
        Err(e) => {
            rx.close();
            let e = HttpError::Connect(Arc::new(e));
            while let Ok(q) = rx.try_recv() {
                let _ = q.answer.send(Err(e.clone()));
            }
            return;
        }
    };
    let (reader, writer) = tokio::io::split(stream);
    let owed: Owed = Rc::default();
    // Whichever side ends first ends the connection; what is still owed
    // gets the reason.
    let why = tokio::select! {
        e = write_requests(writer, &mut rx, &owed) => e,
        e = read_answers(reader, socket.as_ref(), &owed) => e,
    };
    rx.close();
    // Every request still owed failed the same way: the connection ended
    // (or, behind a clean close, they were not taken up).
    for tx in owed.borrow_mut().drain(..) {
        let _ = tx.send(Err(why.clone()));
    }
    while let Ok(q) = rx.try_recv() {
        let _ = q.answer.send(Err(HttpError::NotTaken));
    }
}

async fn write_requests<W: AsyncWrite>(
    writer: W,
    rx: &mut mpsc::UnboundedReceiver<Queued>,
    owed: &Owed,
) -> HttpError {
    tokio::pin!(writer);
    let mut batch = BytesMut::new();
    loop {
        let Some(q) = rx.recv().await else {
            // The pipeline was dropped: nothing more will be asked.
            return std::future::pending().await;
        };
        owed.borrow_mut().push_back(q.answer);
        let mut one = Some(q.bytes);
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(more) => {
                    if let Some(b) = one.take() {
                        batch.extend_from_slice(&b);
                    }
                    owed.borrow_mut().push_back(more.answer);
                    batch.extend_from_slice(&more.bytes);
                }
                Err(_) => break,
            }
        }
        let result = match one.take() {
            Some(b) => writer.write_all(&b).await,
            None => {
                let r = writer.write_all(&batch).await;
                batch.clear();
                r
            }
        };
        if let Err(e) = result.and(writer.flush().await) {
            return HttpError::Io(Arc::new(e));
        }
    }
}

/// Asks the kernel to ACK what arrives on `socket` at once rather than
/// delayed (`TCP_QUICKACK`; the kernel drops back to delayed ACKs by
/// itself, so it is asked again after every read). With several requests
/// out, answers come back to back and no request of billbox's carries the
/// ACK: a server with Nagle on (answers in two writes, or answers written
/// one by one) would then hold each next answer until the delayed ACK,
/// 40 ms.
pub fn quick_acks(socket: &std::net::TcpStream) {
    let _ = socket2::SockRef::from(socket).set_tcp_quickack(true);
}

async fn read_answers<R: AsyncRead>(
    reader: R,
    socket: Option<&std::net::TcpStream>,
    owed: &Owed,
) -> HttpError {
    tokio::pin!(reader);
    let mut buf = BytesMut::with_capacity(4096);
    let mut parser = AnswerParser::default();
    loop {
        loop {
            match parser.parse(&mut buf) {
                Ok(Some(answer)) => {
                    let close = answer.close;
                    match owed.borrow_mut().pop_front() {
                        Some(tx) => {
                            let _ = tx.send(Ok(answer));
                        }
                        None => return HttpError::Malformed(AnswerError::Unasked(buf.len())),
                    }
                    if close {
                        return HttpError::NotTaken;
                    }
                }
                Ok(None) => break,
                Err(e) => return HttpError::Malformed(e),
            }
        }
        if owed.borrow().is_empty() && !buf.is_empty() {
            return HttpError::Malformed(AnswerError::Unasked(buf.len()));
        }
        buf.reserve(4096);
        match reader.read_buf(&mut buf).await {
            Ok(0) => {
                // A body that runs to the close ends here.
                if let Some(answer) = parser.at_close(&mut buf) {
                    if let Some(tx) = owed.borrow_mut().pop_front() {
                        let _ = tx.send(Ok(answer));
                    }
                    return HttpError::NotTaken;
                }
                // The server closed the connection (an idle one, or one
                // with requests still owed).
                return HttpError::Closed;
            }
            Ok(_) => {
                if let Some(s) = socket {
                    quick_acks(s);
                }
            }
            Err(e) => return HttpError::Io(Arc::new(e)),
        }
    }
}

/// How an answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// An answer being read.
#[derive(Debug, Default)]
struct AnswerParser {
    /// The head once read: status, close, framing.
    head: Option<(u16, bool, Framing)>,
    /// A chunked body so far.
    body: BytesMut,
}

impl AnswerParser {
    /// The next whole answer at the front of `buf` (taken out of it), or
    /// `None` when more bytes are needed.
    fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Answer>, AnswerError> {
        loop {
            if self.head.is_none() {
                let mut headers = [httparse::EMPTY_HEADER; 64];
                let mut response = httparse::Response::new(&mut headers);
                let used = match response.parse(buf) {
                    Ok(httparse::Status::Complete(n)) => n,
                    Ok(httparse::Status::Partial) if buf.len() > HEAD_LIMIT => {
                        return Err(AnswerError::HeadTooLong)
                    }
                    Ok(httparse::Status::Partial) => return Ok(None),
                    Err(e) => return Err(AnswerError::Head(e)),
                };
                let status = response.code.unwrap_or(0);
                let head = read_head(&response)?;
                buf.advance(used);
                // 1xx: an interim answer; the real one follows.
                if (100..200).contains(&status) {
                    continue;
                }
                let framing = if status == 204 || status == 304 {
                    Framing::Length(0)
                } else {
                    head.1
                };
                self.head = Some((status, head.0, framing));
                self.body.clear();
            }
            let (status, close, framing) = self.head.expect("read above");
            let body = match framing {
                Framing::Length(n) => {
                    if buf.len() < n {
                        return Ok(None);
                    }
                    buf.split_to(n).freeze()
                }
                Framing::Chunked => match self.chunks(buf)? {
                    true => std::mem::take(&mut self.body).freeze(),
                    false => return Ok(None),
                },
                Framing::UntilClose => {
                    if buf.len() > ANSWER_LIMIT {
                        return Err(AnswerError::BodyTooLong);
                    }
                    return Ok(None);
                }
            };
            self.head = None;
            return Ok(Some(Answer {
                status,
                body,
                close,
            }));
        }
    }

    /// At the close: the answer whose body ran to it, if one was being read.
    fn at_close(&mut self, buf: &mut BytesMut) -> Option<Answer> {
        match self.head.take()? {
            (status, _, Framing::UntilClose) => Some(Answer {
                status,
                body: buf.split().freeze(),
                close: true,
            }),
            _ => None,
        }
    }

    /// Reads chunks from `buf` into the body; true once the last chunk (and
    /// the trailers) are read.
    fn chunks(&mut self, buf: &mut BytesMut) -> Result<bool, AnswerError> {
        loop {
            let Some(end) = find_crlf(buf) else {
                return if buf.len() > 1024 {
                    Err(AnswerError::BadChunk)
                } else {
                    Ok(false)
                };
            };
            let line = &buf[..end];
            // Chunk extensions (";name=value") are allowed and ignored.
            let size = line.split(|&b| b == b';').next().unwrap_or_default();
            let size = std::str::from_utf8(size)
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.len() <= 8)
                .and_then(|s| usize::from_str_radix(s, 16).ok())
                .ok_or(AnswerError::BadChunk)?;
            if size == 0 {
                // Trailers, up to the empty line.
                let mut at = end + 2;
                loop {
                    let Some(n) = find_crlf(&buf[at..]) else {
                        return Ok(false);
                    };
                    if n == 0 {
                        buf.advance(at + 2);
                        return Ok(true);
                    }
                    at += n + 2;
                }
            }
            if self.body.len() + size > ANSWER_LIMIT {
                return Err(AnswerError::BodyTooLong);
            }
            let need = end + 2 + size + 2;
            if buf.len() < need {
                return Ok(false);
            }
            if &buf[need - 2..need] != b"\r\n" {
                return Err(AnswerError::BadChunk);
            }
            self.body.extend_from_slice(&buf[end + 2..end + 2 + size]);
            buf.advance(need);
        }
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// Whether the connection closes after this answer, and how its body ends.
fn read_head(response: &httparse::Response) -> Result<(bool, Framing), AnswerError> {
    let mut length = None;
    let mut chunked = false;
    // HTTP/1.0 closes unless it says keep-alive; HTTP/1.1 keeps alive
    // unless it says close.
    let mut close = response.version == Some(0);
    for h in response.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or_default().trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: usize = value.parse().map_err(|_| AnswerError::BadLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(AnswerError::BadLength);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return Err(AnswerError::Encoding(value.to_string()));
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            for word in value.split(',').map(str::trim) {
                if word.eq_ignore_ascii_case("close") {
                    close = true;
                } else if word.eq_ignore_ascii_case("keep-alive") && response.version == Some(0) {
                    close = false;
                }
            }
        }
    }
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) if n > ANSWER_LIMIT => return Err(AnswerError::BodyTooLong),
        (false, Some(n)) => Framing::Length(n),
        (false, None) => {
            close = true;
            Framing::UntilClose
        }
    };
    Ok((close, framing))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::{AnswerError, AnswerParser};

    fn parse_all(input: &[u8]) -> Result<Vec<(u16, Vec<u8>, bool)>, AnswerError> {
        let mut buf = BytesMut::from(input);
        let mut p = AnswerParser::default();
        let mut out = Vec::new();
        while let Some(a) = p.parse(&mut buf)? {
            out.push((a.status, a.body.to_vec(), a.close));
        }
        if let Some(a) = p.at_close(&mut buf) {
            out.push((a.status, a.body.to_vec(), a.close));
        }
        Ok(out)
    }

    #[test]
    fn pipelined_answers_come_apart_in_order() {
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 500 No\r\ncontent-length: 3\r\n\r\nbad";
        assert_eq!(
            parse_all(two).unwrap(),
            vec![(200, b"ok".to_vec(), false), (500, b"bad".to_vec(), false)]
        );
    }

    #[test]
    fn any_split_of_the_bytes_gives_the_same_answers() {
        let all = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n1\r\nd\r\n0\r\nT: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nz";
        let want = parse_all(all).unwrap();
        assert_eq!(
            want,
            vec![(200, b"abcd".to_vec(), false), (200, b"z".to_vec(), true)]
        );
        for cut in 1..all.len() {
            let mut buf = BytesMut::new();
            let mut p = AnswerParser::default();
            let mut got = Vec::new();
            for part in [&all[..cut], &all[cut..]] {
                buf.extend_from_slice(part);
                while let Some(a) = p.parse(&mut buf).unwrap() {
                    got.push((a.status, a.body.to_vec(), a.close));
                }
            }
            assert_eq!(got, want, "split at {cut}");
        }
    }

    #[test]
    fn http_1_0_and_unframed_bodies_end_with_the_connection() {
        assert_eq!(
            parse_all(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx").unwrap(),
            vec![(200, b"x".to_vec(), true)]
        );
        assert_eq!(
            parse_all(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx")
                .unwrap(),
            vec![(200, b"x".to_vec(), false)]
        );
        assert_eq!(
            parse_all(b"HTTP/1.1 200 OK\r\n\r\nuntil the end").unwrap(),
            vec![(200, b"until the end".to_vec(), true)]
        );
    }

    #[test]
    fn malformed_answers_are_refused() {
        let bad: [(&[u8], AnswerError); 5] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                AnswerError::BadLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                AnswerError::BadLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                AnswerError::Encoding("gzip".into()),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                AnswerError::BadChunk,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
                AnswerError::BodyTooLong,
            ),
        ];
        for (input, want) in bad {
            assert_eq!(
                parse_all(input),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert!(matches!(
            parse_all(b"SMTP ready\r\n\r\n"),
            Err(AnswerError::Head(_))
        ));
    }
}
