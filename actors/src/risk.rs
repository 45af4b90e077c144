//! Pre-trade risk: the only place an `Approved` order can be made, and the typed reasons for a denial.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use rust_decimal::prelude::Signed;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::amount::{MAX_ACCOUNT_TOTAL, MAX_QUANTITY};
use crate::order::OrderRequest;
use crate::portfolio::{initial_margin, Portfolio};
use crate::signal::{Action, SizeSpec};
use crate::types::{Leverage, Price, Quantity, Symbol};

/// An order that passed risk. Only this module can make one, so nothing unchecked reaches an exchange.
#[derive(Clone, Debug, PartialEq)]
pub struct Approved<T>(T);

impl<T> Approved<T> {
    fn grant(order: T) -> Self {
        Self(order)
    }

    pub fn get(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl Approved<OrderRequest> {
    /// The same order for fewer units (a venue's lot step rounds it down): what risk approved still covers it.
    /// `None` for more units than approved.
    pub fn narrowed(self, quantity: Quantity) -> Option<Self> {
        if quantity > self.0.quantity {
            return None;
        }
        let mut order = self.0;
        order.quantity = quantity;
        Some(Self(order))
    }
}

/// Whether the account may trade.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TradingState {
    /// Everything that passes the limits is allowed.
    #[default]
    Active,
    /// Only orders that shrink a position are allowed.
    Reducing,
    /// Nothing is allowed (the kill switch).
    Halted,
}

impl fmt::Display for TradingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TradingState::Active => "active",
            TradingState::Reducing => "reducing",
            TradingState::Halted => "halted",
        })
    }
}

