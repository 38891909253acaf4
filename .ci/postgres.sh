#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 for the tests (installing Debian's package
# where the server is missing) and print its URL on stdout. Needs root (apt, runuser).
set -euo pipefail
PORT=${PGTEST_PORT:-55432}
DIR=${PGTEST_DIR:-/tmp/budgetnas-pg}
find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
BIN=$(find_bin)
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  BIN=$(find_bin)
fi
id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
if [ -f "$DIR/data/postmaster.pid" ]; then
  runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >&2 || true
fi
rm -rf "$DIR"
mkdir -p "$DIR"
chown postgres "$DIR"
runuser -u postgres -- "$BIN/initdb" -D "$DIR/data" -A trust -U postgres >/dev/null
runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w \
  -o "-h 127.0.0.1 -p $PORT -k $DIR -c max_connections=200" start >/dev/null
echo "postgresql://postgres@127.0.0.1:$PORT/postgres"
