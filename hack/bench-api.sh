#!/usr/bin/env bash
# API benchmark: the release backup-apiserver as its own process beside raw etcd-client in the same run, loopback
# only, every phase bounded in count and time. Phases (--only, comma-separated; all by default):
#   requests  creates/gets/updates at concurrency 1/8/32 (on etcd with and without the watch cache, and on the
#             embedded store): ops/s, p50/p99, server CPU per request
#   lists     lists of 1k and 10k objects, resourceVersion unset and "0", and gzip-encoded, beside etcd ranges
#   fanout    1,000 and 10,000 watchers over HTTP/2: delivery p50/p99 from each create's acknowledgement, missed
#             (--watchers 1000,10000 and --event-gap-ms 20: the watcher counts and the time between creates)
#   memory    RSS idle, with 10k objects, + 1k watches, high-water mark after sustained updates (--sustain SECONDS,
#             default 60); exec -> ready with 10k objects stored
#   (--targets cache,direct,embedded picks the request phase's servers)
# Needs etcd on PATH (apt-get install etcd-server). Build once (fat LTO takes minutes), then run as often as
# needed: target/release/api-bench [--only PHASES] [--sustain SECONDS]; API_BENCH_SERVER=target/pgo/backup-apiserver
# (hack/build-pgo.sh) runs it against another build of the server.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p backup-apiserver --bin backup-apiserver
cargo build --release -p backup-apiserver --features bench --bin api-bench
exec target/release/api-bench "$@"