/// Why risk refused an order. Kept typed all the way to the API answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum DenyReason {
    UnknownSymbol {
        symbol: Symbol,
    },
    SymbolDisabled {
        symbol: Symbol,
    },
    ActionNotAllowed {
        symbol: Symbol,
        action: Action,
    },
    LeverageAboveLimit {
        leverage: Leverage,
        limit: Leverage,
    },
    NotionalAboveLimit {
        notional: Decimal,
        limit: Decimal,
    },
    /// The position after the order would hold more than `MAX_QUANTITY` units (also said of a position too large to
    /// close in one order, which only a journal from before the bound can hold).
    PositionAboveLimit {
        quantity: Decimal,
        limit: Decimal,
    },
    /// An entry's size works out to more units than one order may hold, at the price it would be placed at.
    SizeAboveLimit {
        size: SizeSpec,
        price: Price,
        limit: Decimal,
    },
    /// The account's running totals are past `MAX_ACCOUNT_TOTAL`, where its numbers stop meaning anything: only
    /// reducing orders.
    AccountAboveLimit {
        total: Decimal,
        limit: Decimal,
    },
    /// The account is in `reducing` state and this order would open or grow a position.
    ReducingOnly,
    /// The account is halted.
    Halted,
    // -- margin (variants added below this line by the margin work) --
    /// Opening or growing the position needs more initial margin than the account has available: `required` is
    /// IM(after) - IM(now), `available` the wallet plus unrealized PnL minus the initial margin of every open
    /// position.
    InsufficientMargin {
        required: Decimal,
        available: Decimal,
    },
    // -- account limits (variants added below this line by the limits work) --
    /// The signal is older than `risk.max_signal_age_secs` (from the sender's timestamp when it gave one, else
    /// from its acceptance).
    Stale {
        age_ms: i64,
        limit_ms: i64,
    },
    /// The signal's price is further from the last mark before it than `risk.max_price_deviation`.
    PriceDeviation {
        price: Price,
        mark: Price,
        deviation_pct: Decimal,
        limit_pct: Decimal,
    },
    /// An entry on this symbol came less than `risk.entry_cooldown_secs` ago.
    Cooldown {
        symbol: Symbol,
        since_ms: i64,
        cooldown_ms: i64,
    },
    /// `orders` were placed in the last 60 s (on `symbol`, or on the account when `None`): the limit is reached.
    OrdersPerMinute {
        symbol: Option<Symbol>,
        orders: u64,
        limit: u32,
    },
    /// The order would leave more positions open than `risk.max_open_positions`.
    OpenPositionsAboveLimit {
        open: u64,
        limit: u32,
    },
    /// The sum of |position| x price over symbols, after the order, would be above `risk.max_gross_exposure`.
    GrossExposureAboveLimit {
        exposure: Decimal,
        limit: Decimal,
    },
    /// Today's realized loss net of fees reached `risk.max_daily_loss`: the account is reducing until the next UTC
    /// day or an operator's resume.
    DailyLossReached {
        loss: Decimal,
        limit: Decimal,
    },
    /// Equity fell from its peak by `risk.max_drawdown` or more: the account is halted until an operator resumes.
    DrawdownReached {
        drawdown: Decimal,
        limit: Decimal,
    },
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::UnknownSymbol { symbol } => write!(f, "{symbol} is not configured"),
            DenyReason::SymbolDisabled { symbol } => write!(f, "{symbol} is disabled"),
            DenyReason::ActionNotAllowed { symbol, action } => {
                write!(f, "{action} is not an allowed action for {symbol}")
            }
            DenyReason::LeverageAboveLimit { leverage, limit } => {
                write!(f, "leverage {leverage} is above the limit of {limit}")
            }
            DenyReason::NotionalAboveLimit { notional, limit } => {
                write!(
                    f,
                    "position notional {notional} would be above the limit of {limit}"
                )
            }
            DenyReason::PositionAboveLimit { quantity, limit } => {
                write!(
                    f,
                    "a position of {quantity} units would be above the limit of {limit}"
                )
            }
            DenyReason::SizeAboveLimit { size, price, limit } => {
                write!(
                    f,
                    "size {size} at price {price} works out to more than {limit} units, the most one order may hold"
                )
            }
            DenyReason::AccountAboveLimit { total, limit } => {
                write!(
                    f,
                    "the account's totals ({total}) are past {limit}: only reducing orders"
                )
            }
            DenyReason::ReducingOnly => {
                f.write_str("trading state is reducing: only reducing orders")
            }
            DenyReason::Halted => f.write_str("trading is halted"),
            // -- margin (arms added below this line by the margin work) --
            DenyReason::InsufficientMargin {
                required,
                available,
            } => write!(
                f,
                "insufficient margin: the order needs {required} of initial margin and {available} is available"
            ),
            // -- account limits (arms added below this line by the limits work) --
            DenyReason::Stale { age_ms, limit_ms } => {
                write!(f, "the signal is stale: {age_ms} ms old, the limit is {limit_ms} ms")
            }
            DenyReason::PriceDeviation {
                price,
                mark,
                deviation_pct,
                limit_pct,
            } => write!(
                f,
                "the signal's price {price} is {deviation_pct}% from the last mark {mark}, more than {limit_pct}%"
            ),
            DenyReason::Cooldown {
                symbol,
                since_ms,
                cooldown_ms,
            } => write!(
                f,
                "the last entry on {symbol} was {since_ms} ms ago, within the cooldown of {cooldown_ms} ms"
            ),
            DenyReason::OrdersPerMinute {
                symbol: Some(symbol),
                orders,
                limit,
            } => write!(
                f,
                "{orders} orders on {symbol} in the last minute: the limit is {limit}"
            ),
            DenyReason::OrdersPerMinute {
                symbol: None,
                orders,
                limit,
            } => write!(f, "{orders} orders in the last minute: the limit is {limit}"),
            DenyReason::OpenPositionsAboveLimit { open, limit } => {
                write!(f, "{open} open positions would be above the limit of {limit}")
            }
            DenyReason::GrossExposureAboveLimit { exposure, limit } => {
                write!(f, "gross exposure {exposure} would be above the limit of {limit}")
            }
            DenyReason::DailyLossReached { loss, limit } => write!(
                f,
                "today's realized loss {loss} reached the limit of {limit}: only reducing orders until the next UTC day"
            ),
            DenyReason::DrawdownReached { drawdown, limit } => write!(
                f,
                "the drawdown {drawdown} from peak equity reached the limit of {limit}: halted until an operator resumes"
            ),
        }
    }
}

