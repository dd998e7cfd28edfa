-- Counts responses by HTTP status and 503s lacking Retry-After, summed over wrk's threads.
-- Each wrk thread runs its own Lua state, so counters live in per-thread globals and done()
-- (which runs in the main state) pulls them through the thread objects kept by setup().
-- Output lines start with "wrk_status" so bench/run.py can pick them out of wrk's report.
-- With script arguments (product ids: `-s wrk_status.lua URL -- id1 id2 ...`) every request is
-- instead a POST /v1/orders of one unit, cycling through the products, with a unique
-- Idempotency-Key per request.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

local function order_request()
  counter = counter + 1
  local product = products[(counter % #products) + 1]
  local body = string.format(
    '{"items":[{"product_id":"%s","quantity":1}],"payment":{"token":"tok_ok"}}', product)
  wrk.headers["Idempotency-Key"] = prefix .. counter
  wrk.headers["Content-Type"] = "application/json"
  return wrk.format("POST", nil, nil, body)
end

function init(args)
  statuses = {}
  missing_retry_after = 0
  if #args > 0 then
    products = args
    counter = 0
    prefix = string.format("bench-%d-%d-", os.time(), tid)
    request = order_request
  end
end

local function has_retry_after(headers)
  -- Header names arrive as the server wrote them (Starlette writes lowercase).
  for name, _ in pairs(headers) do
    if string.lower(name) == "retry-after" then
      return true
    end
  end
  return false
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 503 and not has_retry_after(headers) then
    missing_retry_after = missing_retry_after + 1
  end
end

function done(summary, latency, requests)
  local totals = {}
  local missing = 0
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses") or {}) do
      totals[status] = (totals[status] or 0) + count
    end
    missing = missing + (thread:get("missing_retry_after") or 0)
  end
  for status, count in pairs(totals) do
    io.write(string.format("wrk_status status %d %d\n", status, count))
  end
  io.write(string.format("wrk_status missing_retry_after %d\n", missing))
end
