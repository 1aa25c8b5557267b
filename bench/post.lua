-- wrk script: posts the signed deliveries written by `gen-payloads`, each once, in order.
--   PAYLOADS  the file (pairs of lines: signature, body)
--   THREADS   wrk's -t, so each thread takes every Nth delivery
--   RATE      optional: deliveries/s over all connections (each connection waits CONNS/RATE
--             between requests: an approximation of a fixed rate, reported as measured)
--   CONNS     wrk's -c
--   DONE      optional: a file created when a thread has sent its share (the caller then stops
--             wrk with SIGINT, so wrk's duration is the real one)
-- A thread stops once it has sent its share, so a run sends every delivery at most once; the few
-- requests in flight at that moment are not counted, though the receiver may have answered them.
-- At the end it prints one line: `RESULT key=value ...` with latencies in microseconds.
local reqs, n, i, sent = {}, 0, 0, 0
local step, share, pause = 1, 0, 0
local counter = 0

function setup(thread)
  thread:set("offset", counter)
  counter = counter + 1
end

function init(args)
  local path = os.getenv("PAYLOADS") or "payloads.txt"
  local f = assert(io.open(path, "r"))
  while true do
    local sig = f:read("*l")
    if not sig then break end
    n = n + 1
    -- Formatted once here: formatting per request costs wrk more CPU than the receiver spends.
    reqs[n] = wrk.format("POST", "/webhooks/oncehub",
      { ["Content-Type"] = "application/json", ["Oncehub-Signature"] = sig }, f:read("*l"))
  end
  f:close()
  step = tonumber(os.getenv("THREADS") or "1")
  i = offset or 0
  -- Requests still in flight when a thread stops must not wrap round to deliveries already sent.
  share = math.floor((n - i) / step) - tonumber(os.getenv("CONNS") or "1")
  local rate = tonumber(os.getenv("RATE") or "0")
  if rate > 0 then
    pause = 1000 * tonumber(os.getenv("CONNS") or "1") / rate
  end
end

-- Defined only for a fixed rate: wrk schedules a timer per request when a script has delay().
if tonumber(os.getenv("RATE") or "0") > 0 then
  function delay()
    return pause
  end
end

function request()
  sent = sent + 1
  if sent == share then
    local done = os.getenv("DONE")
    if done then io.open(done .. "." .. (offset or 0), "w"):close() end
    wrk.thread:stop()
  end
  i = i + step
  if i > n then i = ((i - 1) % n) + 1 end
  return reqs[i]
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f rps=%.0f p50=%d p99=%d p999=%d max=%d non2xx=%d errors=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
