#!/usr/bin/env bash
# Sets up what is missing, builds Braid and the browser SDK, and runs `braid serve` on the
# embedded default (data in ./braid-data, no config file needed; the SDK under /sdk). Arguments
# go to `braid serve`:
#   scripts/serve.sh --listen 127.0.0.1:9090 --data /srv/braid --write-key KEY
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
(cd sdk-js && npm run build)
cargo build --release --locked -p braid
exec target/release/braid serve --sdk sdk-js/dist "$@"
