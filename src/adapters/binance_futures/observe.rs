//! What Binance reports that is not an execution, turned into observations for the event log: funding rates and mark
//! prices from the mark price stream (or the REST poll while it is down), positions from `ACCOUNT_UPDATE` and margin
//! ratios from `MARGIN_CALL`. Rules act on them by `event_type` and field names, so those names are part of the
//! user-facing contract:
//!
//! | `event_type`   | fields                                                                                    |
//! |----------------|-------------------------------------------------------------------------------------------|
//! | `funding_rate` | `funding_rate`, `mark_price`, `index_price`, `next_funding_time` (ms since the epoch)     |
//! | `mark_price`   | `mark_price`, `index_price`, `funding_rate`                                               |
//! | `position`     | `position_amount`, `entry_price`, `unrealized_pnl`, `margin_type`, `isolated_wallet`,     |
//! |                | `position_side`, `reason`                                                                 |
//! | `margin_ratio` | `margin_ratio`, `maintenance_margin`, `margin_balance`, `mark_price`, `position_amount`, |
//! |                | `margin_type`, `unrealized_pnl`, `position_side`                                          |
//!
//! Numbers are JSON numbers written exactly as Binance sent them; `margin_ratio` and `margin_balance` are computed
//! here in `Decimal`. A field Binance left out is left out.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Map, Number, Value};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use sentinel_actors::event::Observation;
use sentinel_actors::types::{Symbol, Timestamp};

use super::lock;
use super::wire::{dec, text};

/// Observations queued for the daemon at most this many; more are dropped, never waited for.
pub const OBSERVATIONS: usize = 1024;
/// A full queue is reported at most this often.
const DROP_WARNING_EVERY: Duration = Duration::from_secs(60);
/// The source every observation names.
const SOURCE: &str = crate::adapters::BINANCE_FUTURES;
/// Decimal places of a computed margin ratio, rounded up so that a risk is never understated.
const RATIO_DP: u32 = 8;

/// One symbol's mark price data, wherever it came from (the stream's short keys or premiumIndex's long ones).
struct MarkData<'a> {
    symbol: Symbol,
    item: &'a Value,
    mark: &'a str,
    index: &'a str,
    funding: &'a str,
    next_funding: &'a str,
}

const STREAM_KEYS: [&str; 5] = ["s", "p", "i", "r", "T"];
const PREMIUM_INDEX_KEYS: [&str; 5] = [
    "symbol",
    "markPrice",
    "indexPrice",
    "lastFundingRate",
    "nextFundingTime",
];

#[derive(Default)]
struct Published {
    /// The last funding rate published per symbol: a change publishes again.
    funding: HashMap<Symbol, Decimal>,
    /// When each symbol's mark price was last published, for the throttle.
    marks: HashMap<Symbol, Instant>,
    /// Observations dropped on a full queue since the last warning.
    dropped: u64,
    last_warning: Option<Instant>,
}

/// Turns Binance frames into observations and queues them.
pub struct Observer {
    sender: mpsc::Sender<Observation>,
    /// Handed out once, to the daemon; while it is here nobody listens, so a full queue drops quietly.
    receiver: Mutex<Option<mpsc::Receiver<Observation>>>,
    /// Only the account's symbols are observed.
    symbols: Vec<Symbol>,
    /// At most one `mark_price` observation per symbol this often; `None`: none.
    mark_every: Option<Duration>,
    published: Mutex<Published>,
}

impl Observer {
    pub fn new(symbols: Vec<Symbol>, mark_every: Option<Duration>) -> Self {
        let (sender, receiver) = mpsc::channel(OBSERVATIONS);
        Self {
            sender,
            receiver: Mutex::new(Some(receiver)),
            symbols,
            mark_every,
            published: Mutex::new(Published::default()),
        }
    }

    pub fn take(&self) -> Option<mpsc::Receiver<Observation>> {
        lock(&self.receiver).take()
    }

