-- Inbound tracking events (JSON POST, ~330 bytes) that each fire one outbound postback
-- (bench/dispatch.py).
--
--   wrk -t1 -c32 -d10s -s bench/wrk/dispatch.lua URL -- TIDS_FILE [RATE] [THREADS] [MAX] [EVENT]
--
-- TIDS_FILE: one transaction id per line. RATE: requests/s offered over all threads (0 =
-- as fast as the connections go), paced like wrk/postback.lua (absolute schedule; it slips
-- when every connection is busy). MAX: stop after this many responses (0 = run for -d).
-- EVENT: the event id (default "bench_event").
--
-- Every request carries its send time as `sub1` (CLOCK_REALTIME, seconds with six
-- decimals). The postback under test copies `{sub1}` into its body, so the receiver can
-- compute event-sent -> postback-received on one clock. The request is built in
-- request(), which wrk calls right before writing it (after the delay()), so the stamp is
-- the send time. A "WRKJSON " summary line is printed at the end.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } pbd_timespec;
int clock_gettime(int clk_id, pbd_timespec *tp);
]]
local ts = ffi.new("pbd_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC, for pacing
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local function wall_text()
  ffi.C.clock_gettime(0, ts) -- CLOCK_REALTIME, the clock Python's time.time() reads
  return string.format("%d.%06d", tonumber(ts.tv_sec), math.floor(tonumber(ts.tv_nsec) / 1000))
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
local interval_ms = 0
local next_ms = nil
local counter = 0
local responses = 0
local max_responses = 0
local first_ms = nil
local event = "bench_event"
local headers = { ["Content-Type"] = "application/json" }
local tail = '"pid":"organic","sub2":"creative_0042","sub3":"lp_v7",'
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
  max_responses = math.floor((tonumber(args[4] or "0") or 0) / nthreads)
  event = args[5] or event
  math.randomseed(id * 7919 + os.time())
end

function delay()
  local now = now_ms()
  if next_ms == nil or next_ms < now then next_ms = now end
  local wait = next_ms - now
  next_ms = next_ms + interval_ms
  return math.floor(wait)
end

function request()
  if first_ms == nil then first_ms = now_ms() end
  counter = counter + 1
  local tid = tids[math.random(#tids)]
  local clid = string.format("d-%d-%d-%08x", id, counter, math.random(0, 0x7fffffff))
  local body = string.format(
    '{"event_id":"%s","transaction_id":"%s","sub1":"%s","clid":"%s",%s}',
    event, tid, wall_text(), clid, tail)
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
  responses = responses + 1
  if max_responses > 0 and responses == max_responses then
    -- wrk's main thread sleeps for -d regardless; the bench sends SIGINT on this line.
    io.write(string.format("WRKSTOP %.1f\n", now_ms() - first_ms))
    io.flush()
    wrk.thread:stop()
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
