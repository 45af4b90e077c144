//! The paper account as plain synchronous logic: market orders fill at the last price, stop-loss and take-profit
//! levels rest and fire when a later price crosses them, and a position whose mark crosses its liquidation price is
//! closed there. The venue wraps it for the async port; tests drive it directly.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::prelude::Signed;
use rust_decimal::Decimal;

use sentinel_actors::event::CancelReason;
use sentinel_actors::exits::{self, ArmedExits};
use sentinel_actors::ledger::Ledger;
use sentinel_actors::order::{Fill, FillReason, OrderRequest};
use sentinel_actors::portfolio::{MarginSpec, Portfolio};
use sentinel_actors::types::{ClientOrderId, Price, Quantity, Side, SignalId, Symbol, Timestamp};
use sentinel_actors::venue::{
    Balance, Execution, ExecutionReport, OpenOrder, RejectReason, VenueError, VenuePosition,
};

use super::costs::PaperCosts;
use super::fills::{FillMemory, REMEMBERED_FILLS};

/// Limit entries resting per symbol, at most: Binance's open-order limit per symbol. Keeps the book, the ledger and
/// every view that copies them bounded however many entries are sent.
pub const MAX_RESTING_PER_SYMBOL: usize = 200;

/// A market order to fill now: an order as submitted, or an exit a price crossed.
struct Market {
    id: ClientOrderId,
    symbol: Symbol,
    side: Side,
    quantity: Quantity,
    reason: FillReason,
}

/// What the paper venue knows of a symbol, from its configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaperSymbol {
    /// Cross or isolated, and the maintenance rate: where the position is liquidated.
    pub margin: MarginSpec,
    /// Fill prices are rounded to it, against the taker; `None`: not rounded.
    pub tick_size: Option<Decimal>,
}

/// One simulated account.
#[derive(Debug)]
pub struct Book {
    costs: PaperCosts,
    /// Each symbol's terms; a symbol not listed is cross at the default maintenance rate, with no tick.
    symbols: HashMap<Symbol, PaperSymbol>,
    /// Positions, wallet balance and last prices (`marks`), kept by the same fold of the same fills as the ledger's
    /// portfolio, so that the two agree to the last digit and a restart can start from the ledger's.
    account: Portfolio,
    /// Levels resting per symbol, armed and dropped by `exits::after_fill`, which the ledger folds with too.
    exits: BTreeMap<Symbol, ArmedExits>,
    /// Limit entries the market has not reached, by client order id (the ledger's `resting`).
    resting: BTreeMap<ClientOrderId, OrderRequest>,
    /// Past fills by client order id: a second submit of the same id gets the first fill back, as a real venue's
    /// order lookup would give it.
    filled: FillMemory,
}

impl Book {
    /// An account that has never traded.
    pub fn new(costs: PaperCosts, starting_balance: Decimal) -> Self {
        Self {
            costs,
            symbols: HashMap::new(),
            account: Portfolio::new(starting_balance),
            exits: BTreeMap::new(),
            resting: BTreeMap::new(),
            filled: FillMemory::new(REMEMBERED_FILLS),
        }
    }

    /// The account the log describes. The fills of unfinished signals are remembered, however many, so that a
    /// recovered order placed again is answered `AlreadyFilled`; finished signals place nothing again.
    pub fn restore(costs: PaperCosts, ledger: &Ledger) -> Self {
        let recovered: Vec<&Fill> = ledger.pending().flat_map(|p| &p.fills).collect();
        let mut filled = FillMemory::new(REMEMBERED_FILLS.max(recovered.len()));
        for fill in recovered {
            filled.remember(fill.clone());
        }
        Self {
            costs,
            symbols: HashMap::new(),
            account: ledger.portfolio.clone(),
            exits: ledger.exits.clone(),
            resting: ledger.resting.clone(),
            filled,
        }
    }

    /// Trades each symbol on its terms (margin, tick).
    pub fn set_symbols(&mut self, symbols: HashMap<Symbol, PaperSymbol>) {
        self.symbols = symbols;
    }

    fn terms(&self, symbol: &Symbol) -> PaperSymbol {
        self.symbols.get(symbol).cloned().unwrap_or_default()
    }

    /// Remembers at most `capacity` fills, to see the bound at work without 65,536 orders.
    #[cfg(test)]
    pub fn remembering(mut self, capacity: usize) -> Self {
        self.filled = FillMemory::new(capacity);
        self
    }

    #[cfg(test)]
    pub fn account(&self) -> &Portfolio {
        &self.account
    }

