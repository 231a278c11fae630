#!/usr/bin/env bash
# Gateway overhead benchmark (issue 5): a fake OpenAI upstream (nginx), a plain nginx reverse
# proxy in front of it, and the LowRouter gateway in front of it too, all on 127.0.0.1, loaded
# in turn with wrk. See bench/README.md.
#
#   bench/run.sh [--postgres] [--duration SECONDS] [--no-build] [--no-stream]
#                [--idle-threshold 0.80] [--idle-timeout 60] [--keep] [--profile] [--only-profile]
#                [--hold] [--processes 2] [--rate-limits]
#
# --postgres also runs the SQLite gateway in the same invocation (target `gateway-sqlite`),
# for the issue-11 ratio. --processes 2 (with --postgres): a second gateway process on the
# same database, and two nginx round-robin balancers in front (`lb-1proc`: the first process
# only; `lb-2proc`: both), loaded at 32 connections; afterwards the key's spend must equal the
# sum of its usage rows.
#
# --rate-limits: the bench key also has a requests-per-minute and a concurrency limit, both
# far above what the run sends (the checks run, none trips): their cost, against a run without.
# --profile: afterwards, sample the gateway with `perf record -e cpu-clock` during a
# 32-connection run and count its syscalls with `strace -c -f` during a 1-connection run;
# the reports are printed and kept in the work dir (implies --keep). --only-profile skips
# the table runs. --hold: set everything up, write `env.sh` (URLs, token, config) in the work
# dir, and wait until interrupted, for profiling by hand.
# Environment: BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432) for --postgres.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
DURATION=10
WARMUP=2
DB=sqlite
BUILD=1
STREAM=1
IDLE_THRESHOLD=0.80
IDLE_TIMEOUT=60
KEEP=0
PROFILE=0
ONLY_PROFILE=0
HOLD=0
PROCESSES=1
RATE_LIMITS=()
PG_BASE=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}

while [ $# -gt 0 ]; do
  case "$1" in
    --postgres) DB=postgres ;;
    --duration) DURATION=$2; shift ;;
    --no-build) BUILD=0 ;;
    --no-stream) STREAM=0 ;;
    --idle-threshold) IDLE_THRESHOLD=$2; shift ;;
    --idle-timeout) IDLE_TIMEOUT=$2; shift ;;
    --keep) KEEP=1 ;;
    --profile) PROFILE=1; KEEP=1 ;;
    --only-profile) PROFILE=1; ONLY_PROFILE=1; KEEP=1 ;;
    --hold) HOLD=1; KEEP=1 ;;
    --processes) PROCESSES=$2; shift ;;
    --rate-limits) RATE_LIMITS=(--data-urlencode "rpm_limit=1000000" --data-urlencode "concurrency_limit=100000") ;;
    -h|--help) sed -n 2,23p "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done

