-- Shared by publish.lua and batch.lua.
--
-- done() prints a one-line, machine-readable summary that loadtest/bench.sh
-- parses. Latencies are in microseconds.
--
-- With CHECK=1 in the environment, every response body is also inspected and
-- the summary counts the per-item results: items_ok ("status":201 in a batch
-- answer, or a 201 single publish) and items_bad (any other item status).
-- It costs the client CPU, so benchmark runs leave it off.
local M = {}

local threads = {}

function M.setup(thread)
  table.insert(threads, thread)
end

function M.install_check(batch)
  if os.getenv("CHECK") ~= "1" then
    return
  end
  items_ok, items_bad = 0, 0
  response = function(status, _, body)
    if not batch then
      if status == 201 then items_ok = items_ok + 1 else items_bad = items_bad + 1 end
      return
    end
    if status ~= 200 then
      items_bad = items_bad + 1
      return
    end
    local _, all = body:gsub('"status":', "")
    local _, good = body:gsub('"status":201', "")
    items_ok = items_ok + good
    items_bad = items_bad + (all - good)
  end
end

function M.done(summary, latency, _)
  local e = summary.errors
  local secs = summary.duration / 1e6
  local ok, bad = 0, 0
  for _, t in ipairs(threads) do
    ok = ok + (t:get("items_ok") or 0)
    bad = bad + (t:get("items_bad") or 0)
  end
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f rps=%.1f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d items_ok=%d items_bad=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, ok, bad))
end

-- The token: the first script argument (wrk ... -- TOKEN), else $TOKEN.
function M.token(args)
  local t = (args and args[1]) or os.getenv("TOKEN")
  if t == nil or t == "" then
    error("no token: pass it as `wrk ... -- TOKEN` or in $TOKEN")
  end
  return t
end

return M
