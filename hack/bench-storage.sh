#!/bin/sh
# Storage benchmark: raw etcd-client vs EtcdStorage vs EmbeddedStorage (file), create/get/list at concurrency
# 1, 8, 32, then the watch cache (lists of 1k/10k objects from memory vs etcd, watch fan-out to 1,000 and
# 10,000 watchers), against a throw-away etcd on loopback (needs `etcd` on PATH, or ETCD_BIN). Prints markdown.
# Extra arguments go to the benchmark: --ops N (per cell, default 5000), --seconds S (per cell, default 10),
# --only backends|cache.
set -eu
cd "$(dirname "$0")/.."
exec cargo run --release --quiet -p backup-storage --features testing --bin storage-bench -- "$@"
