//! Wire types of the OnceHub v2 API (shared/oncehub-api.md §1–2), kept apart from the domain.
//! Lenient where the docs are unsure: `secret` also reads `signing_secret`, optional fields
//! default, unknown fields are ignored.

use serde::{Deserialize, Deserializer, Serialize};

use crate::secret::WebhookSecret;

/// A webhook subscription as the API returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct Webhook {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub creation_time: Option<String>,
    /// Only returned by create (likely); redacted in `Debug`.
    #[serde(default, alias = "signing_secret", deserialize_with = "secret")]
    pub secret: Option<WebhookSecret>,
}

fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<WebhookSecret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.and_then(|s| WebhookSecret::parse(&s)))
}

/// `POST /webhooks` body.
#[derive(Debug, Clone, Serialize)]
pub struct CreateWebhook<'a> {
    pub name: &'a str,
    pub url: &'a str,
    pub events: &'a [String],
}

/// A page of a list call.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
}

/// `GET /test`.
#[derive(Debug, Deserialize)]
pub struct KeyCheck {
    #[serde(default)]
    pub message: String,
}

/// The error body: `{type, message, param?}`.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default, rename = "type")]
    pub error_type: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub param: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_reads_either_secret_name_and_never_prints_it() {
        let w: Webhook = serde_json::from_str(
            r#"{"object":"webhook","id":"WHK-1","name":"n","url":"https://x","events":["booking"],"signing_secret":"abc123","extra":1}"#,
        )
        .unwrap();
        assert_eq!(w.secret.as_ref().map(|s| s.expose()), Some("abc123"));
        assert!(!format!("{w:?}").contains("abc123"));
        let bare: Webhook = serde_json::from_str(r#"{"id":"WHK-2"}"#).unwrap();
        assert!(bare.secret.is_none() && bare.events.is_empty());
    }
}
