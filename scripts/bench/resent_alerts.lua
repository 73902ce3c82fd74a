-- wrk script: the common production case — Alertmanager re-sending the same
-- groups. 1000 groups of 10 alerts, cycled.
local groups = {}
local counter = 0

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if os.getenv("BENCH_TOKEN") then
    wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
  end
  for g = 1, 1000 do
    local parts = {}
    for i = 1, 10 do
      parts[i] = string.format(
        '{"status":"firing","labels":{"alertname":"BenchResent","instance":"g%d-%d:9100","job":"node","severity":"warning"},"annotations":{"summary":"bench alert","description":"load test"},"startsAt":"2026-11-22T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus:9090/graph"}',
        g, i)
    end
    groups[g] = '{"version":"4","groupKey":"{}:{alertname=\\"BenchResent\\"}","truncatedAlerts":0,"status":"firing","receiver":"relay","groupLabels":{"alertname":"BenchResent"},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am:9093","alerts":[' .. table.concat(parts, ",") .. ']}'
  end
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, groups[(counter % 1000) + 1])
end