[ "$PROCESSES" = 1 ] || { [ "$PROCESSES" = 2 ] && [ "$DB" = postgres ]; } || {
  echo "--processes 2 needs --postgres (SQLite serves one process)" >&2; exit 2; }

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# --- tools ---------------------------------------------------------------------------------
need_install=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_install+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need_install+=(wrk)
command -v curl >/dev/null 2>&1 || need_install+=(curl)
if [ "$DB" = postgres ] && ! command -v psql >/dev/null 2>&1; then need_install+=(postgresql-client); fi
if [ ${#need_install[@]} -gt 0 ]; then
  log "installing ${need_install[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_install[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [ "$BUILD" = 1 ]; then
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet)
fi
BIN="$ROOT/target/release/lowrouter"
[ -x "$BIN" ] || { echo "no $BIN: build it or drop --no-build" >&2; exit 1; }

# --- temp dir and cleanup --------------------------------------------------------------------
WORK=$(mktemp -d /tmp/lowrouter-bench.XXXXXX)
# A private copy: target/ may be rebuilt by someone else while we run (and perf needs the
# binary it sampled to still exist).
cp "$BIN" "$WORK/lowrouter"
BIN_SRC=$BIN
BIN="$WORK/lowrouter"
PIDS=()
PG_DB=""
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  if [ -n "$PG_DB" ]; then
    psql -q "$PG_BASE/postgres" -c "drop database if exists $PG_DB with (force)" >/dev/null 2>&1 || true
  fi
  if [ "$KEEP" = 1 ] || [ $rc -ne 0 ]; then
    log "kept $WORK (logs, configs)"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r UP_PORT PX_PORT GW_PORT GW2_PORT SQ_PORT LB1_PORT LB2_PORT < <(python3 "$BENCH/helper.py" ports 7)
log "work dir $WORK; upstream :$UP_PORT, proxy :$PX_PORT, gateway :$GW_PORT ($DB)"

wait_port() { # port, pid
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$2" 2>/dev/null || { echo "process $2 died before listening on :$1" >&2; return 1; }
    sleep 0.05
  done
  echo "nothing listens on :$1" >&2
  return 1
}

# --- fake upstream and plain proxy (nginx) ---------------------------------------------------
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root root;"
COMPLETION='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-fast","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the bench upstream."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":21,"completion_tokens":7,"total_tokens":28}}'
CHUNK='{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-stream"'
SSE="data: $CHUNK,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hello\"},\"finish_reason\":null}]}\n\n"
SSE+="data: $CHUNK,\"choices\":[{\"index\":0,\"delta\":{\"content\":\" from the\"},\"finish_reason\":null}]}\n\n"
SSE+="data: $CHUNK,\"choices\":[{\"index\":0,\"delta\":{\"content\":\" bench upstream.\"},\"finish_reason\":null}]}\n\n"
SSE+="data: $CHUNK,\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
SSE+="data: $CHUNK,\"choices\":[],\"usage\":{\"prompt_tokens\":21,\"completion_tokens\":7,\"total_tokens\":28}}\n\n"
SSE+="data: [DONE]\n\n"

nginx_conf() { # dir, server block
  mkdir -p "$1/logs"
  cat >"$1/nginx.conf" <<EOF
$USER_LINE
worker_processes auto;
daemon off;
master_process on;
pid $1/nginx.pid;
error_log $1/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  $2
}
EOF
}

nginx_conf "$WORK/upstream" "
  server {
    listen 127.0.0.1:$UP_PORT;
    location = /v1/chat/completions {
      default_type application/json;
      return 200 '$COMPLETION';
    }
    location = /stream/v1/chat/completions {
      default_type text/event-stream;
      return 200 '$SSE';
    }
  }"
nginx_conf "$WORK/proxy" "
  upstream fake_openai {
    server 127.0.0.1:$UP_PORT;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:$PX_PORT;
    location / {
      proxy_pass http://fake_openai;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_buffering on;
    }
  }"

"$NGINX" -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" 2>>"$WORK/upstream/logs/error.log" &
UP_PID=$!; PIDS+=("$UP_PID")
"$NGINX" -p "$WORK/proxy" -c "$WORK/proxy/nginx.conf" 2>>"$WORK/proxy/logs/error.log" &
PX_PID=$!; PIDS+=("$PX_PID")
wait_port "$UP_PORT" "$UP_PID"
wait_port "$PX_PORT" "$PX_PID"

# --- the gateway ---------------------------------------------------------------------------
cat >"$WORK/catalogue.toml" <<EOF
# Bench catalogue: every model routes to the local fake upstream.
regions = ["eu-west", "us-east"]
auto_preference = ["bench/fast"]

[[providers]]
id = "bench"
kind = "openai"
base_url = "http://127.0.0.1:$UP_PORT/v1"
regions = ["eu-west", "us-east"]

[[providers]]
id = "bench-sse"
kind = "openai"
base_url = "http://127.0.0.1:$UP_PORT/stream/v1"
regions = ["eu-west", "us-east"]

[[models]]
id = "bench/fast"
name = "Bench fast (fake upstream, JSON)"
input_price = "15"
output_price = "60"
max_output_tokens = 4096
routes = [{ provider = "bench", upstream_model = "bench-fast" }]

[[models]]
id = "bench/stream"
name = "Bench stream (fake upstream, SSE)"
input_price = "15"
output_price = "60"
max_output_tokens = 4096
routes = [{ provider = "bench-sse", upstream_model = "bench-stream" }]

[[models]]
id = "bench/other"
name = "Bench other (not in the key's scope)"
input_price = "15"
output_price = "60"
max_output_tokens = 4096
routes = [{ provider = "bench", upstream_model = "bench-other" }]
EOF

if [ "$DB" = postgres ]; then
  PG_DB="lowrouter_bench_$$"
  psql -q "$PG_BASE/postgres" -c "create database $PG_DB" >/dev/null
  DATABASE_URL="$PG_BASE/$PG_DB"
else
  DATABASE_URL="sqlite://$WORK/bench.db"
