-- Mint: POST /v1/mint {"entity":"PEO"}. args[1], if given, is sent as the
-- bearer token (calling the simulator directly; the sidecar holds its own).
local req

function init(args)
   local h = {["Content-Type"] = "application/json"}
   if args[1] and args[1] ~= "" then
      h["Authorization"] = "Bearer " .. args[1]
   end
   req = wrk.format("POST", "/v1/mint", h, '{"entity":"PEO"}')
end

function request()
   return req
end
