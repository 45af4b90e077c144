//! The paper book's behaviour, ported from the synchronous paper gateway with its numbers unchanged, plus what the
//! port adds: typed rejections, cancels, open orders, balance, restore from a ledger, the bound on remembered fills.

use std::str::FromStr;

use super::*;
use crate::adapters::paper::testkit::{btc, costs, d, percent, price, symbol, Order};
use sentinel_actors::event::{Delivery, Event, Offset, Stamped};
use sentinel_actors::order::{Protection, SignalOutcome};
use sentinel_actors::portfolio::MarginMode;
use sentinel_actors::signal::{ExitLevel, Intent, Signal};
use sentinel_actors::types::SignalId;

fn paper() -> Book {
    Book::new(costs(), d("10000"))
}

fn new(result: Result<Execution, VenueError>) -> Fill {
    match result {
        Ok(Execution::New(fill)) => fill,
        other => panic!("expected a new fill, got {other:?}"),
    }
}

fn submit(book: &mut Book, order: &Order, at: i64) -> Result<Execution, VenueError> {
    book.submit(&order.request(), Timestamp(at))
}

fn resting(book: &Book, symbol: &Symbol) -> (Option<Price>, Option<Price>) {
    book.exits().get(symbol).map_or((None, None), |e| {
        (
            e.stop_loss.as_ref().map(|s| s.0),
            e.take_profit.as_ref().map(|t| t.0),
        )
    })
}

#[test]
fn market_buy_fills_at_last_price_plus_slippage_with_fee() {
    let mut book = paper();
    book.mark(&btc(), price("45000"), Timestamp(1));
    let fill = new(submit(&mut book, &Order::buy("a", "0.1"), 2));
    // 45000 * 1.0005 = 45022.5; fee = 45022.5 * 0.1 * 0.0004 = 1.8009
    assert_eq!(fill.price.get(), d("45022.5"));
    assert_eq!(fill.fee, d("1.8009"));
    assert_eq!(fill.reason, FillReason::Signal);
    let sell = new(submit(&mut book, &Order::sell("b", "0.1").reduce_only(), 3));
    // 45000 * 0.9995 = 44977.5
    assert_eq!(sell.price.get(), d("44977.5"));
}

#[test]
fn no_price_no_fill_and_the_same_client_order_id_fills_once() {
    let mut book = paper();
    let order = Order::buy("a", "0.1");
    assert_eq!(
        submit(&mut book, &order, 1),
        Err(VenueError::rejected(RejectReason::NoPrice {
            symbol: btc()
        }))
    );
    book.mark(&btc(), price("100"), Timestamp(2));
    let first = new(submit(&mut book, &order, 3));
    book.mark(&btc(), price("200"), Timestamp(4));
    assert_eq!(
        submit(&mut book, &order, 5),
        Ok(Execution::AlreadyFilled(first.clone())),
        "the first fill, not one at the new price"
    );
    assert_eq!(
        book.account().position_quantity(&btc()),
        d("0.1"),
        "filled once"
    );
    assert_eq!(
        book.query(&btc(), &first.client_order_id),
        Some(first.clone())
    );
    assert_eq!(
        book.query(&symbol("ETHUSDT"), &first.client_order_id),
        None,
        "an order is looked up on its own symbol"
    );
}

