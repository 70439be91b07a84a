-- Basic credentials that change with every request: wrk -s logins.lua URL -- FORMAT COUNT PASSWORD
--   flood: "flood-%d" 0 wrong-password    a user name never used before, every time, so per-user
--                                          throttling cannot absorb the wrong passwords
--   cold:  "user%06d" 999 PASSWORD         ordinary users 1..999 in turn, so no two concurrent
--                                          requests are the same login (the service runs one
--                                          bcrypt check for identical concurrent logins)
-- done() prints "status CODE: COUNT" lines for benchmarks/wrk.py.

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(text)
  local out = {}
  for i = 1, #text, 3 do
    local a, b, c = text:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    for k = 3, 0, -1 do
      local index = math.floor(n / 64 ^ k) % 64
      out[#out + 1] = alphabet:sub(index + 1, index + 1)
    end
    if not b then
      out[#out - 1], out[#out] = "=", "="
    elseif not c then
      out[#out] = "="
    end
  end
  return table.concat(out)
end

function init(args)
  format, count, password = args[1], tonumber(args[2]), args[3]
  counter = 0
  statuses = {}
end

function request()
  counter = counter + 1
  local n
  if count > 0 then
    -- wrk.py runs two threads: they start half the users apart.
    n = (counter + id * math.floor(count / 2)) % count + 1
  else
    n = id * 1e9 + counter
  end
  local credentials = base64(string.format(format, n) .. ":" .. password)
  return wrk.format(nil, nil, { Authorization = "Basic " .. credentials })
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
  for status, n in pairs(total) do
    io.write(string.format("status %d: %d\n", status, n))
  end
end
