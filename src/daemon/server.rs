//! The HTTP servers, one per listener: the connection cap and its headroom, keep-alive, timeouts, TLS (webhooks
//! only), and the routes.

use std::any::Any;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Extensions, Server, Service as _};
use actix_web::http::{ConnectionType, KeepAlive};
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use tracing::{info, warn};

use crate::config::Config;
use crate::http::{api_routes, webhook_routes, AppState};
use crate::protect::connections::{connection_cap, raise_fd_limit, BodyHold, ConnectionGauge};
use crate::tls;

/// Open connections to the API at most (or `server.max_connections`, if lower).
const API_MAX_CONNECTIONS: usize = 256;

/// Which of the daemon's listeners a server is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `server.listen`: webhooks from the senders, over TLS when configured.
    Webhooks,
    /// `api.listen`: the operator API, plain HTTP (keep it on loopback or behind a proxy that terminates TLS).
    Api,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Webhooks => "webhooks",
            Role::Api => "api",
        }
    }
}

/// Builds the server for `role` on `listener`; it runs once awaited. Each listener has its own connection cap, so a
/// flood of webhooks cannot lock the operator out.
pub fn serve(
    config: &Config,
    state: web::Data<AppState>,
    listener: TcpListener,
    role: Role,
) -> anyhow::Result<Server> {
    let server_config = &config.server;
    let address = listener.local_addr().context("listener has no address")?;
    let max_connections = match role {
        Role::Webhooks => max_connections(server_config.max_connections),
        // A few operators and a monitor: the descriptors stay with the webhooks.
        Role::Api => max_connections(server_config.max_connections).min(API_MAX_CONNECTIONS),
    };
    let gauge = Arc::new(ConnectionGauge::new(max_connections));
    // Every connection is counted while it is open, and its client certificate recorded, if it presented one.
    let on_connect = {
        let gauge = gauge.clone();
        move |connection: &dyn Any, data: &mut Extensions| {
            data.insert(gauge.opened());
            tls::record_client_cert(connection, data);
        }
    };
    // actix caps connections per worker.
    let per_worker = (max_connections / server_config.workers).max(1);
    let keep_alive = match server_config.keep_alive {
        idle if idle.is_zero() => KeepAlive::Disabled,
        idle => KeepAlive::Timeout(idle),
    };
    let server = HttpServer::new(move || {
        let gauge = gauge.clone();
        App::new()
            .app_data(state.clone())
            // The top of the connection cap is headroom for new clients: once it is in use, answers close their
            // connection instead of keeping it idle. An unread body closes it too, rather than being drained.
            .wrap_fn(move |mut req, service| {
                let body = BodyHold::take(&mut req);
                let response = service.call(req);
                let gauge = gauge.clone();
                async move {
                    let mut response = response.await?;
                    if !gauge.may_keep_alive() {
                        response
                            .response_mut()
                            .head_mut()
                            .set_connection_type(ConnectionType::Close);
                    }
                    Ok(body.until_sent(response))
                }
            })
            .configure(match role {
                Role::Webhooks => webhook_routes,
                Role::Api => api_routes,
            })
    })
    .workers(server_config.workers)
    .disable_signals()
    // At a stop the signals in flight have finished already (the drain): an idle keep-alive connection must not
    // hold the exit for actix's default 30 s.
    .shutdown_timeout(2)
    // Past the cap, new connections wait in the kernel's backlog, costing the daemon no descriptor.
    .max_connections(per_worker)
    // TLS handshakes in progress per worker: they cost CPU before a client has shown anything.
    .max_connection_rate(per_worker.min(256))
    // A client must send its request head within this, or it is cut off (slowloris).
    .client_request_timeout(server_config.header_timeout)
    .client_disconnect_timeout(Duration::from_secs(1))
    // An idle connection holds a descriptor and a slot under the cap.
    .keep_alive(keep_alive)
    .on_connect(on_connect);
    let tls = server_config
        .tls
        .as_ref()
        .filter(|_| role == Role::Webhooks);
    let server = match tls {
        Some(tls) => {
            let client_ca = tls.client_ca.as_ref().map(|ca| config.resolve(ca));
            let rustls = tls::server_config(
                &config.resolve(&tls.cert),
                &config.resolve(&tls.key),
                client_ca.as_deref(),
            )?;
            server.listen_rustls_0_23(listener, rustls)
        }
        None => server.listen(listener),
    }
    .context("cannot serve on the listener")?
    .run();
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(listener = role.as_str(), %address, scheme, sources = config.sources.len(), symbols = config.symbols.len(), max_connections,
          keep_alive_secs = server_config.keep_alive.as_secs(), "sentinel is listening");
    Ok(server)
}

/// The connection cap: `configured` or derived from the open file limit, which is first raised to the hard limit.
fn max_connections(configured: Option<usize>) -> usize {
    let fd_limit = match raise_fd_limit() {
        Ok(limit) => {
            info!(
                before = limit.before,
                now = limit.now,
                hard = limit.hard,
                "open file limit"
            );
            limit.now
        }
        Err(e) => {
            warn!(error = %e, "cannot read or raise the open file limit: connections are capped by server.max_connections alone");
            u64::MAX
        }
    };
    connection_cap(configured, fd_limit).unwrap_or_else(|cap| {
        warn!(
            configured = ?configured,
            cap,
            fd_limit,
            "server.max_connections lowered to leave descriptors for the daemon itself; raise `ulimit -Hn`"
        );
        cap
    })
}

/// The operator API while the daemon starts (the journal folds, the venue connects, unfinished signals are handed
/// back): `/healthz` 200, `/readyz` 503 `recovering`, anything else 503 with `Retry-After`. Serves on a clone of
/// the API listener and is stopped before the real API takes it over. Webhooks get no such stand-in: their
/// connections wait in the backlog and are answered once the daemon is up, well within a sender's timeout.
pub fn serve_starting(listener: TcpListener) -> anyhow::Result<Server> {
    use actix_web::HttpResponse;
    let starting = || async {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(serde_json::json!({"error": {"code": "starting", "message": "the daemon is starting: try again shortly"}}))
    };
    let server = HttpServer::new(move || {
        App::new()
            .route(
                "/healthz",
                web::get().to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
            )
            .route(
                "/readyz",
                web::get().to(|| async {
                    HttpResponse::ServiceUnavailable()
                        .insert_header(("Retry-After", "1"))
                        .json(serde_json::json!({"ready": false, "reasons": ["recovering: the journal is being read and the venue connected"]}))
                }),
            )
            .default_service(web::to(starting))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(0)
    .listen(listener)
    .context("cannot serve the start-up probes")?
    .run();
    Ok(server)
}