#[test]
fn percent_stop_loss_rests_and_fires_on_a_crossing_tick() {
    let mut book = paper();
    book.mark(&btc(), price("45000"), Timestamp(1));
    let entry = Order::buy("a", "0.1").protected(percent(Some("2"), Some("6")));
    let fill = new(submit(&mut book, &entry, 2));
    // Entry 45022.5: stop 2% below = 44122.05, target 6% above = 47723.85.
    assert_eq!(
        resting(&book, &btc()),
        (Some(price("44122.05")), Some(price("47723.85")))
    );
    assert_eq!(fill.price, price("45022.5"));
    assert_eq!(
        book.mark(&btc(), price("44200"), Timestamp(3)),
        None,
        "above the stop"
    );
    let stop = book
        .mark(&btc(), price("44100"), Timestamp(4))
        .expect("the stop fires");
    assert_eq!(stop.reason, FillReason::StopLoss);
    assert_eq!(stop.side, Side::Sell);
    assert_eq!(stop.quantity, Quantity::from_str("0.1").unwrap());
    assert_eq!(stop.price, price("44077.95")); // 44100 * 0.9995
    assert_eq!(stop.at, Timestamp(4));
    assert_eq!(resting(&book, &btc()), (None, None));
    assert!(book.account().position_quantity(&btc()).is_zero());
    assert_eq!(
        book.mark(&btc(), price("40000"), Timestamp(5)),
        None,
        "fires once"
    );
    // Its fill is looked up by its own client order id, like any other.
    assert_eq!(book.query(&btc(), &stop.client_order_id), Some(stop));
}

#[test]
fn short_take_profit_at_an_absolute_price() {
    let mut book = paper();
    book.mark(&btc(), price("2000"), Timestamp(1));
    let protection = Protection {
        stop_loss: None,
        take_profit: Some(ExitLevel::Price(price("1900"))),
    };
    new(submit(
        &mut book,
        &Order::sell("a", "1").protected(protection),
        2,
    ));
    assert_eq!(book.mark(&btc(), price("1950"), Timestamp(3)), None);
    let target = book.mark(&btc(), price("1899"), Timestamp(4)).unwrap();
    assert_eq!(target.reason, FillReason::TakeProfit);
    assert_eq!(target.side, Side::Buy);
    assert_eq!(target.price, price("1899.9495")); // 1899 * 1.0005
}

#[test]
fn a_stop_wins_when_one_price_crosses_both() {
    let mut book = Book::new(PaperCosts::FREE, d("10000"));
    book.mark(&btc(), price("100"), Timestamp(1));
    let protection = Protection {
        stop_loss: Some(ExitLevel::Price(price("110"))),
        take_profit: Some(ExitLevel::Price(price("105"))),
    };
    new(submit(
        &mut book,
        &Order::buy("a", "1").protected(protection),
        2,
    ));
    let fill = book.mark(&btc(), price("104"), Timestamp(3)).unwrap();
    assert_eq!(fill.reason, FillReason::StopLoss);
}

#[test]
fn reduce_only_orders_never_open_or_grow_and_are_cut_to_what_is_open() {
    let mut book = paper();
    book.mark(&btc(), price("100"), Timestamp(1));
    let would_not_reduce = Err(VenueError::rejected(RejectReason::WouldNotReduce));
    assert_eq!(
        submit(&mut book, &Order::sell("a", "1").reduce_only(), 2),
        would_not_reduce,
        "nothing open"
    );
    new(submit(
        &mut book,
        &Order::buy("b", "1").protected(percent(Some("5"), None)),
        3,
    ));
    assert_eq!(
        submit(&mut book, &Order::buy("c", "1").reduce_only(), 4),
        would_not_reduce,
        "the same side grows it"
    );
    // A partial close keeps the stop resting for what is left.
    let part = new(submit(&mut book, &Order::sell("d", "0.4").reduce_only(), 5));
    assert_eq!(part.quantity, Quantity::from_str("0.4").unwrap());
    assert!(resting(&book, &btc()).0.is_some());
    // More than is open closes what is open, and the stop goes with the position.
    let rest = new(submit(&mut book, &Order::sell("e", "5").reduce_only(), 6));
    assert_eq!(rest.quantity, Quantity::from_str("0.6").unwrap());
    assert!(book.account().position_quantity(&btc()).is_zero());
    assert!(book.open_orders(None).is_empty());
}

