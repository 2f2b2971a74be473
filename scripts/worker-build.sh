#!/usr/bin/env bash
# Builds the Cloudflare Worker into edge-worker/build: the braid-edge crate for wasm32 (profile
# `worker`: small), wasm-bindgen of exactly the pinned version (installed into .tools by
# scripts/setup.sh), npm binaryen's wasm-opt, and a small entry module. No tool is downloaded
# at build time.
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
# Smaller and faster: binaryen's wasm-opt from npm (sdk-js/node_modules; Debian's breaks
# wasm-bindgen's externref table), names stripped.
sdk-js/node_modules/.bin/wasm-opt -Oz --strip-debug --strip-producers \
  --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue \
  "$out/index_bg.wasm" -o "$out/index_bg.opt.wasm"
mv "$out/index_bg.opt.wasm" "$out/index_bg.wasm"
cat > "$out/worker.mjs" <<'JS'
import { fetch, queue } from './index.js';
export default { fetch, queue };
JS
ls -l "$out"
