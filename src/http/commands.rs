//! Operator commands that act on the account: `POST /api/flatten` (admin token), and the same commands from a
//! signed command source (`{"command":"halt"}` to `POST /webhook/{source}`).

use actix_web::{web, HttpRequest, HttpResponse};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Instant;

use sentinel_actors::event::Delivery;
use sentinel_actors::messages::{Admit, SetTradingState};
use sentinel_actors::risk::TradingState;
use sentinel_actors::signal::{Intent, Signal};
use sentinel_actors::types::{SignalId, Symbol, Timestamp};
use tracing::warn;

use super::error::ApiError;
use super::operator::Access;
use super::AppState;
use crate::payload::RawPayload;

/// The source name operator signals carry in the journal.
pub const OPERATOR_SOURCE: &str = "operator";

/// The longest `reason` a command may give: it goes to the log as written.
const MAX_REASON_CHARS: usize = 200;

/// Checks the admin token; operator writes are off without one.
pub fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let config = state.config();
    state
        .admin
        .authorize(req, &config.server, &config.api, Access::Admin)
}

/// `POST /api/flatten`: see `flatten_account`.
pub async fn flatten(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let closing = flatten_account(&state).await?;
    Ok(HttpResponse::Accepted().json(flattened(&closing)))
}

/// What a command source may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Halt,
    Resume,
    Reducing,
    Flatten,
}

impl Command {
    fn parse(text: &str) -> Option<Command> {
        match text {
            "halt" => Some(Command::Halt),
            "resume" => Some(Command::Resume),
            "reducing" => Some(Command::Reducing),
            "flatten" => Some(Command::Flatten),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Halt => "halt",
            Command::Resume => "resume",
            Command::Reducing => "reducing",
            Command::Flatten => "flatten",
        }
    }
}

/// A command as a command source sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRequest {
    pub command: Command,
    /// The sender's words for the log (`"drawdown alert"`).
    pub reason: Option<String>,
}

/// The body a command source sends. `id` is the sender's delivery id, which idempotency reads on its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    command: Option<Value>,
    reason: Option<Value>,
    #[serde(rename = "id")]
    _id: Option<Value>,
}

const COMMAND_SHAPE: &str = r#"send {"command":"halt|resume|reducing|flatten","reason":"..."}"#;

impl CommandRequest {
    /// Reads a command source's body, secrets already stripped; a trade payload, or anything else, is refused
    /// naming `command`.
    pub fn parse(raw: &RawPayload) -> Result<CommandRequest, ApiError> {
        let body: CommandBody = serde_json::from_str(&raw.to_json()).map_err(|_| {
            ApiError::invalid_field(
                "command",
                format!("this source takes operator commands only: {COMMAND_SHAPE}"),
            )
        })?;
        let command = match body.command {
            Some(Value::String(text)) => Command::parse(text.trim()).ok_or_else(|| {
                ApiError::invalid_field(
                    "command",
                    format!("`{text}` is not one of halt, resume, reducing, flatten"),
                )
            })?,
            _ => {
                return Err(ApiError::invalid_field(
                    "command",
                    format!("this source takes operator commands only: {COMMAND_SHAPE}"),
                ))
            }
        };
        let reason = match body.reason {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) if text.chars().count() <= MAX_REASON_CHARS => Some(text),
            Some(_) => {
                return Err(ApiError::invalid_field(
                    "reason",
                    format!("must be text of at most {MAX_REASON_CHARS} characters"),
                ))
            }
        };
        Ok(CommandRequest { command, reason })
    }
}

/// Whether a body carries a `command` key: an ordinary source refuses it rather than read it as a signal.
pub fn carries_command(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        command: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Probe>(body).is_ok_and(|probe| probe.command.is_some())
}

