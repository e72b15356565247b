#!/usr/bin/env bash
# Part of hack/build-pgo.sh's training: kubectl's verbs against a standalone server (embedded store, loopback, a
# temporary directory), so that the profile covers what the request benchmarks do not: client-side and server-side
# apply, the three patch types, labels and annotations, Tables and field/label selectors, watches, the status of a
# restore, discovery and OpenAPI, invalid objects, deletion of a collection. The server stops on SIGTERM, which
# writes its profile.
#
#   hack/pgo-kubectl.sh SERVER-BINARY
set -euo pipefail
BIN=$1
DIR=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$DIR"' EXIT
"$BIN" --standalone --secure-port 0 --write-kubeconfig "$DIR/kubeconfig" --data-dir "$DIR/data" >"$DIR/log" 2>&1 &
SERVER=$!
for _ in $(seq 200); do grep -q token: "$DIR/kubeconfig" 2>/dev/null && break; sleep 0.05; done
grep -q token: "$DIR/kubeconfig" || { cat "$DIR/log" >&2; echo "the server did not start" >&2; exit 1; }
k() { kubectl --kubeconfig "$DIR/kubeconfig" --request-timeout 10s "$@"; }
backup() { # name keepLast
  printf 'apiVersion: backup.extend-k8s.io/v1\nkind: TimeseriesDBBackup\nmetadata: {name: %s, labels: {app: x%s}}\nspec:\n  database: {type: Prometheus, url: "http://prometheus:9090"}\n  schedule: "0 2 * * *"\n  retention: {keepLast: %s}\n' "$1" $(($2 % 3)) "$2"
}

k api-resources --api-group=backup.extend-k8s.io >/dev/null
for i in $(seq 1 30); do backup "b$i" "$i" | k apply -f - >/dev/null; done
backup ssa 3 | k apply --server-side -f - >/dev/null
backup ssa 4 | k apply --server-side --field-manager other --force-conflicts -f - >/dev/null
printf 'apiVersion: backup.extend-k8s.io/v1\nkind: TimeseriesDBRestore\nmetadata: {name: r1}\nspec:\n  backupRef: {name: b1}\n  target: {type: Prometheus, url: "http://prometheus:9090"}\n' |
  k create -f - >/dev/null
for i in 1 2 3; do
  k get timeseriesdbbackups >/dev/null
  k get timeseriesdbbackups -o json >/dev/null
  k get timeseriesdbbackups -l "app=x$i" -o yaml >/dev/null
  k get timeseriesdbbackups -o wide --field-selector "metadata.name=b$i" >/dev/null
  k get timeseriesdbrestores,timeseriesdbbackups --chunk-size 7 >/dev/null
  k patch timeseriesdbbackup "b$i" --type merge -p '{"spec":{"retention":{"keepLast":9}}}' >/dev/null
  k patch timeseriesdbbackup "b$i" --type json -p '[{"op":"replace","path":"/spec/schedule","value":"0 4 * * *"}]' >/dev/null
  k patch timeseriesdbbackup "b$i" -p '{"metadata":{"labels":{"p":"s"}}}' >/dev/null
  k label timeseriesdbbackup "b$i" extra=y --overwrite >/dev/null
  k annotate timeseriesdbbackup "b$i" note=z --overwrite >/dev/null
  k describe timeseriesdbbackup "b$i" >/dev/null
  k get timeseriesdbbackup "b$i" -o jsonpath='{.spec}' >/dev/null
  k get --raw /apis/backup.extend-k8s.io/v1 >/dev/null
  k get --raw /openapi/v2 >/dev/null
  k get --raw /openapi/v3/apis/backup.extend-k8s.io/v1 >/dev/null
  k get --raw '/apis/backup.extend-k8s.io/v1/timeseriesdbbackups?limit=5' >/dev/null
  k explain timeseriesdbbackup.spec >/dev/null
  timeout 2 kubectl --kubeconfig "$DIR/kubeconfig" get timeseriesdbbackups --watch >/dev/null 2>&1 & W1=$!
  timeout 2 kubectl --kubeconfig "$DIR/kubeconfig" get timeseriesdbbackups --watch -o json >/dev/null 2>&1 & W2=$!
  sleep 0.5
  k delete timeseriesdbbackup "b$((i + 20))" >/dev/null
  wait $W1 $W2 || true
  # Refusals: an invalid name and type, an unknown field, a missing object.
  printf 'apiVersion: backup.extend-k8s.io/v1\nkind: TimeseriesDBBackup\nmetadata: {name: Bad_Name}\nspec: {database: {type: Nope}}\n' |
    k create -f - >/dev/null 2>&1 && { echo "an invalid object was accepted" >&2; exit 1; }
  k get timeseriesdbbackup missing >/dev/null 2>&1 && { echo "a missing object was found" >&2; exit 1; }
done
k delete timeseriesdbbackups -l app=x2 >/dev/null
k delete timeseriesdbbackups,timeseriesdbrestores --all >/dev/null
kill -TERM $SERVER
wait $SERVER