fi
CFG="$WORK/lowrouter.toml"
cat >"$CFG" <<EOF
bind = "127.0.0.1:$GW_PORT"
database_url = "$DATABASE_URL"
catalogue_path = "$WORK/catalogue.toml"
EOF

EMAIL=bench@example.com
PASSWORD="load-test-secret-$RANDOM$RANDOM"  # not the email's name part (password rules)
export RUST_LOG=${RUST_LOG:-info,sqlx=warn}
account() { # config
  printf '%s\n' "$PASSWORD" | "$BIN" --config "$1" user create --email "$EMAIL" >/dev/null
  # The parser caps one grant at 999,999,999 credits; one grant covers ~10^10 bench requests.
  "$BIN" --config "$1" credits grant --email "$EMAIL" --amount 999999999 >/dev/null
}
account "$CFG"

"$BIN" --config "$CFG" serve >"$WORK/gateway.log" 2>&1 &
GW_PID=$!; PIDS+=("$GW_PID")
wait_port "$GW_PORT" "$GW_PID"
sleep 1
read -r RSS_IDLE _ < <(python3 "$BENCH/helper.py" rss "$GW_PID")

# A key through the dashboard, as a person would: log in, New key, Create, read the reveal.
hidden() { grep -o "name=\"$1\" value=\"[^\"]*\"" | head -1 | sed 's/.*value="\([^"]*\)"/\1/'; }
make_key() { # gateway base URL, cookie jar; prints the token
  local gw=$1 jar=$2 csrf code form form_id
  csrf=$(curl -sf -c "$jar" -b "$jar" "$gw/login" | hidden csrf_token)
  code=$(curl -s -o /dev/null -w '%{http_code}' -c "$jar" -b "$jar" -H "Origin: $gw" \
    --data-urlencode "csrf_token=$csrf" --data-urlencode "email=$EMAIL" \
    --data-urlencode "password=$PASSWORD" "$gw/login")
  [ "$code" = 303 ] || { echo "login answered $code" >&2; return 1; }
  form=$(curl -sf -c "$jar" -b "$jar" "$gw/keys/new")
  csrf=$(hidden csrf_token <<<"$form")
  form_id=$(hidden form_id <<<"$form")
  # Every check on: model scope, region pin, daily and monthly limits.
  curl -sf -c "$jar" -b "$jar" -H "Origin: $gw" \
    --data-urlencode "csrf_token=$csrf" --data-urlencode "form_id=$form_id" \
    --data-urlencode "name=bench" --data-urlencode "models=bench/fast" \
    --data-urlencode "models=bench/stream" --data-urlencode "region=eu-west" \
    --data-urlencode "daily_limit=999999999" --data-urlencode "monthly_limit=999999999" \
    "${RATE_LIMITS[@]}" --data-urlencode "expires=" "$gw/keys" | grep -o 'value="lr-sk-[A-Za-z0-9]*"' | sed 's/value="\(.*\)"/\1/'
}
GW="http://127.0.0.1:$GW_PORT"
TOKEN=$(make_key "$GW" "$WORK/cookies.txt")
[ -n "$TOKEN" ] || { echo "no token on the reveal page" >&2; exit 1; }
log "key created: ${TOKEN:0:10}...${TOKEN: -4}"
export BENCH_TOKEN="$TOKEN"

# --postgres: the SQLite gateway too, for the ratio measured in the same invocation.
SQ_TOKEN=""
if [ "$DB" = postgres ]; then
  SQ_CFG="$WORK/sqlite.toml"
  printf 'bind = "127.0.0.1:%s"\ndatabase_url = "sqlite://%s/bench.db"\ncatalogue_path = "%s/catalogue.toml"\n' \
    "$SQ_PORT" "$WORK" "$WORK" >"$SQ_CFG"
  account "$SQ_CFG"
  "$BIN" --config "$SQ_CFG" serve >"$WORK/gateway-sqlite.log" 2>&1 &
  SQ_PID=$!; PIDS+=("$SQ_PID")
  wait_port "$SQ_PORT" "$SQ_PID"
  SQ_TOKEN=$(make_key "http://127.0.0.1:$SQ_PORT" "$WORK/cookies-sqlite.txt")
  [ -n "$SQ_TOKEN" ] || { echo "no token from the SQLite gateway" >&2; exit 1; }
fi