/// The limits of one symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolRules {
    pub enabled: bool,
    pub allowed_actions: BTreeSet<Action>,
    pub max_leverage: Leverage,
    /// Largest absolute position value, in quote currency, valued at the order's reference price.
    pub max_notional: Decimal,
}

/// What risk needs to know about the account to judge one order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exposure {
    /// The order's symbol's position, signed.
    pub position: Decimal,
    /// The largest of the account's running totals (`Portfolio::largest_total`).
    pub account_total: Decimal,
    /// The initial margin the symbol's position holds now (`Portfolio::position_margin`).
    pub position_margin: Decimal,
    /// What new positions may still take as initial margin (`Portfolio::available_margin`).
    pub available_margin: Decimal,
}

impl Exposure {
    pub fn of(portfolio: &Portfolio, symbol: &Symbol) -> Self {
        Self {
            position: portfolio.position_quantity(symbol),
            account_total: portfolio.largest_total(),
            position_margin: portfolio.position_margin(symbol),
            available_margin: portfolio.available_margin(),
        }
    }

    /// A position on an account whose totals are nowhere near the bound, with margin to spare.
    pub fn position(position: Decimal) -> Self {
        Self {
            position,
            account_total: Decimal::ZERO,
            position_margin: Decimal::ZERO,
            available_margin: MAX_ACCOUNT_TOTAL,
        }
    }
}

/// The pre-trade checks, as plain logic.
#[derive(Clone, Debug)]
pub struct RiskEngine {
    rules: HashMap<Symbol, SymbolRules>,
    state: TradingState,
}

impl RiskEngine {
    pub fn new(rules: HashMap<Symbol, SymbolRules>, state: TradingState) -> Self {
        Self { rules, state }
    }

    pub fn state(&self) -> TradingState {
        self.state
    }

    pub fn set_state(&mut self, state: TradingState) {
        self.state = state;
    }

