#!/usr/bin/env bash
# A bounded sustained run: the release binary under gateway load for a given time, sampling
# its resident memory, then a report and a verdict. Not part of `cargo test`.
#
#   scripts/soak.sh [SECONDS] [CONCURRENCY]       # defaults: 60 s, 16 clients
#   SOAK_DATABASE_URL=postgres://…/db scripts/soak.sh 300
#
# What it does: builds `target/release/lowrouter` (unless SOAK_NO_BUILD=1), starts it on a
# fresh SQLite file in a temporary directory (or on SOAK_DATABASE_URL), signs up, creates a
# key through the dashboard, then runs CONCURRENCY clients (Python, standard library only,
# keep-alive connections) sending `lowrouter/echo` completions, one in four streaming, for
# SECONDS. RSS is read from /proc every SOAK_SAMPLE_SECS (default 5).
#
# It fails (exit 1) when any request fails, when the usage rows do not match the successful
# requests, when a reservation is left at rest, or when memory grows by more than
# SOAK_MAX_GROWTH_MB (default 64) between the end of the first quarter of the run (after
# warm-up) and the end. On SQLite part of any growth is the page cache filling as the file
# grows (cache_size is 4 MiB per connection, up to 9 connections, plus one 2 MiB
# in-thread reader per worker thread): judge a long run by
# whether RSS levels off, not by the first minute.
set -euo pipefail

DURATION="${1:-60}"
CONCURRENCY="${2:-16}"
SAMPLE="${SOAK_SAMPLE_SECS:-5}"
MAX_GROWTH_MB="${SOAK_MAX_GROWTH_MB:-64}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release/lowrouter"

if [[ "${SOAK_NO_BUILD:-0}" != 1 ]]; then
  (cd "$ROOT" && cargo build --release --quiet)
fi
[[ -x "$BIN" ]] || { echo "no $BIN; build with cargo build --release" >&2; exit 2; }

WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
DB_URL="${SOAK_DATABASE_URL:-sqlite://$WORK/soak.db}"
cleanup() {
  if [[ -n "${PID:-}" ]] && kill -0 "$PID" 2>/dev/null; then
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  if [[ "${SOAK_KEEP:-0}" == 1 ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# `env` execs the server, so $! is the server's pid (for /proc sampling). Its working
# directory is the temporary one: no stray lowrouter.toml is read.
cd "$WORK"
env -i PATH="$PATH" RUST_LOG=warn \
  LOWROUTER_BIND="127.0.0.1:$PORT" LOWROUTER_DATABASE_URL="$DB_URL" \
  LOWROUTER_SIGNUP_GRANT=100000 "$BIN" >"$WORK/server.log" 2>&1 &
PID=$!
SERVER_PID=$PID

echo "soak: $DURATION s, $CONCURRENCY clients, pid $SERVER_PID, port $PORT, db ${DB_URL%%\?*}"
python3 - "$PORT" "$DURATION" "$CONCURRENCY" "$SAMPLE" "$MAX_GROWTH_MB" "$SERVER_PID" "$DB_URL" <<'PY'
import http.client, http.cookiejar, json, re, sqlite3, sys, threading, time, urllib.parse, urllib.request
from collections import Counter

port, duration, conc, sample, max_growth, pid, db_url = sys.argv[1:8]
port, duration, conc, sample, max_growth = int(port), float(duration), int(conc), float(sample), float(max_growth)
base = f"http://127.0.0.1:{port}"

def rss_mb():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")

# Wait for the server, then sign up and create a key as a person would (CSRF included).
deadline = time.time() + 60
while True:
    try:
        urllib.request.urlopen(base + "/login", timeout=2).read()
        break
    except Exception:
        if time.time() > deadline:
            sys.exit("server not ready after 60 s")
        time.sleep(0.1)

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None

jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)

def page(path):
    return opener.open(base + path).read().decode()

def post(path, csrf_from, fields):
    html = page(csrf_from)
    data = {"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)}
    m = re.search(r'name="form_id" value="([^"]+)"', html)
    if m:
        data["form_id"] = m.group(1)
    data.update(fields)
    try:
        r = opener.open(base + path, urllib.parse.urlencode(data).encode())
        return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()

email = f"soak{int(time.time())}@example.com"
status, _ = post("/signup", "/signup", {"email": email, "password": "soak-test-password-123"})
assert status == 303, f"sign up: {status}"
status, html = post("/keys", "/keys/new", {"name": "soak"})
assert status == 200, f"create key: {status}"
token = "lr-sk-" + re.search(r'value="lr-sk-([^"]+)"', html).group(1)

stop = threading.Event()
lock = threading.Lock()
statuses = Counter()
errors = Counter()
latencies = []

def client(n):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = 0
    while not stop.is_set():
        i += 1
        stream = (n + i) % 4 == 0
        text = f"soak {n} {i} " + "x" * (i % 200)
        body = json.dumps({"model": "lowrouter/echo", "stream": stream,
                           "messages": [{"role": "user", "content": text}]})
        t0 = time.monotonic()
        try:
            conn.request("POST", "/api/v1/chat/completions", body,
                         {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            ok = r.status == 200 and (data.endswith(b"data: [DONE]\n\n") if stream
                                      else json.loads(data)["choices"][0]["message"]["content"] == text)
            with lock:
                statuses[r.status] += 1
                latencies.append(time.monotonic() - t0)
                if not ok:
                    errors[f"status {r.status}" if r.status != 200 else "incomplete body"] += 1
        except Exception as e:
            with lock:
                errors[type(e).__name__] += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()

threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(conc)]
start = time.monotonic()
for t in threads:
    t.start()
samples = []
print(f"{'t(s)':>6} {'RSS MB':>8} {'requests':>9} {'req/s':>7} {'errors':>6}")
last_n, last_t = 0, start
while True:
    now = time.monotonic()
    if now - start >= duration:
        break
    time.sleep(min(sample, duration - (now - start)))
    now = time.monotonic()
    with lock:
        n, e = sum(statuses.values()), sum(errors.values())
    mb = rss_mb()
    samples.append((now - start, mb))
    print(f"{now - start:6.0f} {mb:8.1f} {n:9d} {(n - last_n) / (now - last_t):7.0f} {e:6d}", flush=True)
    last_n, last_t = n, now
stop.set()
for t in threads:
    t.join(35)
elapsed = time.monotonic() - start
total = sum(statuses.values())
lat = sorted(latencies)
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")
print(f"\nrequests {total} in {elapsed:.0f} s = {total / elapsed:.0f}/s; statuses {dict(statuses)}; "
      f"errors {dict(errors) or 0}")
print(f"latency ms p50 {pct(.5):.1f} p99 {pct(.99):.1f} max {pct(1):.1f}")

# Memory: compare the end with the sample at the end of the first quarter (warm caches,
# full pools), so start-up growth does not count.
warm = [mb for t, mb in samples if t >= duration / 4] or [mb for _, mb in samples]
growth = samples[-1][1] - warm[0] if samples else 0.0
print(f"RSS MB: first {samples[0][1]:.1f}, after warm-up {warm[0]:.1f}, max {max(mb for _, mb in samples):.1f}, "
      f"last {samples[-1][1]:.1f} (growth after warm-up {growth:+.1f}, allowed {max_growth:.0f})")

failed = []
if errors:
    failed.append(f"{sum(errors.values())} failed requests")
if growth > max_growth:
    failed.append(f"memory grew {growth:.1f} MB")

# The books: one usage row per successful request, nothing reserved at rest (SQLite only:
# PostgreSQL is checked by tests/faults.rs).
if db_url.startswith("sqlite://"):
    time.sleep(0.5)
    db = sqlite3.connect(db_url[len("sqlite://"):].split("?")[0])
    rows = db.execute("select count(*) from usage where status = 'ok'").fetchone()[0]
    holds, reserved = db.execute("select (select count(*) from reservations), "
                                 "(select coalesce(sum(reserved), 0) from accounts)").fetchone()
    integrity = db.execute("pragma quick_check").fetchone()[0]
    print(f"usage rows ok {rows} (successful requests {statuses[200]}); holds at rest {holds}, "
          f"reserved {reserved}; quick_check {integrity}")
    if rows != statuses[200]:
        failed.append("usage rows differ from successful requests")
    if holds or reserved:
        failed.append("reservations left at rest")
    if integrity != "ok":
        failed.append("database check failed")

if failed:
    print("SOAK FAILED: " + "; ".join(failed))
    sys.exit(1)
print("SOAK OK")
PY
