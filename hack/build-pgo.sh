#!/usr/bin/env bash
# The release backup-apiserver built with profile-guided optimization (PGO) and its start-up code laid out in one
# place. Same source and release profile as `cargo build --release`; on this project's 2-core machines it spends
# ~15% less CPU per GET and per create and idles in ~4 MiB less memory (storage/BENCH.md, "Profile-guided
# optimization"). Output: target/pgo/backup-apiserver. About 20 minutes on 2 cores.
#
#   1. An instrumented build (-Cprofile-generate) into target/pgo/gen.
#   2. A training load on it, loopback only and bounded: api-bench's requests, lists, watch fan-out and memory
#      phases (etcd with and without the watch cache, the embedded store), then kubectl's verbs against a standalone
#      server (hack/pgo-kubectl.sh). The server writes its profile when it stops on SIGTERM.
#   3. llvm-profdata merges the profiles; the release build uses them (-Cprofile-use) into target/pgo/use. Code the
#      training never ran is optimized for size and kept apart from the code it did.
#   4. callgrind lists the functions the optimized binary runs from exec through its first requests until it idles
#      (hack/pgo-startup.sh: in memory, on the embedded store, on etcd), and the final link puts them first (lld's
#      --symbol-ordering-file; the names are those of the same build, linked again with the same inputs). An idle
#      server then maps ~3 MiB of its code instead of 6–8.
#
# Needs x86_64 Linux (rustc links with its own lld there), etcd, kubectl, valgrind and the llvm-profdata of rustc's
# LLVM version (Debian: llvm-22 for rustc 1.95), installed with apt-get when missing and run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/target/pgo
log() { printf '\n== %s\n' "$*" >&2; }

[ "$(uname -sm)" = "Linux x86_64" ] || { echo "build-pgo.sh: x86_64 Linux only (rust-lld's symbol ordering)" >&2; exit 1; }
LLVM_MAJOR=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
PROFDATA=/usr/lib/llvm-$LLVM_MAJOR/bin/llvm-profdata
need_apt=()
[ -x "$PROFDATA" ] || need_apt+=("llvm-$LLVM_MAJOR")
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind)
hack/apt-install.sh "${need_apt[@]}"
command -v kubectl >/dev/null 2>&1 || { echo "kubectl not found on PATH: the training runs kubectl's verbs" >&2; exit 1; }

rm -rf "$OUT/profiles" "$OUT/training" "$OUT/start"
mkdir -p "$OUT/training" "$OUT/start"

log "1. instrumented build (target/pgo/gen)"
# Build scripts and proc macros are instrumented too and write their profiles to target/pgo/profiles as they
# run; the server's go to target/pgo/training ($LLVM_PROFILE_FILE, %m: one file per binary, merged as written).
RUSTFLAGS="-Cprofile-generate=$OUT/profiles" \
  cargo build --release --locked -p backup-apiserver --bin backup-apiserver --target-dir "$OUT/gen"
cargo build --release --locked -p backup-apiserver --features bench --bin api-bench

log "2. training (api-bench, then kubectl)"
export LLVM_PROFILE_FILE="$OUT/training/server-%m.profraw"
API_BENCH_SERVER="$OUT/gen/release/backup-apiserver" \
  target/release/api-bench --only requests,lists,fanout,memory --sustain 5 >"$OUT/training.md"
hack/pgo-kubectl.sh "$OUT/gen/release/backup-apiserver"
shopt -s nullglob
raw=("$OUT"/training/*.profraw)
[ ${#raw[@]} -gt 0 ] || { echo "the training wrote no profile in $OUT/training" >&2; exit 1; }
unset LLVM_PROFILE_FILE
"$PROFDATA" merge -o "$OUT/merged.profdata" "${raw[@]}"

log "3. optimized build (target/pgo/use)"
export RUSTFLAGS="-Cprofile-use=$OUT/merged.profdata"
cargo build --release --locked -p backup-apiserver --bin backup-apiserver --target-dir "$OUT/use"

log "4. the functions run from exec to idle, then the final link"
hack/pgo-startup.sh "$OUT/use/release/backup-apiserver" "$OUT/start" >"$OUT/startup-order.txt"
[ -s "$OUT/startup-order.txt" ] || { echo "callgrind listed no function of the server" >&2; exit 1; }
# Named by its content: cargo does not track the file, only the flags, so a new order must be a new flag.
ORDER=$OUT/startup-order-$(sha256sum "$OUT/startup-order.txt" | cut -c1-16).txt
cp "$OUT/startup-order.txt" "$ORDER"
cargo rustc --release --locked -p backup-apiserver --bin backup-apiserver --target-dir "$OUT/use" -- \
  "-Clink-arg=-Wl,--symbol-ordering-file=$ORDER" -Clink-arg=-Wl,--no-warn-symbol-ordering
install -m 0755 "$OUT/use/release/backup-apiserver" "$OUT/backup-apiserver"
log "target/pgo/backup-apiserver: $("$OUT/backup-apiserver" --version)"