    /// Checks `order` against the account and grants it, or says why not. Orders that only shrink a position pass
    /// every limit, so that a position can always be closed.
    pub fn check(
        &self,
        order: OrderRequest,
        exposure: Exposure,
    ) -> Result<Approved<OrderRequest>, DenyReason> {
        let symbol = &order.symbol;
        let rules = self
            .rules
            .get(symbol)
            .ok_or_else(|| DenyReason::UnknownSymbol {
                symbol: symbol.clone(),
            })?;
        if self.state == TradingState::Halted {
            return Err(DenyReason::Halted);
        }
        if !rules.enabled {
            return Err(DenyReason::SymbolDisabled {
                symbol: symbol.clone(),
            });
        }
        if !rules.allowed_actions.contains(&order.action) {
            return Err(DenyReason::ActionNotAllowed {
                symbol: symbol.clone(),
                action: order.action,
            });
        }
        let position = exposure.position;
        // Only a position from before the bounds can be so large that adding to it overflows; that grows it.
        let Some(after) = position.checked_add(order.side.sign() * order.quantity.get()) else {
            return Err(DenyReason::PositionAboveLimit {
                quantity: position.abs(),
                limit: MAX_QUANTITY,
            });
        };
        let reduces = after.abs() <= position.abs()
            && (after.is_zero() || after.signum() == position.signum());
        if reduces {
            return Ok(Approved::grant(order));
        }
        if self.state == TradingState::Reducing || order.reduce_only {
            return Err(DenyReason::ReducingOnly);
        }
        if order.leverage > rules.max_leverage {
            return Err(DenyReason::LeverageAboveLimit {
                leverage: order.leverage,
                limit: rules.max_leverage,
            });
        }
        if after.abs() > MAX_QUANTITY {
            return Err(DenyReason::PositionAboveLimit {
                quantity: after.abs(),
                limit: MAX_QUANTITY,
            });
        }
        if exposure.account_total > MAX_ACCOUNT_TOTAL {
            return Err(DenyReason::AccountAboveLimit {
                total: exposure.account_total,
                limit: MAX_ACCOUNT_TOTAL,
            });
        }
        // At most MAX_QUANTITY x MAX_PRICE = 1e22: cannot overflow.
        let notional = after.abs() * order.reference_price.get();
        if notional > rules.max_notional {
            return Err(DenyReason::NotionalAboveLimit {
                notional,
                limit: rules.max_notional,
            });
        }
        // The order's leverage becomes the whole position's (Binance: one leverage per symbol), so the position
        // after it holds notional / that leverage; what it holds now is freed.
        let required =
            initial_margin(notional, order.leverage).saturating_sub(exposure.position_margin);
        if required > exposure.available_margin {
            return Err(DenyReason::InsufficientMargin {
                required,
                available: exposure.available_margin,
            });
        }
        Ok(Approved::grant(order))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::Protection;
    use crate::types::{ClientOrderId, Price, Quantity, Side, SignalId};
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn btc() -> Symbol {
        Symbol::new("BTCUSDT").unwrap()
    }

    fn engine(state: TradingState) -> RiskEngine {
        let rules = SymbolRules {
            enabled: true,
            allowed_actions: [Action::OpenLong, Action::Close].into_iter().collect(),
            max_leverage: Leverage::new(10).unwrap(),
            max_notional: d("50000"),
        };
        RiskEngine::new([(btc(), rules)].into_iter().collect(), state)
    }

    fn order(action: Action, side: Side, qty: &str, leverage: u32) -> OrderRequest {
        OrderRequest {
            client_order_id: ClientOrderId::derive(&SignalId::new("s").unwrap(), 0),
            signal_id: SignalId::new("s").unwrap(),
            symbol: btc(),
            action,
            side,
            quantity: Quantity::from_str(qty).unwrap(),
            reduce_only: false,
            leverage: Leverage::new(leverage).unwrap(),
            reference_price: Price::from_str("40000").unwrap(),
            protection: Protection::default(),
            limit: None,
        }
    }

    #[test]
    fn denials_are_typed() {
        let active = engine(TradingState::Active);
        let cases = [
            (
                order(Action::OpenShort, Side::Sell, "0.1", 5),
                d("0"),
                Err(DenyReason::ActionNotAllowed {
                    symbol: btc(),
                    action: Action::OpenShort,
                }),
            ),
            (
                order(Action::OpenLong, Side::Buy, "0.1", 20),
                d("0"),
                Err(DenyReason::LeverageAboveLimit {
                    leverage: Leverage::new(20).unwrap(),
                    limit: Leverage::new(10).unwrap(),
                }),
            ),
            (
                order(Action::OpenLong, Side::Buy, "1", 5),
                d("0.5"),
                Err(DenyReason::NotionalAboveLimit {
                    notional: d("60000"),
                    limit: d("50000"),
                }),
            ),
            (
                order(Action::OpenLong, Side::Buy, "1.25", 5),
                d("0"),
                Ok(()),
            ),
            (order(Action::Close, Side::Sell, "1", 50), d("3"), Ok(())),
        ];
        for (order, position, expected) in cases {
            let got = active
                .check(order, Exposure::position(position))
                .map(|_| ());
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn trading_states_gate_orders() {
        let reducing = engine(TradingState::Reducing);
        assert_eq!(
            reducing
                .check(
                    order(Action::OpenLong, Side::Buy, "0.1", 5),
                    Exposure::position(d("0"))
                )
                .map(|_| ()),
            Err(DenyReason::ReducingOnly)
        );
        assert!(reducing
            .check(
                order(Action::Close, Side::Sell, "0.1", 5),
                Exposure::position(d("0.1"))
            )
            .is_ok());
        let halted = engine(TradingState::Halted);
        assert_eq!(
            halted
                .check(
                    order(Action::Close, Side::Sell, "0.1", 5),
                    Exposure::position(d("0.1"))
                )
                .map(|_| ()),
            Err(DenyReason::Halted)
        );
    }

    #[test]
    fn a_reduce_only_order_may_not_flip_a_position() {
        let mut flip = order(Action::Close, Side::Sell, "2", 5);
        flip.reduce_only = true;
        assert_eq!(
            engine(TradingState::Active)
                .check(flip, Exposure::position(d("1")))
                .map(|_| ()),
            Err(DenyReason::ReducingOnly)
        );
    }

    #[test]
    fn positions_and_account_totals_are_bounded() {
        let active = engine(TradingState::Active);
        let max = MAX_QUANTITY;
        let check = |side: Side, qty: &str, exposure: Exposure| {
            active
                .check(order(Action::Close, side, qty, 5), exposure)
                .map(|_| ())
        };
        let mut open_long = order(Action::OpenLong, Side::Buy, "1", 5);
        open_long.reference_price = Price::from_str("0.00000001").unwrap();
        assert_eq!(
            active
                .check(open_long.clone(), Exposure::position(max))
                .map(|_| ()),
            Err(DenyReason::PositionAboveLimit {
                quantity: max + Decimal::ONE,
                limit: max,
            })
        );
        assert_eq!(
            check(Side::Sell, "1000000000000", Exposure::position(max)),
            Ok(()),
            "the largest position closes in one order"
        );
        // A position from before the bounds: growing it overflows and is denied, shrinking it is allowed.
        assert_eq!(
            active
                .check(open_long.clone(), Exposure::position(Decimal::MAX))
                .map(|_| ()),
            Err(DenyReason::PositionAboveLimit {
                quantity: Decimal::MAX,
                limit: max,
            })
        );
        assert_eq!(
            check(Side::Sell, "1", Exposure::position(Decimal::MAX)),
            Ok(())
        );
        let absurd = Exposure {
            account_total: MAX_ACCOUNT_TOTAL + Decimal::ONE,
            ..Exposure::position(d("1"))
        };
        assert_eq!(
            active.check(open_long, absurd).map(|_| ()),
            Err(DenyReason::AccountAboveLimit {
                total: MAX_ACCOUNT_TOTAL + Decimal::ONE,
                limit: MAX_ACCOUNT_TOTAL,
            })
        );
        assert_eq!(check(Side::Sell, "1", absurd), Ok(()));
    }

    #[test]
    fn an_entry_needs_its_initial_margin_available_and_a_reduction_never_does() {
        let active = engine(TradingState::Active);
        // Long 0.5 BTC at 10x, valued at 40000: it holds 0.5 x 40000 / 10 = 2000 of initial margin. The wallet is
        // 3000 with no unrealized PnL: available = 3000 - 2000 = 1000.
        let account = Exposure {
            position: d("0.5"),
            account_total: d("3000"),
            position_margin: d("2000"),
            available_margin: d("1000"),
        };
        let check = |qty: &str, leverage: u32, side: Side| {
            active
                .check(order(Action::OpenLong, side, qty, leverage), account)
                .map(|_| ())
        };
        // Adding 0.25 at 10x: IM(after) = 0.75 x 40000 / 10 = 3000, so 3000 - 2000 = 1000 more: just fits.
        assert_eq!(check("0.25", 10, Side::Buy), Ok(()));
        // Adding 0.3: 0.8 x 40000 / 10 = 3200, 1200 more than now.
        assert_eq!(
            check("0.3", 10, Side::Buy),
            Err(DenyReason::InsufficientMargin {
                required: d("1200"),
                available: d("1000"),
            })
        );
        // The same add at 5x re-margins the whole position: 0.8 x 40000 / 5 = 6400, 4400 more.
        assert_eq!(
            check("0.3", 5, Side::Buy),
            Err(DenyReason::InsufficientMargin {
                required: d("4400"),
                available: d("1000"),
            })
        );
        // An account already short of margin may still close.
        let short_of_margin = Exposure {
            available_margin: d("-500"),
            ..account
        };
        assert!(active
            .check(order(Action::Close, Side::Sell, "0.5", 10), short_of_margin)
            .is_ok());
    }
}
