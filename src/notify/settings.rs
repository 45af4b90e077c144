//! A notification channel as configured and checked: where it goes, what it is told about, and how hard to try.

use std::collections::BTreeSet;
use std::fmt;

use reqwest::Url;

use crate::secret::Secret;

/// Notices a channel's queue holds before new ones are dropped (and counted).
pub const DEFAULT_QUEUE: usize = 256;
/// Retries after the first try: five tries in all.
pub const DEFAULT_MAX_RETRIES: u32 = 4;
pub const DEFAULT_TELEGRAM_API: &str = "https://api.telegram.org";

/// One `[[notifications]]` table, checked.
#[derive(Debug, Clone)]
pub struct NotificationConfig {
    /// Names the channel in the delivery log and the metrics.
    pub name: String,
    pub channel: Channel,
    pub topics: BTreeSet<Topic>,
    /// Replaces every kind's default text; `None`: the defaults.
    pub template: Option<String>,
    pub queue: usize,
    pub max_retries: u32,
    /// Lets deliveries go to plain http and to loopback and private addresses (a receiver on the same host).
    pub allow_private: bool,
    /// The hour (UTC) of the daily summary, for a channel that takes `daily_summary`.
    pub summary_hour_utc: u8,
}

/// Where a channel delivers. The secrets (a bot token, a webhook URL with its token, a signing key) come from the
/// environment and never reach a log.
#[derive(Debug, Clone)]
pub enum Channel {
    Telegram {
        api_base: Url,
        token: Secret,
        chat_id: String,
    },
    Discord {
        url: Secret,
    },
    Slack {
        url: Secret,
    },
    Webhook {
        url: Url,
        /// The decoded `whsec_` key.
        key: Secret,
    },
}

impl Channel {
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Telegram { .. } => "telegram",
            Channel::Discord { .. } => "discord",
            Channel::Slack { .. } => "slack",
            Channel::Webhook { .. } => "webhook",
        }
    }
}

/// What a channel can be told about (`events = [...]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Topic {
    /// An order of a signal filled.
    Fills,
    /// A stop loss, take profit or liquidation filled.
    Exits,
    /// Risk denied a signal.
    Denials,
    /// The venue did not fill an order.
    Rejections,
    /// The kill switch moved.
    TradingState,
    /// The venue could not be reached, or an order's fate there is unknown.
    VenueFaults,
    /// Once a day: PnL, fees, equity, open positions.
    DailySummary,
}

impl Topic {
    pub const ALL: [Topic; 7] = [
        Topic::Fills,
        Topic::Exits,
        Topic::Denials,
        Topic::Rejections,
        Topic::TradingState,
        Topic::VenueFaults,
        Topic::DailySummary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Fills => "fills",
            Topic::Exits => "exits",
            Topic::Denials => "denials",
            Topic::Rejections => "rejections",
            Topic::TradingState => "trading_state",
            Topic::VenueFaults => "venue_faults",
            Topic::DailySummary => "daily_summary",
        }
    }

    pub fn parse(raw: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str() == raw)
    }

    /// What a channel that names no events is told: everything but the daily summary.
    pub fn defaults() -> BTreeSet<Topic> {
        Topic::ALL
            .into_iter()
            .filter(|t| *t != Topic::DailySummary)
            .collect()
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delivery URL: absolute, http or https (plain http only goes out with `allow_private`, checked at delivery).
pub fn parse_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err("must be an https:// URL".into());
    }
    Ok(url)
}
