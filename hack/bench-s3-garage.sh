#!/usr/bin/env bash
# bench-controller's S3 figures against Garage (crates.io) instead of s3s-fs. s3s-fs completes a multipart upload by
# reading every part back and copying it into one file, after the last byte (~3 ms per MiB here, inside the backup's
# commit); Garage, like AWS S3 and MinIO, completes it by recording the parts it already holds. Garage runs as one
# node on loopback ports in a temporary directory, stores blocks as sent (compression off: the backups are zstd
# already) and checks SigV4 with a key made for the run. Installed once into target/garage/<version>/ (a long
# build: ~500 crates).
#
#   hack/bench-s3-garage.sh [SIZES...]   e.g. BENCH_ONLY=VictoriaMetrics BENCH_ROUNDS=3 hack/bench-s3-garage.sh 8000000
#
# BENCH_DEST is s3 (the default here) or s3-encrypted; the other BENCH_* variables are bench-controller's. Compare
# with BENCH_DEST=local target/release/bench-controller on the same sizes, runs alternated.
set -euo pipefail
cd "$(dirname "$0")/.."
GARAGE_VERSION=2.5.0
garage="$PWD/target/garage/$GARAGE_VERSION/bin/garage"
[ -x "$garage" ] || cargo install garage --version "$GARAGE_VERSION" --locked --root "target/garage/$GARAGE_VERSION"
cargo build --release -p backup-controller --features testing --bin bench-controller

dir=$(mktemp -d)
pid=
cleanup() {
  [ -z "$pid" ] || { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  rm -rf "$dir"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
s3_port=$(free_port) rpc_port=$(free_port) admin_port=$(free_port)
cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "lmdb"
replication_factor = 1
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(hex 32)"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
admin_token = "$(hex 16)"
EOF
g() { "$garage" -c "$dir/garage.toml" "$@"; }
"$garage" -c "$dir/garage.toml" server >"$dir/garage.log" 2>&1 &
pid=$!
for _ in $(seq 1 150); do
  g status >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$dir/garage.log" >&2; exit 1; }
  sleep 0.2
done
g status >/dev/null || { echo "garage did not come up within 30 s:" >&2; tail -20 "$dir/garage.log" >&2; exit 1; }
node=$(g node id -q | cut -d@ -f1)
g layout assign -z bench -c 10G "$node" >/dev/null
g layout apply --version 1 >/dev/null
key_id="GK$(hex 12)"
secret=$(hex 32)
g key import --yes -n bench "$key_id" "$secret" >/dev/null
g bucket create tsdb-backups >/dev/null
g bucket allow --read --write --owner tsdb-backups --key bench >/dev/null
printf %s "$key_id" >"$dir/access-key"
printf '%s\n' "$secret" >"$dir/secret-key"

BENCH_DEST=${BENCH_DEST:-s3} BENCH_S3_ENDPOINT="http://127.0.0.1:$s3_port" BENCH_S3_PID=$pid \
  BENCH_S3_ACCESS_KEY_FILE="$dir/access-key" BENCH_S3_SECRET_KEY_FILE="$dir/secret-key" \
  target/release/bench-controller "$@"
