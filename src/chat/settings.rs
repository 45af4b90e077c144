//! The `[telegram]` table: as written (`RawTelegram`), and checked (`TelegramConfig`) with each problem's key path.

use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

/// Where the Bot API lives unless `api_base` says otherwise.
pub const DEFAULT_API_BASE: &str = "https://api.telegram.org";
/// How long a confirmation code stays good unless `confirm_secs` says otherwise.
const DEFAULT_CONFIRM_SECS: i64 = 60;

/// `[telegram]` exactly as written.
#[derive(Debug, Default, Deserialize)]
pub struct RawTelegram {
    pub bot_token_env: Option<String>,
    pub allowed_chat_ids: Option<Vec<i64>>,
    pub api_base: Option<String>,
    pub confirm_secs: Option<i64>,
    pub allow_private: Option<bool>,
}

/// The Telegram bot, checked.
#[derive(Debug, Clone)]
pub struct TelegramConfig {
    /// From the variable `bot_token_env` names; never logged (it is the whole credential).
    pub bot_token: Secret,
    /// The chats whose commands are carried out; every other chat is ignored without an answer.
    pub allowed_chat_ids: Vec<i64>,
    /// The Bot API's base URL, without a trailing slash.
    pub api_base: String,
    /// How long a destructive command's confirmation code stays good.
    pub confirm: Duration,
}

/// Checks `[telegram]`; every problem comes back as (key path, message), so the caller reports them with the rest.
pub fn check(
    raw: RawTelegram,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<TelegramConfig, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let mut problem = |path: &str, message: String| problems.push((path.to_string(), message));

    let bot_token = match raw.bot_token_env.as_deref().map(str::trim) {
        None | Some("") => {
            problem(
                "telegram.bot_token_env",
                "is required: name the environment variable that holds the token @BotFather gave"
                    .into(),
            );
            None
        }
        Some(name) => match env(name).filter(|v| !v.trim().is_empty()) {
            Some(token) => Some(Secret::new(token.trim())),
            None => {
                problem(
                    "telegram.bot_token_env",
                    format!("the variable {name} is not set: put the bot's token in it"),
                );
                None
            }
        },
    };

    let allowed_chat_ids = raw.allowed_chat_ids.unwrap_or_default();
    if allowed_chat_ids.is_empty() {
        problem(
            "telegram.allowed_chat_ids",
            "list at least one chat id: commands from any other chat are ignored (see docs/chat.md to find yours)"
                .into(),
        );
    }

    let allow_private = raw.allow_private.unwrap_or(false);
    let api_base = raw
        .api_base
        .unwrap_or_else(|| DEFAULT_API_BASE.to_string())
        .trim()
        .trim_end_matches('/')
        .to_string();
    match api_base.split_once("://") {
        Some(("https", rest)) | Some(("http", rest))
            if !rest.is_empty() && !rest.contains(['?', '#', '@']) =>
        {
            if !api_base.starts_with("https://") && !allow_private {
                problem(
                    "telegram.api_base",
                    format!("`{api_base}` must start with https:// (set allow_private = true only for a local test server)"),
                );
            }
        }
        _ => problem(
            "telegram.api_base",
            format!("`{api_base}` must be a base URL: https://, host, optional port and path"),
        ),
    }

    let confirm_secs = raw.confirm_secs.unwrap_or(DEFAULT_CONFIRM_SECS);
    if !(5..=600).contains(&confirm_secs) {
        problem(
            "telegram.confirm_secs",
            format!("must be between 5 and 600, not {confirm_secs}"),
        );
    }

    match bot_token {
        Some(bot_token) if problems.is_empty() => Ok(TelegramConfig {
            bot_token,
            allowed_chat_ids,
            api_base,
            confirm: Duration::from_secs(confirm_secs as u64),
        }),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "BOT").then(|| "123:abc".to_string())
    }

    fn raw() -> RawTelegram {
        RawTelegram {
            bot_token_env: Some("BOT".into()),
            allowed_chat_ids: Some(vec![42]),
            ..RawTelegram::default()
        }
    }

    fn paths(raw: RawTelegram) -> Vec<String> {
        check(raw, &env)
            .unwrap_err()
            .into_iter()
            .map(|(path, _)| path)
            .collect()
    }

    #[test]
    fn defaults_to_the_public_api_and_a_minute_to_confirm() {
        let config = check(raw(), &env).unwrap();
        assert_eq!(config.api_base, DEFAULT_API_BASE);
        assert_eq!(config.confirm, Duration::from_secs(60));
        assert_eq!(config.bot_token.expose(), b"123:abc");
    }

    #[test]
    fn a_missing_token_or_empty_chat_list_is_refused() {
        let mut no_token = raw();
        no_token.bot_token_env = None;
        assert_eq!(paths(no_token), ["telegram.bot_token_env"]);
        let mut unset = raw();
        unset.bot_token_env = Some("UNSET".into());
        assert_eq!(paths(unset), ["telegram.bot_token_env"]);
        let mut no_chats = raw();
        no_chats.allowed_chat_ids = Some(vec![]);
        assert_eq!(paths(no_chats), ["telegram.allowed_chat_ids"]);
    }

    #[test]
    fn plain_http_needs_allow_private() {
        let mut plain = raw();
        plain.api_base = Some("http://127.0.0.1:8081".into());
        assert_eq!(paths(plain), ["telegram.api_base"]);
        let mut allowed = raw();
        allowed.api_base = Some("http://127.0.0.1:8081/".into());
        allowed.allow_private = Some(true);
        assert_eq!(
            check(allowed, &env).unwrap().api_base,
            "http://127.0.0.1:8081"
        );
        let mut garbage = raw();
        garbage.api_base = Some("api.telegram.org".into());
        assert_eq!(paths(garbage), ["telegram.api_base"]);
    }
}