    /// A `markPriceUpdate` frame's `data`.
    pub fn on_stream_mark(&self, data: &Value, now: Instant) {
        if text(data, "e") != Some("markPriceUpdate") {
            return;
        }
        if let Some(mark) = self.mark_data(data, STREAM_KEYS) {
            self.on_mark(&mark, now);
        }
    }

    /// One entry of `GET /fapi/v1/premiumIndex`.
    pub fn on_premium_index(&self, item: &Value, now: Instant) {
        if let Some(mark) = self.mark_data(item, PREMIUM_INDEX_KEYS) {
            self.on_mark(&mark, now);
        }
    }

    fn mark_data<'a>(&self, item: &'a Value, keys: [&'a str; 5]) -> Option<MarkData<'a>> {
        let symbol = text(item, keys[0]).and_then(|s| Symbol::new(s).ok())?;
        if !self.symbols.contains(&symbol) {
            return None;
        }
        Some(MarkData {
            symbol,
            item,
            mark: keys[1],
            index: keys[2],
            funding: keys[3],
            next_funding: keys[4],
        })
    }

    fn on_mark(&self, m: &MarkData<'_>, now: Instant) {
        // A delivery contract has no funding rate ("" on the stream): only its mark is observed.
        let rate = dec(m.item, m.funding);
        let (funding_changed, mark_due) = {
            let mut published = lock(&self.published);
            let funding_changed = match rate {
                Some(rate) if published.funding.get(&m.symbol) != Some(&rate) => {
                    published.funding.insert(m.symbol.clone(), rate);
                    true
                }
                _ => false,
            };
            let mark_due = match self.mark_every {
                Some(every) => {
                    let due = published
                        .marks
                        .get(&m.symbol)
                        .is_none_or(|last| now.saturating_duration_since(*last) >= every);
                    if due {
                        published.marks.insert(m.symbol.clone(), now);
                    }
                    due
                }
                None => false,
            };
            (funding_changed, mark_due)
        };
        if funding_changed {
            let mut fields = Map::new();
            put_number(&mut fields, "funding_rate", m.item, m.funding);
            put_number(&mut fields, "mark_price", m.item, m.mark);
            put_number(&mut fields, "index_price", m.item, m.index);
            put_number(&mut fields, "next_funding_time", m.item, m.next_funding);
            self.publish("funding_rate", Some(m.symbol.clone()), fields, now);
        }
        if mark_due {
            let mut fields = Map::new();
            put_number(&mut fields, "mark_price", m.item, m.mark);
            put_number(&mut fields, "index_price", m.item, m.index);
            put_number(&mut fields, "funding_rate", m.item, m.funding);
            self.publish("mark_price", Some(m.symbol.clone()), fields, now);
        }
    }

    /// `ACCOUNT_UPDATE`: one `position` observation per position in `a.P`.
    pub fn on_account_update(&self, event: &Value, now: Instant) {
        let update = &event["a"];
        for position in update["P"].as_array().into_iter().flatten() {
            let Some(symbol) = self.followed(position) else {
                continue;
            };
            let mut fields = Map::new();
            put_number(&mut fields, "position_amount", position, "pa");
            put_number(&mut fields, "entry_price", position, "ep");
            put_number(&mut fields, "unrealized_pnl", position, "up");
            put_text(&mut fields, "margin_type", position, "mt");
            put_number(&mut fields, "isolated_wallet", position, "iw");
            put_text(&mut fields, "position_side", position, "ps");
            put_text(&mut fields, "reason", update, "m");
            self.publish("position", Some(symbol), fields, now);
        }
    }

    /// `MARGIN_CALL`: one `margin_ratio` observation per position in `p`.
    pub fn on_margin_call(&self, event: &Value, now: Instant) {
        let cross_wallet = dec(event, "cw");
        for position in event["p"].as_array().into_iter().flatten() {
            let Some(symbol) = self.followed(position) else {
                continue;
            };
            let Some((ratio, balance)) = margin_ratio(position, cross_wallet) else {
                warn!(%symbol, "a Binance margin call could not be read; it is not observed");
                continue;
            };
            let mut fields = Map::new();
            fields.insert("margin_ratio".into(), decimal_number(ratio));
            put_number(&mut fields, "maintenance_margin", position, "mm");
            fields.insert("margin_balance".into(), decimal_number(balance));
            put_number(&mut fields, "mark_price", position, "mp");
            put_number(&mut fields, "position_amount", position, "pa");
            put_text(&mut fields, "margin_type", position, "mt");
            put_number(&mut fields, "unrealized_pnl", position, "up");
            put_text(&mut fields, "position_side", position, "ps");
            self.publish("margin_ratio", Some(symbol), fields, now);
        }
    }

    fn followed(&self, position: &Value) -> Option<Symbol> {
        text(position, "s")
            .and_then(|s| Symbol::new(s).ok())
            .filter(|s| self.symbols.contains(s))
    }

    /// Queues without waiting: the stream loops must keep reading.
    fn publish(
        &self,
        event_type: &str,
        symbol: Option<Symbol>,
        fields: Map<String, Value>,
        now: Instant,
    ) {
        let observation = Observation {
            source: SOURCE.into(),
            event_type: event_type.into(),
            symbol,
            received_at: Timestamp::now(),
            fields,
            delivery: None,
        };
        match self.sender.try_send(observation) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(dropped)) => {
                if lock(&self.receiver).is_some() {
                    // Nobody took the queue: nobody is waiting for these.
                    return;
                }
                let mut published = lock(&self.published);
                published.dropped += 1;
                let due = published
                    .last_warning
                    .is_none_or(|last| now.saturating_duration_since(last) >= DROP_WARNING_EVERY);
                if due {
                    warn!(
                        dropped = published.dropped,
                        last = %dropped.event_type,
                        "the observation queue is full; Binance observations are being dropped"
                    );
                    published.dropped = 0;
                    published.last_warning = Some(now);
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                debug!("nobody takes Binance observations any more")
            }
        }
    }
}

