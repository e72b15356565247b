#!/usr/bin/env bash
# Generate the certificates of a cluster deployment into the kustomize tree (gitignored `generated/` dirs):
#   config/components/generated-certs/generated/  CA, serving certificate for backup-apiserver.kube-extensions.svc
#                                                  (+ .svc.cluster.local, .kube-extensions, bare name), caBundle patch
#   config/overlays/etcd-tls/generated/            etcd CA, member server/peer certificates, apiserver client cert
#                                                  (TLS between the apiserver and etcd and between the members, in
#                                                  config/default, which is overlays/etcd-tls)
# Reruns re-issue the certificates under the same CAs (the APIService's caBundle stays); --new-ca replaces the CAs.
# Other flags (--namespace, --service, --cluster-domain, --days, ...): hack/gen-certs.sh --help.
#
# Uses the backup-apiserver-certs binary: $BACKUP_APISERVER_CERTS if set, else built with cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${BACKUP_APISERVER_CERTS:-}" ]; then
  exec "$BACKUP_APISERVER_CERTS" --config-dir config "$@"
fi
exec cargo run --quiet -p backup-apiserver --bin backup-apiserver-certs -- --config-dir config "$@"
