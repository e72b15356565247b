#!/usr/bin/env bash
# API benchmark: creates/gets/lists through backup-apiserver (on etcd and on the embedded store) beside raw
# etcd-client transactions in the same run, with the server's CPU per request and its memory. Loopback only,
# bounded (2,000 requests or 20 s per cell). Needs etcd on PATH (apt-get install etcd-server).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p backup-apiserver --bin backup-apiserver
cargo build --release -p backup-apiserver --features bench --bin api-bench
exec target/release/api-bench "$@"
