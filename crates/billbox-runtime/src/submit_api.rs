//! The submit API and AG relay of `[transactions]`: one HTTP listener.
//!
//! - `POST /v1/transactions` (JSON): a transaction from a hotspot portal,
//!   POS or PMS interface, answered `201` only after its flush; the same
//!   `id` again is answered from the store (`200`, or `409` with other
//!   content). `GET /v1/transactions/{id}`: what became of it.
//! - `POST` of an AG `ADD_REC` packet (`text/xml`, any path): stored in the
//!   relay stream and answered `RMTLOG_ACK` OK only after its flush.
//!
//! The handlers are thin: checking a submission, masking card data and the
//! stored form live in `billbox-transactions`; idempotency is decided by
//! the store actor (the one writer), in the same commit as the record.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::Addr;
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use billbox_config::TransactionsConfig;
use billbox_record::RecordFlags;
use billbox_store::{NewRecord, Store, DELIVERY_CURSOR, FILES_CURSOR};
use billbox_transactions::{
    mask_card_numbers, parse_submission, StoredTransaction, SubmitError as BadSubmission,
    RELAY_STREAM, SUBMIT_STREAM,
};
use billbox_wire::{decode_transaction, encode_ack, AckValue};
use futures_util::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::events::{RelayRefused, TransactionRefused};
use crate::messages::{OnConflict, Submit, SubmitError, Submitted};
use crate::store_actor::StoreActor;

/// The largest request body taken, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// What `Retry-After` says when the store is full, in seconds.
pub const RETRY_AFTER_SECS: u64 = 5;
/// The ERROR_CODE of a relayed packet that is not an `ADD_REC` billbox can read.
pub const RELAY_MALFORMED: i64 = 2;
/// The ERROR_CODE of a relayed packet whose signature does not verify, or
/// of a relay request without the token.
pub const RELAY_REFUSED: i64 = 4;
/// The ERROR_CODE of a relayed packet that could not be stored now.
pub const RELAY_NOT_STORED: i64 = 5;

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {addr} for transactions (transactions.listen): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("transactions.{key}: {why}")]
    Tls { key: &'static str, why: String },
}

struct Api {
    gateway: Arc<str>,
    config: TransactionsConfig,
    store: Store,
    store_actor: Addr<StoreActor>,
    /// Destinations whose acknowledgements `GET` reports: `delivery`, `cc:NAME`.
    destinations: Vec<String>,
}

