# syntax=docker/dockerfile:1
#
# rollcall container image.
#   docker build -t rollcall:latest .
#   docker run --rm -p 3000:3000 rollcall:latest            # standalone node on :3000
# Stages: builder (Rust, dependencies cached in their own layer) -> runtime (Debian slim,
# non-root, one binary). The official socket.io-client browser bundle is inside the binary:
# node/build.rs fetches the pinned npm tarball and checks its integrity while the builder runs.

ARG RUST_VERSION=1.95

# ---------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# An image without the socket.io-client bundle (registry unreachable) fails to build instead.
ENV ROLLCALL_REQUIRE_CLIENT_BUNDLE=1

# 1. Dependencies only: with placeholder sources this layer depends on nothing but the
#    workspace's manifests, Cargo.lock and node/build.rs (which fetches the client bundle here),
#    so it is reused until one of them changes.
COPY Cargo.toml Cargo.lock ./
COPY node/Cargo.toml node/build.rs node/
COPY swarm/Cargo.toml swarm/
COPY wire/Cargo.toml wire/
RUN for crate in node swarm wire; do mkdir -p "$crate/src" && touch "$crate/src/lib.rs"; done \
    && mkdir -p src config && echo 'fn main() {}' > src/main.rs && touch config/default.toml \
    && cargo build --release --locked \
    && rm -rf src node/src swarm/src wire/src config

# 2. The workspace itself (config/default.toml and node/src/assets are embedded in the binary,
#    beside the client bundle that step 1 fetched).
COPY config ./config
COPY src ./src
COPY node/src ./node/src
COPY swarm/src ./swarm/src
COPY wire/src ./wire/src
# touch: make the real sources newer than the placeholder's build, whatever their mtimes.
RUN find src node/src swarm/src wire/src -name '*.rs' -exec touch {} + \
    && cargo build --release --locked \
    && install -D -m 0755 target/release/rollcall /out/rollcall

# ---------------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
LABEL org.opencontainers.image.title="rollcall" \
      org.opencontainers.image.description="Horizontally scalable Socket.IO presence cluster" \
      org.opencontainers.image.licenses="MIT"

# Fixed numeric ids so Kubernetes can check runAsNonRoot / runAsUser: 10001.
RUN groupadd --system --gid 10001 rollcall \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin rollcall

COPY --from=builder /out/rollcall /usr/local/bin/rollcall

# A container must listen on all interfaces (the binary's default is 127.0.0.1).
ENV ROLLCALL_BIND=0.0.0.0 \
    ROLLCALL_PORT=3000

USER 10001:10001
EXPOSE 3000
# `rollcall healthcheck` is a tiny built-in HTTP probe (no curl in the image); it checks
# http://127.0.0.1:3000/healthz. If you change ROLLCALL_PORT, override the health check too
# (`healthcheck:` in compose: ["CMD", "rollcall", "healthcheck", "--url", "http://127.0.0.1:PORT/healthz"]).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["rollcall", "healthcheck"]
# SIGTERM starts the graceful drain (readyz 503, clients disconnected, share removed from Redis).
STOPSIGNAL SIGTERM
ENTRYPOINT ["rollcall"]
CMD ["serve"]
