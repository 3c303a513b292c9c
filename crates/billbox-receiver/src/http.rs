//! The receiver's HTTP/1.1 server: hyper on a thread of its own.
//!
//! One thread, one single-threaded tokio runtime, one task per connection
//! (plain or TLS). Keep-alive and pipelining: a client may send requests
//! back to back on one connection; they are answered in order, and the
//! answers that are ready go out in one write. What a request means is
//! [`Packets::answer`]'s business (`server.rs`); this module only carries
//! bytes.
//!
//! Stopping: [`Control`] says how. Graceful: no new connections, idle
//! connections close, requests in progress are answered (for at most
//! [`GRACE`]). Now: every connection is closed at once, answered or not (a
//! server that goes down).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use billbox_wire::{MAX_PACKET_BYTES, SIGNATURE_HEADER};

/// How long a graceful stop waits for requests in progress.
pub(crate) const GRACE: Duration = Duration::from_secs(30);

/// How long a client may take to send a request's head (and how long an
/// idle keep-alive connection stays open).
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections waiting to be accepted.
const BACKLOG: i32 = 1024;

/// What the server is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Serve,
    StopGraceful,
    StopNow,
}

/// One request as the receiver sees it.
pub(crate) struct PacketRequest<'a> {
    pub post: bool,
    pub signature: Option<&'a [u8]>,
    pub body: &'a [u8],
    pub local_ip: IpAddr,
    pub peer: SocketAddr,
}

/// What answers requests.
pub(crate) trait Packets: Send + Sync + 'static {
    /// The status and XML body of the answer to `req`.
    fn answer(&self, req: PacketRequest<'_>) -> (StatusCode, Vec<u8>);
    /// The answer to a request whose body is larger than
    /// [`MAX_PACKET_BYTES`] or could not be read.
    fn refuse_body(&self, local_ip: IpAddr, too_large: bool) -> (StatusCode, Vec<u8>);
}

/// A server running on its thread.
pub(crate) struct Served {
    pub addr: SocketAddr,
    pub control: watch::Sender<Control>,
    /// `true` once every connection is closed and the listener is gone.
    pub done: watch::Receiver<bool>,
}

/// Binds `listen` (errors come back here, before any thread starts) and
/// serves on a thread of its own.
pub(crate) fn start<P: Packets>(
    listen: &str,
    tls: Option<rustls::ServerConfig>,
    packets: Arc<P>,
) -> std::io::Result<Served> {
    let listener = bind(listen)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (control, control_rx) = watch::channel(Control::Serve);
    let (done_tx, done) = watch::channel(false);
    let tls = tls.map(|c| TlsAcceptor::from(Arc::new(c)));
    std::thread::Builder::new()
        .name("billbox-receiver".into())
        .spawn(move || {
            runtime.block_on(accept(listener, tls, packets, control_rx));
            done_tx.send_replace(true);
        })?;
    Ok(Served {
        addr,
        control,
        done,
    })
}

/// A listening socket on `listen` (`host:port`), address reuse on, so a
/// receiver stopped and started again gets its port back at once.
fn bind(listen: &str) -> std::io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let mut last = None;
    for addr in listen.to_socket_addrs()? {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        match socket
            .bind(&addr.into())
            .and_then(|()| socket.listen(BACKLOG))
        {
            Ok(()) => return Ok(socket.into()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{listen}: no address to listen on"),
        )
    }))
}

/// The stop asked for, once one is (`StopNow` when the [`Served`] is gone).
async fn stopped(control: &mut watch::Receiver<Control>) -> Control {
    loop {
        let now = *control.borrow_and_update();
        if now != Control::Serve {
            return now;
        }
        if control.changed().await.is_err() {
            return Control::StopNow;
        }
    }
}

async fn accept<P: Packets>(
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    packets: Arc<P>,
    mut control: watch::Receiver<Control>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "The receiver cannot listen; it answers nothing.");
            return;
        }
    };
    let mut connections = JoinSet::new();
    let how = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(
                        stream,
                        peer,
                        tls.clone(),
                        packets.clone(),
                        control.clone(),
                    ));
                }
                Err(e) => {
                    // Out of file descriptors and the like: try again soon.
                    tracing::warn!(error = %e, "The receiver could not accept a connection.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            how = stopped(&mut control) => break how,
        }
    };
    drop(listener);
    if how == Control::StopGraceful {
        let all_closed = async { while connections.join_next().await.is_some() {} };
        tokio::select! {
            done = tokio::time::timeout(GRACE, all_closed) => {
                if done.is_err() {
                    tracing::warn!(
                        open = connections.len(),
                        "The receiver's graceful stop timed out; closing the connections still open."
                    );
                }
            }
            // A stop at once cuts the graceful one short.
            _ = stopped_now(&mut control) => {}
        }
    }
    connections.shutdown().await;
}

/// Resolves once a stop at once is asked (or the [`Served`] is gone).
async fn stopped_now(control: &mut watch::Receiver<Control>) {
    loop {
        if *control.borrow_and_update() == Control::StopNow {
            return;
        }
        if control.changed().await.is_err() {
            return;
        }
    }
}

async fn connection<P: Packets>(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    packets: Arc<P>,
    mut control: watch::Receiver<Control>,
) {
    let local_ip = match stream.local_addr() {
        Ok(a) => a.ip(),
        Err(_) => return,
    };
    // Answers go out as soon as they are written.
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = tls else {
        return serve(stream, peer, local_ip, packets, control).await;
    };
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
    tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => serve(stream, peer, local_ip, packets, control).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "A TLS handshake failed."),
            Err(_) => tracing::debug!(%peer, "A TLS handshake timed out."),
        },
        _ = stopped(&mut control) => {}
    }
}

async fn serve<P, I>(
    io: I,
    peer: SocketAddr,
    local_ip: IpAddr,
    packets: Arc<P>,
    mut control: watch::Receiver<Control>,
) where
    P: Packets,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let packets = packets.clone();
        async move { Ok::<_, Infallible>(respond(&*packets, req, peer, local_ip).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .pipeline_flush(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "A connection to the receiver ended with an error.");
            }
            return;
        }
        how = stopped(&mut control) => {
            if how == Control::StopNow {
                return;
            }
        }
    }
    // Graceful: finish what is in progress, then close (unless a stop at
    // once comes meanwhile).
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = conn => {}
        _ = stopped_now(&mut control) => {}
    }
}

async fn respond<P: Packets>(
    packets: &P,
    req: Request<Incoming>,
    peer: SocketAddr,
    local_ip: IpAddr,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let post = parts.method == Method::POST;
    let (status, xml) = if !post {
        packets.answer(PacketRequest {
            post,
            signature: None,
            body: &[],
            local_ip,
            peer,
        })
    } else if body.size_hint().lower() > MAX_PACKET_BYTES as u64 {
        // Its Content-Length says so: refused before it is read.
        packets.refuse_body(local_ip, true)
    } else {
        match Limited::new(body, MAX_PACKET_BYTES).collect().await {
            Ok(collected) => {
                let body = collected.to_bytes();
                let signature = parts.headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes());
                packets.answer(PacketRequest {
                    post,
                    signature,
                    body: &body,
                    local_ip,
                    peer,
                })
            }
            Err(e) => packets.refuse_body(local_ip, e.downcast_ref::<LengthLimitError>().is_some()),
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(xml)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    response
}
