//! Property tests over the bounds: for any amounts within them and any sequence of signals and ticks, sizing, risk,
//! the paper venue and the portfolio never panic, and whatever is out of bounds comes back as a typed denial.
//!
//! The operations run directly, as the actors run them, with no `catch_unwind`: a panic fails the test.

use std::collections::HashMap;

use proptest::prelude::*;
use rust_decimal::Decimal;

use sentinel_actors::amount::{MAX_ACCOUNT_TOTAL, MAX_PRICE, MAX_QUANTITY, MAX_QUOTE, MIN_PRICE};
use sentinel_actors::portfolio::Portfolio;
use sentinel_actors::risk::{DenyReason, Exposure, RiskEngine, SymbolRules, TradingState};
use sentinel_actors::signal::{
    Action, EntryParams, ExitLevel, Intent, Signal, SizeSpec, TargetPosition,
};
use sentinel_actors::strategy::{Decision, MarketView, StrategyBook, SymbolSettings};
use sentinel_actors::types::{
    Leverage, PositionSide, Price, Quantity, SignalId, Symbol, Timestamp,
};
use sentinel_actors::venue::Execution;

use super::book::Book;
use super::PaperCosts;

const SYMBOLS: [&str; 2] = ["SHIBUSDT", "BTCUSDT"];

/// Prices from 1e-20 to 1e12, pushed into the bounds: the edges come up often, and so do many decimal places (a
/// computed or journaled price may have more than a sender may write).
fn price() -> impl Strategy<Value = Price> {
    (1i64..=999_999_999_999, 0u32..=20).prop_map(|(m, scale)| {
        Price::new(Decimal::new(m, scale).clamp(MIN_PRICE, MAX_PRICE)).unwrap()
    })
}

fn quantity() -> impl Strategy<Value = Quantity> {
    prop_oneof![
        Just(Quantity::new(MAX_QUANTITY).unwrap()),
        (1i64..=999_999_999_999, 0u32..=24)
            .prop_map(
                |(m, scale)| Quantity::new(Decimal::new(m, scale).min(MAX_QUANTITY)).unwrap()
            ),
    ]
}

/// Any size a sender can have accepted: (0, 100] percent, a quantity, (0, MAX_QUOTE] of quote currency.
fn size() -> impl Strategy<Value = SizeSpec> {
    prop_oneof![
        (1i64..=100_000_000_000_000).prop_map(|m| SizeSpec::EquityPercent(Decimal::new(m, 12))),
        Just(SizeSpec::EquityPercent(Decimal::ONE_HUNDRED)),
        quantity().prop_map(SizeSpec::Base),
        (1i64..=999_999_999_999_999, 0u32..=12)
            .prop_map(|(m, scale)| SizeSpec::Quote(Decimal::new(m, scale).min(MAX_QUOTE))),
        Just(SizeSpec::Quote(MAX_QUOTE)),
    ]
}

fn exit_level() -> impl Strategy<Value = Option<ExitLevel>> {
    prop_oneof![
        Just(None),
        (1i64..100_000_000_000_000).prop_map(|m| Some(ExitLevel::Percent(Decimal::new(m, 12)))),
        price().prop_map(|p| Some(ExitLevel::Price(p))),
    ]
}

fn entry() -> impl Strategy<Value = EntryParams> {
    (
        proptest::option::of(size()),
        proptest::option::of(1u32..=125),
        exit_level(),
        exit_level(),
    )
        .prop_map(|(size, leverage, stop_loss, take_profit)| EntryParams {
            size,
            leverage: leverage.map(|l| Leverage::new(l).unwrap()),
            stop_loss,
            take_profit,
            limit: None,
        })
}

fn side() -> impl Strategy<Value = PositionSide> {
    prop_oneof![Just(PositionSide::Long), Just(PositionSide::Short)]
}

fn intent() -> impl Strategy<Value = Intent> {
    prop_oneof![
        3 => (side(), entry()).prop_map(|(side, order)| Intent::Open { side, order }),
        1 => proptest::option::of(side()).prop_map(|side| Intent::Close { side }),
        1 => entry().prop_map(|order| Intent::Reverse { order }),
        1 => prop_oneof![
            Just(TargetPosition::Flat),
            quantity().prop_map(TargetPosition::Long),
            quantity().prop_map(TargetPosition::Short),
        ]
        .prop_map(|target| Intent::Target { target }),
        2 => Just(Intent::Tick),
    ]
}

