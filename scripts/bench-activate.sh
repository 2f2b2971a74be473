#!/usr/bin/env bash
# `braid bench --only activate` with a real PostgreSQL server: the outbox's cost to unify,
# webhook deliveries to a receiver on this machine (one and 100 messages per request), and a
# full copy plus the change stream into PostgreSQL. Starts a private server (Debian's package,
# installed if missing) on a free port in a temporary folder, and removes it at the end.
# Arguments go to `braid bench` (e.g. --activate-events 200000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq postgresql
fi
cargo build --release --locked -p braid
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
dir=$(mktemp -d /tmp/braid-bench-pg-XXXXXX)
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$dir"
  as_pg=(runuser -u postgres --)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
stop() {
  "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT
"${as_pg[@]}" "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir" start >/dev/null
"$PGBIN/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE bench"
target/release/braid bench --only activate --postgres "postgres://postgres@127.0.0.1:$port/bench" "$@"
