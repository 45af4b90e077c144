//! A symbol's strategy: the plain logic (`book`, with its `sizing`) and the supervised actor that runs it (`actor`).

mod actor;
mod book;
mod sizing;
mod stops;

pub use actor::{Downstream, StrategyActor};
pub use book::{Decision, MarketView, StrategyBook, SymbolSettings};
