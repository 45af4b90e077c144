//! Following the account and the market: the user data stream (a listen key, kept alive every 30 minutes) for legs
//! that fire or end, the mark price stream for prices, and REST polling in their place whenever a stream cannot be
//! opened or drops, so no fill and no triggered stop is missed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

use sentinel_actors::types::{ClientOrderId, Price, Symbol};

use super::client::{CallError, Urgency};
use super::orders;
use super::wire::{dec, text};
use super::{FeedMode, Inner};

/// Binance closes a listen key 60 minutes after its last keep-alive; it is kept alive twice as often as needed.
const KEEP_ALIVE: Duration = Duration::from_secs(30 * 60);
/// Reconnection waits double from the first to the last.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(60);
/// A stream that says nothing for this long is taken for dead (mark prices come every second).
const SILENCE: Duration = Duration::from_secs(90);
/// The largest frame taken from a stream.
const MAX_FRAME: usize = 1 << 20;

fn backoff(current: Duration) -> Duration {
    (current * 2).min(LAST_RETRY)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(url: &str) -> Result<Socket, String> {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let connect = tokio_tungstenite::connect_async_with_config(url, Some(config), false);
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// The next text frame, answering pings; `None` when the stream ended, failed or went silent.
async fn next_text(socket: &mut Socket) -> Option<String> {
    loop {
        match tokio::time::timeout(SILENCE, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some(text.to_string()),
            Ok(Some(Ok(Message::Ping(payload)))) => {
                if socket.send(Message::Pong(payload)).await.is_err() {
                    return None;
                }
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// The user data stream, for as long as the venue runs.
pub async fn user_data(inner: Arc<Inner>) {
    let mut retry = FIRST_RETRY;
    loop {
        match listen_key(&inner).await {
            Ok(key) => {
                let url = format!("{}/private/ws/{key}", inner.config.endpoints.ws_url);
                match open(&url).await {
                    Ok(mut socket) => {
                        inner.set_feed(Some(FeedMode::Stream), None);
                        retry = FIRST_RETRY;
                        // Whatever happened while the stream was down is caught up by one sweep.
                        sweep_legs(&inner).await;
                        follow_user_data(&inner, &mut socket).await;
                        warn!(
                            "the Binance user data stream dropped; polling REST until it is back"
                        );
                    }
                    Err(e) => {
                        warn!(error = %e, "the Binance user data stream cannot be opened; polling REST")
                    }
                }
            }
            Err(e) => warn!(error = %e, "no Binance listen key; polling REST for fills"),
        }
        inner.set_feed(Some(FeedMode::Polling), None);
        tokio::time::sleep(retry).await;
        retry = backoff(retry);
    }
}

async fn listen_key(inner: &Inner) -> Result<String, CallError> {
    let answer = inner
        .client
        .keyed(Method::POST, "/fapi/v1/listenKey")
        .await?;
    text(&answer, "listenKey")
        .map(str::to_string)
        .ok_or_else(|| CallError::Unknown("no listenKey in the answer".into()))
}

async fn follow_user_data(inner: &Arc<Inner>, socket: &mut Socket) {
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    keep_alive.tick().await;
    loop {
        tokio::select! {
            frame = next_text(socket) => {
                let Some(frame) = frame else { return };
                let Ok(event) = serde_json::from_str::<Value>(&frame) else { continue };
                match text(&event, "e") {
                    Some("ALGO_UPDATE") => algo_update(inner, &event["o"]),
                    Some("ACCOUNT_UPDATE") => inner.observer.on_account_update(&event, Instant::now()),
                    Some("MARGIN_CALL") => inner.observer.on_margin_call(&event, Instant::now()),
                    Some("listenKeyExpired") => {
                        warn!("the Binance listen key expired; reconnecting");
                        return;
                    }
                    Some(other) => debug!(event = other, "Binance user data event"),
                    None => {}
                }
            }
            _ = keep_alive.tick() => {
                if let Err(e) = inner.client.keyed(Method::PUT, "/fapi/v1/listenKey").await {
                    warn!(error = %e, "the Binance listen key could not be kept alive; reconnecting");
                    return;
                }
            }
        }
    }
}

/// An algo order changed status: a leg of ours that finished fired; one that ended otherwise is gone.
fn algo_update(inner: &Arc<Inner>, order: &Value) {
    let (Some(symbol), Some(id), Some(status)) = (
        text(order, "s").and_then(|s| Symbol::new(s).ok()),
        text(order, "caid").and_then(|s| ClientOrderId::try_from(s.to_string()).ok()),
        text(order, "X"),
    ) else {
        return;
    };
    let inner = inner.clone();
    let status = status.to_string();
    // Settling a leg takes REST calls: off the stream's loop, so frames keep flowing.
    tokio::spawn(async move {
        match status.as_str() {
            "FINISHED" | "TRIGGERED" => orders::leg_fired(&inner, &symbol, &id).await,
            "CANCELED" | "EXPIRED" | "REJECTED" => {
                orders::leg_gone(&inner, &symbol, &id, &status).await
            }
            _ => {}
        }
    });
}

/// Legs no longer open on Binance are looked up: fired ones reported, ended ones forgotten.
async fn sweep_legs(inner: &Arc<Inner>) {
    let held: Vec<(Symbol, ClientOrderId)> = inner
        .book()
        .legs
        .iter()
        .flat_map(|(symbol, legs)| {
            [legs.stop_loss.as_ref(), legs.take_profit.as_ref()]
                .into_iter()
                .flatten()
                .map(move |(_, id)| (symbol.clone(), id.clone()))
        })
        .collect();
    if held.is_empty() {
        return;
    }
    let open = match inner
        .client
        .signed(
            Method::GET,
            "/fapi/v1/openAlgoOrders",
            &[],
            Urgency::Background,
        )
        .await
    {
        Ok(open) => open,
        Err(e) => {
            warn!(error = %e, "open algo orders could not be read");
            return;
        }
    };
    let open_ids: Vec<&str> = open
        .as_array()
        .map(|orders| {
            orders
                .iter()
                .filter_map(|o| text(o, "clientAlgoId"))
                .collect()
        })
        .unwrap_or_default();
    for (symbol, id) in held {
        if open_ids.contains(&id.as_str()) {
            continue;
        }
        let params = [("clientAlgoId", id.to_string())];
        match inner
            .client
            .signed(
                Method::GET,
                "/fapi/v1/algoOrder",
                &params,
                Urgency::Background,
            )
            .await
        {
            Ok(algo) => match text(&algo, "algoStatus").unwrap_or("") {
                "FINISHED" | "TRIGGERED" => orders::leg_fired(inner, &symbol, &id).await,
                "CANCELED" | "EXPIRED" | "REJECTED" => {
                    let status = text(&algo, "algoStatus").unwrap_or("").to_string();
                    orders::leg_gone(inner, &symbol, &id, &status).await
                }
                _ => {}
            },
            Err(e) => warn!(client_algo_id = %id, error = %e, "a leg could not be looked up"),
        }
    }
}

/// Polls REST for whatever a stream that is down would have said, and settles orders whose outcome was unknown.
pub async fn poll(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.config.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let feeds = inner.feeds();
        if feeds.user_data != FeedMode::Stream {
            sweep_legs(&inner).await;
        }
        if feeds.market != FeedMode::Stream {
            poll_marks(&inner, None).await;
        }
        orders::resolve_unknown(&inner).await;
    }
}

/// Mark prices over REST (`GET /fapi/v1/premiumIndex`): while the stream is down, and once at start so that a signal
/// without a price can be sized from the first moment.
pub async fn poll_marks(inner: &Inner, to: Option<&mpsc::Sender<(Symbol, Price)>>) {
    let Ok(all) = inner
        .client
        .public(Method::GET, "/fapi/v1/premiumIndex", &[])
        .await
    else {
        return;
    };
    for item in all.as_array().into_iter().flatten() {
        inner.observer.on_premium_index(item, Instant::now());
        mark_from(inner, item, "symbol", "markPrice", to).await;
    }
}

async fn mark_from(
    inner: &Inner,
    item: &Value,
    symbol_key: &str,
    price_key: &str,
    to: Option<&mpsc::Sender<(Symbol, Price)>>,
) {
    let (Some(symbol), Some(price)) = (
        text(item, symbol_key).and_then(|s| Symbol::new(s).ok()),
        dec(item, price_key).and_then(|p| Price::new(p).ok()),
    ) else {
        return;
    };
    if !inner.symbols.contains(&symbol) {
        return;
    }
    inner.set_mark(symbol.clone(), price);
    if let Some(to) = to {
        let _ = to.send((symbol, price)).await;
    }
}

/// The mark price stream of the account's symbols.
pub async fn market(inner: Arc<Inner>) {
    market_to(inner, None).await
}

/// The mark price stream, each price also sent on `to`; while it is down, prices are polled (when `to` is set:
/// the account's own poller does it otherwise).
pub async fn market_to(inner: Arc<Inner>, to: Option<mpsc::Sender<(Symbol, Price)>>) {
    if inner.symbols.is_empty() {
        return;
    }
    let streams: Vec<String> = inner
        .symbols
        .iter()
        .map(|s| format!("{}@markPrice@1s", s.as_str().to_ascii_lowercase()))
        .collect();
    let url = format!(
        "{}/market/stream?streams={}",
        inner.config.endpoints.ws_url,
        streams.join("/")
    );
    let mut retry = FIRST_RETRY;
    loop {
        match open(&url).await {
            Ok(mut socket) => {
                inner.set_feed(None, Some(FeedMode::Stream));
                retry = FIRST_RETRY;
                while let Some(frame) = next_text(&mut socket).await {
                    let Ok(frame) = serde_json::from_str::<Value>(&frame) else {
                        continue;
                    };
                    inner
                        .observer
                        .on_stream_mark(&frame["data"], Instant::now());
                    mark_from(&inner, &frame["data"], "s", "p", to.as_ref()).await;
                }
                warn!("the Binance mark price stream dropped; polling REST until it is back");
            }
            Err(e) => {
                warn!(error = %e, "the Binance mark price stream cannot be opened; polling REST")
            }
        }
        inner.set_feed(None, Some(FeedMode::Polling));
        if to.is_some() {
            // Nobody else polls for a paper account: poll here while waiting to reconnect.
            let until = tokio::time::Instant::now() + retry;
            while tokio::time::Instant::now() < until {
                poll_marks(&inner, to.as_ref()).await;
                tokio::time::sleep(inner.config.poll_interval.min(retry)).await;
            }
        } else {
            tokio::time::sleep(retry).await;
        }
        retry = backoff(retry);
        info!("reconnecting to the Binance mark price stream");
    }
}