/// Maintenance margin over margin balance (isolated: `iw + up`; crossed: `cw + up`), and that balance. A balance of
/// zero or less means the ratio is at least 1: it is reported as 1.
fn margin_ratio(position: &Value, cross_wallet: Option<Decimal>) -> Option<(Decimal, Decimal)> {
    let maintenance = dec(position, "mm")?;
    let pnl = dec(position, "up")?;
    let isolated = text(position, "mt").is_some_and(|t| t.eq_ignore_ascii_case("isolated"));
    let wallet = if isolated {
        dec(position, "iw")?
    } else {
        cross_wallet?
    };
    let balance = wallet.checked_add(pnl)?;
    if balance <= Decimal::ZERO {
        return Some((Decimal::ONE, balance));
    }
    let ratio = maintenance
        .checked_div(balance)?
        .round_dp_with_strategy(RATIO_DP, RoundingStrategy::AwayFromZero)
        .normalize();
    Some((ratio, balance))
}

/// The number as Binance wrote it (a string or a bare number), as a JSON number; nothing when absent or not a number.
fn put_number(fields: &mut Map<String, Value>, name: &str, item: &Value, key: &str) {
    let number = match item.get(key) {
        Some(Value::Number(n)) => Some(n.clone()),
        Some(Value::String(s)) if Decimal::from_str(s).is_ok() => Number::from_str(s).ok(),
        _ => None,
    };
    if let Some(number) = number {
        fields.insert(name.into(), Value::Number(number));
    }
}

fn put_text(fields: &mut Map<String, Value>, name: &str, item: &Value, key: &str) {
    if let Some(value) = text(item, key) {
        fields.insert(name.into(), Value::String(value.to_string()));
    }
}

