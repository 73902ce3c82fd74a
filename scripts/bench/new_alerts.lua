-- wrk script: every request carries 10 alerts never sent before
-- (a storm of new alerts), as Alertmanager webhook v4 payloads.
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  thread_id = tid or 0
  math.randomseed(os.time() + thread_id * 7919)
  run_id = math.random(1, 2147483647)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if os.getenv("BENCH_TOKEN") then
    wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
  end
end

function request()
  counter = counter + 1
  local parts = {}
  for i = 1, 10 do
    parts[i] = string.format(
      '{"status":"firing","labels":{"alertname":"BenchNew","instance":"r%d-t%d-n%d-%d:9100","job":"node","severity":"warning"},"annotations":{"summary":"bench alert","description":"load test"},"startsAt":"2026-11-22T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus:9090/graph"}',
      run_id, thread_id, counter, i)
  end
  local body = '{"version":"4","groupKey":"{}:{alertname=\\"BenchNew\\"}","truncatedAlerts":0,"status":"firing","receiver":"relay","groupLabels":{"alertname":"BenchNew"},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am:9093","alerts":[' .. table.concat(parts, ",") .. ']}'
  return wrk.format(nil, nil, nil, body)
end
