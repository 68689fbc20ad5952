-- GET /users/me/ with a bearer token drawn at random from the file BENCH_TOKENS (one a line).
-- BENCH_DELAY_MS, when set, paces each connection: one request, then that many milliseconds
-- of pause (a steady, light load for latency rather than a saturating one). BENCH_PATH, when
-- set, asks for that path instead, with the same token.
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do
  if #line > 0 then tokens[#tokens + 1] = "Bearer " .. line end
end
assert(#tokens > 0, "no tokens in BENCH_TOKENS")
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")
local path = os.getenv("BENCH_PATH") or "/users/me/"

function init(args)
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0))
end

function request()
  return wrk.format("GET", path, { Authorization = tokens[math.random(#tokens)] })
end

if pause then
  function delay() return pause end
end
