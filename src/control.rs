//! `sentinel halt | resume | flatten`: operator commands sent to the running daemon over its API, with the admin
//! token from the environment variable the configuration names.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// What the operator asks of the running daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Trading state `halted`: no order at all.
    Halt,
    /// Trading state `active` again.
    Resume,
    /// Trading state `reducing`, and every open position closed.
    Flatten,
}

/// The daemon's API address and the admin token, as the configuration file says (its `server.listen`,
/// `server.tls` and `server.admin_token_env`), without reading any other secret.
pub fn target(
    config: &Path,
    url: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<(String, String)> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let raw: toml::Value =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", config.display()))?;
    let server = raw.get("server");
    let url = match url {
        Some(url) => url,
        None => {
            let listen = server
                .and_then(|s| s.get("listen"))
                .and_then(toml::Value::as_str)
                .unwrap_or("127.0.0.1:8080");
            // A daemon listening on every interface is reached on this machine.
            let listen = listen
                .replace("0.0.0.0", "127.0.0.1")
                .replace("[::]", "[::1]");
            let scheme = if server.and_then(|s| s.get("tls")).is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{listen}")
        }
    };
    let Some(name) = server
        .and_then(|s| s.get("admin_token_env"))
        .and_then(toml::Value::as_str)
    else {
        bail!(
            "operator commands need server.admin_token_env in {}",
            config.display()
        );
    };
    let token = env(name)
        .filter(|t| !t.is_empty())
        .with_context(|| format!("{name} is not set"))?;
    Ok((url.trim_end_matches('/').to_string(), token))
}

/// Sends `control` to the daemon at `url`; its answer.
pub async fn send(url: &str, token: &str, control: Control) -> anyhow::Result<Value> {
    crate::tls::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let (path, body) = match control {
        Control::Halt => ("/api/trading-state", json!({ "state": "halted" })),
        Control::Resume => ("/api/trading-state", json!({ "state": "active" })),
        Control::Flatten => ("/api/flatten", json!({})),
    };
    let response = http
        .post(format!("{url}{path}"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .with_context(|| format!("the daemon at {url} cannot be reached"))?;
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("the daemon answered {status}: {answer}");
    }
    Ok(answer)
}
