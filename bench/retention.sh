#!/usr/bin/env bash
# Usage retention under load (issue 28): the gateway's p99 while 30 days of request rows are
# removed, against the same load without it, and the database's size before and after.
# Runs on a database seeded by bench/dashboard.sh (same options), which it changes: the
# oldest 30 days of rows are gone afterwards (run dashboard.sh first, or --reseed it).
#
#   bench/retention.sh [--postgres] --rows N --keys N --workspaces N [--seconds S] [--conns C]
#                      [--keep-days 60] (what stays: the seed's 90 days less 30; a second run
#                      on the same database needs --keep-days 30)
#
# PostgreSQL drops 30 day partitions (and the cutoff day's rows in steps); SQLite removes
# the rows in steps of 1,000 with a pause between (`startup::purge_usage`). The load is the
# built-in echo model on one key, at a fixed number of connections, with wrk.
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND=sqlite ROWS=1000000 KEYS=50 WORKSPACES=1 SECONDS_EACH=20 CONNS=8 PORT=18090 KEEP_DAYS=60
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
while [ $# -gt 0 ]; do
  case "$1" in
    --postgres) BACKEND=postgres ;;
    --rows) ROWS=$2; shift ;;
    --keys) KEYS=$2; shift ;;
    --workspaces) WORKSPACES=$2; shift ;;
    --seconds) SECONDS_EACH=$2; shift ;;
    --conns) CONNS=$2; shift ;;
    --keep-days) KEEP_DAYS=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
WORK=target/bench
if [ "$BACKEND" = postgres ]; then
  DB_URL="${PG_ADMIN_URL%/*}/lowrouter_bench_${ROWS}_${KEYS}_${WORKSPACES}"
else
  DB_URL="sqlite://$PWD/$WORK/usage_${ROWS}_${KEYS}_${WORKSPACES}.db"
fi
CREDS="$WORK/${BACKEND}_${ROWS}_${KEYS}_${WORKSPACES}.credentials"
[ -s "$CREDS" ] || { echo "seed first: bench/dashboard.sh with the same options" >&2; exit 1; }
EMAIL=$(sed -n 's/^email=//p' "$CREDS")
BIN=target/release/lowrouter

size() {
  if [ "$BACKEND" = postgres ]; then
    psql -qtA "$DB_URL" -c "select pg_database_size(current_database())"
  else
    local f=${DB_URL#sqlite://}
    echo $(( $(stat -c %s "$f") + $(stat -c %s "$f-wal" 2>/dev/null || echo 0) ))
  fi
}
rows() {
  if [ "$BACKEND" = postgres ]; then psql -qtA "$DB_URL" -c "select count(*) from usage"
  else sqlite3 "${DB_URL#sqlite://}" "select count(*) from usage" 2>/dev/null || echo "?"; fi
}

# Retention is run by the CLI below, not by the server's hourly job: 0 keeps forever.
LOWROUTER_DATABASE_URL="$DB_URL" LOWROUTER_BIND="127.0.0.1:$PORT" LOWROUTER_USAGE_RETENTION_DAYS=0 \
  RUST_LOG=warn "$BIN" serve > "$WORK/retention_server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 600); do curl -s -o /dev/null "$BASE/healthz" && break; sleep 0.2; done

MK=$(LOWROUTER_DATABASE_URL="$DB_URL" RUST_LOG=warn "$BIN" management-key create --email "$EMAIL" --name "retention-$(date +%s)")
TOKEN=$(curl -sf -H "Authorization: Bearer $MK" -H 'content-type: application/json' \
  -d "{\"name\":\"retention-load-$(date +%s)\",\"models\":[\"lowrouter/echo\"]}" "$BASE/api/v1/keys" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

load() { # label
  BENCH_TOKEN=$TOKEN BENCH_MODEL=lowrouter/echo wrk -t2 -c"$CONNS" -d"${SECONDS_EACH}s" --latency \
    -s bench/chat.lua "$BASE/api/v1/chat/completions" | sed -n 's/^BENCHJSON //p' \
    | python3 -c "import json,sys; r=json.load(sys.stdin); print(f'| $1 | {r[\"requests\"]/r[\"duration_us\"]*1e6:,.0f} | {r[\"p50_us\"]/1000:.2f} | {r[\"p99_us\"]/1000:.2f} | {r[\"non2xx\"]} |')"
}

CUTOFF=$(date -u -d "-$KEEP_DAYS days" +%F)
BEFORE_SIZE=$(size) BEFORE_ROWS=$(rows)
echo "backend: $BACKEND, rows before: $BEFORE_ROWS, date: $(date -u +%F) UTC, commit $(git rev-parse --short HEAD)"
echo
echo "| run | req/s | p50 ms | p99 ms | non-2xx |"
echo "|---|---|---|---|---|"
load "echo, no retention" # warm-up and baseline
load "echo, no retention"
START=$(date +%s.%N)
LOWROUTER_DATABASE_URL="$DB_URL" RUST_LOG=warn "$BIN" usage purge --before "$CUTOFF" > "$WORK/purge.out" 2>&1 &
PURGE=$!
load "echo, while retention removes 30 days"
wait $PURGE
END=$(date +%s.%N)
load "echo, after"
echo
echo "retention (--before $CUTOFF): $(cat "$WORK/purge.out") in $(python3 -c "print(f'{$END-$START:.1f}')") s"
echo "rows: $BEFORE_ROWS before, $(rows) after; database: $BEFORE_SIZE bytes before, $(size) after"
