#!/usr/bin/env bash
# Runs every test of the workspace: formatting and lints, the core's wasm32 build, unit tests,
# and the end-to-end tests (the real braid binary with real client libraries, DuckDB, kill -9).
# Installs what it needs first (scripts/setup.sh --test).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
# The disk a run leaves, printed however it ends: a full disk fails a build in ways that look like
# anything but a full disk.
disk() { say "disk: $(df -h . | awk 'NR==2 {print $4 " free"}'), target/ $(du -sh target 2>/dev/null | cut -f1)"; }
trap disk EXIT
disk

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
say "cargo clippy (the Lambda functions)"
cargo clippy --locked -p braid-unifier --features lambda --all-targets -- -D warnings
say "cargo clippy (the Cloudflare Worker and the browser collector, wasm32)"
cargo clippy --locked -p braid-edge --target wasm32-unknown-unknown -- -D warnings
cargo clippy --locked -p braid-collector --target wasm32-unknown-unknown -- -D warnings
say "cfn-lint deploy/template.yaml"
.venv/bin/cfn-lint deploy/template.yaml
say "braid-core for wasm32-unknown-unknown"
cargo build --locked -p braid-core --target wasm32-unknown-unknown
say "building the braid binary and the Lambda functions for the end-to-end tests"
cargo build --locked -p braid
say "building the collector's C library (libbraid_collector) for the native-app test"
cargo build --locked -p braid-collector
cargo build --locked -p braid-unifier --features lambda --bins
say "building the browser SDK (sdk-js/dist), checking its 25 KB gzip budget"
(cd sdk-js && npm run build)
say "building the Cloudflare Worker, checking it with wrangler deploy --dry-run"
scripts/worker-build.sh
(cd edge-worker && WRANGLER_SEND_METRICS=false CI=true \
  ../tests/worker/node_modules/.bin/wrangler deploy --dry-run --outdir ../target/wrangler </dev/null)
say "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --no-fail-fast
else
  cargo test --locked --workspace --no-fail-fast
fi
