#!/usr/bin/env bash
# Measures the Usage pages at scale (issue 4): seeds a database (once) with
# examples/seed_usage.rs, starts the release server on it, logs in with curl and measures
# server time as curl's time_total over loopback.
#
#   bench/dashboard.sh                 # SQLite, target/bench/usage.db
#   bench/dashboard.sh --postgres      # PostgreSQL, database lowrouter_bench on $PG_ADMIN_URL's server
#   options: --rows N (1000000) --keys N (50) --workspaces N (1) --days N (90) --requests N (50)
#            --reseed --port P
#   With --workspaces N > 1 the measured workspace is the big tenant: half the keys and rows.
#
# Targets (issue 28): every Usage page and Home p95 <= 50 ms, the unfiltered first page
# <= 20 ms; the usage API (30 daily buckets by key) <= 100 ms; exports >= 100,000 rows/s.
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND=sqlite ROWS=1000000 KEYS=50 WORKSPACES=1 DAYS=90 REQUESTS=50 RESEED=0 PORT=18089
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
while [ $# -gt 0 ]; do
  case "$1" in
    --postgres) BACKEND=postgres ;;
    --sqlite) BACKEND=sqlite ;;
    --rows) ROWS=$2; shift ;;
    --keys) KEYS=$2; shift ;;
    --workspaces) WORKSPACES=$2; shift ;;
    --days) DAYS=$2; shift ;;
    --requests) REQUESTS=$2; shift ;;
    --reseed) RESEED=1 ;;
    --port) PORT=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

WORK=target/bench
mkdir -p "$WORK"
if [ "$BACKEND" = postgres ]; then
  DB_NAME=lowrouter_bench_${ROWS}_${KEYS}_${WORKSPACES}
  DB_URL="${PG_ADMIN_URL%/*}/$DB_NAME"
else
  DB_URL="sqlite://$PWD/$WORK/usage_${ROWS}_${KEYS}_${WORKSPACES}.db"
fi
CREDS="$WORK/${BACKEND}_${ROWS}_${KEYS}_${WORKSPACES}.credentials"

cargo build --release --quiet --bin lowrouter --example seed_usage

if [ "$RESEED" = 1 ] || [ ! -s "$CREDS" ]; then
  if [ "$BACKEND" = postgres ]; then
    psql -q "$PG_ADMIN_URL" -c "drop database if exists $DB_NAME" -c "create database $DB_NAME"
  else
    rm -f "${DB_URL#sqlite://}" "${DB_URL#sqlite://}-wal" "${DB_URL#sqlite://}-shm"
  fi
  echo "seeding $ROWS rows ($BACKEND)..." >&2
  target/release/examples/seed_usage --database-url "$DB_URL" --rows "$ROWS" --keys "$KEYS" --workspaces "$WORKSPACES" --days "$DAYS" \
    | tail -n 2 > "$CREDS"
fi
EMAIL=$(sed -n 's/^email=//p' "$CREDS")
PASSWORD=$(sed -n 's/^password=//p' "$CREDS")

LOG="$WORK/server_${BACKEND}.log"
LOWROUTER_DATABASE_URL="$DB_URL" LOWROUTER_BIND="127.0.0.1:$PORT" RUST_LOG=warn \
  target/release/lowrouter serve > "$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
BASE="http://127.0.0.1:$PORT"
# A large database can take a while to open (a WAL left by the seeding is checkpointed).
for _ in $(seq 1 600); do
  curl -s -o /dev/null "$BASE/login" && break
  sleep 0.2
done

JAR="$WORK/cookies_${BACKEND}.txt"
rm -f "$JAR"
CSRF=$(curl -s -c "$JAR" -b "$JAR" "$BASE/login" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -n 1)
STATUS=$(curl -s -o /dev/null -w '%{http_code}' -c "$JAR" -b "$JAR" \
  --data-urlencode "csrf_token=$CSRF" --data-urlencode "email=$EMAIL" --data-urlencode "password=$PASSWORD" "$BASE/login")
