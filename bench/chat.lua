-- wrk script: one OpenAI chat completion per request, with the Bearer token.
-- Environment: BENCH_TOKEN (lr-sk-...), BENCH_MODEL (default bench/fast), BENCH_STREAM=1.
-- done() prints one machine-readable line for bench/report.py.
local token = os.getenv("BENCH_TOKEN") or ""
local model = os.getenv("BENCH_MODEL") or "bench/fast"
local stream = os.getenv("BENCH_STREAM") == "1"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
wrk.body = '{"model":"' .. model .. '","messages":['
  .. '{"role":"system","content":"You are a terse assistant."},'
  .. '{"role":"user","content":"Say hello to the benchmark."}]'
  .. (stream and ',"stream":true' or '')
  .. ',"max_tokens":256}'

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,'
      .. '"connect_err":%d,"read_err":%d,"write_err":%d,"timeout_err":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.status,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
