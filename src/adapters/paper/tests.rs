//! The paper venue through the execution port: the async calls, latency that holds up only its own symbol, and a
//! venue restored from a ledger answering a recovered order with its first fill.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sentinel_actors::event::{Delivery, Event, Offset, Stamped};
use sentinel_actors::exits::STOP_LOSS_LEG;
use sentinel_actors::order::FillReason;
use sentinel_actors::signal::{Intent, Signal};
use sentinel_actors::types::{Side, SignalId};
use sentinel_actors::venue::RejectReason;

use super::testkit::{btc, costs, d, percent, price, symbol, Order};
use super::*;

fn new(result: Result<Execution, VenueError>) -> Fill {
    match result {
        Ok(Execution::New(fill)) => fill,
        other => panic!("expected a new fill, got {other:?}"),
    }
}

#[actix_web::test]
async fn the_same_client_order_id_fills_once_and_is_found_by_query() {
    let venue = PaperVenue::new(costs(), d("10000"));
    let order = Order::buy("a", "0.1");
    assert_eq!(
        venue.submit(order.approved(), Timestamp(1)).await,
        Err(VenueError::rejected(RejectReason::NoPrice {
            symbol: btc()
        }))
    );
    assert!(venue.mark(&btc(), price("45000"), Timestamp(2)).is_empty());
    let fill = new(venue.submit(order.approved(), Timestamp(3)).await);
    assert_eq!(fill.price, price("45022.5"));
    assert_eq!(
        venue.submit(order.approved(), Timestamp(4)).await,
        Ok(Execution::AlreadyFilled(fill.clone()))
    );
    let id = fill.client_order_id.clone();
    assert_eq!(venue.query(btc(), id.clone()).await, Ok(Some(fill)));
    assert_eq!(venue.query(symbol("ETHUSDT"), id).await, Ok(None));
    let positions = venue.positions().await.unwrap();
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0].quantity, d("0.1"), "filled once");
    assert_eq!(venue.balance().await.unwrap().wallet, d("9998.1991")); // 10000 - 1.8009
    assert_eq!(venue.name(), "paper");
    assert!(venue.reports().is_none(), "paper reports from `mark`");
    assert_eq!(venue.state(), serde_json::Value::Null);
}

#[actix_web::test]
async fn a_crossing_price_fires_the_stop_as_a_report_and_cancel_takes_a_leg_off() {
    let venue = PaperVenue::new(costs(), d("10000"));
    venue.mark(&btc(), price("45000"), Timestamp(1));
    let entry = Order::buy("a", "0.1").protected(percent(Some("2"), Some("6")));
    new(venue.submit(entry.approved(), Timestamp(2)).await);
    let open = venue.open_orders(Some(btc())).await.unwrap();
    assert_eq!(open.len(), 2);
    let target = open[1].client_order_id.clone();
    assert_eq!(venue.cancel(btc(), target.clone()).await, Ok(()));
    assert!(
        venue.cancel(btc(), target).await.is_err(),
        "cancelled already"
    );
    assert!(
        venue.mark(&btc(), price("48000"), Timestamp(3)).is_empty(),
        "no target left"
    );

    let reports = venue.mark(&btc(), price("44100"), Timestamp(4));
    let [ExecutionReport::Filled(stop)] = reports.as_slice() else {
        panic!("expected the stop's fill, got {reports:?}");
    };
    assert_eq!(
        (stop.reason, stop.side, stop.price),
        (FillReason::StopLoss, Side::Sell, price("44077.95"))
    );
    let stop_id = ClientOrderId::derive(&SignalId::new("a").unwrap(), STOP_LOSS_LEG);
    assert_eq!(stop.client_order_id, stop_id);
    assert!(venue.open_orders(None).await.unwrap().is_empty());
    assert!(venue.positions().await.unwrap().is_empty());
}

#[actix_web::test]
async fn latency_holds_up_the_slow_symbol_only() {
    let sol = symbol("SOLUSDT");
    let slow = Duration::from_millis(600);
    let venue = PaperVenue::new(PaperCosts::FREE, d("10000")).with_latency(
        Duration::from_millis(10),
        HashMap::from([(sol.clone(), slow)]),
    );
    venue.mark(&btc(), price("45000"), Timestamp(1));
    venue.mark(&sol, price("100"), Timestamp(1));

    let started = Instant::now();
    let sol_submit = tokio::spawn(venue.submit(
        Order::buy("s", "1").on(sol.clone()).approved(),
        Timestamp(2),
    ));
    new(venue
        .submit(Order::buy("b", "0.1").approved(), Timestamp(2))
        .await);
    let fast = started.elapsed();
    // Generous: the fast symbol waits 10 ms; anything near the slow one's 600 ms would mean it queued behind it.
    assert!(fast < Duration::from_millis(300), "BTC took {fast:?}");
    assert!(!sol_submit.is_finished(), "SOL is still on its way");

    // Nothing is locked while SOL's submit waits: a new price gets in, and the order fills at it, as it would at a
    // venue that is slow to take it.
    assert!(venue.mark(&sol, price("101"), Timestamp(3)).is_empty());
    let fill = new(sol_submit.await.unwrap());
    assert!(started.elapsed() >= slow);
    assert_eq!(fill.price, price("101"));
}

#[actix_web::test]
async fn restored_from_a_ledger_a_recovered_order_is_answered_with_its_fill() {
    // Trading as the daemon would, with the log it would write.
    let traded = PaperVenue::new(costs(), d("10000"));
    traded.mark(&btc(), price("45000"), Timestamp(1));
    let order = Order::buy("a", "0.2").protected(percent(Some("2"), None));
    let fill = new(traded.submit(order.approved(), Timestamp(2)).await);
    let signal = Signal {
        id: SignalId::new("a").unwrap(),
        source: "test".into(),
        symbol: btc(),
        received_at: Timestamp(1),
        sent_at: None,
        price: Some(price("45000")),
        intent: Intent::Tick,
        comment: None,
    };
    let events = [
        Event::SignalAccepted {
            signal,
            delivery: Delivery {
                keys: String::new(),
                payload: "{}".into(),
            },
        },
        Event::Filled {
            order: Some(order.request()),
            fill: fill.clone(),
            cause: None,
        },
    ];
    let mut ledger = Ledger::new(d("10000"));
    for (i, event) in events.into_iter().enumerate() {
        ledger.apply(&Stamped {
            offset: Offset(i as u64 + 1),
            at: Timestamp(0),
            event,
        });
    }

    let restored = PaperVenue::restore(costs(), &ledger);
    assert_eq!(
        restored.submit(order.approved(), Timestamp(5)).await,
        Ok(Execution::AlreadyFilled(fill))
    );
    assert_eq!(restored.positions().await, traded.positions().await);
    assert_eq!(
        restored.open_orders(None).await,
        traded.open_orders(None).await
    );
    assert_eq!(restored.balance().await, traded.balance().await);
    let same =
        |venue: &PaperVenue| venue.inspect(|book| (book.account().clone(), book.exits().clone()));
    assert_eq!(same(&restored), same(&traded));
}
