# syntax=docker/dockerfile:1.7
# The image of both binaries: backup-apiserver (the entrypoint) and backup-controller.
#
#   docker build -t backup-apiserver:0.1.0 .
#   kind load docker-image backup-apiserver:0.1.0        # or push it, and: IMAGE=<registry>/backup-apiserver:<tag> hack/deploy.sh
#
# Runtime: distroless/cc (glibc and libgcc_s, which the binaries link dynamically; ring's crypto is compiled in),
# no shell, user 65532 (nonroot). The builder is the same Debian release (bookworm) so the glibc matches.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
# protoc for etcd-client's build script: hack/protoc prefers the one vendored as a crate (x86_64) and falls back to
# this one (other architectures).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole workspace (see .dockerignore), .git included: apiserver/build.rs records `git rev-parse HEAD` for
# --version and /version.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin backup-apiserver --bin backup-controller \
 && install -D -m 0755 target/release/backup-apiserver /out/backup-apiserver \
 && install -D -m 0755 target/release/backup-controller /out/backup-controller \
 && /out/backup-apiserver --version

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="backup-apiserver" \
      org.opencontainers.image.description="Kubernetes aggregated API server for backup.extend-k8s.io (TimeseriesDBBackup, TimeseriesDBRestore) and its controller" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/backup-apiserver /out/backup-controller /usr/local/bin/
USER 65532:65532
# The manifests run the server with --secure-port=8443 (an unprivileged port: no capabilities needed).
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/backup-apiserver"]
