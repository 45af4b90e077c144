//! The paper venue: a simulated account behind the execution port. Market orders fill at the last price with
//! slippage and fee; stop losses and take profits rest and fire when a later price crosses them. Deterministic, all
//! in `Decimal`; rebuilt from the ledger after a restart, so it keeps no state of its own in snapshots.

mod book;
mod costs;
mod fills;
#[cfg(test)]
mod overflow_props;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rust_decimal::Decimal;
use tokio::sync::mpsc;

use sentinel_actors::exits::ArmedExits;
use sentinel_actors::ledger::Ledger;
use sentinel_actors::order::{Fill, OrderRequest};
use sentinel_actors::risk::Approved;
use sentinel_actors::types::{ClientOrderId, Price, Symbol, Timestamp};
use sentinel_actors::venue::{
    Balance, Execution, ExecutionReport, ExecutionVenue, OpenOrder, VenueError, VenueFuture,
    VenuePosition,
};

use book::Book;
pub use book::PaperSymbol;

impl PaperSymbol {
    /// Each configured symbol's terms.
    pub fn of_all(symbols: &[crate::config::SymbolConfig]) -> HashMap<Symbol, PaperSymbol> {
        symbols
            .iter()
            .map(|s| {
                let terms = PaperSymbol {
                    margin: s.margin.clone(),
                    tick_size: s.tick_size,
                };
                (s.symbol().clone(), terms)
            })
            .collect()
    }
}
pub use costs::PaperCosts;
pub use fills::REMEMBERED_FILLS;

/// The paper venue: one object, owned by the exchange actor. Every call locks the book briefly and never across an
/// await, so calls for different symbols run side by side.
#[derive(Debug)]
pub struct PaperVenue {
    book: Arc<Mutex<Book>>,
    latency: Latency,
}

/// How long a submit takes, per symbol: lets a test or a demo show that a slow venue call on one symbol does not
/// hold up another's.
#[derive(Clone, Debug, Default)]
struct Latency {
    default: Duration,
    per_symbol: HashMap<Symbol, Duration>,
}

impl Latency {
    fn of(&self, symbol: &Symbol) -> Duration {
        self.per_symbol.get(symbol).copied().unwrap_or(self.default)
    }
}

impl PaperVenue {
    /// An account that has never traded, holding `starting_balance` in the quote currency.
    pub fn new(costs: PaperCosts, starting_balance: Decimal) -> Self {
        Self::from_book(Book::new(costs, starting_balance))
    }

    /// The account as the log left it: positions, wallet balance and last prices from `ledger.portfolio`, resting
    /// exits from `ledger.exits`, and the fills of unfinished signals, so that their orders, placed again, are
    /// answered `AlreadyFilled`. The starting balance is the ledger's: it came from the configuration when the log
    /// began, and the wallet must agree with the ledger's even if the configuration changed since.
    pub fn restore(costs: PaperCosts, ledger: &Ledger) -> Self {
        Self::from_book(Book::restore(costs, ledger))
    }

    /// Makes each submit wait `default`, or its symbol's entry in `per_symbol`, before it fills (at the last price
    /// when it fills, as a slow venue would). Nothing else waits.
    pub fn with_latency(
        mut self,
        default: Duration,
        per_symbol: HashMap<Symbol, Duration>,
    ) -> Self {
        self.latency = Latency {
            default,
            per_symbol,
        };
        self
    }

    /// Trades each symbol on its configured terms: margin mode and maintenance rate (liquidations), tick size (fill
    /// prices). A symbol not given is cross at the default rate, with prices not rounded.
    pub fn with_symbols(self, symbols: HashMap<Symbol, PaperSymbol>) -> Self {
        lock(&self.book).set_symbols(symbols);
        self
    }

    fn from_book(book: Book) -> Self {
        Self {
            book: Arc::new(Mutex::new(book)),
            latency: Latency::default(),
        }
    }

    /// The book, for tests that compare it with a ledger's.
    #[cfg(test)]
    fn inspect<R>(&self, f: impl FnOnce(&Book) -> R) -> R {
        f(&lock(&self.book))
    }
}

/// Every change to the book is made in one lock and none can panic halfway through a fill, so a lock poisoned by a
/// panic elsewhere still guards a whole book: keep trading on it rather than fail every later call.
fn lock(book: &Mutex<Book>) -> MutexGuard<'_, Book> {
    book.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A call that answers from the book at once.
fn ready<T: Send + 'static>(
    book: &Arc<Mutex<Book>>,
    call: impl FnOnce(&mut Book) -> Result<T, VenueError> + Send + 'static,
) -> VenueFuture<T> {
    let book = Arc::clone(book);
    Box::pin(async move { call(&mut lock(&book)) })
}

impl ExecutionVenue for PaperVenue {
    fn name(&self) -> &'static str {
        crate::adapters::PAPER
    }

    fn submit(&self, order: Approved<OrderRequest>, at: Timestamp) -> VenueFuture<Execution> {
        let book = Arc::clone(&self.book);
        let delay = self.latency.of(&order.get().symbol);
        Box::pin(async move {
            // No sleep at all without latency: even a zero sleep yields, and would reorder calls that are in order.
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            lock(&book).submit(order.get(), at)
        })
    }

    fn cancel(&self, symbol: Symbol, client_order_id: ClientOrderId) -> VenueFuture<()> {
        ready(&self.book, move |book| {
            book.cancel(&symbol, &client_order_id)
        })
    }

    fn move_exits(&self, symbol: Symbol, exits: ArmedExits) -> VenueFuture<ArmedExits> {
        ready(&self.book, move |book| book.move_exits(&symbol, exits))
    }

    fn query(&self, symbol: Symbol, client_order_id: ClientOrderId) -> VenueFuture<Option<Fill>> {
        ready(&self.book, move |book| {
            Ok(book.query(&symbol, &client_order_id))
        })
    }

    fn open_orders(&self, symbol: Option<Symbol>) -> VenueFuture<Vec<OpenOrder>> {
        ready(
            &self.book,
            move |book| Ok(book.open_orders(symbol.as_ref())),
        )
    }

    fn positions(&self) -> VenueFuture<Vec<VenuePosition>> {
        ready(&self.book, |book| Ok(book.positions()))
    }

    fn balance(&self) -> VenueFuture<Balance> {
        ready(&self.book, |book| Ok(book.balance()))
    }

    /// The exit or liquidation the price fires first, then the limit entries it fills or that expired.
    fn mark(&self, symbol: &Symbol, price: Price, at: Timestamp) -> Vec<ExecutionReport> {
        let mut book = lock(&self.book);
        let mut reports: Vec<ExecutionReport> = book
            .mark(symbol, price, at)
            .map(ExecutionReport::Filled)
            .into_iter()
            .collect();
        reports.extend(book.fill_resting(symbol, price, at));
        reports
    }

    /// `None`: paper does nothing on its own. A resting exit fires only when `mark` gives it a price, and `mark`
    /// returns that fill; exits dropped because their position closed or new ones were armed follow from the fills
    /// by `exits::after_fill`, which the ledger applies too.
    fn reports(&self) -> Option<mpsc::Receiver<ExecutionReport>> {
        None
    }

    /// `Null`: the paper book is rebuilt from the ledger (`PaperVenue::restore`).
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}
