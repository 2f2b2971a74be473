#!/usr/bin/env bash
# Installs what Braid needs on a fresh Debian machine, skipping whatever is already there.
#   scripts/setup.sh          the Rust toolchain (from rust-toolchain.toml) and what builds the
#                             browser SDK: the wasm target, wasm-bindgen-cli, node and sdk-js's npm
#                             packages (esbuild, binaryen's wasm-opt)
#   scripts/setup.sh --test   plus the Python venv, the npm packages of the tests, Chromium,
#                             the S3 server and PostgreSQL
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Rust: rustup reads rust-toolchain.toml and installs the pinned toolchain, its components and
# the wasm32 target on first use.
if ! command -v cargo >/dev/null 2>&1; then
  if ! command -v rustup >/dev/null 2>&1; then
    say "installing rustup (from the Debian package)"
    apt-get update -qq && apt-get install -y -qq rustup
  fi
  export PATH="$HOME/.cargo/bin:$PATH"
fi
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install

# The browser SDK and the Worker build for wasm32. rust-toolchain.toml lists the target, but
# rustup adds listed targets only when it installs the toolchain itself.
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

stamp() { sha256sum "$@" | sha256sum | cut -c1-16; }

# wasm-bindgen-cli of exactly the version Cargo.lock pins (no --locked: the registry mirror
# lacks a dependency its lockfile names; 6–15 minutes, once).
WASM_BINDGEN_VERSION=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
if [ "$(.tools/bin/wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION into .tools (several minutes, once)"
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --root .tools
fi

if ! command -v npm >/dev/null 2>&1; then
  say "installing nodejs and npm"
  apt-get update -qq && apt-get install -y -qq nodejs npm
fi
npm_ci() {
  local want
  want=$(stamp "$1/package-lock.json")
  if [ "$(cat "$1/node_modules/.braid-stamp" 2>/dev/null)" != "$want" ]; then
    say "npm ci in $1"
    (cd "$1" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$1/node_modules/.braid-stamp"
  fi
}
# The SDK's build tools: esbuild, and binaryen's wasm-opt (not Debian's: its -Oz output breaks).
npm_ci sdk-js
[ "$want_test" = 1 ] || exit 0

# Python clients of the wire-compatibility tests, and DuckDB, in a venv at .venv.
if ! command -v python3 >/dev/null 2>&1; then
  say "installing python3"
  apt-get update -qq && apt-get install -y -qq python3 python3-venv
fi
want=$(stamp tests/clients/requirements.txt)
if [ "$(cat .venv/.braid-stamp 2>/dev/null)" != "$want" ]; then
  say "creating .venv with $(grep -v '^#' tests/clients/requirements.txt | tr '\n' ' ')"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
  echo "$want" > .venv/.braid-stamp
fi

# Node clients of the wire-compatibility tests.
npm_ci tests/clients

# cbindgen: the tests check that the collector's committed C header is what it generates.
CBINDGEN_VERSION=0.29.4
if [ "$(.tools/bin/cbindgen --version 2>/dev/null | awk '{print $2}')" != "$CBINDGEN_VERSION" ]; then
  say "installing cbindgen $CBINDGEN_VERSION into .tools (about a minute, once)"
  cargo install cbindgen --version "$CBINDGEN_VERSION" --locked --root .tools
fi

# The browser tests: Debian's Chromium driven by playwright-core (which downloads no browser).
if [ ! -x /usr/bin/chromium ]; then
  say "installing chromium (Debian; about 2 minutes)"
  apt-get update -qq && apt-get install -y -qq chromium
fi
npm_ci tests/browser

# A real PostgreSQL server for the database destination's tests (Debian's package; the tests
# start a private one on a free port, as the postgres user when they run as root).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  say "installing postgresql (Debian)"
  apt-get update -qq && apt-get install -y -qq postgresql
fi

# A real S3-compatible server for the S3 tests: s3s-fs, which checks SigV4 signatures as S3
# does. 0.14.1 is the last release that builds with this toolchain; a debug build is enough
# for tests and takes half the time (~7 minutes fresh).
S3S_FS_VERSION=0.14.1
if [ "$(cat .tools/.s3s-fs-version 2>/dev/null)" != "$S3S_FS_VERSION" ] || [ ! -x .tools/bin/s3s-fs ]; then
  say "installing s3s-fs $S3S_FS_VERSION into .tools (a few minutes, once)"
  cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked --debug --root .tools
  echo "$S3S_FS_VERSION" > .tools/.s3s-fs-version
fi

# Miniflare (workerd) to run the built Worker in the tests.
npm_ci tests/worker