/// One webhook: a symbol, maybe a price, and what it asks for.
fn step() -> impl Strategy<Value = (usize, Option<Price>, Intent)> {
    (0..SYMBOLS.len(), proptest::option::of(price()), intent())
}

/// What the configuration may hold: fees and slippage are fractions below 1, steps any positive number.
fn setup() -> impl Strategy<Value = (PaperCosts, Decimal, Decimal)> {
    let fraction = (0i64..1_000_000).prop_map(|m| Decimal::new(m, 6));
    let step = (1i64..=1_000_000, 0u32..=28).prop_map(|(m, scale)| Decimal::new(m, scale));
    let balance = (1i64..=i64::MAX, 0u32..=8).prop_map(|(m, scale)| Decimal::new(m, scale));
    (fraction.clone(), fraction, step, balance).prop_map(|(fee_rate, slippage, step, balance)| {
        (PaperCosts { fee_rate, slippage }, step, balance)
    })
}

/// The exchange side and the strategies of two symbols, wired as the actors wire them.
struct Account {
    books: Vec<StrategyBook>,
    risk: RiskEngine,
    paper: Book,
    portfolio: Portfolio,
    clock: i64,
}

impl Account {
    fn new(costs: PaperCosts, step: Decimal, balance: Decimal) -> Self {
        let symbols = SYMBOLS.map(|s| Symbol::new(s).unwrap());
        let books = symbols
            .iter()
            .map(|symbol| {
                StrategyBook::new(SymbolSettings {
                    symbol: symbol.clone(),
                    default_size: SizeSpec::EquityPercent(Decimal::ONE_HUNDRED),
                    default_leverage: Leverage::new(125).unwrap(),
                    default_stop_loss: None,
                    default_take_profit: None,
                    quantity_step: step,
                })
            })
            .collect();
        // No configured limit gets in the way: only the hard bounds do.
        let rules = SymbolRules {
            enabled: true,
            allowed_actions: Action::ALL.into_iter().collect(),
            max_leverage: Leverage::new(125).unwrap(),
            max_notional: Decimal::MAX,
        };
        let rules: HashMap<_, _> = symbols.iter().map(|s| (s.clone(), rules.clone())).collect();
        Self {
            books,
            risk: RiskEngine::new(rules, TradingState::Active),
            paper: Book::new(costs, balance),
            portfolio: Portfolio::new(balance),
            clock: 0,
        }
    }

    fn now(&mut self) -> Timestamp {
        self.clock += 1;
        Timestamp(self.clock)
    }

    /// What the exchange actor does with a price: mark, then book the fills of stops and targets it triggers.
    fn tick(&mut self, symbol: &Symbol, price: Price) {
        self.portfolio.mark(symbol, price);
        let at = self.now();
        if let Some(fill) = self.paper.mark(symbol, price, at) {
            self.portfolio.apply_fill(&fill);
        }
    }

    /// What the strategy, risk and exchange actors do with a signal. Returns the strategy's decision.
    fn signal(&mut self, index: usize, price: Option<Price>, intent: Intent) -> Decision {
        let symbol = self.books[index].symbol().clone();
        if let Some(price) = price {
            self.tick(&symbol, price);
        }
        let signal = Signal {
            id: SignalId::new(&format!("p{}", self.clock)).unwrap(),
            source: "props".into(),
            symbol: symbol.clone(),
            received_at: Timestamp(self.clock),
            sent_at: None,
            price,
            intent,
            comment: None,
        };
        let view = MarketView {
            position: self.portfolio.position_quantity(&symbol),
            equity: self.portfolio.equity(),
            last_price: self.portfolio.last_price(&symbol),
            entry_price: None,
            exits: None,
        };
        let decision = self.books[index].on_signal(&signal, &view);
        if let Decision::Orders(orders) = &decision {
            for order in orders.clone() {
                let exposure = Exposure::of(&self.portfolio, &symbol);
                let Ok(approved) = self.risk.check(order, exposure) else {
                    break;
                };
                let at = self.now();
                let leverage = approved.get().leverage;
                match self.paper.submit(approved.get(), at) {
                    Ok(Execution::New(fill)) => self.portfolio.apply_fill_at(&fill, Some(leverage)),
                    Ok(Execution::AlreadyFilled(_) | Execution::Resting) | Err(_) => break,
                }
            }
        }
        decision
    }