#[test]
fn prices_at_the_bounds_fill_and_protect_within_them() {
    let mut book = paper();
    book.mark(&btc(), price("10000000000"), Timestamp(1));
    // Slippage would take the fill above the highest price: it fills at the last price.
    let protection = percent(Some("99.999999999999"), Some("50"));
    let buy = new(submit(
        &mut book,
        &Order::buy("a", "0.1").protected(protection),
        2,
    ));
    assert_eq!(buy.price, price("10000000000"));
    // The stop (1e10 x 1e-14 = 1e-4) rests; a target above the highest price could never be crossed, so none is.
    assert_eq!(resting(&book, &btc()), (Some(price("0.0001")), None));

    let mut book = paper();
    book.mark(&btc(), price("0.00000001"), Timestamp(1));
    let protection = percent(Some("50"), None);
    let sell = new(submit(
        &mut book,
        &Order::sell("b", "20000").protected(protection),
        2,
    ));
    assert_eq!(sell.price, price("0.00000001"));
    // 1e-8 x 20000 x 0.0004 = 8e-8
    assert_eq!(sell.fee, d("0.00000008"));
    // 1.5e-8, kept to the paper venue's 8 places.
    assert_eq!(resting(&book, &btc()), (Some(price("0.00000002")), None));
}

#[test]
fn the_wallet_is_the_starting_balance_plus_realized_minus_fees() {
    let mut book = paper();
    book.mark(&btc(), price("45000"), Timestamp(1));
    // The README's example: 0.111 at 45022.5, fee 1.998999.
    new(submit(&mut book, &Order::buy("a", "0.111"), 2));
    // Available: the wallet, plus (45000 - 45022.5) x 0.111 = -2.4975 unrealized at the mark, less the initial
    // margin at 5x, 0.111 x 45000 / 5 = 999: 9998.001001 - 2.4975 - 999.
    assert_eq!(
        book.balance(),
        Balance {
            wallet: d("9998.001001"),
            available: d("8996.503501"),
        }
    );
    assert_eq!(
        book.positions(),
        [VenuePosition {
            symbol: btc(),
            quantity: d("0.111"),
            entry_price: d("45022.5"),
        }]
    );
    book.mark(&btc(), price("46000"), Timestamp(3));
    // Out at 46000 x 0.9995 = 45977: (45977 - 45022.5) x 0.111 = 105.9495 realized, fee 2.0413788.
    new(submit(
        &mut book,
        &Order::sell("b", "0.111").reduce_only(),
        4,
    ));
    // 10000 - 1.998999 + 105.9495 - 2.0413788
    assert_eq!(book.balance().wallet, d("10101.9091222"));
    assert!(book.positions().is_empty(), "a flat position is not listed");
}

#[test]
fn cancelling_one_leg_leaves_the_other_resting() {
    let mut book = paper();
    book.mark(&btc(), price("100"), Timestamp(1));
    let entry = Order::buy("a", "1").protected(percent(Some("10"), Some("10")));
    new(submit(&mut book, &entry, 2));
    let open = book.open_orders(Some(&btc()));
    let signal = SignalId::new("a").unwrap();
    let stop_id = ClientOrderId::derive(&signal, exits::STOP_LOSS_LEG);
    let target_id = ClientOrderId::derive(&signal, exits::TAKE_PROFIT_LEG);
    assert_eq!(
        open,
        [
            OpenOrder {
                client_order_id: stop_id.clone(),
                symbol: btc(),
                side: Side::Sell,
                quantity: None,
                trigger: price("90.045"), // 100.05 less 10 %
                reason: FillReason::StopLoss,
            },
            OpenOrder {
                client_order_id: target_id.clone(),
                symbol: btc(),
                side: Side::Sell,
                quantity: None,
                trigger: price("110.055"),
                reason: FillReason::TakeProfit,
            },
        ]
    );
    assert!(book.open_orders(Some(&symbol("ETHUSDT"))).is_empty());

    assert_eq!(book.cancel(&btc(), &stop_id), Ok(()));
    assert!(
        matches!(
            book.cancel(&btc(), &stop_id),
            Err(VenueError::Rejected { .. })
        ),
        "no longer resting"
    );
    assert!(
        book.cancel(&symbol("ETHUSDT"), &target_id).is_err(),
        "not on that symbol"
    );
    assert_eq!(
        book.mark(&btc(), price("80"), Timestamp(3)),
        None,
        "the stop is gone"
    );
    let target = book.mark(&btc(), price("111"), Timestamp(4)).unwrap();
    assert_eq!(target.client_order_id, target_id);
}

