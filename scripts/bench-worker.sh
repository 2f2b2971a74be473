#!/usr/bin/env bash
# The Cloudflare Worker's figures in workerd (Miniflare): time per 20-event batch handed off to
# the queue, personalization reads from KV, and the bundle size. Needs scripts/setup.sh --test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
scripts/worker-build.sh >/dev/null
wasm=edge-worker/build/index_bg.wasm
js=edge-worker/build/index.js
echo "bundle: wasm $(stat -c %s $wasm) B ($(gzip -9 -c $wasm | wc -c) B gzip), JS $(stat -c %s $js) B ($(gzip -9 -c $js | wc -c) B gzip)"
(cd tests/worker && BRAID_WORKER_ENTRY="$PWD/../../edge-worker/build/worker.mjs" node bench.mjs)