    /// Reads everything the API and the strategies read, and checks the bounds held.
    fn read_all(&self) -> Result<(), TestCaseError> {
        for (symbol, position) in &self.portfolio.positions {
            prop_assert!(
                position.quantity.abs() <= MAX_QUANTITY,
                "{symbol}: {position:?}"
            );
            prop_assert!(position.entry_price <= MAX_PRICE);
            let unrealized = position.unrealized_pnl(self.portfolio.last_price(symbol));
            prop_assert!(unrealized.abs() <= MAX_QUANTITY * MAX_PRICE);
        }
        let equity = self.portfolio.equity();
        let totals = [
            self.portfolio.unrealized_pnl(),
            self.portfolio.realized_pnl(),
            self.portfolio.fees(),
            self.portfolio.largest_total(),
            equity,
        ];
        // Far from the end of Decimal's range: nothing saturated.
        for total in totals {
            prop_assert!(
                total.abs() < MAX_ACCOUNT_TOTAL * Decimal::ONE_HUNDRED,
                "{total}"
            );
        }
        Ok(())
    }
}

fn is_bound_denial(reason: &DenyReason) -> bool {
    matches!(
        reason,
        DenyReason::SizeAboveLimit { .. }
            | DenyReason::PositionAboveLimit { .. }
            | DenyReason::AccountAboveLimit { .. }
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any in-bound webhooks in any order: nothing panics, every total stays bounded, a strategy's denial is a bound's
    /// typed reason, and at the end every position closes in one order at any in-bound price.
    #[test]
    fn in_bound_amounts_never_overflow(
        (costs, step, balance) in setup(),
        steps in proptest::collection::vec(step(), 1..40),
        closing_price in price(),
    ) {
        let mut account = Account::new(costs, step, balance);
        for (index, price, intent) in steps {
            if let Decision::Deny(reason) = account.signal(index, price, intent) {
                prop_assert!(is_bound_denial(&reason), "{reason:?}");
            }
            account.read_all()?;
        }
        for index in 0..SYMBOLS.len() {
            let decision = account.signal(index, Some(closing_price), Intent::Close { side: None });
            prop_assert!(!matches!(decision, Decision::Deny(_)), "{decision:?}");
            account.read_all()?;
            let symbol = account.books[index].symbol().clone();
            prop_assert_eq!(account.portfolio.position_quantity(&symbol), Decimal::ZERO);
        }
    }

    /// Whatever the view holds (a saturated equity, a position from before the bounds) and whatever the size says,
    /// deciding never panics and an oversized request is a typed denial.
    #[test]
    fn deciding_on_any_view_never_panics(
        equity in prop_oneof![Just(Decimal::MAX), Just(Decimal::MIN), (any::<i64>(), 0u32..=28).prop_map(|(m, s)| Decimal::new(m, s))],
        position in prop_oneof![Just(Decimal::MAX), Just(Decimal::MIN), (any::<i64>(), 0u32..=28).prop_map(|(m, s)| Decimal::new(m, s))],
        price in price(),
        intent in intent(),
        step in (1i64..=i64::MAX, 0u32..=28).prop_map(|(m, s)| Decimal::new(m, s)),
    ) {
        let mut account = Account::new(
            PaperCosts { fee_rate: Decimal::ZERO, slippage: Decimal::ZERO },
            step,
            Decimal::ONE,
        );
        let signal = Signal {
            id: SignalId::new("v").unwrap(),
            source: "props".into(),
            symbol: account.books[0].symbol().clone(),
            received_at: Timestamp(0),
            sent_at: None,
            price: Some(price),
            intent,
            comment: None,
        };
        let view = MarketView {
            position,
            equity,
            last_price: None,
            entry_price: None,
            exits: None,
        };
        match account.books[0].on_signal(&signal, &view) {
            Decision::Orders(orders) => {
                prop_assert!(!orders.is_empty());
                for order in orders {
                    prop_assert!(order.quantity.get() <= MAX_QUANTITY);
                    // Margins at the ends of the range too: the check saturates rather than overflows.
                    let exposure = Exposure {
                        position,
                        account_total: equity.abs(),
                        position_margin: equity.abs(),
                        available_margin: equity,
                    };
                    let _ = account.risk.check(order, exposure);
                }
            }
            Decision::Deny(reason) => prop_assert!(is_bound_denial(&reason), "{reason:?}"),
            Decision::Ignore(_) | Decision::MoveExits(_) => {}
        }
    }
}
