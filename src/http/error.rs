//! The receiver's single error type and its mapping to HTTP statuses: 401 for signature problems,
//! 413 for oversized bodies, 400 for a broken request stream, 408 for a body that stalls, 503 when the spool cannot take the
//! delivery. Bodies are short JSON `{"error": code, "message": text}`; a 5xx body stays generic.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::oncehub::signature::SignatureError;
use crate::spool::SpoolError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum WebhookError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("the body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body could not be read")]
    Payload,
    #[error("the request body did not arrive within {after:?}")]
    BodyTimeout { after: std::time::Duration },
    #[error("the delivery cannot be kept right now")]
    Unavailable(#[from] SpoolError),
}

impl WebhookError {
    /// The machine-readable reason: the response body's `error` and the rejection metric's label.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            WebhookError::Signature(SignatureError::Missing) => "missing_signature",
            WebhookError::Signature(SignatureError::Malformed | SignatureError::WrongLength(_)) => {
                "malformed_signature"
            }
            WebhookError::Signature(SignatureError::Stale) => "stale_signature",
            WebhookError::Signature(SignatureError::Mismatch) => "invalid_signature",
            WebhookError::TooLarge { .. } => "body_too_large",
            WebhookError::Payload => "bad_request_body",
            WebhookError::BodyTimeout { .. } => "body_timeout",
            WebhookError::Unavailable(SpoolError::Full { .. }) => "spool_full",
            WebhookError::Unavailable(SpoolError::DiskFull) => "disk_full",
            WebhookError::Unavailable(SpoolError::Closed) => "shutting_down",
            WebhookError::Unavailable(_) => "unavailable",
        }
    }
}

impl ResponseError for WebhookError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebhookError::Signature(_) => StatusCode::UNAUTHORIZED,
            WebhookError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookError::Payload => StatusCode::BAD_REQUEST,
            WebhookError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            WebhookError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        let mut response = HttpResponse::build(self.status_code());
        match self {
            WebhookError::Unavailable(_) => {
                response.insert_header(("Retry-After", "30"));
            }
            // The rest of such a body is not wanted: close rather than read it to its end.
            WebhookError::TooLarge { .. } | WebhookError::Payload | WebhookError::BodyTimeout { .. } => {
                response.force_close();
            }
            WebhookError::Signature(_) => {}
        }
        response.json(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_failure() {
        assert_eq!(WebhookError::from(SignatureError::Stale).status_code(), StatusCode::UNAUTHORIZED);
        assert_eq!(WebhookError::TooLarge { limit: 1 }.status_code(), StatusCode::PAYLOAD_TOO_LARGE);
        let r = WebhookError::Unavailable(SpoolError::Closed).error_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().contains_key("retry-after"));
    }
}