#[test]
fn an_exit_closes_what_is_open_and_never_grows_it() {
    let mut book = Book::new(PaperCosts::FREE, d("10000"));
    book.mark(&btc(), price("100"), Timestamp(1));
    new(submit(
        &mut book,
        &Order::buy("a", "1").protected(percent(Some("10"), None)),
        2,
    ));
    // A plain sell of 2 turns the long into a short of 1 and arms nothing.
    new(submit(&mut book, &Order::sell("b", "2"), 3));
    book.mark(&btc(), price("80"), Timestamp(4));
    assert!(book.account().position_quantity(&btc()).abs() <= d("1"));
}

#[test]
fn fills_are_remembered_up_to_the_bound() {
    let mut book = Book::new(PaperCosts::FREE, d("10000")).remembering(2);
    book.mark(&btc(), price("100"), Timestamp(1));
    let orders = [
        Order::buy("a", "1"),
        Order::buy("b", "1"),
        Order::buy("c", "1"),
    ];
    let fills: Vec<Fill> = orders
        .iter()
        .map(|order| new(submit(&mut book, order, 2)))
        .collect();
    assert_eq!(
        book.query(&btc(), &fills[0].client_order_id),
        None,
        "forgotten"
    );
    for (order, fill) in orders.iter().zip(&fills).skip(1) {
        assert_eq!(
            submit(&mut book, order, 3),
            Ok(Execution::AlreadyFilled(fill.clone()))
        );
    }
}

/// Trades on a book and writes the log the daemon would write for it, to fold into a ledger.
struct Session {
    book: Book,
    events: Vec<Event>,
}

impl Session {
    /// A signal carrying `price`; its orders placed, and the signal finished unless `finish` is false.
    fn signal(&mut self, id: &str, on: Symbol, at: &str, orders: &[Order], finish: bool) {
        let signal_id = SignalId::new(id).unwrap();
        self.events.push(Event::SignalAccepted {
            signal: Signal {
                id: signal_id.clone(),
                source: "test".into(),
                symbol: on.clone(),
                received_at: Timestamp(0),
                sent_at: None,
                price: Some(price(at)),
                intent: Intent::Tick,
                comment: None,
            },
            delivery: Delivery {
                keys: String::new(),
                payload: "{}".into(),
            },
        });
        if let Some(fill) = self.book.mark(&on, price(at), Timestamp(0)) {
            self.events.push(Event::filled(None, fill));
        }
        let requests: Vec<OrderRequest> = orders.iter().map(Order::request).collect();
        self.events.push(Event::Decided {
            signal_id: signal_id.clone(),
            symbol: on.clone(),
            orders: requests.clone(),
        });
        for order in requests {
            let fill = new(self.book.submit(&order, Timestamp(0)));
            self.events.push(Event::Filled {
                order: Some(order),
                fill,
                cause: None,
            });
        }
        if finish {
            self.events.push(Event::SignalFinished {
                signal_id,
                symbol: on,
                outcome: SignalOutcome::Filled { orders: vec![] },
            });
        }
    }

    fn ledger(&self) -> Ledger {
        let mut ledger = Ledger::new(d("10000"));
        for (i, event) in self.events.iter().enumerate() {
            ledger.apply(&Stamped {
                offset: Offset(i as u64 + 1),
                at: Timestamp(0),
                event: event.clone(),
            });
        }
        ledger
    }
}

