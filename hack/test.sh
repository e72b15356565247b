#!/usr/bin/env bash
# Run every test of the project: unit tests, the storage conformance suite (against a real etcd and the embedded
# store) and the end-to-end tests that drive the real kubectl. This is the README's test command; .ci/run calls it.
#
# It installs what the tests need and a fresh machine lacks (Debian's etcd-server, prometheus, victoria-metrics,
# influxdb), as root with apt-get, and builds kube-apiserver and kube-controller-manager once (hack/kube-apiserver.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
# The controller's tests back up and restore real databases.
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v victoria-metrics >/dev/null 2>&1 || need_apt+=(victoria-metrics)
command -v influxd >/dev/null 2>&1 || need_apt+=(influxdb)
hack/apt-install.sh "${need_apt[@]}"
command -v kubectl >/dev/null 2>&1 || { echo "kubectl not found on PATH: the end-to-end tests drive the real kubectl" >&2; exit 1; }

# The object-storage tests (controller/tests/s3.rs) run a real S3-compatible server, s3s-fs from crates.io (SigV4
# checked), installed once into target/s3s/<version>/ (a no-op when it is there). 0.14 completes a multipart upload
# in one pass over the parts (0.13 copied them in 8 KiB pieces, then read the object again for its MD5), a third
# less of its CPU on the cores a backup shares with it in the benchmark.
S3S_FS_VERSION=0.14.1 # as in controller/src/testing/s3.rs
[ -x "target/s3s/$S3S_FS_VERSION/bin/s3s-fs" ] ||
  cargo install s3s-fs --version "$S3S_FS_VERSION" --locked --features binary --root "target/s3s/$S3S_FS_VERSION"
export S3S_FS="$PWD/target/s3s/$S3S_FS_VERSION/bin/s3s-fs"
# A second S3 server, Python's moto, for the listing of incomplete uploads (s3s-fs answers it 501): the one on PATH,
# else installed once into a virtualenv under target/moto/.
if ! command -v moto_server >/dev/null 2>&1; then
  [ -x target/moto/bin/moto_server ] || { python3 -m venv target/moto && target/moto/bin/pip install -q 'moto[server]==5.2.1'; }
  export PATH="$PWD/target/moto/bin:$PATH"
fi

# The real-cluster tests (tests/src/cluster.rs) run kube-apiserver and kube-controller-manager v1.20.2, built from
# Debian's source package into target/k8s/ when missing (~5–10 min once; a no-op when they are there).
hack/kube-apiserver.sh >/dev/null

# The hostile-input suite (tests/tests/hostile.rs) runs the server as its own process, the release build.
cargo build --release -p backup-apiserver --bin backup-apiserver
export BACKUP_APISERVER_BIN="$PWD/target/release/backup-apiserver"

# Lints first: every clippy::all lint and unwrap/expect outside tests are errors ([workspace.lints]).
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo test --workspace --all-features "$@"
