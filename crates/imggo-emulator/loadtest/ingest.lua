-- wrk script: multipart ingest of one image, a new job per request.
-- Usage: wrk -t2 -c64 -d10s -s ingest.lua http://127.0.0.1:8080 -- IMAGE_PATH PATTERN_ID
local boundary = "imggo-wrk-boundary-5f2a"
local req

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local img = f:read("*a")
  f:close()
  local body = "--" .. boundary .. "\r\n"
    .. "Content-Disposition: form-data; name=\"image\"; filename=\"bench.jpg\"\r\n"
    .. "Content-Type: image/jpeg\r\n\r\n"
    .. img .. "\r\n--" .. boundary .. "--\r\n"
  local headers = {
    ["Content-Type"] = "multipart/form-data; boundary=" .. boundary,
    ["Authorization"] = "Bearer bench",
  }
  req = wrk.format("POST", "/api/patterns/" .. args[2] .. "/ingest", headers, body)
end

function request()
  return req
end

local statuses = {}
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