# --processes 2: a second process on the same database, and round-robin balancers.
if [ "$PROCESSES" = 2 ]; then
  sed "s/^bind = .*/bind = \"127.0.0.1:$GW2_PORT\"/" "$CFG" >"$WORK/lowrouter-2.toml"
  "$BIN" --config "$WORK/lowrouter-2.toml" serve >"$WORK/gateway-2.log" 2>&1 &
  GW2_PID=$!; PIDS+=("$GW2_PID")
  wait_port "$GW2_PORT" "$GW2_PID"
  lb_conf() { # dir, port, servers...
    local dir=$1 port=$2; shift 2
    local servers=""
    for p in "$@"; do servers+="server 127.0.0.1:$p; "; done
    nginx_conf "$dir" "
  upstream gateways { $servers keepalive 128; }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://gateways;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"
  }
  lb_conf "$WORK/lb1" "$LB1_PORT" "$GW_PORT"
  lb_conf "$WORK/lb2" "$LB2_PORT" "$GW_PORT" "$GW2_PORT"
  for lb in lb1 lb2; do
    "$NGINX" -p "$WORK/$lb" -c "$WORK/$lb/nginx.conf" 2>>"$WORK/$lb/logs/error.log" &
    PIDS+=("$!")
  done
  wait_port "$LB1_PORT" "$GW_PID"
  wait_port "$LB2_PORT" "$GW_PID"
fi

# --- sanity: every target answers 200 with a usage object ----------------------------------
check() { # url model stream expect
  local body='{"model":"'$2'","messages":[{"role":"user","content":"hi"}]'
  [ "$3" = 1 ] && body+=',"stream":true'
  body+='}'
  local out
  out=$(curl -s -D "$WORK/check.headers" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d "$body" "$1")
  if ! head -1 "$WORK/check.headers" | grep -q ' 200' || ! grep -q "$4" <<<"$out"; then
    echo "sanity check failed for $1 ($2):" >&2
    cat "$WORK/check.headers" >&2; echo "$out" >&2
    exit 1
  fi
}
check "http://127.0.0.1:$UP_PORT/v1/chat/completions" bench/fast 0 '"usage"'
check "http://127.0.0.1:$PX_PORT/v1/chat/completions" bench/fast 0 '"usage"'
check "$GW/api/v1/chat/completions" bench/fast 0 '"usage"'
grep -qi '^x-lowrouter-provider: bench' "$WORK/check.headers" || { echo "gateway did not use provider bench" >&2; exit 1; }
check "http://127.0.0.1:$UP_PORT/stream/v1/chat/completions" bench/stream 1 '\[DONE\]'
check "$GW/api/v1/chat/completions" bench/stream 1 '\[DONE\]'
# Out of scope must be refused (the scope check is on).
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d '{"model":"bench/other","messages":[{"role":"user","content":"hi"}]}' \
  "$GW/api/v1/chat/completions")
[ "$code" = 403 ] || [ "$code" = 404 ] || { echo "out-of-scope model answered $code" >&2; exit 1; }

if [ "$HOLD" = 1 ]; then
  cat >"$WORK/env.sh" <<ENV
export BENCH_TOKEN=$TOKEN GW_PID=$GW_PID CFG=$CFG BIN=$BIN
export DIRECT=http://127.0.0.1:$UP_PORT/v1/chat/completions PROXY=http://127.0.0.1:$PX_PORT/v1/chat/completions
export GATEWAY=$GW/api/v1/chat/completions
ENV
  log "holding; source $WORK/env.sh (Ctrl-C or kill $$ to stop)"
  while :; do sleep 3600; done
fi

# --- load ------------------------------------------------------------------------------------
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"

run_wrk() { # variant target url conns threads model stream
  local variant=$1 target=$2 url=$3 conns=$4 threads=$5 model=$6 stream=$7
  local idle out line
  idle=$(python3 "$BENCH/helper.py" idle "$IDLE_THRESHOLD" "$IDLE_TIMEOUT")
  log "$variant $target c=$conns t=$threads (idle share $idle) ${DURATION}s"
  local token=$BENCH_TOKEN
  [ "$target" = gateway-sqlite ] && token=$SQ_TOKEN
  out=$(BENCH_TOKEN=$token BENCH_MODEL=$model BENCH_STREAM=$stream wrk -t"$threads" -c"$conns" -d"${DURATION}s" \
    --latency -s "$BENCH/chat.lua" "$url")
  echo "$out" >>"$WORK/wrk.log"
  line=$(grep '^BENCHJSON ' <<<"$out" | sed 's/^BENCHJSON //')
  [ -n "$line" ] || { echo "wrk printed no result:" >&2; echo "$out" >&2; exit 1; }
  python3 - "$line" "$variant" "$target" "$conns" "$threads" "$idle" >>"$RESULTS" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
r.update(variant=sys.argv[2], target=sys.argv[3], conns=int(sys.argv[4]),
         threads=int(sys.argv[5]), idle=float(sys.argv[6]))
print(json.dumps(r))
PY
}