/// Carries out a command from the source named `source`, which has authenticated; the answer is the one the API
/// gives for the same command.
pub async fn run_command(
    state: &AppState,
    source: &str,
    request: &CommandRequest,
) -> Result<HttpResponse, ApiError> {
    let command = request.command.as_str();
    let reason = request.reason.as_deref().unwrap_or_default();
    warn!(%source, command, ?reason, "operator command from a command source");
    let to = match request.command {
        Command::Halt => TradingState::Halted,
        Command::Resume => TradingState::Active,
        Command::Reducing => TradingState::Reducing,
        Command::Flatten => {
            let closing = flatten_account(state).await?;
            return Ok(HttpResponse::Accepted().json(flattened(&closing)));
        }
    };
    set_state(state, to).await?;
    Ok(HttpResponse::Ok().json(json!({ "trading_state": to })))
}

/// Moves the account to `to`; the risk actor journals the change before it answers.
pub async fn set_state(state: &AppState, to: TradingState) -> Result<(), ApiError> {
    state
        .risk
        .send(SetTradingState { state: to })
        .await
        .map_err(|e| ApiError::unavailable(format!("risk actor unavailable: {e}")))?
        .map_err(|e| ApiError::unavailable(e.to_string()))
}

/// The answer to a flatten: the trading state and each close's signal.
pub fn flattened(closing: &[(Symbol, SignalId)]) -> Value {
    let closing: Vec<Value> = closing
        .iter()
        .map(|(symbol, id)| json!({ "symbol": symbol, "signal_id": id }))
        .collect();
    json!({ "trading_state": TradingState::Reducing, "closing": closing })
}

/// Puts the account in `reducing` (no new entries; closes, stops and targets run) and closes every open position,
/// each with a close signal of its own, journaled before the answer like any webhook's, so a crash in the middle
/// finishes the job after the restart. The answer is each position closing, with its close's signal.
pub async fn flatten_account(state: &AppState) -> Result<Vec<(Symbol, SignalId)>, ApiError> {
    set_state(state, TradingState::Reducing).await?;
    let open: Vec<_> = {
        let view = state.view.borrow();
        view.portfolio
            .positions
            .iter()
            .filter(|(_, p)| p.quantity != Decimal::ZERO)
            .map(|(symbol, _)| symbol.clone())
            .collect()
    };
    let now = Timestamp::now();
    let mut closing = Vec::new();
    for symbol in open {
        let id = close_position(state, &symbol, now).await?;
        closing.push((symbol, id));
    }
    warn!(
        positions = closing.len(),
        "FLATTEN: trading is reducing and every open position is being closed"
    );
    Ok(closing)
}

/// Closes the open position of `symbol` with a close signal of its own, journaled before it returns, whatever the
/// trading state; the answer is the signal's id. `flatten_account` closes each position this way.
pub async fn close_position(
    state: &AppState,
    symbol: &Symbol,
    now: Timestamp,
) -> Result<SignalId, ApiError> {
    let id = SignalId::new(&format!("{OPERATOR_SOURCE}:flatten-{}-{symbol}", now.0))
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let signal = Signal {
        id: id.clone(),
        source: OPERATOR_SOURCE.into(),
        symbol: symbol.clone(),
        received_at: now,
        sent_at: None,
        price: None,
        intent: Intent::Close { side: None },
        comment: Some("flatten".into()),
    };
    let admit = Admit {
        signal,
        delivery: Delivery {
            keys: String::new(),
            payload: json!({ "command": "flatten" }).to_string(),
        },
        arrived: Instant::now(),
    };
    match state.ingress.send(admit).await {
        Ok(Ok(receipt)) => {
            receipt.durable().await.map_err(|e| {
                ApiError::unavailable(format!("the close of {symbol} could not be stored: {e}"))
            })?;
            Ok(id)
        }
        Ok(Err(e)) => Err(ApiError::overloaded(format!(
            "the close of {symbol} was not taken: {e}"
        ))),
        Err(e) => Err(ApiError::unavailable(format!("ingress unavailable: {e}"))),
    }
}