    #[cfg(test)]
    pub fn exits(&self) -> &BTreeMap<Symbol, ArmedExits> {
        &self.exits
    }

    /// Fills a market order at the last price, cutting a reduce-only one to what is open, and arms the entry's
    /// exits. The same client order id fills once.
    pub fn submit(&mut self, order: &OrderRequest, at: Timestamp) -> Result<Execution, VenueError> {
        if let Some(fill) = self.filled.get(&order.client_order_id) {
            return Ok(Execution::AlreadyFilled(fill.clone()));
        }
        if order.limit.is_some() {
            return self.submit_limit(order, at);
        }
        let last = self.account.last_price(&order.symbol).ok_or_else(|| {
            VenueError::rejected(RejectReason::NoPrice {
                symbol: order.symbol.clone(),
            })
        })?;
        let mut quantity = order.quantity;
        if order.reduce_only {
            let open = self.account.position_quantity(&order.symbol);
            if open.is_zero() || open.signum() == order.side.sign() {
                return Err(VenueError::rejected(RejectReason::WouldNotReduce));
            }
            // As exchanges do, a reduce-only order is cut to what is open.
            quantity = Quantity::new(quantity.get().min(open.abs())).unwrap_or(quantity);
        }
        let market = Market {
            id: order.client_order_id.clone(),
            symbol: order.symbol.clone(),
            side: order.side,
            quantity,
            reason: FillReason::Signal,
        };
        let fill = self.fill(market, last, at);
        self.book(Some(order), &fill);
        Ok(Execution::New(fill))
    }

    /// A limit entry: filled now if the last price is at or better than its limit (at that price with slippage, never
    /// worse than the limit), else rested (`gtc`, `gtd`) or refused (`ioc`, `fok`). Resting twice changes nothing.
    fn submit_limit(
        &mut self,
        order: &OrderRequest,
        at: Timestamp,
    ) -> Result<Execution, VenueError> {
        let Some(limit) = order.limit else {
            return self.submit(order, at);
        };
        if self.resting.contains_key(&order.client_order_id) {
            return Ok(Execution::Resting);
        }
        if limit.expired_at(at) {
            return Err(VenueError::rejected(RejectReason::Expired));
        }
        match self.account.last_price(&order.symbol) {
            Some(last) if limit.crossed_by(order.side, last) => {
                let market = Market {
                    id: order.client_order_id.clone(),
                    symbol: order.symbol.clone(),
                    side: order.side,
                    quantity: order.quantity,
                    reason: FillReason::Signal,
                };
                let mut fill = self.fill(market, last, at);
                let capped = match order.side {
                    Side::Buy => fill.price.min(limit.price),
                    Side::Sell => fill.price.max(limit.price),
                };
                if capped != fill.price {
                    fill.price = capped;
                    fill.fee = self.costs.fee(capped, fill.quantity);
                }
                self.book(Some(order), &fill);
                Ok(Execution::New(fill))
            }
            _ if limit.time_in_force.rests() => {
                let on_symbol = self
                    .resting
                    .values()
                    .filter(|o| o.symbol == order.symbol)
                    .count();
                if on_symbol >= MAX_RESTING_PER_SYMBOL {
                    return Err(VenueError::rejected(RejectReason::TooManyOpenOrders {
                        limit: MAX_RESTING_PER_SYMBOL,
                    }));
                }
                self.resting
                    .insert(order.client_order_id.clone(), order.clone());
                Ok(Execution::Resting)
            }
            _ => Err(VenueError::rejected(RejectReason::WouldNotFill {
                limit: limit.price,
                time_in_force: limit.time_in_force,
            })),
        }
    }

