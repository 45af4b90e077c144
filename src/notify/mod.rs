//! Notifications: a follower of the journal that tells chat channels and webhooks about fills, exits, denials,
//! rejections, venue faults and the kill switch, and once a day sums the account up.
//!
//! Trading never waits on it: it reads the journal after the fact, each channel has a bounded queue that a notice
//! enters with `try_send` (a full queue drops the notice and counts the drop), and one task per channel delivers,
//! retrying with exponential backoff (1 s, 2 s, 4 s, ...) and at most 5 s per request. The last 200 attempts are
//! kept in memory for `GET /api/notifications`.

pub mod channels;
pub mod guard;
pub mod notice;
pub mod settings;

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, HttpResponse};
use futures_util::StreamExt;
use sentinel_actors::event::Offset;
use sentinel_actors::ledger_actor::ViewRx;
use sentinel_actors::log::{tail, EventLog};
use sentinel_actors::types::Timestamp;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{info, warn};

use self::notice::Notice;
pub use self::settings::{Channel, NotificationConfig, Topic};

/// Delivery attempts the log keeps, newest last.
const LOG_CAPACITY: usize = 200;
/// The first retry's wait; each next one doubles it.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// One delivery attempt, as `GET /api/notifications` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// Milliseconds since the epoch.
    pub at: i64,
    pub channel: String,
    pub event: &'static str,
    /// `delivered`, `retrying` (another try follows), `failed` (given up) or `refused` (not sent: outbound safety).
    pub outcome: &'static str,
    /// The receiver's HTTP status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// 1 for the first try.
    pub attempt: u32,
}

/// A channel's counts since the daemon started.
#[derive(Debug, Default)]
struct Counts {
    queued: AtomicU64,
    dropped: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChannelCounts {
    pub name: String,
    pub kind: &'static str,
    pub events: Vec<&'static str>,
    pub queued: u64,
    /// Notices dropped because the channel's queue was full.
    pub dropped: u64,
    pub delivered: u64,
    /// Notices given up on (retries spent, refused, or an answer retrying cannot change).
    pub failed: u64,
}

/// What the notifier did: per-channel counts and the last attempts. Shared with the API and the metrics.
#[derive(Debug)]
pub struct Notifications {
    channels: Vec<(Arc<NotificationConfig>, Counts)>,
    attempts: Mutex<VecDeque<Attempt>>,
}

impl Notifications {
    /// The counts and log of `configs`' channels, before anything is delivered (see `start`).
    pub fn new(configs: &[NotificationConfig]) -> Notifications {
        Notifications {
            channels: configs
                .iter()
                .map(|c| (Arc::new(c.clone()), Counts::default()))
                .collect(),
            attempts: Mutex::new(VecDeque::with_capacity(LOG_CAPACITY)),
        }
    }

