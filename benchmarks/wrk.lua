-- The request every connection repeats, from the environment (set by benchmarks/load.py):
--   BENCH_BODY  JSON body of the POST     BENCH_KEY  API key (Bearer)
--   BENCH_LIMIT stop after this many responses (0: run for the whole -d duration)
-- done() prints one line, RESULT {...}, that load.py parses.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or "{}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "bench")

local limit = tonumber(os.getenv("BENCH_LIMIT") or "0")
local seen = 0
if limit > 0 then
  -- Only defined when needed: a response() hook makes wrk hand every answer to Lua.
  response = function(status, headers, body)
    seen = seen + 1
    if seen >= limit then wrk.thread:stop() end
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "p50_us": %.1f, "p99_us": %.1f, "max_us": %.1f, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