warm() { # url model stream [token]
  BENCH_TOKEN=${4:-$BENCH_TOKEN} BENCH_MODEL=$2 BENCH_STREAM=$3 wrk -t2 -c32 -d"${WARMUP}s" -s "$BENCH/chat.lua" "$1" >/dev/null
}

declare -A URL=(
  [direct]="http://127.0.0.1:$UP_PORT/v1/chat/completions"
  [proxy]="http://127.0.0.1:$PX_PORT/v1/chat/completions"
  [gateway]="$GW/api/v1/chat/completions"
)
[ "$ONLY_PROFILE" = 1 ] && STREAM=0
for target in direct proxy gateway; do
  [ "$ONLY_PROFILE" = 1 ] && break
  warm "${URL[$target]}" bench/fast 0
  run_wrk plain "$target" "${URL[$target]}" 1 1 bench/fast 0
  run_wrk plain "$target" "${URL[$target]}" 32 2 bench/fast 0
done
if [ "$DB" = postgres ] && [ "$ONLY_PROFILE" = 0 ]; then
  SQ_URL="http://127.0.0.1:$SQ_PORT/api/v1/chat/completions"
  warm "$SQ_URL" bench/fast 0 "$SQ_TOKEN"
  run_wrk plain gateway-sqlite "$SQ_URL" 1 1 bench/fast 0
  run_wrk plain gateway-sqlite "$SQ_URL" 32 2 bench/fast 0
fi
if [ "$PROCESSES" = 2 ] && [ "$ONLY_PROFILE" = 0 ]; then
  for lb in 1 2; do
    port_var="LB${lb}_PORT"
    LB_URL="http://127.0.0.1:${!port_var}/api/v1/chat/completions"
    warm "$LB_URL" bench/fast 0
    run_wrk plain "lb-${lb}proc" "$LB_URL" 32 2 bench/fast 0
  done
fi
if [ "$STREAM" = 1 ]; then
  declare -A SURL=(
    [direct]="http://127.0.0.1:$UP_PORT/stream/v1/chat/completions"
    [gateway]="$GW/api/v1/chat/completions"
  )
  for target in direct gateway; do
    warm "${SURL[$target]}" bench/stream 1
    run_wrk stream "$target" "${SURL[$target]}" 1 1 bench/stream 1
    run_wrk stream "$target" "${SURL[$target]}" 32 2 bench/stream 1
  done
fi

if [ "$PROFILE" = 1 ]; then
  P="$WORK/profile"; mkdir -p "$P"
  command -v perf >/dev/null 2>&1 || { SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo; $SUDO apt-get install -y -qq --no-install-recommends linux-perf strace >/dev/null; }
  warm "${URL[gateway]}" bench/fast 0
  log "profile: perf record (cpu-clock, 999 Hz, flat) on the gateway, 32 connections, ${DURATION}s"
  perf record -q -e cpu-clock -F 999 -o "$P/perf.data" -p "$GW_PID" -- sleep "$DURATION" \
    >"$P/perf-record.log" 2>&1 &
  PERF_PID=$!
  BENCH_MODEL=bench/fast BENCH_STREAM=0 wrk -t2 -c32 -d"${DURATION}s" --latency -s "$BENCH/chat.lua" \
    "${URL[gateway]}" >"$P/wrk-perf.txt"
  wait "$PERF_PID" || true
  perf report -i "$P/perf.data" --sort sym --stdio --percent-limit 0.4 >"$P/self.txt" 2>/dev/null || true
  perf report -i "$P/perf.data" --sort comm,dso --stdio >"$P/threads.txt" 2>/dev/null || true
  SAMPLES=$(perf report -i "$P/perf.data" --stdio --sort comm 2>/dev/null | grep -o '^# Event count (approx.): [0-9]*' | grep -o '[0-9]*$')
  REQS=$(grep -o '^BENCHJSON .*' "$P/wrk-perf.txt" | grep -o '"requests":[0-9]*' | grep -o '[0-9]*$')
  echo "gateway on-CPU time during the run: $((SAMPLES / 1000000)) ms for $REQS requests" >"$P/cpu-per-request.txt"
  log "profile: strace -c -f on the gateway, 1 connection, 5 s"
  timeout -s INT 7 strace -c -f -p "$GW_PID" -o "$P/strace.txt" &
  STRACE_PID=$!
  sleep 1
  BENCH_MODEL=bench/fast BENCH_STREAM=0 wrk -t1 -c1 -d5s -s "$BENCH/chat.lua" "${URL[gateway]}" \
    >"$P/wrk-strace.txt"
  wait "$STRACE_PID" || true
  echo; echo "== perf: self time by function (gateway, 32 conns) =="; grep -v '^#' "$P/self.txt" | grep -v '^$' | head -40
  echo; cat "$P/cpu-per-request.txt"; grep Requests/sec "$P/wrk-perf.txt"
  echo; echo "== perf: by thread and object =="; grep -v '^#' "$P/threads.txt" | grep -v '^$' | head -12
  echo; echo "== strace -c (1 conn, 5 s; requests: $(grep -o '[0-9]* requests' "$P/wrk-strace.txt")) =="; head -25 "$P/strace.txt"
  echo; echo "profile data in $P"
