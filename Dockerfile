# douyin-order-sync: container image for the batch job (one run, then exit).
#
# NOTE: written on a machine without a Docker daemon, so this image has not been built
# here. The build steps were tried without Docker: Cargo.toml, Cargo.lock, src/ and sql/
# on their own build with `cargo build --release --locked --bin douyin-order-sync`.
#
#   docker build -t douyin-order-sync:latest .
#   docker run --rm --env-file .env douyin-order-sync:latest
#
# Configuration comes from environment variables (see .env.example). Instead, you can
# mount a .env at /app/.env (the working directory): --volume "$PWD/.env:/app/.env:ro".
# Variables set in the environment win over the file. Flags go after the image name
# (`docker run ... douyin-order-sync:latest --help`).
# Exit codes: 0 done, 64 bad command line, 70 bug, 75 temporary (rerun later),
# 77 Douyin refused credentials, 78 bad configuration, 130 SIGINT, 143 SIGTERM.

# ---- build -------------------------------------------------------------------------------
FROM rust:1-slim-bookworm AS build
WORKDIR /build

# Build the dependencies first against placeholder sources, so this layer stays cached
# until Cargo.toml or Cargo.lock changes.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin douyin-order-sync \
    && rm -rf src

# The real sources. sql/ is embedded into the binary with include_str!.
COPY src ./src
COPY sql ./sql
# touch: make cargo rebuild the crate even if the copied files look older than the
# placeholder build.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin douyin-order-sync \
    && cp target/release/douyin-order-sync /usr/local/bin/douyin-order-sync

# ---- runtime -----------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin app

COPY --from=build /usr/local/bin/douyin-order-sync /usr/local/bin/douyin-order-sync

WORKDIR /app
USER 10001

# The binary handles SIGTERM itself: it rolls back the day in progress and exits 143
# within 10 s. A rerun resumes from the last committed day.
ENTRYPOINT ["/usr/local/bin/douyin-order-sync"]
CMD []
