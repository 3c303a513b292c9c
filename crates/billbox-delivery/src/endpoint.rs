//! One billing server, reached with HTTP POST over a keep-alive connection.

use std::time::Duration;

use billbox_config::ServerUrl;
use billbox_wire::{delivery_verdict, Reason, Verdict};
use bytes::Bytes;

/// The largest answer body read from a server (an ack is a few hundred bytes).
pub const ANSWER_LIMIT: usize = 64 * 1024;

/// Why a POST did not deliver.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PostError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("sending failed: {0}")]
    Send(String),
    #[error("reading the answer failed: {0}")]
    Answer(String),
    #[error("not acknowledged: {0}")]
    Refused(Reason),
}

/// A billing server.
pub struct Endpoint {
    url: ServerUrl,
    client: awc::Client,
    timeout: Duration,
}

impl Endpoint {
    /// A server reached at `url`; `timeout` bounds each whole request
    /// (connect, send, answer and its body).
    pub fn new(url: ServerUrl, timeout: Duration) -> Endpoint {
        let connector = awc::Connector::new().timeout(timeout).limit(8);
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(timeout)
            .disable_redirects()
            .finish();
        Endpoint {
            url,
            client,
            timeout,
        }
    }

    pub fn url(&self) -> &ServerUrl {
        &self.url
    }

    /// Posts one packet; `Ok` only when the server acknowledged it.
    pub async fn post(&self, body: Bytes) -> Result<(), PostError> {
        let exchange = async {
            let mut answer = self
                .client
                .post(self.url.as_str())
                .insert_header(("Content-Type", "text/xml; charset=utf-8"))
                .send_body(body)
                .await
                .map_err(|e| PostError::Send(e.to_string()))?;
            let status = answer.status().as_u16();
            let body = answer
                .body()
                .limit(ANSWER_LIMIT)
                .await
                .map_err(|e| PostError::Answer(e.to_string()))?;
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