fi

sleep 1
read -r RSS_AFTER RSS_PEAK < <(python3 "$BENCH/helper.py" rss "$GW_PID")
SPEND_CHECK=""
if [ "$DB" = postgres ]; then
  # Every process gives its unused lease slices back when the key is read; then the key's
  # spend (day and month counters) must equal the sum of its usage rows, and nothing be held.
  for port in "$GW_PORT" $([ "$PROCESSES" = 2 ] && echo "$GW2_PORT"); do
    curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port/api/v1/key" >/dev/null
  done
  read -r DAY_SPEND MONTH_SPEND USAGE_SUM RESERVED < <(psql -qtA -F ' ' "$DATABASE_URL" -c \
    "select k.day_spend, k.month_spend, (select coalesce(sum(cost), 0) from usage u where u.key_id = k.id), a.reserved
     from api_keys k join accounts a on a.id = k.account_id where k.name = 'bench'")
  if [ "$DAY_SPEND" = "$USAGE_SUM" ] && [ "$MONTH_SPEND" = "$USAGE_SUM" ] && [ "$RESERVED" = 0 ]; then
    SPEND_CHECK="ok: spend $USAGE_SUM micro-credits = sum of usage rows, reserved 0"
  else
    SPEND_CHECK="MISMATCH: day_spend $DAY_SPEND, month_spend $MONTH_SPEND, usage sum $USAGE_SUM, reserved $RESERVED"
  fi
  log "spend check: $SPEND_CHECK"
  USAGE_ROWS=$(psql -qtA "$DATABASE_URL" -c "select count(*) from usage")
else
  USAGE_ROWS=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from usage').fetchone()[0])" "$WORK/bench.db")
fi
# SQLite: the WAL file's size after all runs (it only grows to the largest the WAL ever was).
WAL_BYTES=$(stat -c %s "$WORK/bench.db-wal" 2>/dev/null || echo 0)
cat >"$WORK/meta.json" <<EOF
{"db": "$DB", "rss_idle_kib": $RSS_IDLE, "rss_after_kib": $RSS_AFTER, "rss_peak_kib": $RSS_PEAK,
 "usage_rows": $USAGE_ROWS, "wal_bytes": $WAL_BYTES, "processes": $PROCESSES,
 "spend_check": "$SPEND_CHECK"}
EOF

[ "$ONLY_PROFILE" = 1 ] && exit 0
echo
echo "LowRouter gateway benchmark — $(date -u '+%Y-%m-%d %H:%M UTC') — $DB, ${DURATION}s per run, wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $(nproc) CPUs"
echo "binary: $BIN_SRC (built $(date -u -r "$BIN_SRC" '+%H:%M:%S UTC'), build-id $(readelf -n "$BIN" 2>/dev/null | awk '/Build ID/ {print substr($3, 1, 12)}')); repo HEAD $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src migrations Cargo.toml 2>/dev/null || echo ' + uncommitted changes in src/')"
echo
python3 "$BENCH/helper.py" table "$RESULTS" "$WORK/meta.json"
case "$SPEND_CHECK" in MISMATCH*) echo "spend check failed: $SPEND_CHECK" >&2; exit 1 ;; esac
cp "$RESULTS" "$WORK/meta.json" "${BENCH_RESULTS_DIR:-$WORK}/" 2>/dev/null || true
