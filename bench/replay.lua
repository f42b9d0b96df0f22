-- Replays raw HTTP requests prepared by bench/load.py, each once and in order (or cycling).
-- Arguments (after `--`): <requests file> <report file> <cycle 0|1>. One wrk thread.
-- The file holds records "<byte length>\n<raw request>". The report is JSON: requests issued,
-- 2xx answers, answers by status, socket errors, duration and latency percentiles.

-- Globals, not locals: done() reads them from the thread with thread:get().
requests = {}
index = 0
issued = 0
ok = 0
statuses = {}
cycle = false
exhausted = 0
report_path = nil
thread_ref = nil

function setup(thread)
  thread_ref = thread
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local data = file:read("*a")
  file:close()
  report_path = args[2]
  cycle = args[3] == "1"
  local position = 1
  while position <= #data do
    local newline = string.find(data, "\n", position, true)
    local length = tonumber(string.sub(data, position, newline - 1))
    requests[#requests + 1] = string.sub(data, newline + 1, newline + length)
    position = newline + length + 1
  end
end

function request()
  index = index + 1
  if index > #requests then
    if cycle then
      index = 1
    else
      exhausted = 1
      index = #requests
    end
  end
  issued = issued + 1
  return requests[index]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status >= 200 and status < 300 then
    ok = ok + 1
  end
end

function done(summary, latency, _)
  local thread = thread_ref
  local parts = {}
  for status, count in pairs(thread:get("statuses")) do
    parts[#parts + 1] = string.format('"%d": %d', status, count)
  end
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  local file = assert(io.open(thread:get("report_path"), "w"))
  file:write(string.format(
    '{"issued": %d, "ok": %d, "statuses": {%s}, "errors": %d, "exhausted": %s, '
      .. '"duration_us": %d, "p50_us": %d, "p99_us": %d}',
    thread:get("issued"), thread:get("ok"), table.concat(parts, ", "), errors,
    thread:get("exhausted") == 1 and "true" or "false", summary.duration,
    latency:percentile(50), latency:percentile(99)))
  file:close()
end
