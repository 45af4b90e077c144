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

/// The daemon's API address and the admin token, as the configuration file says (its `api.listen` and
/// `api.admin_token_env`, or the deprecated `server.admin_token_env`), without reading any other secret.
pub fn target(
    config: &Path,
    url: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<(String, String)> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let raw: toml::Value =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", config.display()))?;
    let api = raw.get("api");
    let key = |table: Option<&toml::Value>, key: &str| {
        table
            .and_then(|t| t.get(key))
            .and_then(toml::Value::as_str)
            .map(str::to_string)
    };
    let url = match url {
        Some(url) => url,
        None => {
            let listen = key(api, "listen").unwrap_or_else(|| "127.0.0.1:9471".into());
            // A daemon listening on every interface is reached on this machine. The API is plain HTTP: TLS is the
            // webhook listener's.
            let listen = listen
                .replace("0.0.0.0", "127.0.0.1")
                .replace("[::]", "[::1]");
            format!("http://{listen}")
        }
    };
    let name = key(api, "admin_token_env")
        .or_else(|| key(raw.get("server"), "admin_token_env"))
        .unwrap_or_else(|| "SENTINEL_ADMIN_TOKEN".into());
    let token = env(&name).filter(|t| !t.is_empty()).with_context(|| {
        format!(
            "{name} is not set: operator commands need the admin token (api.admin_token_env in {})",
            config.display()
        )
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target_of(text: &str) -> anyhow::Result<(String, String)> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text)?;
        target(&path, None, &|name| match name {
            "SENTINEL_ADMIN_TOKEN" => Some("default-variable-token".into()),
            "OPS_TOKEN" => Some("named-variable-token".into()),
            _ => None,
        })
    }

    #[test]
    fn commands_go_to_the_api_listener_with_the_admin_token() {
        let (url, token) = target_of("[server]\nlisten = \"127.0.0.1:9470\"\n").unwrap();
        assert_eq!(
            (url.as_str(), token.as_str()),
            ("http://127.0.0.1:9471", "default-variable-token")
        );
        let (url, token) = target_of(
            "[server]\n[server.tls]\ncert = \"c\"\nkey = \"k\"\n\n[api]\nlisten = \"0.0.0.0:9999\"\nadmin_token_env = \"OPS_TOKEN\"\n",
        )
        .unwrap();
        assert_eq!(
            (url.as_str(), token.as_str()),
            ("http://127.0.0.1:9999", "named-variable-token"),
            "the API is plain HTTP whatever the webhooks use"
        );
        let (_, token) = target_of("[server]\nadmin_token_env = \"OPS_TOKEN\"\n").unwrap();
        assert_eq!(
            token, "named-variable-token",
            "the deprecated key still works"
        );
        let error = target_of("[api]\nadmin_token_env = \"UNSET\"\n").unwrap_err();
        assert!(error.to_string().contains("UNSET is not set"), "{error}");
    }
}
