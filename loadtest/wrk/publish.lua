-- wrk script: single durable publishes, POST /v1/push/{token}.
--
--   TOKEN=... wrk -t1 -c16 -d10s -s loadtest/wrk/publish.lua http://127.0.0.1:PORT
--   wrk -t1 -c16 -d10s -s loadtest/wrk/publish.lua http://127.0.0.1:PORT -- TOKEN
--
-- The payload is 128 bytes of text (override the size with $PAYLOAD_BYTES).
-- Every request is the same (pre-formatted once per thread): no Lua work per
-- request, so the client spends its CPU on HTTP only.
package.path = package.path .. ";" .. (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua"
local common = require("common")

local req

function init(args)
  local size = tonumber(os.getenv("PAYLOAD_BYTES") or "128")
  local payload = string.rep("0123456789abcdef", math.ceil(size / 16)):sub(1, size)
  req = wrk.format("POST", "/v1/push/" .. common.token(args), {
    ["TTL"] = "3600",
    ["Content-Type"] = "text/plain",
  }, payload)
end

function request()
  return req
end

setup = common.setup
done = common.done
common.install_check(false)
