//! Operator commands from Telegram: a long-polling bot that answers read-outs (`/status`, `/positions`, `/pnl`)
//! and, after a `/confirm <code>`, halts, resumes or flattens. Only the configured chats are heard; it never blocks
//! trading and outlives Telegram being down. See docs/chat.md.

mod answer;
mod command;
mod settings;
mod telegram;

use std::time::{Duration, Instant};

use actix_web::web;
use sentinel_actors::event::Event;
use sentinel_actors::log::EventLog;
use tracing::{debug, info, warn};

use self::command::{new_code, ChatCommand, Confirmation, Confirmations};
use self::telegram::{BotApi, Incoming};
use crate::http::AppState;

pub use self::settings::{check as check_config, RawTelegram, TelegramConfig, DEFAULT_API_BASE};

/// The channel name operator commands from here carry in the journal.
pub const CHANNEL: &str = "telegram";
/// The first wait after a failed poll; it doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Telegram down is retried at least this often.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Starts the bot on the daemon's runtime; abort the handle to stop it.
pub fn spawn(
    config: TelegramConfig,
    state: web::Data<AppState>,
) -> anyhow::Result<actix_web::rt::task::JoinHandle<()>> {
    let api = BotApi::new(&config)?;
    info!(
        chats = config.allowed_chat_ids.len(),
        "telegram: taking operator commands"
    );
    let bot = Bot {
        api,
        config,
        state,
        confirmations: Confirmations::default(),
        ignored: 0,
    };
    Ok(actix_web::rt::spawn(bot.run()))
}

struct Bot {
    api: BotApi,
    config: TelegramConfig,
    state: web::Data<AppState>,
    confirmations: Confirmations,
    /// Messages from chats not on the list, since start.
    ignored: u64,
}

impl Bot {
    async fn run(mut self) {
        // Telegram forgets the updates before the offset it is asked for: each one is handled once.
        let mut offset = 0;
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.api.updates(offset).await {
                Ok(updates) => {
                    backoff = FIRST_BACKOFF;
                    for (update_id, incoming) in updates {
                        offset = offset.max(update_id + 1);
                        if let Some(incoming) = incoming {
                            self.handle(incoming).await;
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, retry_in_s = backoff.as_secs(), "telegram: polling failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn handle(&mut self, message: Incoming) {
        let chat = message.chat_id;
        if !self.config.allowed_chat_ids.contains(&chat) {
            self.ignored += 1;
            debug!(
                chat,
                ignored = self.ignored,
                "telegram: a message from a chat not in allowed_chat_ids, ignored"
            );
            return;
        }
        let reply = match ChatCommand::parse(&message.text) {
            Err(e) => e.to_string(),
            Ok(ChatCommand::Confirm(code)) => self.confirm(&message, &code).await,
            Ok(command) if command.is_destructive() => self.ask(chat, command),
            Ok(command) => answer::read_out(&self.state, &command).await,
        };
        if let Err(e) = self.api.send(chat, &reply).await {
            warn!(chat, error = %e, "telegram: the answer could not be sent");
        }
    }

    /// Holds a destructive command and asks for its code.
    fn ask(&mut self, chat: i64, command: ChatCommand) -> String {
        let code = match new_code() {
            Ok(code) => code,
            Err(e) => return format!("No confirmation code could be made ({e}); nothing done."),
        };
        let secs = self.config.confirm.as_secs();
        let question = format!(
            "Send /confirm {code} within {secs} s to {}",
            command.consequence()
        );
        self.confirmations
            .ask(chat, command, code, Instant::now(), self.config.confirm);
        question
    }

    async fn confirm(&mut self, message: &Incoming, code: &str) -> String {
        let command = match self
            .confirmations
            .confirm(message.chat_id, code, Instant::now())
        {
            Confirmation::Confirmed(command) => command,
            Confirmation::Wrong(waiting) => {
                refused(message, &waiting.text(), "wrong confirmation code");
                return "Wrong code; nothing done.".into();
            }
            Confirmation::Expired(waiting) => {
                refused(message, &waiting.text(), "confirmation code expired");
                return "That code expired; nothing done.".into();
            }
            Confirmation::NothingWaiting => {
                refused(message, "/confirm", "no command waits for a code");
                return "Nothing is waiting for a code.".into();
            }
        };
        let text = command.text();
        warn!(chat = message.chat_id, from = %message.from, command = %text, "operator command from telegram");
        let outcome = answer::carry_out(&self.state, &command).await;
        if let Err(why) = &outcome {
            refused(message, &text, why);
        } else {
            let event = Event::OperatorCommand {
                channel: CHANNEL.into(),
                who: format!("chat {} {}", message.chat_id, message.from),
                command: text,
            };
            if let Err(e) = self.state.journal.append(vec![event]).durable().await {
                warn!(error = %e, "telegram: the operator command could not be journaled");
            }
        }
        outcome.unwrap_or_else(|why| format!("Not done: {why}"))
    }
}

/// Leaves a trace of a command an allowed chat sent that was not carried out: the journal only holds those that were.
/// The code itself is never logged.
fn refused(message: &Incoming, command: &str, reason: &str) {
    warn!(chat = message.chat_id, from = %message.from, command = %command, reason = %reason, "telegram: operator command refused");
}
