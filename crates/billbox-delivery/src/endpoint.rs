//! One billing server, reached with HTTP POST over pipelined keep-alive
//! connections ([`crate::http::Pipeline`]), over TLS for `https://` servers,
//! each body signed when the server has a `secret_key`.
//!
//! An endpoint keeps one connection per *lane* (a destination sends each
//! port's packets on the same lane, so they reach the server in order);
//! a lane's connection is made when a request needs it and dropped after a
//! failure (a timeout, a broken connection, an answer that is not HTTP).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use billbox_config::{SecretKey, ServerSecurity, ServerUrl, TlsFileError};
use billbox_wire::{delivery_verdict, Reason, Verdict, SIGNATURE_HEADER};
use bytes::{BufMut, Bytes, BytesMut};
use rustls::pki_types::ServerName;

use crate::http::{HttpError, Pipeline};

pub use crate::http::ANSWER_LIMIT;

/// Why a POST did not deliver.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting, sending or reading the answer failed.
    #[error("{0}")]
    Http(#[source] HttpError),
    /// The TLS handshake or connection failed: the server's certificate
    /// does not verify, or the server refused billbox's.
    #[error("TLS failed: {hint}: {source}")]
    Tls {
        /// What it means for the operator.
        hint: &'static str,
        #[source]
        source: rustls::Error,
    },
    #[error("not acknowledged: {0}")]
    Refused(Reason),
    /// The server's TLS files could not be read when the endpoint was
    /// made (they were valid when the configuration was loaded).
    #[error("TLS settings unusable: {key}: {source}", key = .0.key(), source = .0)]
    TlsFiles(#[source] Arc<TlsFileError>),
}

impl PostError {
    /// The server closed the connection after answering an earlier
    /// request, so this one was never taken up: send it again, without
    /// counting a failed attempt.
    pub fn not_taken(&self) -> bool {
        matches!(self, PostError::Http(HttpError::NotTaken))
    }

    /// Whether the connection the request went on is unusable now (every
    /// other request on it fails too).
    pub fn broke_connection(&self) -> bool {
        !matches!(self, PostError::Refused(_))
    }
}

/// A POST's outcome, once the answer is in.
pub type PostFuture = Pin<Box<dyn Future<Output = Result<(), PostError>>>>;

/// How to reach the server: plain TCP, or TLS with this configuration.
#[derive(Clone)]
enum Transport {
    Plain,
    Tls(tokio_rustls::TlsConnector, ServerName<'static>),
}

/// A billing server.
pub struct Endpoint {
    url: ServerUrl,
    transport: Result<Transport, Arc<TlsFileError>>,
    timeout: Duration,
    secret_key: Option<SecretKey>,
    /// The start of every request: request line, Host, fixed headers.
    head: Bytes,
    /// Each lane's connection, once made.
    lanes: Rc<RefCell<Vec<Option<Pipeline>>>>,
}

impl Endpoint {
    /// A server reached at `url`; `timeout` bounds each whole request
    /// (connect, TLS handshake, send, answer and its body, and the wait
    /// behind the requests before it on its connection). An `https://`
    /// server is reached with the TLS files of `security` (its `ca_file`
    /// or the built-in roots, and its client certificate, if any), read
    /// now; when they cannot be, every post fails with
    /// [`PostError::TlsFiles`]. With a `secret_key`, every body is signed.
    pub fn new(url: ServerUrl, security: &ServerSecurity, timeout: Duration) -> Endpoint {
        let transport = if url.is_https() {
            crate::tls::client_config(&security.tls).map(|config| {
                let host = url.host().trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(host.to_string())
                    .unwrap_or_else(|_| ServerName::try_from("invalid.invalid").expect("a name"));
                Transport::Tls(tokio_rustls::TlsConnector::from(config), name)
            })
        } else {
            Ok(Transport::Plain)
        };
        if let Err(e) = &transport {
            tracing::error!(url = %url, error = %e, key = e.key(), "The server's TLS files are unusable.");
        }
        let u = url.url();
        let mut target = u.path().to_string();
        if let Some(q) = u.query() {
            target.push('?');
            target.push_str(q);
        }
        let host = match u.port() {
            Some(port) => format!("{}:{port}", url.host()),
            None => url.host().to_string(),
        };
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: billbox/{}\r\n\
             Content-Type: text/xml; charset=utf-8\r\n",
            env!("CARGO_PKG_VERSION")
        );
        Endpoint {
            secret_key: security.secret_key.clone(),
            url,
            transport: transport.map_err(Arc::new),
            timeout,
            head: Bytes::from(head),
            lanes: Rc::default(),
        }
    }

    pub fn url(&self) -> &ServerUrl {
        &self.url
    }

    /// The whole request posting `body`: with a `secret_key`, an AG
    /// transaction packet (`ADD_REC`) gets its `SIGNATURE` element first,
    /// and the body then an `X-Billbox-Signature` header
    /// (`docs/security.md`).
    fn request(&self, body: &[u8]) -> Bytes {
        let signed;
        let (body, signature) = match &self.secret_key {
            Some(key) => {
                signed = billbox_wire::sign_transaction_packet(key.expose(), body);
                let body = signed.as_deref().unwrap_or(body);
                (
                    body,
                    Some(billbox_wire::signature_value(key.expose(), body)),
                )
            }
            None => (body, None),
        };
        let mut out = BytesMut::with_capacity(self.head.len() + 128 + body.len());
        out.put_slice(&self.head);
        if let Some(value) = signature {
            out.put_slice(SIGNATURE_HEADER.as_bytes());
            out.put_slice(b": ");
            out.put_slice(value.as_bytes());
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"Content-Length: ");
        out.put_slice(body.len().to_string().as_bytes());
        out.put_slice(b"\r\n\r\n");
        out.put_slice(body);
        out.freeze()
    }

    /// The lane's connection, made now if it has none (or it ended).
    fn pipeline<'a>(
        &self,
        lanes: &'a mut Vec<Option<Pipeline>>,
        lane: usize,
    ) -> Result<&'a Pipeline, PostError> {
        let transport = self
            .transport
            .as_ref()
            .map_err(|e| PostError::TlsFiles(e.clone()))?
            .clone();
        if lanes.len() <= lane {
            lanes.resize_with(lane + 1, || None);
        }
        let slot = &mut lanes[lane];
        if slot.as_ref().is_none_or(Pipeline::is_closed) {
            let addr = format!("{}:{}", self.url.host(), self.url.port());
            *slot = Some(match transport {
                Transport::Plain => Pipeline::start(async move {
                    let (tcp, socket) = connect_tcp(&addr).await?;
                    Ok((tcp, Some(socket)))
                }),
                Transport::Tls(connector, name) => Pipeline::start(async move {
                    let (tcp, socket) = connect_tcp(&addr).await?;
                    Ok((connector.connect(name, tcp).await?, Some(socket)))
                }),
            });
        }
        Ok(slot.as_ref().expect("made above"))
    }

    /// Queues a POST of `body` on `lane` (requests on one lane reach the
    /// server in the order they are queued) and returns its outcome's
    /// future: `Ok` only when the server acknowledged it. A request that
    /// breaks its connection (no answer in time, a connection error, an
    /// answer that is not HTTP) drops that connection; the next request
    /// on the lane makes a new one.
    pub fn send(&self, lane: usize, body: &[u8]) -> PostFuture {
        let request = self.request(body);
        let answer = {
            let mut lanes = self.lanes.borrow_mut();
            match self.pipeline(&mut lanes, lane) {
                Ok(p) => p.send(request),
                Err(e) => return Box::pin(async move { Err(e) }),
            }
        };
        let (lanes, timeout) = (Rc::downgrade(&self.lanes), self.timeout);
        Box::pin(async move {
            let result = match tokio::time::timeout(timeout, answer).await {
                Err(_) => Err(PostError::Timeout(timeout)),
                Ok(Err(e)) => Err(match e.io().and_then(tls_reason) {
                    Some((hint, source)) => PostError::Tls { hint, source },
                    None => PostError::Http(e),
                }),
                Ok(Ok(answer)) => match delivery_verdict(answer.status, &answer.body) {
                    Verdict::Delivered => Ok(()),
                    Verdict::NotDelivered(reason) => Err(PostError::Refused(reason)),
                },
            };
            if let Err(e) = &result {
                if e.broke_connection() && !e.not_taken() {
                    if let Some(lanes) = lanes.upgrade() {
                        if let Some(slot) = lanes.borrow_mut().get_mut(lane) {
                            *slot = None;
                        }
                    }
                }
            }
            result
        })
    }

    /// Posts one packet on lane 0; `Ok` only when the server acknowledged
    /// it.
    pub async fn post(&self, body: Bytes) -> Result<(), PostError> {
        self.send(0, &body).await
    }
}

