# syntax=docker/dockerfile:1.7
# cdcd container image: a multi-stage build. The runtime is distroless (glibc, libgcc,
# ca-certificates, tzdata, /etc/passwd with `nonroot`; no shell, no package manager) and runs as
# the non-root uid 65532.
#
#   docker build -t ghcr.io/cdcd/cdcd:0.1.0 .
#   docker run --rm -e CDCD_SOURCE__URL=mysql://repl@db:3306 -e CDCD_SOURCE_PASSWORD=… \
#     -p 9464:9464 ghcr.io/cdcd/cdcd:0.1.0
#
# Why glibc + distroless/cc and not a static musl binary: the builder and the runtime are both
# Debian 12 (same glibc), so no cross toolchain is needed for the C parts (ring, mimalloc), and the
# runtime image still holds nothing but the binary and the C runtime. Multi-arch: build each
# platform natively (docker buildx build --platform linux/amd64,linux/arm64 with native builders
# or QEMU).

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Only what the build reads (see .dockerignore): manifests, sources, the compiled-in config.toml.
COPY Cargo.toml Cargo.lock config.toml ./
COPY crates ./crates
COPY tests ./tests
ENV CARGO_TERM_COLOR=never \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p cdcd --bin cdcd \
 && install -D -m 0755 target/release/cdcd /out/usr/local/bin/cdcd \
 && install -D -m 0644 config.toml /out/etc/cdcd/config.toml \
 && install -d -m 0750 -o 65532 -g 65532 /out/var/lib/cdcd \
 && /out/usr/local/bin/cdcd --version

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="cdcd" \
      org.opencontainers.image.description="Change-data capture from the MySQL/MariaDB binlog to a masked Parquet lake and Kinesis" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/usr/local/bin/cdcd /usr/local/bin/cdcd
# The repository's defaults (also compiled in); mount your own at /etc/cdcd/config.toml.
COPY --from=build /out/etc/cdcd/config.toml /etc/cdcd/config.toml
# State: the local checkpoint and a local lake (mount a volume here, or use s3:// for both).
COPY --from=build --chown=65532:65532 /out/var/lib/cdcd /var/lib/cdcd
WORKDIR /var/lib/cdcd
USER 65532:65532
# /metrics, /healthz, /readyz
EXPOSE 9464
# No HEALTHCHECK command: the image has no shell or HTTP client, and the orchestrators probe
# /healthz and /readyz themselves (Kubernetes ignores HEALTHCHECK; see deploy/helm/cdcd).
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/cdcd"]
CMD ["run", "--config", "/etc/cdcd/config.toml"]
