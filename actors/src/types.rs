//! Identifiers and money types: each can only hold a valid value, and serde goes through the same checks.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Why a value was refused by one of the checked constructors below.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

fn invalid(msg: impl Into<String>) -> InvalidValue {
    InvalidValue(msg.into())
}

/// An exchange symbol as configured, e.g. `BTCUSDT`: 1-32 upper-case letters and digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Symbol(Arc<str>);

impl Symbol {
    pub fn new(raw: &str) -> Result<Self, InvalidValue> {
        let ok = (1..=32).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if ok {
            Ok(Self(raw.into()))
        } else {
            Err(invalid(format!(
                "`{raw}` is not a symbol: use 1-32 upper-case letters and digits, like BTCUSDT"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Symbol {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::new(&raw)
    }
}

impl From<Symbol> for String {
    fn from(symbol: Symbol) -> Self {
        symbol.0.to_string()
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Symbol({})", self.0)
    }
}

/// Identifies one accepted webhook delivery: 1-64 of `[A-Za-z0-9_.:-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SignalId(Arc<str>);

impl SignalId {
    pub fn new(raw: &str) -> Result<Self, InvalidValue> {
        let ok = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if ok {
            Ok(Self(raw.into()))
        } else {
            Err(invalid(format!(
                "`{raw}` is not a signal id: use 1-64 letters, digits, `_`, `-`, `.` or `:`"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SignalId {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::new(&raw)
    }
}

impl From<SignalId> for String {
    fn from(id: SignalId) -> Self {
        id.0.to_string()
    }
}

impl fmt::Display for SignalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SignalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignalId({})", self.0)
    }
}

/// The id an order carries to the exchange, derived from the signal id and the order's leg so that a retry or a
/// restart re-sends the same id and the exchange refuses a second copy.
///
/// Format: `sn` + the first 28 hex digits of SHA-256(signal id) + 2 digits of leg = 32 characters of `[a-z0-9]`,
/// which fits Binance (`^[.A-Z:/a-z0-9_-]{1,36}$`) and OKX (up to 32 letters and digits). 112 bits of digest make a
/// collision between two signals as unlikely as between two random UUIDs.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientOrderId(Arc<str>);

impl ClientOrderId {
    pub const LEN: usize = 32;

    /// The id of leg `leg` (0-99) of the orders that signal `signal` produced.
    pub fn derive(signal: &SignalId, leg: u8) -> Self {
        assert!(leg < 100, "a signal produces at most 100 order legs");
        let digest = Sha256::digest(signal.as_str().as_bytes());
        Self(format!("sn{}{leg:02}", hex::encode(&digest[..14])).into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClientOrderId {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        let ok = (1..=36).contains(&raw.len())
            && raw.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'/' | b'_' | b'-')
            });
        if ok {
            Ok(Self(raw.into()))
        } else {
            Err(invalid(format!("`{raw}` is not a client order id")))
        }
    }
}

impl From<ClientOrderId> for String {
    fn from(id: ClientOrderId) -> Self {
        id.0.to_string()
    }
}

impl fmt::Display for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientOrderId({})", self.0)
    }
}

/// The largest price or quantity taken. Far above any real market, and low enough that products and sums of them
/// (notional, PnL, equity) stay well inside `Decimal`'s range (about 7.9e28), so arithmetic on them cannot overflow.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0); // 1e12

macro_rules! positive_decimal {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "Decimal", into = "Decimal")]
        pub struct $name(Decimal);

        impl $name {
            pub fn new(value: Decimal) -> Result<Self, InvalidValue> {
                if value > Decimal::ZERO && value <= MAX_AMOUNT {
                    Ok(Self(value.normalize()))
                } else {
                    Err(invalid(format!(
                        concat!("a ", $what, " must be greater than 0 and at most {}, not {}"),
                        MAX_AMOUNT, value
                    )))
                }
            }

            pub fn get(self) -> Decimal {
                self.0
            }
        }

        impl TryFrom<Decimal> for $name {
            type Error = InvalidValue;
            fn try_from(value: Decimal) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for Decimal {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(raw: &str) -> Result<Self, Self::Err> {
                let value = Decimal::from_str(raw.trim())
                    .map_err(|_| invalid(format!(concat!("`{}` is not a ", $what), raw)))?;
                Self::new(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

positive_decimal!(
    /// A price in quote currency, greater than zero.
    Price,
    "price"
);
positive_decimal!(
    /// An amount of the base asset (contracts or coins), greater than zero.
    Quantity,
    "quantity"
);

/// Leverage: a whole multiple from 1 to 125 (the most any exchange we target allows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Leverage(u32);

impl Leverage {
    pub const MAX: u32 = 125;
    pub const ONE: Leverage = Leverage(1);

    pub fn new(value: u32) -> Result<Self, InvalidValue> {
        if (1..=Self::MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err(invalid(format!(
                "leverage must be a whole number from 1 to {}, not {value}",
                Self::MAX
            )))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn as_decimal(self) -> Decimal {
        Decimal::from(self.0)
    }
}

impl TryFrom<u32> for Leverage {
    type Error = InvalidValue;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Leverage> for u32 {
    fn from(value: Leverage) -> Self {
        value.0
    }
}

impl fmt::Display for Leverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x", self.0)
    }
}

/// The side of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// +1 for a buy, -1 for a sell: the sign an order's quantity has on a signed position.
    pub fn sign(self) -> Decimal {
        match self {
            Side::Buy => Decimal::ONE,
            Side::Sell => Decimal::NEGATIVE_ONE,
        }
    }
}

/// The direction of a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionSide {
    Long,
    Short,
}

impl PositionSide {
    /// The order side that opens or adds to a position of this direction.
    pub fn entry_side(self) -> Side {
        match self {
            PositionSide::Long => Side::Buy,
            PositionSide::Short => Side::Sell,
        }
    }

    pub fn opposite(self) -> PositionSide {
        match self {
            PositionSide::Long => PositionSide::Short,
            PositionSide::Short => PositionSide::Long,
        }
    }
}

/// Milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(since_epoch.as_millis() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn symbols_are_upper_case_alphanumerics() {
        assert!(Symbol::new("BTCUSDT").is_ok());
        for bad in [
            "",
            "btcusdt",
            "BTC-USDT",
            "BINANCE:BTCUSDT",
            &"A".repeat(33),
        ] {
            assert!(Symbol::new(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn prices_and_quantities_must_be_positive_and_bounded() {
        assert_eq!(MAX_AMOUNT, Decimal::from(1_000_000_000_000i64));
        assert!(Price::from_str("45000.5").is_ok());
        assert!(Price::from_str("1000000000000").is_ok());
        assert!(Price::from_str("1000000000000.1").is_err());
        assert!(Price::from_str("79228162514264337593543950335").is_err());
        assert!(Price::from_str("0").is_err());
        assert!(Quantity::from_str("-1").is_err());
        assert!(Quantity::from_str("abc").is_err());
    }

    #[test]
    fn leverage_is_between_1_and_125() {
        assert!(Leverage::new(0).is_err());
        assert!(Leverage::new(1).is_ok());
        assert!(Leverage::new(125).is_ok());
        assert!(Leverage::new(126).is_err());
    }

    #[test]
    fn client_order_ids_are_stable_and_per_leg() {
        let signal = SignalId::new("tv-20240101-0001").unwrap();
        let first = ClientOrderId::derive(&signal, 0);
        assert_eq!(
            first,
            ClientOrderId::derive(&signal, 0),
            "same signal and leg"
        );
        assert_ne!(first, ClientOrderId::derive(&signal, 1), "another leg");
        let other = SignalId::new("tv-20240101-0002").unwrap();
        assert_ne!(first, ClientOrderId::derive(&other, 0), "another signal");
        // Pinned so that a change of the derivation, which would break idempotency across an upgrade, is noticed.
        assert_eq!(first.as_str(), "sn5e9aa956edec941bad8897c1f33c00");
    }

    proptest! {
        #[test]
        fn client_order_ids_fit_binance_and_okx(raw in "[A-Za-z0-9_.:-]{1,64}", leg in 0u8..100) {
            let id = ClientOrderId::derive(&SignalId::new(&raw).unwrap(), leg);
            let s = id.as_str();
            prop_assert_eq!(s.len(), ClientOrderId::LEN);
            // OKX: letters and digits, at most 32; Binance: ^[.A-Z:/a-z0-9_-]{1,36}$.
            prop_assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
            prop_assert!(ClientOrderId::try_from(s.to_string()).is_ok());
        }

        #[test]
        fn prices_round_trip_through_serde(mantissa in 1i64..1_000_000_000_000, scale in 0u32..18) {
            let price = Price::new(Decimal::new(mantissa, scale)).unwrap();
            let json = serde_json_like(price.get());
            prop_assert_eq!(Price::from_str(&json).unwrap(), price);
        }
    }

    fn serde_json_like(value: Decimal) -> String {
        value.to_string()
    }
}
