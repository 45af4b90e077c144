//! The wire format of each channel: the URL, headers and JSON body one notice becomes.
//!
//! - Telegram: `POST {api_base}/bot<token>/sendMessage` with `{"chat_id", "text"}`.
//! - Discord incoming webhook: `{"content": text}`; Slack incoming webhook: `{"text": text}`.
//! - Generic webhook: `{"type", "timestamp", "data"}` signed as Standard Webhooks (`webhook-id`,
//!   `webhook-timestamp`, `webhook-signature`), the scheme `crate::auth::StandardWebhooks` verifies.

use reqwest::Url;
use serde_json::{json, Value};

use super::notice::Notice;
use super::settings::Channel;
use crate::auth::sign_standard;

/// One request to make. `url` may hold a secret (a bot token, a webhook token): it is never logged.
pub struct Outbound {
    pub url: Url,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// The request that delivers `notice` as `text` on `channel`. `id` names the notice across its retries (the
/// generic webhook's `webhook-id`, for the receiver's idempotency); `now_secs` is the time of this attempt.
pub fn request(
    channel: &Channel,
    notice: &Notice,
    text: &str,
    id: &str,
    now_secs: i64,
) -> Result<Outbound, String> {
    let plain = |url: Url, body: Value| Outbound {
        url,
        headers: Vec::new(),
        body: body.to_string().into_bytes(),
    };
    match channel {
        Channel::Telegram {
            api_base,
            token,
            chat_id,
        } => {
            let token = std::str::from_utf8(token.expose())
                .map_err(|_| "the bot token is not text".to_string())?;
            let base = api_base.as_str().trim_end_matches('/');
            let url = Url::parse(&format!("{base}/bot{token}/sendMessage"))
                .map_err(|_| "the bot token does not make a valid URL".to_string())?;
            // A numeric chat id goes as a number, a `@channelname` as text; the Bot API takes either.
            let chat_id = chat_id
                .parse::<i64>()
                .map_or_else(|_| json!(chat_id), |n| json!(n));
            Ok(plain(url, json!({ "chat_id": chat_id, "text": text })))
        }
        Channel::Discord { url } => Ok(plain(secret_url(url)?, json!({ "content": text }))),
        Channel::Slack { url } => Ok(plain(secret_url(url)?, json!({ "text": text }))),
        Channel::Webhook { url, key } => {
            let body = json!({
                "type": notice.kind,
                "timestamp": rfc3339(notice.at.0),
                "data": notice.fields,
            })
            .to_string()
            .into_bytes();
            let signature = sign_standard(key.expose(), id, now_secs, &body);
            Ok(Outbound {
                url: url.clone(),
                headers: vec![
                    ("webhook-id", id.to_string()),
                    ("webhook-timestamp", now_secs.to_string()),
                    ("webhook-signature", signature),
                ],
                body,
            })
        }
    }
}

/// The URL behind a secret (a Discord or Slack webhook URL carries its token in the path).
fn secret_url(url: &crate::secret::Secret) -> Result<Url, String> {
    std::str::from_utf8(url.expose())
        .ok()
        .and_then(|u| Url::parse(u).ok())
        .ok_or_else(|| "the webhook URL is not a valid URL".to_string())
}

/// Milliseconds since the epoch as RFC 3339 UTC (`2026-11-27T14:55:02.123Z`).
fn rfc3339(millis: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::StandardWebhooks;
    use crate::notify::settings::Topic;
    use crate::secret::Secret;
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
    use sentinel_actors::types::Timestamp;

    fn notice() -> Notice {
        Notice {
            topic: Topic::Fills,
            kind: "fill",
            at: Timestamp(1_700_000_000_000),
            fields: [("symbol", "BTCUSDT".to_string())].into_iter().collect(),
        }
    }

    #[test]
    fn the_generic_webhook_verifies_with_the_standard_webhooks_verifier() {
        let key = b"a signing key of some length".to_vec();
        let channel = Channel::Webhook {
            url: Url::parse("https://hooks.example.com/in").unwrap(),
            key: Secret::new(key.clone()),
        };
        let out = request(&channel, &notice(), "text", "msg_1", 1_700_000_001).unwrap();
        let mut headers = HeaderMap::new();
        for (name, value) in &out.headers {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let verifier = StandardWebhooks {
            keys: vec![Secret::new(key)],
            tolerance_secs: 300,
        };
        assert_eq!(
            verifier.verify(&headers, &out.body, 1_700_000_001),
            Ok("msg_1".to_string())
        );
        let body: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(body["type"], "fill");
        assert_eq!(body["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(body["data"]["symbol"], "BTCUSDT");
        // Any change to the body breaks the signature.
        let mut tampered = out.body.clone();
        tampered[2] ^= 1;
        assert!(verifier.verify(&headers, &tampered, 1_700_000_001).is_err());
    }

    #[test]
    fn telegram_puts_the_token_in_the_path_and_a_numeric_chat_id_as_a_number() {
        let channel = Channel::Telegram {
            api_base: Url::parse("https://api.telegram.org").unwrap(),
            token: Secret::new("123:abc"),
            chat_id: "-100200".into(),
        };
        let out = request(&channel, &notice(), "hello", "msg_1", 0).unwrap();
        assert_eq!(
            out.url.as_str(),
            "https://api.telegram.org/bot123:abc/sendMessage"
        );
        let body: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(body, json!({"chat_id": -100200, "text": "hello"}));
    }
}