    /// Counts per channel, in configuration order.
    pub fn counts(&self) -> Vec<ChannelCounts> {
        self.channels
            .iter()
            .map(|(config, counts)| ChannelCounts {
                name: config.name.clone(),
                kind: config.channel.kind(),
                events: config.topics.iter().map(|t| t.as_str()).collect(),
                queued: counts.queued.load(Ordering::Relaxed),
                dropped: counts.dropped.load(Ordering::Relaxed),
                delivered: counts.delivered.load(Ordering::Relaxed),
                failed: counts.failed.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The last attempts, oldest first.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.lock().iter().cloned().collect()
    }

    fn record(&self, attempt: Attempt) {
        let mut log = self.lock();
        if log.len() == LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(attempt);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Attempt>> {
        // A panic while holding it leaves a log that is still whole.
        self.attempts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `GET /api/notifications`: each channel's counts and the last delivery attempts, newest first.
pub async fn list(state: web::Data<crate::http::AppState>) -> HttpResponse {
    let notifications = &state.notifications;
    let mut attempts = notifications.attempts();
    attempts.reverse();
    HttpResponse::Ok().json(serde_json::json!({
        "channels": notifications.counts(),
        "attempts": attempts,
    }))
}

/// The running notifier: aborted at shutdown (its tasks hold the journal open).
pub struct Running {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn abort(&self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

/// A notice on its way to one channel, named once for all its tries.
struct Queued {
    notice: Notice,
    id: String,
}

/// Starts following the journal from `from` (the head at start: history is not replayed), one delivery task per
/// channel of `state`, and a daily summary task per channel that takes it. Must be called inside the daemon's
/// runtime.
pub fn start(
    state: &Arc<Notifications>,
    log: Arc<dyn EventLog>,
    from: Offset,
    view: ViewRx,
) -> Running {
    let mut tasks = Vec::new();
    let mut queues = Vec::new();
    for (i, (config, _)) in state.channels.iter().enumerate() {
        let client = match guard::client(config.allow_private) {
            Ok(client) => client,
            Err(e) => {
                warn!(channel = %config.name, error = %e, "notification channel not started: no HTTP client");
                continue;
            }
        };
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        tasks.push(actix_web::rt::spawn(deliver(state.clone(), i, client, rx)));
        if config.topics.contains(&Topic::DailySummary) {
            tasks.push(actix_web::rt::spawn(daily(
                state.clone(),
                i,
                tx.clone(),
                view.clone(),
            )));
        }
        queues.push((i, tx));
    }
    if !queues.is_empty() {
        info!(channels = queues.len(), "notifications follow the journal");
        tasks.push(actix_web::rt::spawn(follow(
            state.clone(),
            queues,
            log,
            from,
        )));
    }
    Running { tasks }
}

/// Reads the journal as it grows and queues each notice on the channels that take its topic.
async fn follow(
    state: Arc<Notifications>,
    queues: Vec<(usize, mpsc::Sender<Queued>)>,
    log: Arc<dyn EventLog>,
    from: Offset,
) {
    let mut batches = pin!(tail(log, from, 1024));
    while let Some(batch) = batches.next().await {
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                warn!(error = %e, "notifications stopped following the journal: nothing more is sent");
                return;
            }
        };
        for stamped in &batch {
            for notice in notice::notices(&stamped.event, stamped.at) {
                for (i, tx) in &queues {
                    let id = format!("msg_{}_{}", stamped.offset, notice.kind);
                    offer(&state, *i, tx, notice.clone(), id);
                }
            }
        }
    }
}

/// Queues `notice` for channel `i` if it takes its topic; a full queue drops it and counts the drop.
fn offer(state: &Notifications, i: usize, tx: &mpsc::Sender<Queued>, notice: Notice, id: String) {
    let (config, counts) = &state.channels[i];
    if !config.topics.contains(&notice.topic) {
        return;
    }
    match tx.try_send(Queued { notice, id }) {
        Ok(()) => {
            counts.queued.fetch_add(1, Ordering::Relaxed);
        }
        Err(mpsc::error::TrySendError::Full(dropped)) => {
            counts.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(channel = %config.name, event = dropped.notice.kind, "notification dropped: the channel's queue is full");
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

/// How one try ended.
enum Tried {
    Delivered(u16),
    /// Worth another try (no answer, a timeout, 429, 5xx).
    Retry(Option<u16>, String),
    /// Another try cannot help (4xx, a refused address).
    GiveUp(Option<u16>, String, &'static str),
}

/// Delivers channel `i`'s notices one after the other, each with its retries.
async fn deliver(
    state: Arc<Notifications>,
    i: usize,
    client: reqwest::Client,
    mut rx: mpsc::Receiver<Queued>,
) {
    let config = state.channels[i].0.clone();
    let tries = config.max_retries.saturating_add(1);
    while let Some(queued) = rx.recv().await {
        let text = notice::render(
            config
                .template
                .as_deref()
                .unwrap_or(notice::default_template(queued.notice.kind)),
            &queued.notice,
        );
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=tries {
            let tried = try_once(&client, &config, &queued, &text).await;
            let last = attempt == tries;
            let (outcome, status, error) = match &tried {
                Tried::Delivered(status) => ("delivered", Some(*status), None),
                Tried::Retry(status, error) if !last => ("retrying", *status, Some(error.clone())),
                Tried::Retry(status, error) => ("failed", *status, Some(error.clone())),
                Tried::GiveUp(status, error, outcome) => (*outcome, *status, Some(error.clone())),
            };
            state.record(Attempt {
                at: Timestamp::now().0,
                channel: config.name.clone(),
                event: queued.notice.kind,
                outcome,
                status,
                error: error.clone(),
                attempt,
            });
            let counts = &state.channels[i].1;
            match outcome {
                "delivered" => {
                    counts.delivered.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                "retrying" => {
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                }
                _ => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        channel = %config.name,
                        event = queued.notice.kind,
                        attempt,
                        error = error.as_deref().unwrap_or_default(),
                        "notification not delivered"
                    );
                    break;
                }
            }
        }
    }
}

async fn try_once(
    client: &reqwest::Client,
    config: &NotificationConfig,
    queued: &Queued,
    text: &str,
) -> Tried {
    let now_secs = Timestamp::now().0.div_euclid(1000);
    let out = match channels::request(&config.channel, &queued.notice, text, &queued.id, now_secs) {
        Ok(out) => out,
        Err(e) => return Tried::GiveUp(None, e, "failed"),
    };
    if let Err(refused) = guard::check_url(&out.url, config.allow_private) {
        return Tried::GiveUp(None, refused, "refused");
    }
    let mut request = client
        .post(out.url)
        .header("content-type", "application/json")
        .body(out.body);
    for (name, value) in out.headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(answer) => {
            let status = answer.status();
            let code = status.as_u16();
            if status.is_success() {
                Tried::Delivered(code)
            } else if status.is_server_error() || code == 429 || code == 408 {
                Tried::Retry(Some(code), format!("the receiver answered {status}"))
            } else {
                Tried::GiveUp(
                    Some(code),
                    format!("the receiver answered {status}"),
                    "failed",
                )
            }
        }
        Err(e) => {
            let error = describe(e);
            if error.contains("refused: ") {
                Tried::GiveUp(None, error, "refused")
            } else {
                Tried::Retry(None, error)
            }
        }
    }
}

/// An error in words without its URL (a bot token or a webhook token is in it), with its causes.
fn describe(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if timeout {
        text.push_str(" (timed out)");
    }
    text
}

/// Queues channel `i`'s daily summary at `summary_hour_utc` every day.
async fn daily(state: Arc<Notifications>, i: usize, tx: mpsc::Sender<Queued>, view: ViewRx) {
    let hour = i64::from(state.channels[i].0.summary_hour_utc);
    loop {
        let now = Timestamp::now().0.div_euclid(1000);
        let wait = until_next(now, hour);
        tokio::time::sleep(Duration::from_secs(wait as u64)).await;
        let at = Timestamp::now();
        let notice = notice::summary(&view.borrow(), at);
        let id = format!("msg_summary_{}", at.0.div_euclid(1000));
        offer(&state, i, &tx, notice, id);
        // Past the hour's first second, so the next wait is a whole day.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Seconds from `now` (Unix seconds) until the next `hour`:00 UTC; a whole day when it is that moment now.
fn until_next(now: i64, hour: i64) -> i64 {
    let day = now.div_euclid(86_400) * 86_400;
    let mut next = day + hour * 3600;
    if next <= now {
        next += 86_400;
    }
    next - now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_waits_for_the_next_configured_hour() {
        let midnight = 1_764_201_600; // 2025-11-27T00:00:00Z
        assert_eq!(until_next(midnight, 0), 86_400);
        assert_eq!(until_next(midnight + 1, 0), 86_399);
        assert_eq!(until_next(midnight, 8), 8 * 3600);
        assert_eq!(until_next(midnight + 9 * 3600, 8), 23 * 3600);
    }
}
