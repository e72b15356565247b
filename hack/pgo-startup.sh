#!/usr/bin/env bash
# Part of hack/build-pgo.sh: the functions of SERVER-BINARY that run from exec until it idles, as the symbol names
# of that binary, one per line (for lld's --symbol-ordering-file). Each run is callgrind over a standalone server
# started in memory, on the embedded store, then on a temporary etcd (loopback): once its kubeconfig appears it
# answers a first few requests (readiness, discovery, a create, a get, a list, a short watch, metrics), as a
# server does after its start, idles 2 s, and stops on SIGTERM.
#
#   hack/pgo-startup.sh SERVER-BINARY WORK-DIR > order.txt
set -euo pipefail
BIN=$(realpath "$1")
WORK=$2
mkdir -p "$WORK"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# callgrind_run NAME SERVER-ARGS...: callgrind's output for one start.
callgrind_run() {
  local name=$1; shift
  local dir=$WORK/$name
  rm -rf "$dir"; mkdir -p "$dir"
  valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" --dump-instr=no --compress-strings=no \
    --demangle=no "$BIN" --standalone --secure-port 0 --write-kubeconfig "$dir/kubeconfig" "$@" >"$dir/log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do grep -q token: "$dir/kubeconfig" 2>/dev/null && break; sleep 0.05; done
  grep -q token: "$dir/kubeconfig" 2>/dev/null || { cat "$dir/log" >&2; echo "$name: the server did not start" >&2; exit 1; }
  first_requests "$dir/kubeconfig"
  sleep 2
  kill -TERM $pid
  wait $pid
}

# first_requests KUBECONFIG: what a server answers first; each must succeed.
first_requests() {
  local server token
  server=$(sed -n 's/^ *server: *//p' "$1" | head -1)
  token=$(sed -n 's/^ *token: *//p' "$1" | head -1)
  local api=$server/apis/backup.extend-k8s.io/v1/namespaces/default/timeseriesdbbackups
  c() { curl -skf --max-time 30 -H "Authorization: Bearer $token" "$@" -o /dev/null; }
  for _ in $(seq 100); do c "$server/readyz" && break; sleep 0.1; done
  c "$server/readyz"
  c "$server/apis/backup.extend-k8s.io/v1"
  c -X POST -H 'Content-Type: application/json' "$api" -d '{"apiVersion":"backup.extend-k8s.io/v1",
    "kind":"TimeseriesDBBackup","metadata":{"name":"first"},"spec":{"database":{"type":"Prometheus",
    "url":"http://prometheus:9090"},"schedule":"0 2 * * *","retention":{"keepLast":7}}}'
  c "$api/first"
  c "$api"
  curl -sk --max-time 2 -H "Authorization: Bearer $token" "$api?watch=true" -o /dev/null || true
  c "$server/metrics"
}

callgrind_run in-memory --in-memory
callgrind_run embedded --data-dir "$WORK/embedded/data"
CLIENT=$(free_port); PEER=$(free_port)
etcd --data-dir "$WORK/etcd" --listen-client-urls "http://127.0.0.1:$CLIENT" \
  --advertise-client-urls "http://127.0.0.1:$CLIENT" --listen-peer-urls "http://127.0.0.1:$PEER" \
  --initial-advertise-peer-urls "http://127.0.0.1:$PEER" --initial-cluster "default=http://127.0.0.1:$PEER" \
  --log-level=warn >"$WORK/etcd.log" 2>&1 &
ETCD=$!
trap 'kill $ETCD 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$CLIENT/health" >/dev/null && break; sleep 0.1; done
callgrind_run etcd --etcd-servers "http://127.0.0.1:$CLIENT"

# The functions that ran (callgrind's fn= lines under the binary's ob=), first seen first; unnamed ones left out.
awk -v bin="ob=$BIN" '/^ob=/ { ours = ($0 == bin) } /^fn=/ && ours && $0 !~ /^fn=0x/ { f = substr($0, 4); if (!seen[f]++) print f }' \
  "$WORK"/*/callgrind.out
