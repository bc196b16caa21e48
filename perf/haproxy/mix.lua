-- wrk script for perf/haproxy/compare.sh: replays the request mix, in order and round, and counts
-- the answers' statuses.
--
--   wrk -t 1 -c N -d S -s mix.lua URL -- requests.bin load     statuses of every answer
--   wrk -t 1 -c 1 -d S -s mix.lua URL -- requests.bin verify   one pass over the mix, statuses
--                                                               per request kind, then stop
--
-- requests.bin (compare.py prepare): per request a line `KIND LENGTH` and then LENGTH bytes of
-- raw HTTP request, built once so that request() only hands out a string.
--
-- wrk's response() does not say which request an answer belongs to. With one connection (verify)
-- requests and answers alternate, so an answer belongs to the request handed out last; with
-- several connections nothing pairs them, hence the two modes. (Not a queue of kinds: wrk 4.1 calls
-- request() once more before the run and drops that request.) A thread's globals are read back in done() with
-- thread:get, so the tallies are globals, and flat: wrk 4.1 crashes copying a table of tables.
-- Both modes run one thread, so there is nothing to sum across threads.
-- done() prints one line, `MIX-RESULT {json}`, which compare.py reads.

local requests, kinds = {}, {}
local request_count = 0
local next_request = 1
local last_kind = nil -- verify: the kind of the request handed out last
local answered = 0

mode = "load"
statuses = {} -- "200" → count
by_kind = {} -- "kind status" → count

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local data = file:read("*a")
  file:close()
  mode = args[2] or "load"
  local position = 1
  while position <= #data do
    local kind, length, start = data:match("^(%S+) (%d+)\n()", position)
    assert(kind, "requests file: bad record at byte " .. position)
    request_count = request_count + 1
    kinds[request_count] = kind
    requests[request_count] = data:sub(start, start + tonumber(length) - 1)
    position = start + tonumber(length)
  end
  assert(request_count > 0, "requests file: no requests")
end

function request()
  local index = next_request
  next_request = index % request_count + 1
  last_kind = kinds[index]
  return requests[index]
end

function response(status)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if mode ~= "verify" then
    return
  end
  local kind_status = last_kind .. " " .. key
  by_kind[kind_status] = (by_kind[kind_status] or 0) + 1
  answered = answered + 1
  if answered == request_count then
    wrk.thread:stop()
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function json_counts(counts)
  local parts = {}
  for key, count in pairs(counts) do
    table.insert(parts, string.format("%q:%d", key, count))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary)
  assert(#threads == 1, "mix.lua counts one thread's answers: run wrk with -t 1")
  local thread = threads[1]
  local per_kind = {}
  for kind_status, count in pairs(thread:get("by_kind")) do
    local kind, status = kind_status:match("^(%S+) (%S+)$")
    per_kind[kind] = per_kind[kind] or {}
    per_kind[kind][status] = count
  end
  local kinds_json = {}
  for kind, counts in pairs(per_kind) do
    table.insert(kinds_json, string.format("%q:%s", kind, json_counts(counts)))
  end
  local errors = summary.errors
  io.write(string.format(
    'MIX-RESULT {"mode":%q,"requests":%d,"duration_us":%d,"statuses":%s,"by_kind":{%s},' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d}}\n',
    thread:get("mode"), summary.requests, summary.duration, json_counts(thread:get("statuses")),
    table.concat(kinds_json, ","), errors.connect, errors.read, errors.write, errors.timeout))
end
