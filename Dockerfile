# syntax=docker/dockerfile:1
# Sentinel in a container: build with `docker build -t sentinel .`, run with docker-compose.yml (docs/operations.md).

FROM rust:bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches survive between builds; the binary is copied out of the cached target folder.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sentinel \
    && cp target/release/sentinel /usr/local/bin/sentinel

FROM debian:bookworm-slim
# ca-certificates: a live exchange is reached over TLS.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/sentinel --shell /usr/sbin/nologin sentinel \
    && install -d -o sentinel -g sentinel -m 0700 /var/lib/sentinel
COPY --from=build /usr/local/bin/sentinel /usr/local/bin/sentinel
COPY config.toml /etc/sentinel/config.toml

# In a container the listeners must take connections from outside it; publish the API port on the host's loopback
# only (docker-compose.yml). The journal lives on the volume, not next to the config.
ENV SENTINEL__SERVER__LISTEN=0.0.0.0:9470 \
    SENTINEL__API__LISTEN=0.0.0.0:9471 \
    SENTINEL__JOURNAL__PATH=/var/lib/sentinel/sentinel.db \
    RUST_LOG=info

USER sentinel
WORKDIR /var/lib/sentinel
VOLUME /var/lib/sentinel
EXPOSE 9470 9471
# The daemon stops cleanly on SIGTERM (docker stop's default); give it the time to finish what is in flight.
STOPSIGNAL SIGTERM
# The API listener: plain HTTP even when the webhooks are served over TLS.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["sentinel", "healthcheck", "--url", "http://127.0.0.1:9471/healthz"]
ENTRYPOINT ["sentinel"]
CMD ["run", "--config", "/etc/sentinel/config.toml", "--log-format", "json"]