    /// After `price` on `symbol`: every resting entry past its `expires_at` is taken off (any symbol's: time passed
    /// for all), and the symbol's entries that `price` reaches fill at their limit price (a gap through the limit
    /// fills there too, as a resting order would), with the fee, arming their exits. Oldest entry first.
    pub fn fill_resting(
        &mut self,
        symbol: &Symbol,
        price: Price,
        at: Timestamp,
    ) -> Vec<ExecutionReport> {
        let mut reports = Vec::new();
        let expired: Vec<ClientOrderId> = self
            .resting
            .iter()
            .filter(|(_, o)| o.limit.is_some_and(|l| l.expired_at(at)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(order) = self.resting.remove(&id) {
                reports.push(ExecutionReport::Cancelled {
                    symbol: order.symbol,
                    client_order_id: id,
                    reason: CancelReason::Expired,
                });
            }
        }
        let crossed: Vec<ClientOrderId> = self
            .resting
            .iter()
            .filter(|(_, o)| &o.symbol == symbol)
            .filter(|(_, o)| o.limit.is_some_and(|l| l.crossed_by(o.side, price)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in crossed {
            let Some(order) = self.resting.remove(&id) else {
                continue;
            };
            let Some(limit) = order.limit else { continue };
            let fill = Fill {
                client_order_id: id,
                symbol: order.symbol.clone(),
                side: order.side,
                quantity: order.quantity,
                price: limit.price,
                fee: self.costs.fee(limit.price, order.quantity),
                reason: FillReason::Signal,
                at,
            };
            self.book(Some(&order), &fill);
            reports.push(ExecutionReport::EntryFilled {
                order: Box::new(order),
                fill,
            });
        }
        reports
    }

    /// Records the symbol's last price and fires the exit it crosses, at that price: a stop wins over a target.
    /// Failing that, a position whose liquidation price the mark reached (a long's at or below it, a short's at or
    /// above) is closed whole at its liquidation price, with the fee: a gap past it fills there, not at the mark.
    /// A trailing stop follows the price first (as the ledger folds it), then fires if the price crossed it.
    pub fn mark(&mut self, symbol: &Symbol, price: Price, at: Timestamp) -> Option<Fill> {
        self.account.mark(symbol, price);
        if let Some(armed) = self.exits.get_mut(symbol) {
            armed.trail(price);
        }
        self.fire_exit(symbol, price, at)
            .or_else(|| self.liquidate(symbol, price, at))
    }

    /// The symbol's liquidation price now, by its margin terms (see `Portfolio::liquidation_price`).
    pub fn liquidation_price(&self, symbol: &Symbol) -> Option<Decimal> {
        self.account
            .liquidation_price(symbol, &|s| self.terms(s).margin)
    }

    /// Closes the position at its liquidation price if `mark` reached it.
    fn liquidate(&mut self, symbol: &Symbol, mark: Price, at: Timestamp) -> Option<Fill> {
        let open = self.account.position_quantity(symbol);
        let quantity = Quantity::new(open.abs()).ok()?;
        let level = self.liquidation_price(symbol)?;
        let long = open.is_sign_positive();
        if (long && mark.get() > level) || (!long && mark.get() < level) {
            return None;
        }
        // Reached by a mark, so within the price bounds.
        let price = Price::new(level).ok()?;
        // One liquidation per symbol and millisecond; "liq:" + 32 + ":" + 20 digits fits a signal id's 64.
        let origin = SignalId::new(&format!("liq:{symbol}:{}", at.0)).ok()?;
        let fill = Fill {
            client_order_id: ClientOrderId::derive(&origin, 0),
            symbol: symbol.clone(),
            side: if long { Side::Sell } else { Side::Buy },
            quantity,
            price,
            fee: self.costs.fee(price, quantity),
            reason: FillReason::Liquidation,
            at,
        };
        self.book(None, &fill);
        Some(fill)
    }

    /// Fires the exit `price` crosses, at that price.
    fn fire_exit(&mut self, symbol: &Symbol, price: Price, at: Timestamp) -> Option<Fill> {
        let (reason, id) = self.exits.get(symbol)?.crossed(price)?;
        let open = self.account.position_quantity(symbol);
        let Ok(quantity) = Quantity::new(open.abs()) else {
            // Levels outlive their position only in a log from before they were dropped with it: nothing to close.
            self.exits.remove(symbol);
            return None;
        };
        // The exit closes what is open, so its side comes from the position, never from the levels: a fill that
        // flipped the position without arming new levels must not make a stop double it.
        let side = if open.is_sign_positive() {
            Side::Sell
        } else {
            Side::Buy
        };
        let market = Market {
            id,
            symbol: symbol.clone(),
            side,
            quantity,
            reason,
        };
        let fill = self.fill(market, price, at);
        self.book(None, &fill);
        Some(fill)
    }

    /// Replaces the symbol's resting stop loss and take profit (a signal moved them), exactly as the ledger folds
    /// `Event::ExitsMoved`. Refused when nothing is open: there is no position for them to close.
    pub fn move_exits(
        &mut self,
        symbol: &Symbol,
        exits: ArmedExits,
    ) -> Result<ArmedExits, VenueError> {
        if self.account.position_quantity(symbol).is_zero() {
            return Err(VenueError::rejected(RejectReason::WouldNotReduce));
        }
        if exits.stop_loss.is_some() || exits.take_profit.is_some() {
            self.exits.insert(symbol.clone(), exits.clone());
        } else {
            self.exits.remove(symbol);
        }
        Ok(exits)
    }

    /// Takes a resting limit entry, or a stop loss or take profit, off the book; the other leg stays.
    pub fn cancel(&mut self, symbol: &Symbol, id: &ClientOrderId) -> Result<(), VenueError> {
        if self.resting.get(id).is_some_and(|o| &o.symbol == symbol) {
            self.resting.remove(id);
            return Ok(());
        }
        if self
            .exits
            .get_mut(symbol)
            .is_some_and(|armed| armed.cancel(id))
        {
            return Ok(());
        }
        Err(VenueError::rejected(RejectReason::UnknownOrder {
            client_order_id: id.clone(),
        }))
    }

    /// The fill of the order with this client order id on `symbol`, while it is remembered.
    pub fn query(&self, symbol: &Symbol, id: &ClientOrderId) -> Option<Fill> {
        self.filled
            .get(id)
            .filter(|fill| fill.symbol == *symbol)
            .cloned()
    }

    /// The resting limit entries, then the resting exits, by symbol.
    pub fn open_orders(&self, symbol: Option<&Symbol>) -> Vec<OpenOrder> {
        let mut orders: Vec<OpenOrder> = self
            .resting
            .values()
            .filter(|o| symbol.is_none_or(|s| *s == o.symbol))
            .filter_map(|o| {
                Some(OpenOrder {
                    client_order_id: o.client_order_id.clone(),
                    symbol: o.symbol.clone(),
                    side: o.side,
                    quantity: Some(o.quantity),
                    trigger: o.limit?.price,
                    reason: FillReason::Signal,
                })
            })
            .collect();
        for (on, armed) in &self.exits {
            if symbol.is_some_and(|s| s != on) {
                continue;
            }
            // An exit closes the position: it trades against the side it guards.
            let side = armed.side.entry_side().opposite();
            let legs = [
                (&armed.stop_loss, FillReason::StopLoss),
                (&armed.take_profit, FillReason::TakeProfit),
            ];
            for (leg, reason) in legs {
                if let Some((trigger, id)) = leg {
                    orders.push(OpenOrder {
                        client_order_id: id.clone(),
                        symbol: on.clone(),
                        side,
                        quantity: None,
                        trigger: *trigger,
                        reason,
                    });
                }
            }
        }
        orders
    }

    /// The positions that are open.
    pub fn positions(&self) -> Vec<VenuePosition> {
        self.account
            .positions
            .iter()
            .filter(|(_, p)| !p.is_flat())
            .map(|(symbol, p)| VenuePosition {
                symbol: symbol.clone(),
                quantity: p.quantity,
                entry_price: p.entry_price,
            })
            .collect()
    }

    /// The wallet is what the fills left: the starting balance plus realized PnL minus fees. Available is what new
    /// positions may still take: the wallet plus unrealized PnL minus the initial margin of the open positions.
    pub fn balance(&self) -> Balance {
        Balance {
            wallet: self.account.balance,
            available: self.account.available_margin(),
        }
    }

    /// Fills a market order against the last price, with slippage and fee.
    fn fill(&self, market: Market, last: Price, at: Timestamp) -> Fill {
        let price = self
            .costs
            .fill_price(market.side, last, self.terms(&market.symbol).tick_size);
        Fill {
            client_order_id: market.id,
            symbol: market.symbol,
            side: market.side,
            quantity: market.quantity,
            price,
            fee: self.costs.fee(price, market.quantity),
            reason: market.reason,
            at,
        }
    }

    /// Counts a fill in the account and its exits, exactly as the ledger folds `Event::Filled`, and remembers it.
    fn book(&mut self, order: Option<&OrderRequest>, fill: &Fill) {
        self.account.apply_fill_at(fill, order.map(|o| o.leverage));
        let after = self.account.position_quantity(&fill.symbol);
        let mut armed = self.exits.remove(&fill.symbol);
        let entry = self
            .account
            .positions
            .get(&fill.symbol)
            .map_or(Decimal::ZERO, |p| p.entry_price);
        exits::after_fill_at(&mut armed, order, fill, after, entry);
        if let Some(armed) = armed {
            self.exits.insert(fill.symbol.clone(), armed);
        }
        self.filled.remember(fill.clone());
    }
}

/// A cancel of an order that is not resting: it fired, was cancelled, or never existed.
// The port has no typed reason for this yet; `Venue` keeps it a rejection (retrying cannot help) until it has.
#[cfg(test)]
mod tests;
