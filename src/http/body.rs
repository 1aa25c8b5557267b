//! Reads a request body up to a size limit and within a time limit: a too-large `Content-Length`
//! is refused before reading, a body that grows past the limit is refused at the chunk that
//! crosses it, and a body that stalls is refused when the time is up. Each refusal closes the
//! connection (see `error`), so nothing more of that body is read.

use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::web::{self, Bytes, BytesMut};
use futures_util::StreamExt;

use super::WebhookError;

pub(super) async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, WebhookError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(WebhookError::TooLarge { limit });
    }
    let read = async {
        let mut body = BytesMut::with_capacity(declared.unwrap_or(4096).min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| WebhookError::Payload)?;
            if body.len() + chunk.len() > limit {
                return Err(WebhookError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    let result = tokio::time::timeout(timeout, read).await.unwrap_or(Err(WebhookError::BodyTimeout { after: timeout }));
    if result.is_err() {
        hold_until_answered(payload);
    }
    result
}

/// Keeps an unfinished body's receiver alive while the refusal is sent. actix drains a dropped
/// chunked body to its end to reuse the connection (200 MiB read for nothing, or forever for a
/// stalled one); with the receiver still there it closes the connection after the answer.
fn hold_until_answered(payload: web::Payload) {
    actix_web::rt::spawn(async move {
        actix_web::rt::time::sleep(Duration::from_secs(5)).await;
        drop(payload);
    });
}
