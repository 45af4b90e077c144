//! The Telegram Bot API, the two calls the bot makes: `getUpdates` (long polling) and `sendMessage`. Its JSON is
//! read here into `Incoming` messages; nothing else sees it.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::settings::TelegramConfig;
use crate::secret::Secret;

/// How long Telegram holds a `getUpdates` open when it has nothing to send.
pub const LONG_POLL_SECS: u64 = 25;

/// A text message from a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub update_id: i64,
    pub chat_id: i64,
    /// The sender's `@username`, or their id, for the journal; the chat id when neither is given.
    pub from: String,
    pub text: String,
}

/// A Bot API call that failed; always worth retrying later (Telegram down, a network error, a refused token).
#[derive(Debug, thiserror::Error)]
pub enum BotApiError {
    #[error("the Bot API could not be reached: {0}")]
    Transport(String),
    #[error("the Bot API answered {status}: {description}")]
    Refused { status: u16, description: String },
    #[error("the Bot API answered something unreadable: {0}")]
    Unreadable(String),
}

#[derive(Deserialize)]
struct Envelope<T> {
    ok: bool,
    result: Option<T>,
    description: Option<String>,
}

#[derive(Deserialize)]
struct Update {
    update_id: i64,
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    chat: Chat,
    from: Option<User>,
    text: Option<String>,
}

#[derive(Deserialize)]
struct Chat {
    id: i64,
}

#[derive(Deserialize)]
struct User {
    id: i64,
    username: Option<String>,
}

/// A Bot API client for one bot.
pub struct BotApi {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

impl BotApi {
    pub fn new(config: &TelegramConfig) -> Result<BotApi, BotApiError> {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Past the long poll, so an idle poll ends with Telegram's empty answer rather than a timeout.
            .timeout(Duration::from_secs(LONG_POLL_SECS + 10))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("sentinel/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BotApiError::Transport(e.to_string()))?;
        Ok(BotApi {
            http,
            base: config.api_base.clone(),
            token: config.bot_token.clone(),
        })
    }

    /// The URL of `method`. It holds the token: never log it.
    fn url(&self, method: &str) -> String {
        format!(
            "{}/bot{}/{method}",
            self.base,
            String::from_utf8_lossy(self.token.expose())
        )
    }

    /// The updates from `offset` on (Telegram forgets those before it), waiting up to the long poll for one.
    /// Updates that are not text messages come back without a message: their ids still move the offset.
    pub async fn updates(&self, offset: i64) -> Result<Vec<(i64, Option<Incoming>)>, BotApiError> {
        let url = format!(
            "{}?offset={offset}&timeout={LONG_POLL_SECS}&allowed_updates=%5B%22message%22%5D",
            self.url("getUpdates")
        );
        let response = self.http.get(url).send().await.map_err(transport)?;
        let updates: Vec<Update> = read(response).await?;
        Ok(updates
            .into_iter()
            .map(|u| {
                let incoming = u.message.and_then(|m| {
                    let text = m.text?;
                    let from = m
                        .from
                        .map(|user| match user.username {
                            Some(name) => format!("@{name}"),
                            None => user.id.to_string(),
                        })
                        .unwrap_or_else(|| m.chat.id.to_string());
                    Some(Incoming {
                        update_id: u.update_id,
                        chat_id: m.chat.id,
                        from,
                        text,
                    })
                });
                (u.update_id, incoming)
            })
            .collect())
    }

    /// Sends `text` to `chat_id`.
    pub async fn send(&self, chat_id: i64, text: &str) -> Result<(), BotApiError> {
        let body = json!({ "chat_id": chat_id, "text": text }).to_string();
        let response = self
            .http
            .post(self.url("sendMessage"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        read::<serde_json::Value>(response).await.map(|_| ())
    }
}

/// A transport error without its URL, which holds the token.
fn transport(e: reqwest::Error) -> BotApiError {
    BotApiError::Transport(e.without_url().to_string())
}

async fn read<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, BotApiError> {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(transport)?;
    let envelope: Envelope<T> = serde_json::from_slice(&bytes)
        .map_err(|e| BotApiError::Unreadable(format!("status {status}: {e}")))?;
    match envelope {
        Envelope {
            ok: true,
            result: Some(result),
            ..
        } => Ok(result),
        Envelope { description, .. } => Err(BotApiError::Refused {
            status,
            description: description.unwrap_or_else(|| "no description".into()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_text_messages_and_skips_the_rest() {
        let body = r#"{"ok":true,"result":[
            {"update_id":7,"message":{"message_id":1,"chat":{"id":42,"type":"private"},
             "from":{"id":5,"is_bot":false,"first_name":"A","username":"ann"},"date":1,"text":"/status"}},
            {"update_id":8,"message":{"message_id":2,"chat":{"id":42,"type":"private"},"date":1,"sticker":{}}},
            {"update_id":9,"edited_message":{}}
        ]}"#;
        let envelope: Envelope<Vec<Update>> = serde_json::from_str(body).unwrap();
        let updates = envelope.result.unwrap();
        assert_eq!(updates.len(), 3);
        let first = updates[0].message.as_ref().unwrap();
        assert_eq!(first.chat.id, 42);
        assert_eq!(first.text.as_deref(), Some("/status"));
        assert!(updates[1].message.as_ref().unwrap().text.is_none());
        assert!(updates[2].message.is_none());
    }
}
