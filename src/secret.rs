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

/// Characters an operator token must have at least, and distinct characters among them.
pub const MIN_TOKEN_CHARS: usize = 16;
pub const MIN_TOKEN_DISTINCT: usize = 8;

/// Whether `token` is fit to guard operator writes: at least 16 characters (not bytes), no whitespace or control
/// characters, and not a run of a few characters repeated (`aaaa...`, `abab...`).
pub fn check_token_strength(token: &str) -> Result<(), String> {
    let chars = token.chars().count();
    if chars < MIN_TOKEN_CHARS {
        return Err(format!(
            "must hold at least {MIN_TOKEN_CHARS} characters, not {chars}; `sentinel token` prints a strong one"
        ));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not hold whitespace or control characters".into());
    }
    let distinct = token
        .chars()
        .collect::<std::collections::HashSet<_>>()
        .len();
    if distinct < MIN_TOKEN_DISTINCT {
        return Err(format!(
            "is too easy to guess: it uses {distinct} different characters, at least {MIN_TOKEN_DISTINCT} are needed; \
             `sentinel token` prints a strong one"
        ));
    }
    Ok(())
}

/// A fresh random token: 32 bytes from the operating system's generator, URL-safe base64 (43 characters).
pub fn generate_token() -> std::io::Result<String> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_tokens_are_refused() {
        for weak in [
            " ".repeat(16),
            "a".repeat(16),
            "é".repeat(8),
            "ab".repeat(10),
            "short-token".into(),
            "admin token with spaces 123".into(),
            "tab\tseparated-token-1234".into(),
        ] {
            assert!(check_token_strength(&weak).is_err(), "{weak:?} accepted");
        }
        assert!(check_token_strength("admin-token-7f3a9c2e5b1d").is_ok());
        // Characters, not bytes: 16 two-byte characters, all different enough.
        assert!(check_token_strength("äöüßéèêëàâîïôûçñ").is_ok());
    }

    #[test]
    fn generated_tokens_are_strong_and_fresh() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(check_token_strength(&a).is_ok(), "{a}");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(s.matches(b"hunter2"));
        assert!(!s.matches(b"hunter3"));
        assert!(!s.matches(b"hunter"));
    }
}