#[test]
fn restored_from_the_ledger_the_book_is_the_one_trading_left() {
    let eth = symbol("ETHUSDT");
    let mut session = Session {
        book: paper(),
        events: Vec::new(),
    };
    let long = Order::buy("a", "0.5").protected(percent(Some("2"), Some("6")));
    session.signal("a", btc(), "45000", &[long], true);
    session.signal(
        "b",
        btc(),
        "45500",
        &[Order::sell("b", "0.2").reduce_only()],
        true,
    );
    let short = Order::sell("c", "3")
        .on(eth.clone())
        .protected(percent(Some("5"), None));
    session.signal("c", eth.clone(), "2500", &[short], true);
    // The ETH stop fires on the next price; BTC's levels stay.
    session.signal("d", eth.clone(), "2700", &[], true);
    // A signal that was not finished when the daemon stopped: its order filled.
    let unfinished = Order::buy("e", "1")
        .on(eth.clone())
        .protected(percent(None, Some("10")));
    session.signal("e", eth.clone(), "2600", &[unfinished], false);

    let ledger = session.ledger();
    let restored = Book::restore(costs(), &ledger);
    assert_eq!(restored.account(), session.book.account());
    assert_eq!(restored.exits(), session.book.exits());
    assert_eq!(restored.balance(), session.book.balance());
    assert_eq!(restored.open_orders(None), session.book.open_orders(None));
    assert_eq!(
        restored.exits().len(),
        2,
        "BTC's stop and target, ETH's new target"
    );

    let mut restored = restored;
    let retried = Order::buy("e", "1").on(eth.clone()).request();
    assert!(
        matches!(
            restored.submit(&retried, Timestamp(9)),
            Ok(Execution::AlreadyFilled(_))
        ),
        "the unfinished signal's order is not placed twice"
    );
    // Both go on alike: the same price fires the same target with the same fill.
    let target = restored.mark(&eth, price("2900"), Timestamp(10));
    assert!(target.is_some());
    assert_eq!(
        target,
        session.book.mark(&eth, price("2900"), Timestamp(10))
    );
}

/// BTCUSDT isolated at a maintenance rate of 0.4 %, with a tick of 0.1; fee 0.04 %, no slippage.
fn isolated_btc() -> Book {
    let mut book = Book::new(
        PaperCosts {
            fee_rate: d("0.0004"),
            slippage: Decimal::ZERO,
        },
        d("10000"),
    );
    let terms = PaperSymbol {
        margin: MarginSpec {
            mode: MarginMode::Isolated,
            maintenance_rate: d("0.004"),
            ..MarginSpec::default()
        },
        tick_size: Some(d("0.1")),
    };
    book.set_symbols([(btc(), terms)].into_iter().collect());
    book
}

#[test]
fn a_mark_through_the_liquidation_price_closes_the_position_there_with_the_fee() {
    let mut book = isolated_btc();
    book.mark(&btc(), price("24900"), Timestamp(1));
    // Long 1 at 24900 at 5x (the test orders' leverage), fee 9.96, with a stop below where it is liquidated.
    let protection = Protection {
        stop_loss: Some(ExitLevel::Price(price("15000"))),
        take_profit: None,
    };
    new(submit(
        &mut book,
        &Order::buy("a", "1").protected(protection),
        2,
    ));
    assert_eq!(book.account().positions[&btc()].leverage.get(), 5);
    // Isolated: WB = 24900 / 5 = 4980; LP = (4980 - 24900) / (0.004 - 1) = 19920 / 0.996 = 20000.
    assert_eq!(book.liquidation_price(&btc()), Some(d("20000")));
    assert_eq!(book.mark(&btc(), price("20000.1"), Timestamp(3)), None);
    let fill = book
        .mark(&btc(), price("19000"), Timestamp(4))
        .expect("liquidated");
    assert_eq!(fill.reason, FillReason::Liquidation);
    assert_eq!(fill.side, Side::Sell);
    assert_eq!(fill.quantity, Quantity::from_str("1").unwrap());
    assert_eq!(
        fill.price,
        price("20000"),
        "at the liquidation price, not the mark"
    );
    assert_eq!(fill.fee, d("8")); // 20000 x 0.0004
    assert_eq!(fill.at, Timestamp(4));
    assert!(book.account().position_quantity(&btc()).is_zero());
    assert!(book.open_orders(None).is_empty(), "the stop went with it");
    // 10000 - 9.96 + (20000 - 24900) - 8
    assert_eq!(book.balance().wallet, d("5082.04"));
    assert_eq!(book.query(&btc(), &fill.client_order_id), Some(fill));
    assert_eq!(book.mark(&btc(), price("14000"), Timestamp(5)), None);
}

