#!/usr/bin/env bash
# Builds the Cloudflare Worker into edge-worker/build: the braid-edge crate for wasm32 (profile
# `worker`: small), wasm-bindgen of exactly the pinned version (installed into .tools by
# scripts/setup.sh --test), and a small entry module. No tool is downloaded at build time.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PATH"
cargo build --locked -p braid-edge --target wasm32-unknown-unknown --profile worker
out=edge-worker/build
rm -rf "$out" && mkdir -p "$out"
wasm-bindgen target/wasm32-unknown-unknown/worker/braid_edge.wasm \
  --target module --out-dir "$out" --out-name index --no-typescript
# workerd imports wasm modules directly, not as `source` imports.
sed -i 's/^import source /import /' "$out/index.js"
cat > "$out/worker.mjs" <<'JS'
import { fetch } from './index.js';
export default { fetch };
JS
ls -l "$out"
