-- wrk script: posts the signed deliveries written by `gen-payloads`, each once, in order
-- (after the last one it starts over, and the receiver answers those as duplicates).
-- PAYLOADS names the file. With -t N each thread takes every Nth delivery.
local sigs, bodies, n, i = {}, {}, 0, 0
local step, offset = 1, 0
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
    sigs[n] = sig
    bodies[n] = f:read("*l")
  end
  f:close()
  step = tonumber(os.getenv("THREADS") or "1")
  i = (offset or 0)
end

function request()
  i = i + step
  if i > n then i = ((i - 1) % n) + 1 end
  return wrk.format("POST", "/webhooks/oncehub",
    { ["Content-Type"] = "application/json", ["Oncehub-Signature"] = sigs[i] }, bodies[i])
end