#[test]
fn fill_prices_are_rounded_to_the_tick_against_the_taker() {
    let mut book = isolated_btc();
    book.mark(&btc(), price("45000.03"), Timestamp(1));
    // No slippage here: 45000.03 rounds up to 45000.1 for a buy, down to 45000 for a sell.
    let buy = new(submit(&mut book, &Order::buy("a", "0.1"), 2));
    assert_eq!(buy.price, price("45000.1"));
    let sell = new(submit(&mut book, &Order::sell("b", "0.1").reduce_only(), 3));
    assert_eq!(sell.price, price("45000"));
}

#[test]
fn restored_from_the_ledger_after_a_liquidation_the_book_agrees() {
    let mut session = Session {
        book: isolated_btc(),
        events: Vec::new(),
    };
    session.signal("a", btc(), "24900", &[Order::buy("a", "1")], true);
    // The tick that liquidates it is journaled like any fill the mark returns.
    session.signal("b", btc(), "19000", &[], true);
    let ledger = session.ledger();
    assert!(ledger.portfolio.position_quantity(&btc()).is_zero());
    let mut restored = Book::restore(
        PaperCosts {
            fee_rate: d("0.0004"),
            slippage: Decimal::ZERO,
        },
        &ledger,
    );
    restored.set_symbols(session.book.symbols.clone());
    assert_eq!(restored.account(), session.book.account());
    assert_eq!(restored.balance(), session.book.balance());
    assert_eq!(ledger.portfolio.balance, d("5082.04"));
    // The same entry again: both books open it at 5x and would liquidate it at the same price.
    session.signal("c", btc(), "24900", &[Order::buy("c", "1")], true);
    let mut restored = Book::restore(
        PaperCosts {
            fee_rate: d("0.0004"),
            slippage: Decimal::ZERO,
        },
        &session.ledger(),
    );
    restored.set_symbols(session.book.symbols.clone());
    assert_eq!(restored.account(), session.book.account());
    assert_eq!(restored.liquidation_price(&btc()), Some(d("20000")));
}

/// A buy limit at `limit`, good till `expires_at` (else till cancelled), with a 2 % stop.
fn limit_buy(
    signal: &'static str,
    quantity: &'static str,
    limit: &str,
    expires_at: Option<i64>,
) -> OrderRequest {
    use sentinel_actors::signal::{LimitOrder, TimeInForce};
    let mut order = Order::buy(signal, quantity)
        .protected(percent(Some("2"), None))
        .request();
    order.limit = Some(LimitOrder {
        price: price(limit),
        time_in_force: if expires_at.is_some() {
            TimeInForce::Gtd
        } else {
            TimeInForce::Gtc
        },
        expires_at: expires_at.map(Timestamp),
    });
    order
}

#[test]
fn a_limit_entry_rests_then_fills_at_its_price_with_the_fee_and_arms_its_stop() {
    let mut book = paper();
    book.mark(&btc(), price("100"), Timestamp(1));
    let order = limit_buy("a", "2", "95", None);
    assert_eq!(book.submit(&order, Timestamp(2)), Ok(Execution::Resting));
    // Resting twice (a retry) changes nothing.
    assert_eq!(book.submit(&order, Timestamp(3)), Ok(Execution::Resting));
    assert_eq!(book.open_orders(Some(&btc())).len(), 1);
    assert!(book
        .fill_resting(&btc(), price("95.01"), Timestamp(4))
        .is_empty());

    // 94 passes through 95: filled at 95, not 94, with no slippage; fee 95 x 2 x 0.0004 = 0.076.
    let reports = book.fill_resting(&btc(), price("94"), Timestamp(5));
    let [ExecutionReport::EntryFilled {
        order: filled,
        fill,
    }] = reports.as_slice()
    else {
        panic!("expected one entry fill, got {reports:?}");
    };
    assert_eq!(filled.client_order_id, order.client_order_id);
    assert_eq!(fill.price.get(), d("95"));
    assert_eq!(fill.fee, d("0.076"));
    assert_eq!(book.account().position_quantity(&btc()), d("2"));
    // The 2 % stop from the entry of 95: 93.1.
    assert_eq!(resting(&book, &btc()), (Some(price("93.1")), None));
    assert!(book.open_orders(None).iter().all(|o| o.quantity.is_none()));
    // The same id does not fill twice.
    assert!(book
        .fill_resting(&btc(), price("90"), Timestamp(6))
        .is_empty());
}

