#!/usr/bin/env bash
# The API server's CPU per create at c=32, beside etcd's CPU per create in the same runs, for one or more server
# binaries alternated. On a shared 2-core machine the CPU per create of one binary moves by 20–50% between runs, and
# etcd's moves with it (the machine itself runs faster or slower): the ratio of the two (server CPU ÷ etcd CPU per
# create) repeats within a few percent, so it separates builds that the CPU times alone do not.
#
# For each block: a fresh etcd on loopback, the server on it (watch cache on), `wrk -c32` creates (generateName)
# for 2 s to warm up, then two measured runs of 5 s; CPU times from /proc. The binaries take turns, ROUNDS blocks each.
#
#   hack/bench-create-cpu.sh [SERVER-BINARY ...]     (default target/release/backup-apiserver; ROUNDS=6)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-6}
BINS=()
for b in "${@:-$ROOT/target/release/backup-apiserver}"; do
  [ -x "$b" ] || { echo "bench-create-cpu: no server binary at $b (cargo build --release)" >&2; exit 1; }
  BINS+=("$(realpath "$b")")
done
for tool in etcd wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "bench-create-cpu: $tool is missing (Debian: etcd-server wrk curl python3)" >&2; exit 1; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap 'cleanup; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cat >"$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"apiVersion":"backup.extend-k8s.io/v1","kind":"TimeseriesDBBackup","metadata":{"generateName":"b-"},"spec":{"database":{"type":"Prometheus","url":"http://prometheus:9090"},"schedule":"0 2 * * *","retention":{"keepLast":7}}}'
LUA
TICK_MS=$(awk -v hz="$(getconf CLK_TCK)" 'BEGIN{print 1000 / hz}')

# block BIN: one etcd and server, two measured runs; prints "BIN server-ms etcd-ms" per run.
block() {
  local bin=$1 dir client peer port etcd_pid server_pid token url
  dir=$(mktemp -d -p "$WORK")
  client=$(free_port); peer=$(free_port); port=$(free_port)
  etcd --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$client" \
    --advertise-client-urls "http://127.0.0.1:$client" --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" --initial-cluster "default=http://127.0.0.1:$peer" \
    --log-level=warn >"$dir/etcd.log" 2>&1 &
  etcd_pid=$!; PIDS+=("$etcd_pid")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$client/health" >/dev/null && break; sleep 0.1; done
  (cd "$dir" && exec "$bin" --standalone --etcd-servers "http://127.0.0.1:$client" --secure-port "$port" \
    --write-kubeconfig "$dir/kubeconfig" >"$dir/server.log" 2>&1) &
  server_pid=$!; PIDS+=("$server_pid")
  for _ in $(seq 200); do grep -q token: "$dir/kubeconfig" 2>/dev/null && break; sleep 0.05; done
  token=$(awk '/token:/{print $2}' "$dir/kubeconfig")
  [ -n "$token" ] || { echo "bench-create-cpu: the server did not start:" >&2; cat "$dir/server.log" >&2; exit 1; }
  url="https://127.0.0.1:$port/apis/backup.extend-k8s.io/v1/namespaces/default/timeseriesdbbackups"
  wrk -t1 -c32 -d2s -s "$WORK/post.lua" -H "Authorization: Bearer $token" "$url" >/dev/null
  for _ in 1 2; do
    local s0 e0 out n
    s0=$(cpu_ticks "$server_pid"); e0=$(cpu_ticks "$etcd_pid")
    out=$(wrk -t1 -c32 -d5s -s "$WORK/post.lua" -H "Authorization: Bearer $token" "$url")
    n=$(awk '/requests in/{print $1}' <<<"$out")
    awk -v b="$bin" -v s=$(($(cpu_ticks "$server_pid") - s0)) -v e=$(($(cpu_ticks "$etcd_pid") - e0)) -v n="$n" \
      -v t="$TICK_MS" 'BEGIN{printf "%s %.4f %.4f %d\n", b, s * t / n, e * t / n, n}'
  done
  kill "$server_pid" "$etcd_pid"; wait "$server_pid" "$etcd_pid" 2>/dev/null || true
  rm -rf "$dir"
}

for round in $(seq "$ROUNDS"); do
  for bin in "${BINS[@]}"; do
    block "$bin" | tee -a "$WORK/runs" | awk -v r="$round" '{printf "round %d  %s  server %.4f ms/create  etcd %.4f  ratio %.3f  (%d creates)\n", r, $1, $2, $3, $2 / $3, $4}'
  done
done
echo
echo "| binary | runs | server CPU ms/create: median (range) | server ÷ etcd CPU per create: median (range) |"
echo "|---|---:|---|---|"
for bin in "${BINS[@]}"; do
  awk -v b="$bin" '$1 == b {print $2, $2 / $3}' "$WORK/runs" | python3 -c '
import statistics, sys
rows = [tuple(map(float, l.split())) for l in sys.stdin]
cpu, ratio = [r[0] for r in rows], [r[1] for r in rows]
print(f"| {sys.argv[1]} | {len(rows)} | {statistics.median(cpu):.4f} ({min(cpu):.4f}–{max(cpu):.4f}) | "
      f"{statistics.median(ratio):.3f} ({min(ratio):.3f}–{max(ratio):.3f}) |")' "$bin"
done
