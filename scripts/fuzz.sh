#!/usr/bin/env bash
# Runs each fuzz target (fuzz/fuzz_targets/*.rs: a collection request whole, lake lines through
# unify, the forward signature, CSV records through matching and import, audience conditions in
# their text form) for a set time over its corpus in fuzz/corpus/<target>, and reports
# executions and findings. Benchmark-style, not part
# of scripts/test.sh: it needs the nightly toolchain (libFuzzer's instrumentation) and cargo-fuzz,
# which it installs when missing. A finding is written to fuzz/artifacts/<target>/ and replays
# with `cargo +nightly fuzz run <target> <file>`.
#
#   scripts/fuzz.sh [seconds per target (60)] [target ...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(collect lake_lines forward import_csv audience_text)
fi
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "scripts/fuzz.sh needs a nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz (cargo +nightly install cargo-fuzz)" >&2
  cargo +nightly install cargo-fuzz --locked
fi
mkdir -p target
found=0
printf '%-12s %12s %10s %s\n' target executions seconds result
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  log="target/fuzz-$target.log"
  # New inputs that reach new code are added to the corpus folder; `cargo +nightly fuzz cmin
  # <target>` shrinks it again before it is committed.
  status=0
  cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 >"$log" 2>&1 || status=$?
  runs=$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*' | tail -1 || true)
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    result="FOUND (see $log and fuzz/artifacts/$target/)"
    found=1
  fi
  printf '%-12s %12s %10s %s\n' "$target" "${runs:-?}" "$seconds" "$result"
done
exit "$found"
