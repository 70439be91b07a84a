-- Wrong passwords, each for a user name never used before, so that per-user throttling cannot
-- absorb them: every one costs the service a (dummy) bcrypt check unless it refuses the work.
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
  counter = 0
  statuses = {}
end

function request()
  counter = counter + 1
  local credentials = base64("flood-" .. id .. "-" .. counter .. ":wrong-password")
  return wrk.format(nil, nil, { Authorization = "Basic " .. credentials })
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
  end
  for status, count in pairs(total) do
    io.write(string.format("status %d: %d\n", status, count))
  end
end
