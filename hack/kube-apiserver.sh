#!/usr/bin/env bash
# Build kube-apiserver and kube-controller-manager v1.20.2 from Debian's `kubernetes` source package, once, for the
# real-cluster tests (tests/src/cluster.rs). Prints the two binaries' paths.
#
#   target/k8s/bin/{kube-apiserver,kube-controller-manager}   the binaries (what the tests run)
#   target/k8s/src/                                            the source package and the unpacked tree
#   target/k8s/gocache/                                        Go's build cache (a rebuild takes seconds)
#
# A second run with both binaries present does nothing but print their paths. Nothing here is committed (/target is
# gitignored). Cold: ~4–5 min on 2 cores (kube-apiserver ~3.5 min, kube-controller-manager ~1 min) plus the download.
#
# As root it enables Debian's source repositories (deb-src) and installs what the build needs with apt-get
# (golang-1.19-go, rsync, make); otherwise it says what is missing. The build follows upstream's 1.20 Makefile:
# GOPATH mode, the version in the ldflags, `make gen_openapi` first, and the vendored reflect2 replaced by 1.0.2
# (v1.0.1 crashes at run time with Go >= 1.18). Environment: K8S_DIR overrides target/k8s.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=v1.20.2
COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56
# Upstream's build date of v1.20.2; fixed so that rebuilds are reproducible.
BUILD_DATE=2021-01-13T13:20:00Z
K8S_DIR=${K8S_DIR:-$PWD/target/k8s}
BIN=$K8S_DIR/bin
BINARIES=(kube-apiserver kube-controller-manager)

built() {
  local b
  for b in "${BINARIES[@]}"; do
    [ -x "$BIN/$b" ] && [ "$(cat "$BIN/$b.version" 2>/dev/null)" = "$VERSION" ] || return 1
  done
}
print_paths() {
  local b
  for b in "${BINARIES[@]}"; do echo "$BIN/$b"; done
}
if built; then
  print_paths
  exit 0
fi

log() { printf '==> %s\n' "$*" >&2; }
start=$SECONDS

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  else
    echo "hack/kube-apiserver.sh needs root for: $*" >&2
    exit 1
  fi
}

# 1. Source repositories: Debian's deb822 file lists `Types: deb`; the source package needs `deb-src` too.
if ! apt-cache showsrc kubernetes >/dev/null 2>&1 || [ -z "$(apt-cache showsrc kubernetes 2>/dev/null)" ]; then
  sources=/etc/apt/sources.list.d/debian.sources
  if [ -f "$sources" ] && grep -q '^Types: deb$' "$sources"; then
    log "enabling deb-src in $sources"
    as_root sed -i 's/^Types: deb$/Types: deb deb-src/' "$sources"
  elif [ -f /etc/apt/sources.list ] && grep -q '^deb ' /etc/apt/sources.list && ! grep -q '^deb-src ' /etc/apt/sources.list; then
    log "enabling deb-src in /etc/apt/sources.list"
    as_root sed -i -e 'p' -e 's/^deb /deb-src /;t;d' /etc/apt/sources.list
  fi
  log "apt-get update"
  as_root apt-get update -qq
fi