/// The running listener.
pub struct SubmitApi {
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

impl SubmitApi {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking requests; requests in progress finish first.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

/// Starts the listener on the current actix system.
pub fn serve(
    gateway: &str,
    config: &TransactionsConfig,
    store: Store,
    store_actor: Addr<StoreActor>,
    destinations: Vec<String>,
) -> Result<SubmitApi, ApiError> {
    let api = web::Data::new(Api {
        gateway: Arc::from(gateway),
        config: config.clone(),
        store,
        store_actor,
        destinations,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(api.clone())
            .route("/v1/transactions", web::post().to(submit))
            .route("/v1/transactions/{id}", web::get().to(status))
            .default_service(web::to(relay))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5);
    let addr = config.listen;
    let bind_err = |source| ApiError::Bind { addr, source };
    let server = match &config.tls {
        Some((cert, key)) => server
            .bind_rustls_0_23(addr, tls_config(cert, key)?)
            .map_err(bind_err)?,
        None => server.bind(addr).map_err(bind_err)?,
    };
    let bound = server.addrs().first().copied().unwrap_or(addr);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    tracing::info!(listen = %bound, https = config.tls.is_some(), "The transaction submit API and AG relay are listening.");
    Ok(SubmitApi {
        addr: bound,
        handle,
    })
}

fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<rustls::ServerConfig, ApiError> {
    let tls = |(key, why): (&'static str, String)| ApiError::Tls { key, why };
    let file = |e: billbox_config::TlsFileError| tls((e.key(), e.to_string()));
    let chain = billbox_config::read_certificates("tls_cert", cert).map_err(file)?;
    let key = billbox_config::read_private_key("tls_key", key).map_err(file)?;
    rustls::ServerConfig::builder_with_provider(billbox_config::crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(("tls_cert", e.to_string())))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| tls(("tls_key", format!("does not fit tls_cert: {e}"))))
}

/// A JSON error answer naming the field, if any.
fn refuse(status: actix_web::http::StatusCode, error: &str, field: Option<&str>) -> HttpResponse {
    let mut body = json!({ "error": error });
    if let Some(f) = field {
        body["field"] = f.into();
    }
    HttpResponse::build(status).json(body)
}

/// Whether the request carries the configured token (always, when none is).
fn authorized(api: &Api, req: &HttpRequest) -> bool {
    let Some(token) = &api.config.token else {
        return true;
    };
    let sent = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .map(<[u8]>::trim_ascii);
    sent.is_some_and(|s| constant_time_eq(s, token.expose()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The body, or `None` when it is larger than [`MAX_BODY_BYTES`].
async fn read_body(mut payload: web::Payload) -> Result<Option<Vec<u8>>, actix_web::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

fn content_type_is(req: &HttpRequest, what: &[&str]) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| {
            what.contains(&v.as_str()) || v.ends_with("+json") && what.contains(&"application/json")
        })
}

fn too_large(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
}

/// The record's id as on the wire (`GATEWAY/PORT/SEQ@EPOCH`).
fn rec_id(api: &Api, port: &str, seq: u64) -> String {
    billbox_record::RecordId {
        gateway: api.gateway.clone(),
        port: Arc::from(port),
        seq,
        epoch: api.store.epoch_of(port, seq),
    }
    .to_string()
}

/// `POST /v1/transactions`.
async fn submit(api: web::Data<Api>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    use actix_web::http::StatusCode as S;
    let peer = req.peer_addr();
    if !authorized(&api, &req) {
        TransactionRefused {
            peer,
            status: 401,
            field: None,
            why: "missing or wrong token",
        }
        .emit();
        return refuse(
            S::UNAUTHORIZED,
            "missing or wrong token: send Authorization: Bearer <token>",
            None,
        );
    }
    if !content_type_is(&req, &["application/json"]) {
        TransactionRefused {
            peer,
            status: 415,
            field: None,
            why: "not JSON",
        }
        .emit();
        return refuse(
            S::UNSUPPORTED_MEDIA_TYPE,
            "send the transaction as JSON (Content-Type: application/json)",
            None,
        );
    }
    let body = match read_body(payload).await {
        _ if too_large(&req) => None,
        Ok(b) => b,
        Err(_) => return refuse(S::BAD_REQUEST, "the request body could not be read", None),
    };
    let Some(body) = body else {
        TransactionRefused {
            peer,
            status: 413,
            field: None,
            why: "body too large",
        }
        .emit();
        return refuse(
            S::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            None,
        );
    };
    let submission = match parse_submission(&body) {
        Ok(s) => s,
        Err(e) => {
            let status = match e {
                BadSubmission::NotJson => S::UNSUPPORTED_MEDIA_TYPE,
                _ => S::BAD_REQUEST,
            };
            // The error never holds card digits or a security code.
            let why = e.to_string();
            TransactionRefused {
                peer,
                status: status.as_u16(),
                field: e.field(),
                why: &why,
            }
            .emit();
            return refuse(status, &why, e.field());
        }
    };
    let stored = StoredTransaction::new(
        &submission,
        &api.config.usg_id,
        &api.config.property_id,
        chrono::Local::now().fixed_offset(),
    );
    let msg = Submit {
        port: Arc::from(SUBMIT_STREAM),
        record: NewRecord {
            received_us: crate::now_us(),
            flags: RecordFlags::NONE,
            bytes: stored.encode(),
        },
        id: submission.id.clone(),
        digest: submission.digest(),
        on_conflict: OnConflict::Refuse,
    };
    match api.store_actor.send(msg).await {
        Ok(Ok(Submitted { seq, new })) => {
            let status = if new { S::CREATED } else { S::OK };
            HttpResponse::build(status).json(json!({
                "rec_num": seq,
                "rec_id": rec_id(&api, SUBMIT_STREAM, seq),
                "stored": true,
            }))
        }
        Ok(Err(SubmitError::Conflict { seq })) => {
            TransactionRefused {
                peer,
                status: 409,
                field: Some("id"),
                why: "id stored with other content",
            }
            .emit();
            HttpResponse::Conflict().json(json!({
                "error": "this id is already stored with other content",
                "field": "id",
                "rec_num": seq,
            }))
        }
        Ok(Err(e)) => unavailable(&e.to_string()),
        Err(e) => unavailable(&e.to_string()),
    }
}

fn unavailable(why: &str) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()))
        .json(json!({ "error": format!("not stored: {why}"), "stored": false }))
}

/// `GET /v1/transactions/{id}`.
async fn status(api: web::Data<Api>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    use actix_web::http::StatusCode as S;
    if !authorized(&api, &req) {
        return refuse(
            S::UNAUTHORIZED,
            "missing or wrong token: send Authorization: Bearer <token>",
            None,
        );
    }
    let port = SUBMIT_STREAM;
    let (seq, _) = match api.store.lookup_id(port, &id) {
        Ok(Some(found)) => found,
        Ok(None) => {
            return refuse(
                S::NOT_FOUND,
                "no transaction with this id is stored",
                Some("id"),
            )
        }
        Err(e) => return unavailable(&e.to_string()),
    };
    let transaction = api
        .store
        .records(port, seq, seq)
        .next()
        .and_then(Result::ok)
        .and_then(|r| StoredTransaction::decode(&r.bytes).ok());
    let acks = api.store.acks(port, seq).unwrap_or_default();
    let at = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    let mut destinations = serde_json::Map::new();
    for name in &api.destinations {
        let ack = acks.iter().find(|(d, _, _)| d == name);
        let acknowledged = ack.is_some()
            || (name == "delivery" && api.store.cursor(port, DELIVERY_CURSOR).unwrap_or(0) >= seq);
        destinations.insert(
            name.clone(),
            json!({
                "acknowledged": acknowledged,
                "server": ack.map(|(_, s, _)| s.clone()),
                "at": ack.and_then(|(_, _, us)| at(*us)),
            }),
        );
    }
    HttpResponse::Ok().json(json!({
        "id": id.as_str(),
        "rec_num": seq,
        "rec_id": rec_id(&api, port, seq),
        "stored": true,
        "filed": api.store.cursor(port, FILES_CURSOR).unwrap_or(0) >= seq,
        // The record leaves the store once delivered and filed; its id stays.
        "transaction": transaction,
        "destinations": destinations,
    }))
}

/// An `RMTLOG_ACK` answer.
fn ack(
    req: &HttpRequest,
    status: actix_web::http::StatusCode,
    ok: bool,
    code: i64,
) -> HttpResponse {
    let ip = req.app_config().local_addr().ip().to_string();
    let value = if ok { AckValue::Ok } else { AckValue::Error };
    HttpResponse::build(status)
        .content_type("text/xml")
        .body(encode_ack(value, &ip, code))
}

/// Any other request: an AG's `ADD_REC` packet, relayed.
async fn relay(api: web::Data<Api>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    use actix_web::http::StatusCode as S;
    let peer = req.peer_addr();
    if req.method() != actix_web::http::Method::POST {
        return refuse(S::NOT_FOUND, "not found: POST /v1/transactions, GET /v1/transactions/{id}, or POST an ADD_REC packet", None);
    }
    if !content_type_is(&req, &["text/xml", "application/xml"]) {
        return refuse(
            S::UNSUPPORTED_MEDIA_TYPE,
            "send ADD_REC packets as text/xml, or transactions as JSON to /v1/transactions",
            None,
        );
    }
    let body = match read_body(payload).await {
        _ if too_large(&req) => None,
        Ok(b) => b,
        Err(_) => return ack(&req, S::BAD_REQUEST, false, RELAY_MALFORMED),
    };
    let Some(body) = body else {
        RelayRefused {
            peer,
            why: "body too large",
        }
        .emit();
        return ack(&req, S::PAYLOAD_TOO_LARGE, false, RELAY_MALFORMED);
    };
    // A card number in the packet never reaches the store.
    let (body, masked) = mask_card_numbers(&body);
    let tx = match decode_transaction(&body) {
        Ok(tx) => tx,
        Err(e) => {
            RelayRefused {
                peer,
                why: &e.without_contents(),
            }
            .emit();
            return ack(&req, S::BAD_REQUEST, false, RELAY_MALFORMED);
        }
    };
    let signed_ok = match &api.config.ag_secret_key {
        Some(key) => match billbox_wire::verify_transaction_signature(key.expose(), &body) {
            Ok(true) if masked == 0 => true,
            // Masking changed the bytes the AG signed: it cannot verify,
            // and forwarding the AG's signature would be wrong.
            Ok(true) => false,
            _ => false,
        },
        None => true,
    };
    if !signed_ok {
        RelayRefused {
            peer,
            why: "the packet's SIGNATURE does not verify with transactions.ag_secret_key",
        }
        .emit();
        return ack(&req, S::FORBIDDEN, false, RELAY_REFUSED);
    }
    if api.config.ag_secret_key.is_none() && !authorized(&api, &req) {
        RelayRefused {
            peer,
            why: "missing or wrong token",
        }
        .emit();
        return ack(&req, S::UNAUTHORIZED, false, RELAY_REFUSED);
    }
    let digest: [u8; 32] = Sha256::digest(&body).into();
    let msg = Submit {
        port: Arc::from(RELAY_STREAM),
        record: NewRecord {
            received_us: crate::now_us(),
            flags: RecordFlags::NONE,
            bytes: body.into_owned(),
        },
        id: format!("ag/{}/{}/{}", tx.usg_id, tx.property_id, tx.rec_num),
        digest,
        on_conflict: OnConflict::Store,
    };
    match api.store_actor.send(msg).await {
        Ok(Ok(_)) => ack(&req, S::OK, true, 1),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "A relayed AG packet was not stored; answering ERROR so the AG retries.");
            ack(&req, S::SERVICE_UNAVAILABLE, false, RELAY_NOT_STORED)
        }
        Err(e) => {
            tracing::warn!(error = %e, "A relayed AG packet was not stored; answering ERROR so the AG retries.");
            ack(&req, S::SERVICE_UNAVAILABLE, false, RELAY_NOT_STORED)
        }
    }
}
