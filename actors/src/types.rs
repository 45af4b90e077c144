//! Identifiers and money types: each can only hold a valid value, and serde goes through the same checks.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::amount::{fits_scale, parse_decimal, MAX_PRICE, MAX_QUANTITY, MAX_SCALE, MIN_PRICE};

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

macro_rules! bounded_decimal {
    ($(#[$doc:meta])* $name:ident, $what:literal, $low:expr, $low_included:literal, $high:expr, $range:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "Decimal", into = "Decimal")]
        pub struct $name(Decimal);

        impl $name {
            /// Checks the range only: values Sentinel computes (fill prices, sized quantities) may have more decimal
            /// places than a sender may write, and the journal holds values from before the cap on them.
            pub fn new(value: Decimal) -> Result<Self, InvalidValue> {
                let above_low = if $low_included { value >= $low } else { value > $low };
                if above_low && value <= $high {
                    Ok(Self(value.normalize()))
                } else {
                    Err(invalid(format!(
                        concat!("a ", $what, " must be ", $range, ", not {}"),
                        $low, $high, value
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

        /// A sender's text: read exactly (see `amount::parse_decimal`), in range, and with at most `MAX_SCALE`
        /// decimal places, so that nothing a sender wrote is rounded away.
        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(raw: &str) -> Result<Self, Self::Err> {
                let value = parse_decimal(raw.trim()).map_err(|e| {
                    invalid(format!(concat!("not a ", $what, ": {}"), e))
                })?;
                let checked = Self::new(value)?;
                if !fits_scale(value) {
                    return Err(invalid(format!(
                        concat!("a ", $what, " may have at most {} decimal places, not {}"),
                        MAX_SCALE, value
                    )));
                }
                Ok(checked)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

bounded_decimal!(
    /// A price in quote currency, from `MIN_PRICE` (1e-8) to `MAX_PRICE` (1e10).
    Price,
    "price",
    MIN_PRICE,
    true,
    MAX_PRICE,
    "from {} to {}"
);
bounded_decimal!(
    /// An amount of the base asset (contracts or coins), greater than zero and at most `MAX_QUANTITY` (1e12): also
    /// the bound on a position, so that a close always fits in one order.
    Quantity,
    "quantity",
    Decimal::ZERO,
    false,
    MAX_QUANTITY,
    "greater than {} and at most {}"
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
    fn prices_and_quantities_must_be_in_their_bounds() {
        assert!(Price::from_str("45000.5").is_ok());
        assert!(Price::from_str("0.00000001").is_ok(), "the lowest price");
        assert!(Price::from_str("10000000000").is_ok(), "the highest price");
        assert!(Price::from_str(" 4.5e4 ").is_ok());
        for bad in [
            "0",
            "0.000000009",
            "1e-13",
            "10000000000.1",
            "79228162514264337593543950335",
            "4_5000",
            "45000.0000000000001",
            "1e-30",
            "1e40",
        ] {
            assert!(Price::from_str(bad).is_err(), "price {bad} accepted");
        }
        assert!(Quantity::from_str("1000000000000").is_ok());
        assert!(Quantity::from_str("0.000000000001").is_ok());
        for bad in [
            "-1",
            "0",
            "abc",
            "1000000000000.1",
            "0.0000000000001",
            "1_000",
        ] {
            assert!(Quantity::from_str(bad).is_err(), "quantity {bad} accepted");
        }
        // Computed values are only range-checked: a fill price may carry more places than a sender may write.
        assert!(Quantity::new(Decimal::new(1, 20)).is_ok());
        assert!(Price::new(Decimal::new(1, 9)).is_err());
    }

    #[test]
    fn refusals_say_what_and_why() {
        let message = Price::from_str("4_5000").unwrap_err().to_string();
        assert!(
            message.contains("not a price") && message.contains("4_5000"),
            "{message}"
        );
        let message = Price::from_str("0.000000001").unwrap_err().to_string();
        assert!(
            message.contains("from 0.00000001 to 10000000000"),
            "{message}"
        );
        let message = Quantity::from_str("1.0000000000001")
            .unwrap_err()
            .to_string();
        assert!(message.contains("at most 12 decimal places"), "{message}");
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
        fn prices_round_trip_through_serde(mantissa in 1i64..=1_000_000_000_000, scale in 2u32..=MAX_SCALE) {
            let value = Decimal::new(mantissa, scale);
            prop_assume!(value >= MIN_PRICE);
            let price = Price::new(value).unwrap();
            let json = serde_json_like(price.get());
            prop_assert_eq!(Price::from_str(&json).unwrap(), price);
        }
    }

    fn serde_json_like(value: Decimal) -> String {
        value.to_string()
    }
}
