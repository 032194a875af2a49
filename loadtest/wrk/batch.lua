-- wrk script: batch publishes, POST /v1/push with 100 messages a request.
--
--   TOKEN=... wrk -t1 -c16 -d10s -s loadtest/wrk/batch.lua http://127.0.0.1:PORT
--
-- Each message carries a 64-200 byte payload (a fixed pseudo-random size per
-- message) and TTL 3600. 16 different bodies are built once per thread and
-- sent in turn. $BATCH_SIZE overrides the 100 messages.
-- Messages per second = requests per second * BATCH_SIZE.
package.path = package.path .. ";" .. (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua"
local common = require("common")

local reqs = {}
local n = 0

function init(args)
  local token = common.token(args)
  local size = tonumber(os.getenv("BATCH_SIZE") or "100")
  math.randomseed(12345)
  local alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
  for v = 1, 16 do
    local items = {}
    for i = 1, size do
      local len = math.random(64, 200)
      local k = math.random(1, #alphabet)
      local data = string.rep(alphabet, math.ceil(len / #alphabet) + 1):sub(k, k + len - 1)
      items[i] = string.format('{"token":"%s","data":"%s","ttl":3600}', token, data)
    end
    local body = '{"messages":[' .. table.concat(items, ",") .. ']}'
    reqs[v] = wrk.format("POST", "/v1/push", { ["Content-Type"] = "application/json" }, body)
  end
end

function request()
  n = n % #reqs + 1
  return reqs[n]
end

setup = common.setup
done = common.done
common.install_check(true)
