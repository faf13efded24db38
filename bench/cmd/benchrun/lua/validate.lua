-- Cached validate: GET /v1/validate/{id}, rotating through the IDs in the
-- file given as the first script argument (one per line). Requests are
-- built once in init, so the per-request Lua work is an index and a return.
-- Each thread starts at a different point of the list.
local reqs, n, i = {}, 0, 0

function init(args)
   for id in io.lines(args[1]) do
      n = n + 1
      reqs[n] = wrk.format("GET", "/v1/validate/" .. id)
   end
   i = ((tid or 1) - 1) * 7919 % n
end

function request()
   i = i % n + 1
   return reqs[i]
end
