# syntax=docker/dockerfile:1
# oncehub-bridge: a release build, then a small Debian runtime running as a non-root user.
# The data dir (spool, dedup index, generated secret, instance id) is a volume: keep it across
# restarts, or acknowledged deliveries still in the spool are lost with the container.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# The dependencies first, in a layer of their own, built against empty stand-ins for the crate's
# own files: a change to the code reuses this layer and recompiles only the crate itself.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src bench \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > bench/gen_payloads.rs \
    && cargo build --release --locked --bin oncehub-bridge \
    && rm -rf src bench target/release/oncehub-bridge* target/release/deps/oncehub_bridge-* \
        target/release/deps/liboncehub_bridge-* target/release/.fingerprint/oncehub-bridge-*
COPY src src
COPY schemas schemas
COPY bench bench
RUN cargo build --release --locked --bin oncehub-bridge

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/oncehub-bridge --shell /usr/sbin/nologin bridge \
    && mkdir -p /var/lib/oncehub-bridge \
    && chown bridge /var/lib/oncehub-bridge
COPY --from=build /src/target/release/oncehub-bridge /usr/local/bin/oncehub-bridge
USER bridge
ENV ONCEHUB_BRIDGE_DATA_DIR=/var/lib/oncehub-bridge \
    ONCEHUB_BRIDGE_LISTEN=0.0.0.0:8080
VOLUME ["/var/lib/oncehub-bridge"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["oncehub-bridge"]
CMD ["serve"]
