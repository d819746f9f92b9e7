-- wrk script: multipart ingest of one image with a new idempotency key per request, so
-- every request creates a job and an idempotency entry (what the emulator must bound).
-- Usage: wrk -t2 -c16 -d10s -s ingest_keyed.lua http://127.0.0.1:8080 -- IMAGE_PATH PATTERN_ID
local boundary = "imggo-wrk-boundary-5f2a"
local head, tail, path, headers
local n = 0
local thread_id = 0

function setup(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local img = f:read("*a")
  f:close()
  head = "--" .. boundary .. "\r\n"
    .. "Content-Disposition: form-data; name=\"idempotency_key\"\r\n\r\n"
  tail = "\r\n--" .. boundary .. "\r\n"
    .. "Content-Disposition: form-data; name=\"image\"; filename=\"bench.jpg\"\r\n"
    .. "Content-Type: image/jpeg\r\n\r\n"
    .. img .. "\r\n--" .. boundary .. "--\r\n"
  headers = {
    ["Content-Type"] = "multipart/form-data; boundary=" .. boundary,
    ["Authorization"] = "Bearer bench",
  }
  path = "/api/patterns/" .. args[2] .. "/ingest"
  math.randomseed(os.time() + thread_id)
  prefix = "rss-" .. thread_id .. "-" .. math.random(1, 1000000000) .. "-"
end

function request()
  n = n + 1
  return wrk.format("POST", path, headers, head .. prefix .. n .. tail)
end
