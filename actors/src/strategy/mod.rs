//! A symbol's strategy: the plain logic (`book`) and the supervised actor that runs it (`actor`).

mod actor;
mod book;

pub use actor::StrategyActor;
pub use book::{Decision, MarketView, StrategyBook, SymbolSettings};
