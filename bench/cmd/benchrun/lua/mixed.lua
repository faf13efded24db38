-- Mixed validate: 7 of every 10 requests ask for an ID from the cached set
-- (args[1]), 3 for an ID nobody asked for before: the next unused line of
-- the uncached pool (args[2]), starting after args[3] lines. Each thread
-- takes its own slice of the pool (args[4] IDs per thread). When the slice
-- runs out the request goes to the cached set instead; "uncached" in the
-- report says how many fresh IDs were sent.
local cached, nc = {}, 0
local pool, np = {}, 0
local k, c = 0, 0
uncached = 0
extra_fields = {"uncached"}

function init(args)
   for id in io.lines(args[1]) do
      nc = nc + 1
      cached[nc] = wrk.format("GET", "/v1/validate/" .. id)
   end
   local per = tonumber(args[4])
   local first = tonumber(args[3]) + ((tid or 1) - 1) * per
   local line = 0
   for id in io.lines(args[2]) do
      line = line + 1
      if line > first and line <= first + per then
         np = np + 1
         pool[np] = wrk.format("GET", "/v1/validate/" .. id)
      end
   end
   c = ((tid or 1) - 1) * 7919 % nc
end

function request()
   k = k + 1
   local slot = k % 10
   if (slot == 2 or slot == 5 or slot == 8) and uncached < np then
      uncached = uncached + 1
      return pool[uncached]
   end
   c = c % nc + 1
   return cached[c]
end
