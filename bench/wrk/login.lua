-- POST /token as user bench<n>, n drawn at random from 1..BENCH_USERS, with BENCH_PASSWORD;
-- prints how many answers had each status.
local users = tonumber(os.getenv("BENCH_USERS") or "1000")
local password = os.getenv("BENCH_PASSWORD")
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  statuses = {}
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0))
end

function request()
  local body = "username=bench" .. math.random(users) .. "&password=" .. password
  return wrk.format("POST", "/token", headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do parts[#parts + 1] = status .. "=" .. n end
  table.sort(parts)
  io.write("statuses: " .. table.concat(parts, " ") .. "\n")
end
