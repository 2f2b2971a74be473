#!/usr/bin/env bash
# Builds the Lambda functions (ingest, unify, compact) for deployment:
# target/lambda/<function>/bootstrap, which deploy/template.yaml points at.
# cargo-lambda comes from the venv that scripts/setup.sh --test makes (it brings zig, which
# links against an old glibc so that the binaries run on Lambda's provided.al2023).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
  PATH="$PWD/.venv/bin:$PATH" cargo lambda build --release -p braid-unifier --features lambda --bins
ls -l target/lambda/*/bootstrap