[ "$STATUS" = 303 ] || { echo "login failed ($STATUS)" >&2; exit 1; }

# A read-only management key for the API's pages (the usage API, the export).
MK=$(LOWROUTER_DATABASE_URL="$DB_URL" RUST_LOG=warn target/release/lowrouter management-key create \
  --email "$EMAIL" --read-only --name "bench-$(date +%s)")

BACKEND=$BACKEND BASE=$BASE JAR=$JAR MK=$MK REQUESTS=$REQUESTS ROWS=$ROWS WORK=$WORK python3 - <<'PY'
import datetime, os, re, subprocess, time

base, jar, n = os.environ["BASE"], os.environ["JAR"], int(os.environ["REQUESTS"])
mk = os.environ["MK"]

def curl(path, out="/dev/null"):
    auth = ["-H", f"Authorization: Bearer {mk}"] if path.startswith("/api/") else ["-b", jar]
    r = subprocess.run(["curl", "-s", *auth, "-o", out, "-w", "%{http_code} %{time_total}", base + path],
                       check=True, capture_output=True, text=True)
    code, t = r.stdout.split()
    assert code == "200", f"{path}: HTTP {code}"
    return float(t) * 1000.0

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))]

def page(path, target=None):
    for _ in range(5):  # warm-up: connections, prepared statements, page cache
        curl(path)
    ts = [curl(path) for _ in range(n)]
    p50, p95 = pct(ts, 50), pct(ts, 95)
    verdict = "" if target is None else (" PASS" if p95 < target else " FAIL")
    goal = "" if target is None else f" (target p95 < {target} ms)"
    print(f"| `{path}` | {n} | {p50:.1f} | {p95:.1f} | {max(ts):.1f} |{goal}{verdict}")

today = datetime.datetime.now(datetime.timezone.utc).date()
frm = today - datetime.timedelta(days=29)
html = subprocess.run(["curl", "-s", "-b", jar, base + "/usage"], capture_output=True, text=True).stdout
older = re.search(r'href="/usage\?(before=\d+(?:(?:&amp;|&#38;)at=\d+)?)"', html)
print(f"backend: {os.environ['BACKEND']}, rows: {os.environ['ROWS']}, date: {today} UTC")
print()
print("| page | requests | p50 ms | p95 ms | max ms |")
print("|---|---|---|---|---|")
page(f"/usage?key=key-07&from={frm}&to={today}", 50)
page("/usage", 20)
if older:
    page("/usage?" + older.group(1).replace("&amp;", "&").replace("&#38;", "&"), 50)
page(f"/usage?from={frm}&to={today}", 50)
page("/usage?status=upstream_error", 50)
page("/usage?model=openai/gpt-4o&region=us-east", 50)
page("/", 50)
month_ago = int(time.time()) - 30 * 86400
page(f"/api/v1/organization/usage/completions?start_time={month_ago}&bucket_width=1d&limit=30&group_by=api_key_id", 100)
page(f"/api/v1/organization/costs?start_time={month_ago}&limit=30&group_by=line_item", 100)
print()
print("| export | rows | seconds | rows/s |")
print("|---|---|---|---|")
out = os.path.join(os.environ["WORK"], "export.csv")
exports = [("/usage.csv", 100_000), (f"/usage.csv?key=key-07&from={frm}&to={today}", None),
           (f"/api/v1/usage/export?start={today - datetime.timedelta(days=90)}", 100_000),
           (f"/api/v1/usage/export?start={today - datetime.timedelta(days=90)}&format=csv", 100_000)]
for path, target in exports:
    ms = curl(path, out)
    with open(out, "rb") as f:
        # Less the header (NDJSON has none); no field of the seed has a newline.
        rows = sum(1 for line in f) - (0 if "export" in path and "csv" not in path else 1)
    rate = rows / (ms / 1000.0)
    verdict = "" if target is None else (" PASS" if rate >= target else " FAIL") + f" (target >= {target:,} rows/s)"
    print(f"| `{path}` | {rows:,} | {ms/1000:.2f} | {rate:,.0f} |{verdict}")
os.remove(out)
PY
