//! Secrets read from the environment: never printed, compared in constant time.

use std::fmt;

use subtle::ConstantTimeEq;

/// A secret value. `Debug` and `Display` print nothing of it, so it cannot reach a log by accident.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Constant-time comparison: how long it takes says nothing about how much of `candidate` matched.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        self.0.ct_eq(candidate).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Demo secrets, used only with the paper exchange when the environment does not set one.
pub const DEMO_TRADINGVIEW_PASSPHRASE: &str = "sentinel-demo-passphrase";
pub const DEMO_SIGNALS_SECRET: &str = "sentinel-demo-secret";

pub fn is_demo(value: &[u8]) -> bool {
    value == DEMO_TRADINGVIEW_PASSPHRASE.as_bytes() || value == DEMO_SIGNALS_SECRET.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(s.matches(b"hunter2"));
        assert!(!s.matches(b"hunter3"));
        assert!(!s.matches(b"hunter"));
    }
}
