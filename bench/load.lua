-- wrk script of bench/run.py: each request built from the next line of a prepared file.
--
--   wrk -t1 -c32 -d10s --latency -s bench/load.lua http://127.0.0.1:PORT -- MODE [FILE]
--
-- MODE constant: GET /. complete: FILE holds one paymentId a line, POST /payments/complete.
-- hot: the same, for a payment not paid yet: every answer should be 409 (PAYMENT_NOT_PAID),
-- and `unexpected` counts the others. webhook: FILE holds
-- "webhook-id<TAB>timestamp<TAB>signature<TAB>body" lines, POST /webhooks/portone. Lines
-- are used in order, once each; `wrapped` counts restarts from the top (a first-time
-- workload whose file ran out would no longer be first-time).

mode = "constant"
lines = {}
count = 0
sent = 0
wrapped = 0
unexpected = 0
threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1] or "constant"
  if args[2] then
    for line in io.lines(args[2]) do
      count = count + 1
      lines[count] = line
    end
  end
  if mode == "hot" then
    -- Defined only here: wrk reads every response body only when a script has one.
    response = function(status)
      if status ~= 409 then
        unexpected = unexpected + 1
      end
    end
  end
end

local json = { ["Content-Type"] = "application/json" }

function request()
  if mode == "constant" then
    return wrk.format("GET", "/")
  end
  sent = sent + 1
  local index = (sent - 1) % count + 1
  if index == 1 and sent > 1 then
    wrapped = wrapped + 1
  end
  local line = lines[index]
  if mode == "complete" or mode == "hot" then
    return wrk.format("POST", "/payments/complete", json, '{"paymentId":"' .. line .. '"}')
  end
  local id, timestamp, signature, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
  local headers = {
    ["Content-Type"] = "application/json",
    ["webhook-id"] = id,
    ["webhook-timestamp"] = timestamp,
    ["webhook-signature"] = signature,
  }
  return wrk.format("POST", "/webhooks/portone", headers, body)
end

function done(summary, latency, requests)
  local sent_total, wrapped_total, unexpected_total = 0, 0, 0
  for _, thread in ipairs(threads) do
    sent_total = sent_total + (thread:get("sent") or 0)
    wrapped_total = wrapped_total + (thread:get("wrapped") or 0)
    unexpected_total = unexpected_total + (thread:get("unexpected") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d,"mean_us":%.1f,"sent":%d,"wrapped":%d,"unexpected":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, sent_total, wrapped_total, unexpected_total))
end
