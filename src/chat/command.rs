//! What a chat message asks for, and the confirmation a destructive command waits for: plain logic, no I/O.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sentinel_actors::types::Symbol;

/// A command a chat can send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatCommand {
    Status,
    Positions,
    Pnl,
    Halt,
    Resume,
    /// `None`: the whole account, as `POST /api/flatten`; `Some`: that symbol's position only.
    Flatten(Option<Symbol>),
    Confirm(String),
    Help,
}

/// Why a message is not a command the bot can act on; answered in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Unknown(String),
    BadSymbol(String),
    MissingCode,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Unknown(word) => write!(f, "`{word}` is not a command; send /help"),
            ParseError::BadSymbol(why) => f.write_str(why),
            ParseError::MissingCode => f.write_str("send /confirm followed by the code"),
        }
    }
}

impl ChatCommand {
    /// Reads a message's text; `/cmd@BotName` (as group chats send it) is read as `/cmd`.
    pub fn parse(text: &str) -> Result<ChatCommand, ParseError> {
        let mut words = text.split_whitespace();
        let first = words.next().unwrap_or_default();
        let name = first.split('@').next().unwrap_or_default();
        let arg = words.next();
        match name.to_ascii_lowercase().as_str() {
            "/status" => Ok(ChatCommand::Status),
            "/positions" => Ok(ChatCommand::Positions),
            "/pnl" => Ok(ChatCommand::Pnl),
            "/halt" => Ok(ChatCommand::Halt),
            "/resume" => Ok(ChatCommand::Resume),
            "/flatten" => match arg {
                None => Ok(ChatCommand::Flatten(None)),
                Some(raw) => Symbol::new(&raw.to_ascii_uppercase())
                    .map(|s| ChatCommand::Flatten(Some(s)))
                    .map_err(|e| ParseError::BadSymbol(e.to_string())),
            },
            "/confirm" => arg
                .map(|code| ChatCommand::Confirm(code.to_string()))
                .ok_or(ParseError::MissingCode),
            "/help" | "/start" => Ok(ChatCommand::Help),
            _ => Err(ParseError::Unknown(first.chars().take(40).collect())),
        }
    }

    /// Whether it changes the account, and so waits for `/confirm`.
    pub fn is_destructive(&self) -> bool {
        matches!(
            self,
            ChatCommand::Halt | ChatCommand::Resume | ChatCommand::Flatten(_)
        )
    }

    /// The command as the journal and the log record it (`/flatten BTCUSDT`).
    pub fn text(&self) -> String {
        match self {
            ChatCommand::Status => "/status".into(),
            ChatCommand::Positions => "/positions".into(),
            ChatCommand::Pnl => "/pnl".into(),
            ChatCommand::Halt => "/halt".into(),
            ChatCommand::Resume => "/resume".into(),
            ChatCommand::Flatten(None) => "/flatten".into(),
            ChatCommand::Flatten(Some(symbol)) => format!("/flatten {symbol}"),
            ChatCommand::Confirm(_) => "/confirm".into(),
            ChatCommand::Help => "/help".into(),
        }
    }

    /// What confirming it does, in the words of the question (`halt trading`).
    pub fn consequence(&self) -> String {
        match self {
            ChatCommand::Halt => "halt trading".into(),
            ChatCommand::Resume => "resume trading".into(),
            ChatCommand::Flatten(None) => {
                "set trading to reducing and close every open position".into()
            }
            ChatCommand::Flatten(Some(symbol)) => format!("close the {symbol} position"),
            other => other.text(),
        }
    }
}

/// Wrong codes a chat may send before its waiting command is dropped: a 4-digit code must not be guessable.
const MAX_WRONG_CODES: u8 = 3;

/// A destructive command waiting for its code.
#[derive(Debug)]
struct Waiting {
    command: ChatCommand,
    code: String,
    until: Instant,
    wrong: u8,
}

/// What `/confirm` came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// The right code in time: carry this out.
    Confirmed(ChatCommand),
    /// A code that is not the one this command waits for.
    Wrong(ChatCommand),
    /// The code came after this command stopped waiting.
    Expired(ChatCommand),
    NothingWaiting,
}

/// The one command each chat has waiting; a new one replaces it.
#[derive(Debug, Default)]
pub struct Confirmations {
    waiting: HashMap<i64, Waiting>,
}

impl Confirmations {
    /// Holds `command` for `chat` until `now + within`, under `code`.
    pub fn ask(
        &mut self,
        chat: i64,
        command: ChatCommand,
        code: String,
        now: Instant,
        within: Duration,
    ) {
        let waiting = Waiting {
            command,
            code,
            until: now + within,
            wrong: 0,
        };
        self.waiting.insert(chat, waiting);
    }

