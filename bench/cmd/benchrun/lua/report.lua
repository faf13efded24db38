-- Appended to every scenario script (benchrun puts "report_conns = N" in
-- front). done() prints one line, "WRKJSON {...}", that benchrun parses.
-- Latencies are in microseconds.
--
-- wrk "corrects" its latency histogram for coordinated omission before
-- done() sees it (stats_correct in wrk.c): every sample above twice the mean
-- interval per connection gets synthetic copies at that interval below it.
-- That turns a mix of 0.1 ms and 180 ms answers into a smear and inflates
-- tails by a model of constant-rate intent that a closed-loop test does not
-- have. done() therefore reads wrk's histogram through the FFI, undoes the
-- correction exactly (it is deterministic), and reports the latencies the
-- requests actually had; wrk's corrected p99 is kept as wrk_p99.
-- raw_ok says the undone histogram holds exactly the recorded samples.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { uint64_t count; uint64_t limit; uint64_t min; uint64_t max; uint64_t data[1]; } wrk_stats_t;
]]

threads = {}

function setup(thread)
   thread:set("tid", #threads + 1)
   table.insert(threads, thread)
end

-- uncorrect reverses stats_correct(stats, expected) in place, from the top
-- bin down, so each bin holds its own samples when it is reached.
local function uncorrect(s, expected)
   local max = tonumber(s.max)
   for n = max, 2 * expected, -1 do
      local c = tonumber(s.data[n])
      if c > 0 then
         local m = n - expected
         while m > expected do
            s.data[m] = tonumber(s.data[m]) - c
            m = m - expected
         end
      end
   end
end

-- raw returns count, mean and the requested percentiles of the histogram.
local function raw(s, ps)
   local max = tonumber(s.max)
   local total, sum = 0, 0
   for i = 0, max do
      local c = tonumber(s.data[i])
      if c > 0 then
         total = total + c
         sum = sum + c * i
      end
   end
   local out, k, seen = {}, 1, 0
   for i = 0, max do
      seen = seen + tonumber(s.data[i])
      while k <= #ps and seen >= math.ceil(ps[k] / 100 * total) do
         out[k] = i
         k = k + 1
      end
      if k > #ps then break end
   end
   return total, (total > 0 and sum / total or 0), out
end

function done(summary, latency, requests)
   local e = summary.errors
   local wrk_p99 = latency:percentile(99)
   local ok, s = pcall(function() return ffi.cast("wrk_stats_t**", latency)[0] end)
   local total, mean, p, raw_ok = 0, latency.mean, { latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9) }, 0
   if ok and report_conns then
      local per = math.floor(summary.requests / report_conns)
      if per > 0 and summary.duration >= per then
         uncorrect(s, math.floor(summary.duration / per))
      end
      total, mean, p = raw(s, { 50, 90, 99, 99.9 })
      if total == summary.requests - e.timeout then raw_ok = 1 end
   end
   local line = string.format(
      '"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
      '"mean":%.2f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"wrk_p99":%d,"raw_ok":%d',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
      mean, p[1], p[2], p[3], p[4], latency.max, wrk_p99, raw_ok)
   if extra_fields then
      for _, name in ipairs(extra_fields) do
         local sum = 0
         for _, t in ipairs(threads) do sum = sum + (t:get(name) or 0) end
         line = line .. string.format(',"%s":%d', name, sum)
      end
   end
   io.write("WRKJSON {" .. line .. "}\n")
end
