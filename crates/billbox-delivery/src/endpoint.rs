//! One billing server, reached with HTTP POST over a keep-alive connection,
//! over TLS for `https://` servers, each body signed when the server has a
//! `secret_key`.

use std::sync::Arc;
use std::time::Duration;

use awc::error::{ConnectError, PayloadError, SendRequestError};
use billbox_config::{SecretKey, ServerSecurity, ServerUrl, TlsFileError};
use billbox_wire::{delivery_verdict, Reason, Verdict, SIGNATURE_HEADER};
use bytes::Bytes;

/// The largest answer body read from a server (an ack is a few hundred bytes).
pub const ANSWER_LIMIT: usize = 64 * 1024;

/// Why a POST did not deliver.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("sending failed: {0}")]
    Send(#[source] SendRequestError),
    #[error("reading the answer failed: {0}")]
    Answer(#[source] PayloadError),
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

/// A billing server.
pub struct Endpoint {
    url: ServerUrl,
    client: Result<awc::Client, Arc<TlsFileError>>,
    timeout: Duration,
    secret_key: Option<SecretKey>,
}

impl Endpoint {
    /// A server reached at `url`; `timeout` bounds each whole request
    /// (connect, TLS handshake, send, answer and its body). An `https://`
    /// server is reached with the TLS files of `security` (its `ca_file`
    /// or the built-in roots, and its client certificate, if any), read
    /// now; when they cannot be, every post fails with
    /// [`PostError::TlsFiles`]. With a `secret_key`, every body is signed.
    pub fn new(url: ServerUrl, security: &ServerSecurity, timeout: Duration) -> Endpoint {
        let client = (|| -> Result<awc::Client, TlsFileError> {
            let mut connector = awc::Connector::new()
                .timeout(timeout)
                .handshake_timeout(timeout)
                .limit(8);
            if url.is_https() {
                connector = connector.rustls_0_23(crate::tls::client_config(&security.tls)?);
            }
            Ok(awc::Client::builder()
                .connector(connector)
                .timeout(timeout)
                .disable_redirects()
                .finish())
        })();
        if let Err(e) = &client {
            tracing::error!(url = %url, error = %e, key = e.key(), "The server's TLS files are unusable.");
        }
        Endpoint {
            secret_key: security.secret_key.clone(),
            url,
            client: client.map_err(Arc::new),
            timeout,
        }
    }

    pub fn url(&self) -> &ServerUrl {
        &self.url
    }

    /// Posts one packet; `Ok` only when the server acknowledged it.
    ///
    /// With a `secret_key`, an AG transaction packet (`ADD_REC`) gets its
    /// `SIGNATURE` element first, and the body then an
    /// `X-Billbox-Signature` header (`docs/security.md`).
    pub async fn post(&self, body: Bytes) -> Result<(), PostError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| PostError::TlsFiles(e.clone()))?;
        let mut request = client
            .post(self.url.as_str())
            .insert_header(("Content-Type", "text/xml; charset=utf-8"));
        let body = match &self.secret_key {
            Some(key) => {
                let body = billbox_wire::sign_transaction_packet(key.expose(), &body)
                    .map_or(body, Bytes::from);
                let value = billbox_wire::signature_value(key.expose(), &body);
                request = request.insert_header((SIGNATURE_HEADER, value));
                body
            }
            None => body,
        };
        let exchange = async {
            let mut answer = request
                .send_body(body)
                .await
                .map_err(|e| match tls_failure(&e) {
                    Some((hint, source)) => PostError::Tls { hint, source },
                    None => PostError::Send(e),
                })?;
            let status = answer.status().as_u16();
            let body = answer.body().limit(ANSWER_LIMIT).await.map_err(|e| {
                let io = match &e {
                    PayloadError::Io(io) | PayloadError::Incomplete(Some(io)) => Some(io),
                    _ => None,
                };
                match io.and_then(tls_reason) {
                    Some((hint, source)) => PostError::Tls { hint, source },
                    None => PostError::Answer(e),
                }
            })?;
            match delivery_verdict(status, &body) {
                Verdict::Delivered => Ok(()),
                Verdict::NotDelivered(reason) => Err(PostError::Refused(reason)),
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(PostError::Timeout(self.timeout)))
    }
}

/// What went wrong with TLS, when `e` is a TLS failure: what it means for
/// the operator, and the rustls error.
fn tls_failure(e: &SendRequestError) -> Option<(&'static str, rustls::Error)> {
    let io = match e {
        SendRequestError::Connect(ConnectError::Io(io)) | SendRequestError::Send(io) => io,
        // A refusal after the handshake (TLS 1.3 checks the client's
        // certificate then) arrives while the answer is read.
        SendRequestError::Response(parse) => {
            std::error::Error::source(parse)?.downcast_ref::<std::io::Error>()?
        }
        _ => return None,
    };
    tls_reason(io)
}

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
