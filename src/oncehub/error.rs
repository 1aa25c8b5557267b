//! The one error type of the OnceHub API client: what failed, in words a user can act on.
//!
//! Built from the API's `{type, message, param}` body and the HTTP status. The `Request-Id` of a
//! failed call is kept (and shown) so OnceHub support can find it. The API key never appears.

/// What kind of failure, from the status (and the body's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// 401: the key is wrong, revoked or missing.
    Unauthorized,
    /// 403: the plan has no API access.
    Forbidden,
    /// 404: no such resource.
    NotFound,
    /// 409: a conflict, e.g. a subscription name already taken.
    Conflict,
    /// 400 and other 4xx: the request was refused as invalid.
    Invalid,
    /// 429 on every attempt.
    RateLimited,
    /// 5xx on every attempt.
    Server,
    /// No answer: DNS, connection, TLS, timeout.
    Transport,
    /// An answer that is not what the API documents.
    Decode,
}

/// A failed OnceHub API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ApiErrorKind,
    pub status: Option<u16>,
    /// The API's own message (or the transport error's).
    pub message: String,
    /// The request field the API blames, if any.
    pub param: Option<String>,
    pub request_id: Option<String>,
}

impl ApiError {
    pub(crate) fn new(kind: ApiErrorKind, message: impl Into<String>) -> ApiError {
        ApiError { kind, status: None, message: message.into(), param: None, request_id: None }
    }

    fn what_to_do(&self) -> &'static str {
        match self.kind {
            ApiErrorKind::Unauthorized => "check --api-key / ONCEHUB_API_KEY (OnceHub: Settings > API & webhooks)",
            ApiErrorKind::Forbidden => "this OnceHub plan has no API access; API access needs an Enterprise plan",
            ApiErrorKind::NotFound => "it may have been deleted already; `oncehub-bridge list` shows what exists",
            ApiErrorKind::Conflict => {
                "choose another name (--name / --subscription-name) or unregister the existing one"
            }
            ApiErrorKind::Invalid => "fix the value named above",
            ApiErrorKind::RateLimited => "the account's limit is 5 requests/s; try again in a minute",
            ApiErrorKind::Server => "OnceHub is having trouble; try again later",
            ApiErrorKind::Transport => "check the network and --api-base-url",
            ApiErrorKind::Decode => "check --api-base-url points at the OnceHub v2 API",
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnceHub API: ")?;
        if let Some(status) = self.status {
            write!(f, "{status} ")?;
        }
        f.write_str(&self.message)?;
        if let Some(param) = &self.param {
            write!(f, " (field `{param}`)")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [Request-Id {id}]")?;
        }
        write!(f, "; {}", self.what_to_do())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_with_the_reason_the_field_the_request_id_and_what_to_do() {
        let e = ApiError {
            kind: ApiErrorKind::Conflict,
            status: Some(409),
            message: "A webhook with this name already exists".into(),
            param: Some("name".into()),
            request_id: Some("req_123".into()),
        };
        let text = e.to_string();
        assert_eq!(text.lines().count(), 1);
        assert!(
            text.contains("409")
                && text.contains("`name`")
                && text.contains("req_123")
                && text.contains("another name"),
            "{text}"
        );
    }
}
