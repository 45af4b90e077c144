//! `GET /metrics`: the Prometheus scrape, in the OpenMetrics text format.

use actix_web::{web, HttpResponse};
use sentinel_actors::latency::Span;
use sentinel_actors::messages::GetTradingState;

use super::AppState;
use crate::metrics::{Snapshot, VenueStanding, COMMIT_EVENTS_BOUNDS, LATENCY_BOUNDS_MICROS};

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // A risk actor that does not answer leaves the trading state out rather than failing the whole scrape.
    let trading_state = state.risk.send(GetTradingState).await.ok();
    let view = state.view.borrow().clone();
    let portfolio = &view.portfolio;
    let latencies = &state.latencies;
    let (journal_commit, journal_commit_events) = state
        .journal
        .commit_histograms(&LATENCY_BOUNDS_MICROS, &COMMIT_EVENTS_BOUNDS);
    let snapshot = Snapshot {
        refusals: state.refusals.snapshot(),
        denials: view.limits.denials.clone(),
        ack: latencies.of(Span::Ack).buckets(&LATENCY_BOUNDS_MICROS),
        signal_to_order: latencies
            .of(Span::SignalToOrder)
            .buckets(&LATENCY_BOUNDS_MICROS),
        signal_to_fill: latencies
            .of(Span::SignalToFill)
            .buckets(&LATENCY_BOUNDS_MICROS),
        journal: state.journal.stats(),
        journal_commit,
        journal_commit_events,
        backlog_signals: view.pending,
        admission_in_use: state.admission.in_use(),
        admission_limit: state.admission.limit(),
        trading_state,
        equity: portfolio.equity(),
        open_positions: portfolio
            .positions
            .values()
            .filter(|p| !p.is_flat())
            .count(),
        resting_orders: view.resting.len(),
        log_offset: view.upto.0,
        venue: VenueStanding::from_status(&state.venue.status()),
    };
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(state.metrics.encode(snapshot))
}
