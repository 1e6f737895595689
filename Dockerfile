# hookgate: a multi-stage build. The dependencies are compiled in their own layer, which is
# reused until Cargo.toml or Cargo.lock change; the runtime image is Debian slim with libpq,
# runs as an unprivileged user and checks its own /health.

FROM rust:1.95-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Dependencies only: empty sources with the real manifests.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin/hookgate-tools \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > src/bin/hookgate-tools/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin hookgate \
    && rm -rf src target/release/.fingerprint/hookgate-*

# The gateway itself.
COPY src src
COPY migrations migrations
RUN cargo build --release --locked --bin hookgate \
    && cp target/release/hookgate /usr/local/bin/hookgate

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin hookgate \
    && mkdir -p /var/lib/hookgate/spool && chown -R hookgate /var/lib/hookgate
COPY --from=build /usr/local/bin/hookgate /usr/local/bin/hookgate
COPY hookgate.example.toml /etc/hookgate/hookgate.toml
ENV HOOKGATE_CONFIG=/etc/hookgate/hookgate.toml \
    HOOKGATE_BIND=0.0.0.0:8080 \
    HOOKGATE_SPOOL_DIR=/var/lib/hookgate/spool \
    RUST_LOG=info
USER hookgate
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 CMD ["hookgate", "health"]
# SIGTERM drains: in-flight deliveries finish within delivery.shutdown_grace_seconds.
STOPSIGNAL SIGTERM
ENTRYPOINT ["hookgate"]
CMD ["serve"]