/// A TCP connection to `addr` with `TCP_NODELAY` (a request is not held
/// back for the previous one's ACK), and a second handle on its socket
/// (for [`crate::http::quick_acks`]).
async fn connect_tcp(addr: &str) -> std::io::Result<(tokio::net::TcpStream, std::net::TcpStream)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let std = tcp.into_std()?;
    let socket = std.try_clone()?;
    Ok((tokio::net::TcpStream::from_std(std)?, socket))
}

/// What went wrong with TLS, when `io` is a TLS failure: what it means for
/// the operator, and the rustls error.
fn tls_reason(io: &std::io::Error) -> Option<(&'static str, rustls::Error)> {
    let e = io.get_ref()?.downcast_ref::<rustls::Error>()?;
    let hint = match e {
        rustls::Error::InvalidCertificate(_) => {
            "the server's certificate does not verify; check the server's certificate and ca_file"
        }
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired)
        | rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure) => {
            "the server refused the connection; it may require a client certificate \
             (client_cert, client_key)"
        }
        rustls::Error::AlertReceived(
            rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::UnknownCA
            | rustls::AlertDescription::CertificateUnknown
            | rustls::AlertDescription::CertificateExpired
            | rustls::AlertDescription::CertificateRevoked
            | rustls::AlertDescription::AccessDenied,
        ) => "the server refused billbox's client certificate (client_cert)",
        _ => "the TLS connection failed",
    };
    Some((hint, e.clone()))
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    use billbox_config::{SecretKey, ServerSecurity, ServerUrl};
    use bytes::Bytes;

    use super::Endpoint;

    const ACK: &str =
        "<USG COMMAND=\"RMTLOG_ACK\"><ACK_VALUE>OK</ACK_VALUE><ERROR_CODE>1</ERROR_CODE></USG>";
    const KEY: &str = "0123456789abcdef-test";

    /// Posts `body` to a one-request server; returns the request's
    /// signature header (if any) and body as the server got them.
    fn post_once(key: Option<&str>, body: &[u8]) -> (Option<String>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut length, mut signature) = (0, None);
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap_or((&line, ""));
                let value = value.trim().to_string();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().unwrap();
                } else if name.eq_ignore_ascii_case("x-billbox-signature") {
                    signature = Some(value);
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut conn = conn;
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{ACK}",
                ACK.len()
            )
            .unwrap();
            (signature, body)
        });
        let url: ServerUrl = format!("http://{addr}/billing").parse().unwrap();
        let security = ServerSecurity {
            secret_key: key.map(|key| SecretKey::new(key).unwrap()),
            ..ServerSecurity::default()
        };
        let endpoint = Endpoint::new(url, &security, Duration::from_secs(10));
        let body = Bytes::copy_from_slice(body);
        let result = actix_rt::System::new().block_on(endpoint.post(body));
        assert!(result.is_ok(), "{result:?}");
        server.join().unwrap()
    }

    #[test]
    fn bodies_are_signed_only_with_a_key() {
        let body = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<USG RMTLOG_COMMAND=\"ADD_CDR\"/>";
        let (signature, got) = post_once(Some(KEY), body);
        assert_eq!(got, body);
        assert_eq!(
            signature,
            Some(billbox_wire::signature_value(KEY.as_bytes(), body))
        );
        assert_eq!(post_once(None, body), (None, body.to_vec()));
    }

    #[test]
    fn transactions_carry_their_signature_inside_too() {
        let body = b"<USG RMTLOG_COMMAND=\"ADD_REC\">\n<REC_NUM>00923</REC_NUM>\n</USG>";
        let (signature, got) = post_once(Some(KEY), body);
        assert_eq!(
            got,
            billbox_wire::sign_transaction_packet(KEY.as_bytes(), body).unwrap()
        );
        assert_eq!(
            billbox_wire::verify_transaction_signature(KEY.as_bytes(), &got),
            Ok(true)
        );
        assert_eq!(
            signature,
            Some(billbox_wire::signature_value(KEY.as_bytes(), &got))
        );
        // Without a key the AG's packet goes as it is.
        assert_eq!(post_once(None, body).1, body);
    }
}
