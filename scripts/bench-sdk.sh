#!/usr/bin/env bash
# The browser SDK's figures: the payload a site loads (gzip and brotli, from the build) and the
# cost of one track() call in headless Chromium, persistence included, next to Segment's
# analytics-next in the same browser. Needs scripts/setup.sh --test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
(cd sdk-js && npm run build)
cargo build --release --locked -p braid
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/release/braid serve --listen "127.0.0.1:$port" --data "$dir/data" --write-key bench \
  --workspace bench --sdk sdk-js/dist >"$dir/braid.log" 2>&1 &
server=$!
trap 'kill $server; rm -rf "$dir"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
echo "track() in Chromium (ms per call, ${BENCH_CALLS:-2000} calls after warm-up):"
(cd tests/browser && BRAID_URL="http://127.0.0.1:$port" BRAID_KEY=bench node run.mjs bench)
