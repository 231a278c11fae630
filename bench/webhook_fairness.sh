#!/usr/bin/env bash
# Webhook fairness (security issue, item 2): how long another workspace's webhook takes
# while one endpoint answers after 9 s with 1,000 events queued for it. Target: < 2 s.
#
#   bench/webhook_fairness.sh [--postgres] [--release] [-- example options]
#   example options: --queued 1000 --slow-secs 9 --samples 5 --timeout-secs 120
#
# Runs examples/webhook_fairness.rs (the server in-process, two receivers on 127.0.0.1,
# both workspaces made through the dashboard) on a fresh database: an SQLite file in a
# temporary directory, or with --postgres a database made on PG_ADMIN_URL
# (postgres://postgres@127.0.0.1:5432/postgres) and dropped afterwards. Prints each
# sample's delay, from the click on "Send test event" to the request at the receiver, and
# a RESULT line. The delay is waiting, not work: a debug build (the default) measures it
# as well as a release one.
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND=sqlite PROFILE=debug
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
while [ $# -gt 0 ]; do
  case "$1" in
    --postgres) BACKEND=postgres ;;
    --release) PROFILE=release ;;
    --) shift; break ;;
    *) echo "unknown option $1 (example options go after --)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$PROFILE" = release ]; then
  cargo build --quiet --release --example webhook_fairness
else
  cargo build --quiet --example webhook_fairness
fi
BIN="${CARGO_TARGET_DIR:-target}/$PROFILE/examples/webhook_fairness"

WORK=$(mktemp -d)
DB=""
cleanup() {
  if [ -n "$DB" ]; then
    psql -q "$PG_ADMIN_URL" -c "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$BACKEND" = postgres ]; then
  DB="lowrouter_bench_webhooks_$$"
  psql -q "$PG_ADMIN_URL" -c "create database $DB" >/dev/null
  DB_URL="${PG_ADMIN_URL%/*}/$DB"
else
  DB_URL="sqlite://$WORK/bench.db"
fi

echo "backend: $BACKEND ($PROFILE build), commit $(git rev-parse --short HEAD)"
RUST_LOG=${RUST_LOG:-warn} "$BIN" --database-url "$DB_URL" "$@"