fn decimal_number(value: Decimal) -> Value {
    Number::from_str(&value.to_string())
        .map(Value::Number)
        .unwrap_or_else(|_| Value::String(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn btc() -> Symbol {
        Symbol::new("BTCUSDT").unwrap()
    }

    fn observer(mark_every: Option<Duration>) -> (Observer, mpsc::Receiver<Observation>) {
        let observer = Observer::new(vec![btc(), Symbol::new("ETHUSDT").unwrap()], mark_every);
        let receiver = observer.take().unwrap();
        (observer, receiver)
    }

    fn drain(receiver: &mut mpsc::Receiver<Observation>) -> Vec<Observation> {
        std::iter::from_fn(|| receiver.try_recv().ok()).collect()
    }

    fn mark_frame(symbol: &str, mark: &str, rate: &str) -> Value {
        json!({"e": "markPriceUpdate", "E": 1562305380000i64, "s": symbol, "p": mark, "i": "11784.62659091",
               "P": "11784.25641265", "r": rate, "T": 1562306400000i64})
    }

    fn field(o: &Observation, name: &str) -> String {
        o.fields[name].to_string()
    }

    #[test]
    fn a_funding_rate_is_published_first_and_then_only_when_it_changes() {
        let (observer, mut rx) = observer(None);
        let now = Instant::now();
        observer.on_stream_mark(&mark_frame("BTCUSDT", "11794.15000000", "0.00038167"), now);
        observer.on_stream_mark(&mark_frame("BTCUSDT", "11795.00000000", "0.00038167"), now);
        let first = drain(&mut rx);
        assert_eq!(first.len(), 1, "an unchanged rate is not published again");
        let o = &first[0];
        assert_eq!(
            (o.source.as_str(), o.event_type.as_str()),
            ("binance-futures", "funding_rate")
        );
        assert_eq!(o.symbol, Some(btc()));
        assert_eq!(field(o, "funding_rate"), "0.00038167");
        assert_eq!(field(o, "mark_price"), "11794.15000000");
        assert_eq!(field(o, "index_price"), "11784.62659091");
        assert_eq!(field(o, "next_funding_time"), "1562306400000");
        assert!(o.fields["funding_rate"].is_number());

        observer.on_stream_mark(&mark_frame("BTCUSDT", "11795.00000000", "0.00040000"), now);
        // The same rate written otherwise is the same rate.
        observer.on_stream_mark(&mark_frame("BTCUSDT", "11795.00000000", "0.0004"), now);
        let changed = drain(&mut rx);
        assert_eq!(changed.len(), 1);
        assert_eq!(field(&changed[0], "funding_rate"), "0.00040000");
    }

    #[test]
    fn the_rest_poll_publishes_the_same_observation() {
        let (observer, mut rx) = observer(None);
        let item = json!({"symbol": "BTCUSDT", "markPrice": "11793.63104562", "indexPrice": "11781.80495970",
                          "lastFundingRate": "0.00038246", "nextFundingTime": 1597392000000i64});
        observer.on_premium_index(&item, Instant::now());
        let got = drain(&mut rx);
        assert_eq!(got.len(), 1);
        assert_eq!(field(&got[0], "funding_rate"), "0.00038246");
        assert_eq!(field(&got[0], "next_funding_time"), "1597392000000");
    }

    #[test]
    fn mark_prices_are_throttled_per_symbol() {
        let (observer, mut rx) = observer(Some(Duration::from_secs(10)));
        let start = Instant::now();
        let marks = |rx: &mut mpsc::Receiver<Observation>| {
            drain(rx)
                .into_iter()
                .filter(|o| o.event_type == "mark_price")
                .collect::<Vec<_>>()
        };
        observer.on_stream_mark(&mark_frame("BTCUSDT", "100", "0.0001"), start);
        observer.on_stream_mark(&mark_frame("ETHUSDT", "10", "0.0001"), start);
        observer.on_stream_mark(
            &mark_frame("BTCUSDT", "101", "0.0001"),
            start + Duration::from_secs(5),
        );
        let first = marks(&mut rx);
        assert_eq!(first.len(), 2, "one per symbol within the interval");
        assert_eq!(field(&first[0], "mark_price"), "100");
        assert_eq!(field(&first[0], "funding_rate"), "0.0001");
        observer.on_stream_mark(
            &mark_frame("BTCUSDT", "102", "0.0001"),
            start + Duration::from_secs(10),
        );
        let later = marks(&mut rx);
        assert_eq!(later.len(), 1);
        assert_eq!(field(&later[0], "mark_price"), "102");
    }

    #[test]
    fn no_mark_price_observations_unless_configured() {
        let (observer, mut rx) = observer(None);
        observer.on_stream_mark(&mark_frame("BTCUSDT", "100", "0.0001"), Instant::now());
        assert!(drain(&mut rx).iter().all(|o| o.event_type != "mark_price"));
    }

    #[test]
    fn foreign_symbols_and_other_frames_are_ignored() {
        let (observer, mut rx) = observer(Some(Duration::from_secs(1)));
        let now = Instant::now();
        observer.on_stream_mark(&mark_frame("XRPUSDT", "1", "0.0001"), now);
        observer.on_stream_mark(&json!({"e": "aggTrade", "s": "BTCUSDT", "p": "1"}), now);
        observer.on_account_update(
            &json!({"e": "ACCOUNT_UPDATE", "a": {"m": "ORDER", "P": [{"s": "XRPUSDT", "pa": "1"}]}}),
            now,
        );
        observer.on_margin_call(
            &json!({"e": "MARGIN_CALL", "cw": "3", "p": [{"s": "XRPUSDT", "mt": "CROSSED", "up": "0", "mm": "1"}]}),
            now,
        );
        assert!(drain(&mut rx).is_empty());
    }

    #[test]
    fn an_account_update_gives_one_position_observation_per_position() {
        let (observer, mut rx) = observer(None);
        let event = json!({"e": "ACCOUNT_UPDATE", "E": 1564745798939i64, "T": 1564745798938i64, "a": {
        "m": "ORDER",
        "B": [{"a": "USDT", "wb": "122624.12345678", "cw": "100.12345678", "bc": "50.12345678"}],
        "P": [
            {"s": "BTCUSDT", "pa": "0", "ep": "0.00000", "bep": "0", "cr": "200", "up": "0",
             "mt": "isolated", "iw": "0.00000000", "ps": "BOTH"},
            {"s": "BTCUSDT", "pa": "20", "ep": "6563.66500", "bep": "6563.6", "cr": "0",
             "up": "2850.21200000", "mt": "isolated", "iw": "13200.70726908", "ps": "LONG"},
            {"s": "XRPUSDT", "pa": "1", "ep": "1", "up": "0", "mt": "cross", "iw": "0", "ps": "BOTH"}
        ]}});
        observer.on_account_update(&event, Instant::now());
        let got = drain(&mut rx);
        assert_eq!(got.len(), 2);
        let long = &got[1];
        assert_eq!(long.event_type, "position");
        assert_eq!(field(long, "position_amount"), "20");
        assert_eq!(field(long, "entry_price"), "6563.66500");
        assert_eq!(field(long, "unrealized_pnl"), "2850.21200000");
        assert_eq!(long.fields["margin_type"], "isolated");
        assert_eq!(field(long, "isolated_wallet"), "13200.70726908");
        assert_eq!(long.fields["position_side"], "LONG");
        assert_eq!(long.fields["reason"], "ORDER");
    }

    fn call(cw: Option<&str>, position: Value) -> Vec<Observation> {
        let (observer, mut rx) = observer(None);
        let mut event = json!({"e": "MARGIN_CALL", "E": 1587727187525i64, "p": [position]});
        if let Some(cw) = cw {
            event["cw"] = json!(cw);
        }
        observer.on_margin_call(&event, Instant::now());
        drain(&mut rx)
    }

    #[test]
    fn a_margin_call_gives_the_ratio_of_maintenance_margin_to_margin_balance() {
        struct Case {
            cw: Option<&'static str>,
            mt: &'static str,
            iw: &'static str,
            up: &'static str,
            mm: &'static str,
            ratio: &'static str,
            balance: &'static str,
        }
        let cases = [
            // Binance's documented example: crossed, (3.16812045 - 1.166074) = 2.00204645.
            Case {
                cw: Some("3.16812045"),
                mt: "CROSSED",
                iw: "0",
                up: "-1.166074",
                mm: "1.614445",
                ratio: "0.80639738",
                balance: "2.00204645",
            },
            // Isolated: the isolated wallet, not the cross wallet.
            Case {
                cw: None,
                mt: "ISOLATED",
                iw: "100",
                up: "-60",
                mm: "20",
                ratio: "0.5",
                balance: "40",
            },
            // Rounded up, never down.
            Case {
                cw: None,
                mt: "ISOLATED",
                iw: "3",
                up: "0",
                mm: "1",
                ratio: "0.33333334",
                balance: "3",
            },
            // Nothing left, or less than nothing: the ratio is 1.
            Case {
                cw: None,
                mt: "ISOLATED",
                iw: "50",
                up: "-50",
                mm: "5",
                ratio: "1",
                balance: "0",
            },
            Case {
                cw: Some("10"),
                mt: "CROSSED",
                iw: "0",
                up: "-12.5",
                mm: "5",
                ratio: "1",
                balance: "-2.5",
            },
        ];
        for case in cases {
            let got = call(
                case.cw,
                json!({"s": "ETHUSDT", "ps": "BOTH", "pa": "1.327", "mt": case.mt, "iw": case.iw,
                       "mp": "187.17127", "up": case.up, "mm": case.mm}),
            );
            assert_eq!(got.len(), 1, "{} {}", case.mt, case.up);
            let o = &got[0];
            assert_eq!(o.event_type, "margin_ratio");
            assert_eq!(o.symbol, Some(Symbol::new("ETHUSDT").unwrap()));
            assert_eq!(
                field(o, "margin_ratio"),
                case.ratio,
                "{} {}",
                case.mt,
                case.up
            );
            assert_eq!(field(o, "margin_balance"), case.balance);
            assert_eq!(field(o, "maintenance_margin"), case.mm);
            assert_eq!(field(o, "mark_price"), "187.17127");
            assert_eq!(field(o, "position_amount"), "1.327");
            assert_eq!(o.fields["margin_type"], case.mt);
            assert_eq!(field(o, "unrealized_pnl"), case.up);
            assert_eq!(o.fields["position_side"], "BOTH");
            assert!(o.fields["margin_ratio"].is_number());
        }
    }

    #[test]
    fn a_crossed_margin_call_without_the_cross_wallet_is_not_guessed() {
        let got = call(
            None,
            json!({"s": "ETHUSDT", "ps": "BOTH", "pa": "1", "mt": "CROSSED", "iw": "0", "mp": "1", "up": "0",
                   "mm": "1"}),
        );
        assert!(got.is_empty());
    }

    #[test]
    fn a_full_queue_drops_without_waiting() {
        let (observer, mut rx) = observer(Some(Duration::ZERO));
        let now = Instant::now();
        for i in 0..(OBSERVATIONS + 10) {
            observer.on_stream_mark(&mark_frame("BTCUSDT", &i.to_string(), "0.0001"), now);
        }
        assert_eq!(drain(&mut rx).len(), OBSERVATIONS);
        assert!(
            lock(&observer.published).dropped > 0
                || lock(&observer.published).last_warning.is_some()
        );
    }
}
