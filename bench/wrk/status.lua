-- status.lua — what chat.lua and completions.lua share: the request
-- headers (QD_API_KEY) and the report, one RESULT line counting the
-- answers by status (503 = queue full, expected beyond the scheduler's
-- queue limit, must carry Retry-After). The calling script sets wrk.path
-- and wrk.body first.

local key = os.getenv("QD_API_KEY")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if key and key ~= "" then
   wrk.headers["Authorization"] = "Bearer " .. key
end
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   counts = {}
   no_retry_after = 0
end

function response(status, headers, body)
   counts[status] = (counts[status] or 0) + 1
   if status == 503 and not headers["Retry-After"] then
      no_retry_after = no_retry_after + 1
   end
end

function done(summary, latency, requests)
   local total = {}
   local missing = 0
   for _, t in ipairs(threads) do
      for status, n in pairs(t:get("counts")) do
         total[status] = (total[status] or 0) + n
      end
      missing = missing + t:get("no_retry_after")
   end
   local parts = {}
   for status, n in pairs(total) do
      table.insert(parts, status .. "=" .. n)
   end
   table.sort(parts)
   local e = summary.errors
   io.write(string.format(
      "RESULT rps=%.1f requests=%d statuses=%s connect_err=%d read_err=%d " ..
      "write_err=%d timeouts=%d status_err=%d p50_ms=%.2f p99_ms=%.2f " ..
      "503_without_retry_after=%d\n",
      summary.requests / (summary.duration / 1e6), summary.requests,
      table.concat(parts, ","), e.connect, e.read, e.write, e.timeout,
      e.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
      missing))
end
