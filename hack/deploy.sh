#!/usr/bin/env bash
# Deploy backup-apiserver to the cluster of the current kubectl context and wait until it serves:
#   1. certificates (hack/gen-certs.sh; skipped for the cert-manager overlay),
#   2. kubectl apply -k config/<overlay>,
#   3. wait (bounded) for the etcd members, the Deployments and APIService v1.backup.extend-k8s.io Available;
#      if one does not come up, show why (describe, logs, events) and exit non-zero.
#
# Environment:
#   OVERLAY   default (2 apiservers + 3-member etcd with TLS and client certificates, NetworkPolicies)  [default]
#             | cert-manager (the same, certificates from cert-manager) | single (embedded store, no etcd)
#             | etcd-tls (= default) | plaintext-etcd (DEVELOPMENT ONLY: etcd without TLS or client certificates)
#   IMAGE     image of both binaries, e.g. registry.example.com/backup-apiserver:0.1.0      [backup-apiserver:0.1.0]
#   TIMEOUT   how long to wait for each step, in seconds                                    [300]
set -euo pipefail
cd "$(dirname "$0")/.."

OVERLAY=${OVERLAY:-default}
TIMEOUT=${TIMEOUT:-300}
NS=kube-extensions
APISERVICE=v1.backup.extend-k8s.io
case "$OVERLAY" in
  default) DIR=config/default ;;
  single | etcd-tls | cert-manager | plaintext-etcd) DIR=config/overlays/$OVERLAY ;;
  *) echo "unknown OVERLAY=$OVERLAY (default, cert-manager, single, etcd-tls, plaintext-etcd)" >&2; exit 2 ;;
esac

log() { printf '\n==> %s\n' "$*"; }

kubectl version >/dev/null || { echo "kubectl cannot reach a cluster (check the current context)" >&2; exit 1; }

if [ "$OVERLAY" = cert-manager ]; then
  kubectl get crd certificates.cert-manager.io issuers.cert-manager.io >/dev/null 2>&1 || {
    echo "the cert-manager overlay needs cert-manager installed (https://cert-manager.io/docs/installation/)" >&2
    exit 1
  }
else
  if [ "$OVERLAY" = plaintext-etcd ]; then
    echo "WARNING: OVERLAY=plaintext-etcd runs etcd without TLS or client certificates: for development only" >&2
  fi
  log "certificates (hack/gen-certs.sh)"
  hack/gen-certs.sh
fi

# With IMAGE, apply through a throwaway kustomization that sets the image of both Deployments.
target=$DIR
if [ -n "${IMAGE:-}" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  rel=$(realpath --relative-to="$tmp" "$DIR")
  if [[ $IMAGE == *@* ]]; then # repo@sha256:...
    name=${IMAGE%%@*} ref="digest: \"${IMAGE#*@}\""
  else
    name=${IMAGE%:*} tag=${IMAGE##*:}
    if [ "$name" = "$IMAGE" ] || [[ $tag == */* ]]; then name=$IMAGE tag=latest; fi # no tag (maybe a registry port)
    ref="newTag: \"$tag\""
  fi
  cat >"$tmp/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [$rel]
images:
  - name: backup-apiserver
    newName: $name
    $ref
YAML
  target=$tmp
fi

log "kubectl apply -k $DIR${IMAGE:+ (image $IMAGE)}"
kubectl apply -k "$target"

failed=""
# What went wrong with $1 (kind/name) and the pods matching label selector $2.
explain() {
  local what=$1 selector=$2
  echo "---- kubectl describe $what" >&2
  kubectl -n "$NS" describe "$what" >&2 || true
  echo "---- pods ($selector)" >&2
  kubectl -n "$NS" get pods -l "$selector" -o wide >&2 || true
  for pod in $(kubectl -n "$NS" get pods -l "$selector" -o name 2>/dev/null); do
    echo "---- kubectl describe $pod (last lines)" >&2
    kubectl -n "$NS" describe "$pod" 2>&1 | tail -25 >&2 || true
    echo "---- kubectl logs $pod (last 50 lines, previous container if it restarted)" >&2
    kubectl -n "$NS" logs "$pod" --all-containers --tail=50 >&2 || true
    kubectl -n "$NS" logs "$pod" --all-containers --tail=50 --previous >&2 2>/dev/null || true
  done
}

rollout() { # kind/name selector
  log "waiting for $1 (up to ${TIMEOUT}s)"
  if ! kubectl -n "$NS" rollout status "$1" --timeout="${TIMEOUT}s"; then
    echo "!! $1 did not become ready" >&2
    explain "$1" "$2"
    failed="$failed $1"
  fi
}

if [ "$OVERLAY" != single ]; then
  rollout statefulset/backup-etcd app.kubernetes.io/name=backup-etcd
fi
rollout deployment/backup-apiserver app.kubernetes.io/name=backup-apiserver
rollout deployment/backup-controller app.kubernetes.io/name=backup-controller

log "waiting for APIService $APISERVICE to be Available (up to ${TIMEOUT}s)"
if ! kubectl wait --for=condition=Available "apiservice/$APISERVICE" --timeout="${TIMEOUT}s"; then
  echo "!! APIService $APISERVICE is not Available:" >&2
  kubectl get apiservice "$APISERVICE" \
    -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}' >&2 || true
  echo "(FailedDiscoveryCheck: kube-apiserver could not GET /apis/backup.extend-k8s.io/v1 through the Service -" \
    "check the caBundle, the serving certificate's names, the pods' readiness and NetworkPolicies;" \
    "MissingEndpoints/ServiceNotFound: the Service has no ready pods)" >&2
  explain deployment/backup-apiserver app.kubernetes.io/name=backup-apiserver
  echo "---- recent events in $NS" >&2
  kubectl -n "$NS" get events --sort-by=.lastTimestamp 2>&1 | tail -30 >&2 || true
  failed="$failed apiservice/$APISERVICE"
fi

if [ -n "$failed" ]; then
  echo >&2
  echo "FAILED:$failed" >&2
  exit 1
fi

log "ready"
kubectl get apiservice "$APISERVICE"
kubectl -n "$NS" get pods -o wide
kubectl get timeseriesdbbackups.backup.extend-k8s.io -A
