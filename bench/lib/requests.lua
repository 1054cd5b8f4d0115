-- wrk script: cycles through pre-signed requests. Each line of the requests file is
-- tab-separated header name/value pairs (one unique nonce per line); the body comes from a
-- file and is the same for every request. Arguments: requests-file body-file method threads.
-- With several threads, thread k uses lines k, k+n, k+2n... so no line is sent twice
-- until the file wraps; `done` prints how many times it wrapped (a Nexus run must not).
local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local lines = {}
local idx = 0
local body = nil
local method = "POST"
wrapped = 0

function init(args)
  local file = args[1]
  local bodyFile = args[2]
  method = args[3] or "POST"
  local nthreads = tonumber(args[4] or "1")
  local n = 0
  for line in io.lines(file) do
    if n % nthreads == id then lines[#lines + 1] = line end
    n = n + 1
  end
  if bodyFile ~= nil and bodyFile ~= "" then
    local f = assert(io.open(bodyFile, "rb"))
    body = f:read("*a")
    f:close()
  end
end


function request()
  idx = idx + 1
  if idx > #lines then
    idx = 1
    wrapped = wrapped + 1
  end
  local line = lines[idx]
  local headers = {}
  local pos = 1
  while true do
    local t1 = string.find(line, "\t", pos, true)
    if t1 == nil then break end
    local name = string.sub(line, pos, t1 - 1)
    local t2 = string.find(line, "\t", t1 + 1, true)
    local value
    if t2 == nil then
      value = string.sub(line, t1 + 1)
      pos = #line + 1
    else
      value = string.sub(line, t1 + 1, t2 - 1)
      pos = t2 + 1
    end
    headers[name] = value
    if t2 == nil then break end
  end
  return wrk.format(method, nil, headers, body)
end

function done(summary, latency, requests)
  local w = 0
  for _, t in ipairs(threads) do w = w + (tonumber(t:get("wrapped")) or 0) end
  io.write(string.format("wrapped=%d\n", w))
end
