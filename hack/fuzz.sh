#!/usr/bin/env bash
# Fuzz what a request body can do to the API server: build the cargo-fuzz targets of apiserver/fuzz and run each
# for SECONDS (default 60). Each run starts from the seeds (apiserver/fuzz/seeds/<target>/) and every input that
# ever broke the target (apiserver/tests/fuzz_regressions/<target>/, which `cargo test` replays). An input that
# crashes, hangs (10 s) or takes more than 2 GiB is copied there, and the script exits 1.
#
# Usage: hack/fuzz.sh [SECONDS] [TARGET...]
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); the corpora it grows stay in
# apiserver/fuzz/corpus/ (not committed).
set -euo pipefail

seconds="${1:-60}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
fuzz="$root/apiserver/fuzz"
regressions="$root/apiserver/tests/fuzz_regressions"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz.sh: cargo-fuzz is missing: cargo install cargo-fuzz" >&2
  exit 2
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly toolchain is missing: rustup toolchain install nightly" >&2
  exit 2
fi

cd "$fuzz"
# No sanitizer: the server is safe Rust, and what is hunted — panics, stack overflows, hangs, memory blow-ups — shows
# without one, at several times the executions. Debug assertions make arithmetic overflow a panic.
flags=(--sanitizer none --debug-assertions)
cargo +nightly fuzz build "${flags[@]}"
# The binaries are run directly, as `cargo fuzz run` would, without building again.
host=$(rustup run nightly rustc -vV | sed -n 's/^host: //p')
bin="target/$host/release"

if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi

status=0
for target in "${targets[@]}"; do
  rm -rf "artifacts/$target"
  mkdir -p "corpus/$target" "artifacts/$target"
  # libFuzzer adds new inputs to the first directory only; the others are read.
  dirs=("corpus/$target")
  for d in "seeds/$target" "$regressions/$target"; do
    if [ -d "$d" ]; then dirs+=("$d"); fi
  done
  log="artifacts/$target/fuzz.log"
  ok=1
  timeout --signal=INT --kill-after=30 "$((seconds + 120))" \
    "$bin/$target" -artifact_prefix="artifacts/$target/" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 "${dirs[@]}" >"$log" 2>&1 || ok=0
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  found=0
  for input in artifacts/"$target"/crash-* artifacts/"$target"/timeout-* artifacts/"$target"/oom-* \
    artifacts/"$target"/leak-*; do
    [ -e "$input" ] || continue
    mkdir -p "$regressions/$target"
    cp "$input" "$regressions/$target/"
    echo "fuzz.sh: $target: kept $(basename "$input") in apiserver/tests/fuzz_regressions/$target/"
    found=$((found + 1))
  done
  echo "$target: ${runs:-?} runs in ${seconds}s (${speed:-?}/s), peak RSS ${rss:-?} MB, $found new failing inputs"
  if [ "$ok" = 0 ] || [ "$found" -gt 0 ]; then
    echo "fuzz.sh: $target failed; see apiserver/fuzz/$log" >&2
    tail -n 30 "$log" >&2
    status=1
  fi
done
exit "$status"
