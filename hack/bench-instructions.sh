#!/usr/bin/env bash
# The API server's user-space instructions per create and per GET, counted by callgrind: the counts repeat within
# ~0.3% from run to run, where CPU times on a shared 2-core machine move by 10–20%, so a change of a few percent in
# the request path shows. The kernel's part of a request (sockets, wake-ups) is not counted.
#
# A temporary etcd on loopback; the server on it (watch cache on) under callgrind; for each operation `wrk -c8`
# runs 3 s to warm up, the counters are zeroed, `wrk` runs 8 s more, and the instructions of those 8 s are divided
# by their requests. Creates use generateName; GETs read one object; merge patches change one field of 64 objects
# in turn.
#
#   hack/bench-instructions.sh [SERVER-BINARY]     (default target/release/backup-apiserver)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(realpath "${1:-$ROOT/target/release/backup-apiserver}")
for tool in etcd valgrind callgrind_control callgrind_annotate wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "bench-instructions: $tool is missing (Debian: etcd-server valgrind wrk curl python3)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "bench-instructions: no server binary at $BIN (cargo build --release)" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

CLIENT=$(free_port); PEER=$(free_port)
etcd --data-dir "$WORK/etcd" --listen-client-urls "http://127.0.0.1:$CLIENT" \
  --advertise-client-urls "http://127.0.0.1:$CLIENT" --listen-peer-urls "http://127.0.0.1:$PEER" \
  --initial-advertise-peer-urls "http://127.0.0.1:$PEER" --initial-cluster "default=http://127.0.0.1:$PEER" \
  --log-level=warn >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$CLIENT/health" >/dev/null && break; sleep 0.1; done

valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" "$BIN" --standalone --secure-port 0 \
  --etcd-servers "http://127.0.0.1:$CLIENT" --write-kubeconfig "$WORK/kubeconfig" >"$WORK/server.log" 2>&1 &
SERVER=$!
PIDS+=($SERVER)
for _ in $(seq 600); do grep -q token: "$WORK/kubeconfig" 2>/dev/null && break; sleep 0.05; done
grep -q token: "$WORK/kubeconfig" 2>/dev/null || { cat "$WORK/server.log" >&2; echo "the server did not start" >&2; exit 1; }
URL=$(sed -n 's/^ *server: *//p' "$WORK/kubeconfig" | head -1)
TOKEN=$(sed -n 's/^ *token: *//p' "$WORK/kubeconfig" | head -1)
API=$URL/apis/backup.extend-k8s.io/v1/namespaces/default/timeseriesdbbackups
for _ in $(seq 100); do curl -skf -H "Authorization: Bearer $TOKEN" "$URL/readyz" -o /dev/null && break; sleep 0.1; done

SPEC='"spec":{"database":{"type":"Prometheus","url":"http://prometheus:9090"},"schedule":"0 2 * * *","retention":{"keepLast":7}}'
cat >"$WORK/create.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"apiVersion":"backup.extend-k8s.io/v1","kind":"TimeseriesDBBackup","metadata":{"generateName":"b-"},$SPEC}'
EOF
echo 'wrk.method = "GET"' >"$WORK/get.lua"
# Patches change keepLast of 64 objects in turn, so that concurrent patches rarely meet on one object.
cat >"$WORK/patch.lua" <<'LUA'
wrk.method = "PATCH"
wrk.headers["Content-Type"] = "application/merge-patch+json"
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"spec":{"retention":{"keepLast":%d}}}', (n % 50) + 1)
  return wrk.format(nil, wrk.path .. "/p" .. (n % 64), nil, body)
end
LUA
for name in bench $(seq -f 'p%g' 0 63); do
  curl -skf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -X POST "$API" -o /dev/null \
    -d "{\"apiVersion\":\"backup.extend-k8s.io/v1\",\"kind\":\"TimeseriesDBBackup\",\"metadata\":{\"name\":\"$name\"},$SPEC}"
done

# measure NAME URL: warm up, zero the counters, count 8 s of requests.
measure() {
  local name=$1 url=$2 out requests total dump failed
  wrk -t1 -c8 -d3s --timeout 20s -s "$WORK/$name.lua" -H "Authorization: Bearer $TOKEN" "$url" >/dev/null
  callgrind_control -z "$SERVER" >/dev/null 2>&1
  out=$(wrk -t1 -c8 -d8s --timeout 20s -s "$WORK/$name.lua" -H "Authorization: Bearer $TOKEN" "$url")
  callgrind_control -d "$SERVER" >/dev/null 2>&1
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  # A generated name that is taken fails its create (504, as kube-apiserver 1.20): rare, and counted as a request.
  failed=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  [ -z "$failed" ] || echo "$name: $failed requests were not answered 2xx" >&2
  dump=$(ls -t "$WORK"/callgrind.out.* | head -1)
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "$name: $requests requests, $((total / requests)) instructions per request"
}
measure create "$API"
measure get "$API/bench"
measure patch "$API"