#[test]
fn an_ioc_limit_fills_now_capped_at_its_price_or_not_at_all() {
    use sentinel_actors::signal::TimeInForce;
    let mut book = paper();
    book.mark(&btc(), price("100"), Timestamp(1));
    let mut ioc = limit_buy("a", "1", "95", None);
    if let Some(limit) = ioc.limit.as_mut() {
        limit.time_in_force = TimeInForce::Ioc;
    }
    assert_eq!(
        book.submit(&ioc, Timestamp(2)),
        Err(VenueError::rejected(RejectReason::WouldNotFill {
            limit: price("95"),
            time_in_force: TimeInForce::Ioc
        }))
    );
    assert!(book.open_orders(None).is_empty());
    // At 100.03 with the limit: 100 x 1.0005 = 100.05 slips past it, so the fill is capped at 100.03.
    let marketable = limit_buy("b", "1", "100.03", None);
    let fill = new(book.submit(&marketable, Timestamp(3)));
    assert_eq!(fill.price.get(), d("100.03"));
}

#[test]
fn a_gtd_entry_expires_at_its_time_and_a_cancel_takes_an_entry_off() {
    let mut book = paper();
    book.mark(&btc(), price("100"), Timestamp(1));
    assert_eq!(
        book.submit(&limit_buy("a", "1", "90", Some(10)), Timestamp(2)),
        Ok(Execution::Resting)
    );
    let gtc = limit_buy("b", "1", "95", None);
    assert_eq!(book.submit(&gtc, Timestamp(3)), Ok(Execution::Resting));
    // Already expired when it arrives: refused.
    assert_eq!(
        book.submit(&limit_buy("c", "1", "90", Some(4)), Timestamp(5)),
        Err(VenueError::rejected(RejectReason::Expired))
    );
    // At 10 the GTD entry is taken off; 96 reaches neither.
    let reports = book.fill_resting(&btc(), price("96"), Timestamp(10));
    assert!(
        matches!(
            reports.as_slice(),
            [ExecutionReport::Cancelled {
                reason: CancelReason::Expired,
                ..
            }]
        ),
        "{reports:?}"
    );
    assert_eq!(book.cancel(&btc(), &gtc.client_order_id), Ok(()));
    assert!(book.open_orders(None).is_empty());
    assert!(book
        .fill_resting(&btc(), price("80"), Timestamp(11))
        .is_empty());
    assert!(book.account().position_quantity(&btc()).is_zero());
}

#[test]
fn resting_entries_are_bounded_per_symbol() {
    let mut book = paper();
    book.mark(&btc(), price("100"), Timestamp(1));
    let ids: Vec<String> = (0..=super::MAX_RESTING_PER_SYMBOL)
        .map(|i| format!("r{i}"))
        .collect();
    for id in &ids[..super::MAX_RESTING_PER_SYMBOL] {
        let id: &'static str = Box::leak(id.clone().into_boxed_str());
        assert_eq!(
            book.submit(&limit_buy(id, "1", "90", None), Timestamp(2)),
            Ok(Execution::Resting)
        );
    }
    let last: &'static str = Box::leak(ids[super::MAX_RESTING_PER_SYMBOL].clone().into_boxed_str());
    assert_eq!(
        book.submit(&limit_buy(last, "1", "90", None), Timestamp(3)),
        Err(VenueError::rejected(RejectReason::TooManyOpenOrders {
            limit: super::MAX_RESTING_PER_SYMBOL
        }))
    );
    assert_eq!(
        book.open_orders(Some(&btc())).len(),
        super::MAX_RESTING_PER_SYMBOL
    );
}
