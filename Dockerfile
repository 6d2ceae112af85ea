# syntax=docker/dockerfile:1
#
# rollcall container image.
#   docker build -t rollcall:latest .
#   docker run --rm -p 3000:3000 rollcall:latest            # standalone node on :3000
# Stages: builder (Rust, dependencies cached in their own layer) -> client-bundle (the official
# socket.io-client browser bundle from npm) -> runtime (Debian slim, non-root, binary + bundle).

ARG RUST_VERSION=1.95
ARG SOCKET_IO_CLIENT_VERSION=4.8.1

# ---------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src

# 1. Dependencies only: with placeholder sources this layer depends on nothing but the
#    workspace's manifests and Cargo.lock, so it is reused until the dependency set changes.
COPY Cargo.toml Cargo.lock ./
COPY node/Cargo.toml node/
COPY swarm/Cargo.toml swarm/
COPY wire/Cargo.toml wire/
RUN for crate in node swarm wire; do mkdir -p "$crate/src" && touch "$crate/src/lib.rs"; done \
    && mkdir -p src config && echo 'fn main() {}' > src/main.rs && touch config/default.toml \
    && cargo build --release --locked \
    && rm -rf src node/src swarm/src wire/src config

# 2. The workspace itself (config/default.toml and node/src/assets are embedded in the binary).
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
FROM node:20-bookworm-slim AS client-bundle
ARG SOCKET_IO_CLIENT_VERSION
# npm's integrity for socket.io-client@4.8.1 (the same value as tests/e2e/package-lock.json);
# change both build args together.
ARG SOCKET_IO_CLIENT_INTEGRITY=sha512-hJVXfu3E28NmzGk8o1sHhN3om52tRvwYeidbj7xKy2eIIse5IoKX3USlS6Tqt3BHAtflLIkCQBkzVrEEfWUyYQ==
WORKDIR /bundle
# `npm pack` fetches just the package tarball: its dist/ holds the prebuilt browser bundles, so no
# dependency tree is installed. The tarball is checked against the pinned integrity, and the
# package's LICENSE travels with the files (MIT).
RUN npm pack --silent "socket.io-client@${SOCKET_IO_CLIENT_VERSION}" \
    && node -e ' \
        const [file, want] = process.argv.slice(1); \
        const got = "sha512-" + require("crypto").createHash("sha512").update(require("fs").readFileSync(file)).digest("base64"); \
        if (got !== want) { console.error("integrity mismatch for " + file + ": " + got); process.exit(1); }' \
        "socket.io-client-${SOCKET_IO_CLIENT_VERSION}.tgz" "${SOCKET_IO_CLIENT_INTEGRITY}" \
    && tar -xzf "socket.io-client-${SOCKET_IO_CLIENT_VERSION}.tgz" \
    && mkdir -p /out \
    && cp package/dist/* package/LICENSE /out/ \
    && test -s /out/socket.io.js && test -s /out/socket.io.min.js && test -s /out/socket.io.min.js.map

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
COPY --from=client-bundle /out/ /usr/share/rollcall/socket.io-client/

# A container must listen on all interfaces (the binary's default is 127.0.0.1).
ENV ROLLCALL_BIND=0.0.0.0 \
    ROLLCALL_PORT=3000 \
    ROLLCALL_CLIENT_BUNDLE_DIR=/usr/share/rollcall/socket.io-client

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
