-- Global event postbacks (JSON POST, ~335 bytes) for random existing leads.
--
--   wrk -t1 -c64 -d10s -s bench/wrk/postback.lua URL -- TIDS_FILE [RATE]
--
-- TIDS_FILE: one transaction id per line. RATE: requests/s to offer over all threads
-- (0 or absent = as fast as the connections go). The same script drives the bare-ASGI
-- ceiling, so both runs pay the same client-side cost. A JSON summary line starting with
-- "WRKJSON " is printed at the end (status counts, latency percentiles in microseconds).

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } pb_timespec;
int clock_gettime(int clk_id, pb_timespec *tp);
]]
local ts = ffi.new("pb_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("id", thread_count)
  table.insert(threads, thread)
end

-- per-thread globals (read back in done() with thread:get)
s2xx, s403, s4xx, s5xx, sother = 0, 0, 0, 0, 0

local tids = {}
local interval_ms = 0 -- time between sends of this thread; 0 = no pacing
local next_ms = nil
local counter = 0
local headers = { ["Content-Type"] = "application/json" }
-- Fixed filler so the body is ~335 bytes, like the ceiling measurements in PERFORMANCE.md.
local tail = '"pid":"organic","sub1":"aff_10293","sub2":"creative_0042","sub3":"lp_v7",'
  .. '"utm_source":"newsletter","utm_medium":"email","utm_campaign":"spring_sale_2026",'
  .. '"utm_content":"hero_banner_variant_b","utm_term":"solar_panels_cost"'

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then table.insert(tids, line) end
  end
  assert(#tids > 0, "no transaction ids in " .. tostring(args[1]))
  local rate = tonumber(args[2] or "0") or 0
  local nthreads = tonumber(args[3] or "1") or 1
  if rate > 0 then interval_ms = 1000.0 * nthreads / rate end
  math.randomseed(id * 7919 + os.time())
end

function delay()
  -- Absolute schedule shared by this thread's connections: each request takes the next
  -- free slot. When every connection is busy the schedule slips (offered < asked).
  local now = now_ms()
  if next_ms == nil or next_ms < now then next_ms = now end
  local wait = next_ms - now
  next_ms = next_ms + interval_ms
  return math.floor(wait)
end

function request()
  counter = counter + 1
  local tid = tids[math.random(#tids)]
  local clid = string.format("bench-%d-%d-%08x", id, counter, math.random(0, 0x7fffffff))
  local body
  if counter % 2 == 0 then
    body = string.format(
      '{"event_id":"sale","transaction_id":"%s","revenue":"%d.%02d","clid":"%s",%s}',
      tid, math.random(1, 499), math.random(0, 99), clid, tail)
  else
    body = string.format(
      '{"event_id":"page_view","transaction_id":"%s","clid":"%s","adv1":"x",%s}',
      tid, clid, tail)
  end
  return wrk.format("POST", nil, headers, body)
end

function response(status, hdrs, body)
  if status >= 200 and status < 300 then
    s2xx = s2xx + 1
  elseif status == 403 then
    s403 = s403 + 1
  elseif status >= 400 and status < 500 then
    s4xx = s4xx + 1
  elseif status >= 500 then
    s5xx = s5xx + 1
  else
    sother = sother + 1
  end
end

function done(summary, latency, requests)
  local c = { s2xx = 0, s403 = 0, s4xx = 0, s5xx = 0, sother = 0 }
  for _, t in ipairs(threads) do
    for k, _ in pairs(c) do c[k] = c[k] + (t:get(k) or 0) end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"duration_us":%d,"requests":%d,"bytes":%d,"s2xx":%d,"s403":%d,"s4xx":%d,'
    .. '"s5xx":%d,"sother":%d,"err_connect":%d,"err_read":%d,"err_write":%d,'
    .. '"err_status":%d,"err_timeout":%d,"lat_mean_us":%.1f,"lat_max_us":%d,'
    .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.duration, summary.requests, summary.bytes, c.s2xx, c.s403, c.s4xx, c.s5xx,
    c.sother, e.connect, e.read, e.write, e.status, e.timeout, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