    /// Takes `code` from `chat` at `now`: the waiting command if it matches in time. A late code, and a third
    /// wrong one, drop the waiting command.
    pub fn confirm(&mut self, chat: i64, code: &str, now: Instant) -> Confirmation {
        let Some(waiting) = self.waiting.get_mut(&chat) else {
            return Confirmation::NothingWaiting;
        };
        if now > waiting.until {
            let waiting = self.waiting.remove(&chat).expect("looked up above");
            return Confirmation::Expired(waiting.command);
        }
        if waiting.code != code {
            waiting.wrong += 1;
            let command = waiting.command.clone();
            if waiting.wrong >= MAX_WRONG_CODES {
                self.waiting.remove(&chat);
            }
            return Confirmation::Wrong(command);
        }
        let waiting = self.waiting.remove(&chat).expect("looked up above");
        Confirmation::Confirmed(waiting.command)
    }
}

/// A fresh 4-digit code from the system's random source.
pub fn new_code() -> std::io::Result<String> {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(format!("{:04}", u32::from_le_bytes(bytes) % 10_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_commands_their_bot_suffix_and_symbols() {
        let btc = Symbol::new("BTCUSDT").unwrap();
        let cases = [
            ("/status", Ok(ChatCommand::Status)),
            ("/status@SentinelBot", Ok(ChatCommand::Status)),
            ("/POSITIONS", Ok(ChatCommand::Positions)),
            ("/pnl", Ok(ChatCommand::Pnl)),
            ("/halt", Ok(ChatCommand::Halt)),
            ("/resume", Ok(ChatCommand::Resume)),
            ("/flatten", Ok(ChatCommand::Flatten(None))),
            ("/flatten btcusdt", Ok(ChatCommand::Flatten(Some(btc)))),
            ("/confirm 0042", Ok(ChatCommand::Confirm("0042".into()))),
            ("/confirm", Err(ParseError::MissingCode)),
            ("hello", Err(ParseError::Unknown("hello".into()))),
        ];
        for (text, expected) in cases {
            assert_eq!(ChatCommand::parse(text), expected, "{text}");
        }
        assert!(matches!(
            ChatCommand::parse("/flatten BTC-USDT"),
            Err(ParseError::BadSymbol(_))
        ));
    }

    #[test]
    fn only_the_right_code_in_time_confirms() {
        let now = Instant::now();
        let minute = Duration::from_secs(60);
        let mut confirmations = Confirmations::default();
        assert_eq!(
            confirmations.confirm(1, "1234", now),
            Confirmation::NothingWaiting
        );
        confirmations.ask(1, ChatCommand::Halt, "1234".into(), now, minute);
        assert_eq!(
            confirmations.confirm(2, "1234", now),
            Confirmation::NothingWaiting
        );
        assert_eq!(
            confirmations.confirm(1, "9999", now),
            Confirmation::Wrong(ChatCommand::Halt)
        );
        assert_eq!(
            confirmations.confirm(1, "1234", now),
            Confirmation::Confirmed(ChatCommand::Halt)
        );
        // Carried out once.
        assert_eq!(
            confirmations.confirm(1, "1234", now),
            Confirmation::NothingWaiting
        );

        confirmations.ask(1, ChatCommand::Resume, "1234".into(), now, minute);
        assert_eq!(
            confirmations.confirm(1, "1234", now + minute + Duration::from_secs(1)),
            Confirmation::Expired(ChatCommand::Resume)
        );
        assert_eq!(
            confirmations.confirm(1, "1234", now),
            Confirmation::NothingWaiting
        );
    }

    #[test]
    fn three_wrong_codes_drop_the_waiting_command() {
        let now = Instant::now();
        let mut confirmations = Confirmations::default();
        confirmations.ask(
            1,
            ChatCommand::Halt,
            "1234".into(),
            now,
            Duration::from_secs(60),
        );
        for _ in 0..MAX_WRONG_CODES {
            assert_eq!(
                confirmations.confirm(1, "0000", now),
                Confirmation::Wrong(ChatCommand::Halt)
            );
        }
        assert_eq!(
            confirmations.confirm(1, "1234", now),
            Confirmation::NothingWaiting
        );
    }

    #[test]
    fn codes_are_four_digits() {
        for _ in 0..50 {
            let code = new_code().unwrap();
            assert_eq!(code.len(), 4);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