# 2. The toolchain.
GO=/usr/lib/go-1.19/bin
need=()
[ -x "$GO/go" ] || need+=(golang-1.19-go)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v make >/dev/null 2>&1 || need+=(make)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# 3. The source: Debian's orig tarball is the pristine upstream tree with vendor/ (Debian's patches touch only
#    kubectl's printing and are not needed).
SRC=$K8S_DIR/src
TREE=$SRC/kubernetes-1.20.2
mkdir -p "$SRC" "$BIN"
if [ ! -f "$TREE/.unpacked" ]; then
  if ! ls "$SRC"/kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
    log "apt-get source --download-only kubernetes"
    (cd "$SRC" && apt-get source --download-only -qq kubernetes >&2)
  fi
  orig=$(ls "$SRC"/kubernetes_*.orig.tar.gz | head -n1)
  case "$orig" in
    *really1.20.2*) ;;
    *) echo "unexpected source package $orig: this script builds v1.20.2 (kubernetes_1.20.5+really1.20.2)" >&2; exit 1 ;;
  esac
  log "unpacking $(basename "$orig")"
  rm -rf "$TREE"
  tar -xzf "$orig" -C "$SRC"
  [ -d "$TREE/cmd/kube-apiserver" ] || { echo "$orig did not unpack to $TREE" >&2; exit 1; }

  # Pitfall 4: vendored reflect2 v1.0.1 links reflect.mapiterinit with its pre-Go-1.18 signature and segfaults as
  # soon as json-iterator encodes a map. Debian ships 1.0.2.
  log "replacing vendored github.com/modern-go/reflect2 with Debian's 1.0.2"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq golang-github-modern-go-reflect2-dev >&2 && dpkg-deb -x golang-github-modern-go-reflect2-dev_*.deb x)
  new=$tmp/x/usr/share/gocode/src/github.com/modern-go/reflect2
  vendored=$TREE/vendor/github.com/modern-go/reflect2
  [ -f "$new/reflect2.go" ] || { echo "golang-github-modern-go-reflect2-dev has no reflect2.go" >&2; exit 1; }
  rm -f "$vendored"/*.go "$vendored"/*.s
  find "$new" -maxdepth 1 \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' -exec cp {} "$vendored/" \;
  rm -rf "$tmp"
  touch "$TREE/.unpacked"
fi

export PATH=$GO:$PATH GOFLAGS= GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0 GO111MODULE=off
export GOCACHE=$K8S_DIR/gocache
unset GOPATH OUT_DIR

# Pitfall 3: the tarball lacks pkg/generated/openapi/zz_generated.openapi.go; upstream's Makefile generates it (and
# breaks if OUT_DIR, GOPATH or GOCACHE are in its environment).
if [ ! -f "$TREE/pkg/generated/openapi/zz_generated.openapi.go" ]; then
  log "make gen_openapi (~30 s)"
  (cd "$TREE" && env -u OUT_DIR -u GOPATH -u GOCACHE make gen_openapi >&2)
fi

# Pitfall 1: GOPATH mode with the tree at $GOPATH/src/k8s.io/kubernetes (module mode rejects vendor/modules.txt).
export GOPATH=$K8S_DIR/gopath
mkdir -p "$GOPATH/src/k8s.io"
ln -sfn "$TREE" "$GOPATH/src/k8s.io/kubernetes"
cd "$GOPATH/src/k8s.io/kubernetes"

# Pitfall 2: in GOPATH mode the version variables live under k8s.io/kubernetes/vendor/; a wrong path is silently
# ignored and the binary reports v0.0.0.
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  p=k8s.io/kubernetes/vendor/$pkg
  ldflags+=" -X $p.gitVersion=$VERSION -X $p.gitMajor=1 -X $p.gitMinor=20 -X $p.gitCommit=$COMMIT"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$BUILD_DATE"
done

for b in "${BINARIES[@]}"; do
  if [ -x "$BIN/$b" ] && [ "$(cat "$BIN/$b.version" 2>/dev/null)" = "$VERSION" ]; then continue; fi
  log "go build ./cmd/$b"
  t=$SECONDS
  rm -f "$BIN/$b.version"
  go build -tags selinux,notest -trimpath -ldflags "$ldflags" -o "$BIN/$b.tmp" "./cmd/$b"
  reported=$("$BIN/$b.tmp" --version 2>&1 || true)
  case "$reported" in
    *"$VERSION"*) ;;
    *) echo "$b reports '$reported', not $VERSION: the version ldflags did not apply" >&2; exit 1 ;;
  esac
  mv "$BIN/$b.tmp" "$BIN/$b"
  echo "$VERSION" >"$BIN/$b.version"
  log "$b built in $((SECONDS - t)) s"
done
log "done in $((SECONDS - start)) s"
print_paths
