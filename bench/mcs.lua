-- bench/mcs.lua: the MCS client's memory, idle and after 10,000 commands,
-- against the local cloud (a separate process). This process is the
-- device: everything the app loads is loaded (scheduler, HTTP on libcurl,
-- TCP, JSON, logging, the client).
--
--   fotahost bench/mcs.lua [N]
local sched = require "fotahost.sched"
local http = require "fotahost.http"
local mcs = require "fotahost.mcs"

local N = tonumber(arg[1]) or 10000
local ID, KEY = "BenchDev", "BenchKey1234"
local bin = arg[-1] or "fotahost"

local function status()
  local t = {}
  for line in io.lines("/proc/self/status") do
    local k, v = line:match("^(%w+):%s+(%d+) kB")
    if k then t[k] = tonumber(v) end
  end
  return t
end

local dir = assert(io.popen("mktemp -d /tmp/fotahost-bench-XXXXXX")):read("l")
local cloud = assert(io.popen(("%s cloud serve --port 0 --tcp-port 0 --device %s:%s --firmware-dir %s/fw"
  .. " --spacing 0 --watch-stdin > %s/out 2> %s/err"):format(bin, ID, KEY, dir, dir, dir), "w"))
local url
for _ = 1, 500 do
  local f = io.open(dir .. "/out")
  local line = f and f:read("l")
  if f then f:close() end
  url = line and line:match("^cloud (http://%S+) tcp")
  if url then break end
  os.execute("sleep 0.01")
end
assert(url, "the cloud did not start")
local auth = assert(require("fotahost.mcs_cloud").admin_headers(url)) -- written before the ready line

require("fotahost.log").configure({ level = "warn" })
local idle, after, after_gc, again, took
sched.run(function()
  local c = mcs.register({ device_id = ID, device_key = KEY, api = url, heartbeat = 5 })
  local n = 0
  c:on("LED", function() n = n + 1 end)
  while c.state ~= "connected" do sched.sleep(0.01) end
  sched.sleep(0.5)
  collectgarbage()
  collectgarbage()
  idle = status()
  idle.lua = collectgarbage("count")
  local prefix = ID .. "," .. KEY .. ","
  local t0 = sched.now()
  local batch = 100
  local function round(from)
  for i = from, from + N - 1, batch do
    local lines = {}
    for j = i, math.min(from + N - 1, i + batch - 1) do
      lines[#lines + 1] = prefix .. j .. ",LED," .. (j % 2) .. "\n"
    end
    assert(http.json("POST", url .. "/admin/devices/" .. ID .. "/commands",
      { raw = table.concat(lines), chunks = { 1000, 1000, 1000 }, gap_ms = 0 }, { headers = auth }))
  end
  while n < from + N - 1 do sched.sleep(0.01) end
  end
  round(1)
  took = sched.now() - t0
  after = status()
  collectgarbage()
  collectgarbage()
  after_gc = status()
  after_gc.lua = collectgarbage("count")
  -- a second round: a leak would grow again by as much
  round(N + 1)
  if os.getenv("MCS_ROUNDS") then
    for r = 3, tonumber(os.getenv("MCS_ROUNDS")) do
      round((r - 1) * N + 1)
      collectgarbage() collectgarbage()
      io.stderr:write(("round %d: Lua heap %.0f KiB, RssAnon %d KiB\n")
        :format(r, collectgarbage("count"), status().RssAnon))
    end
  end
  collectgarbage()
  collectgarbage()
  again = status()
  again.lua = collectgarbage("count")
  c:close()
end)
cloud:close()
os.execute("rm -rf " .. dir)

print(("%-44s %10s %10s %10s %10s"):format("MCS client, x86-64 (" .. N .. " commands)", "VmRSS", "RssAnon",
  "RssFile", "Lua heap"))
local function row(name, s)
  print(("%-44s %10d %10d %10d %10s"):format(name, s.VmRSS, s.RssAnon, s.RssFile,
    s.lua and ("%.0f"):format(s.lua) or "-"))
end
row("idle, connected, KiB", idle)
row("after " .. N .. " commands, KiB", after)
row("after that and a full GC, KiB", after_gc)
row("after " .. N .. " more and a full GC, KiB", again)
print(("%-44s %10.0f"):format("commands handled per second (incl. cloud)", N / took))
print(("%-44s %10d"):format("peak RSS of the process, KiB", after_gc.VmHWM))

-- A flood: a hostile server process (spec/support/mcs_flood_server.lua)
-- sends 100,000 commands (LED and FOTA, no terminator) in one burst, back
-- to back. What matters: memory stays flat (RSS after the burst and a
-- full GC, against before it) and heartbeats keep their interval.
local BURST = tonumber(os.getenv("MCS_BURST")) or 100000
local HB = 0.5
local fdir = assert(io.popen("mktemp -d /tmp/fotahost-bench-XXXXXX")):read("l")
local report = fdir .. "/report"
local flood = assert(io.popen(("%s spec/support/mcs_flood_server.lua --device %s:%s --count %d --delay 1"
  .. " --report %s > %s/out 2> %s/err"):format(bin, ID, KEY, BURST, report, fdir, fdir), "w"))
local furl
for _ = 1, 500 do
  local f = io.open(fdir .. "/out")
  local line = f and f:read("l")
  if f then f:close() end
  furl = line and line:match("^listening (%S+)")
  if furl then break end
  os.execute("sleep 0.01")
end
assert(furl, "the flood server did not start")
local function read(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end
local before, burst_after, rep, handled, dropped, burst_took
sched.run(function()
  local c = mcs.register({ device_id = ID, device_key = KEY, api = "http://" .. furl, heartbeat = HB })
  local n = 0
  c:on("LED", function() n = n + 1 end)
  c:on("FOTA", function() n = n + 1 end)
  while not read(report):find("connected") do sched.sleep(0.01) end
  collectgarbage()
  collectgarbage()
  before = status()
  local t0 = sched.now() + 1 -- the server floods 1 s (--delay) after the first heartbeat
  repeat
    sched.sleep(0.05)
    rep = read(report)
  until rep:find("\nbeats [^\n]*\n")
  -- then until every command sent has been handled or dropped
  local sent = tonumber(rep:match("\nsent (%d+)"))
  while n + c.dropped + c.ignored < sent do sched.sleep(0.01) end
  burst_took = sched.now() - t0
  handled, dropped = n, c.dropped
  collectgarbage()
  collectgarbage()
  burst_after = status()
  c:close()
end)
flood:close()
os.execute("rm -rf " .. fdir)

local gaps = {}
local last
for v in rep:match("\nbeats ([^\n]*)"):gmatch("%S+") do
  local t = tonumber(v)
  if t > 0 and last then gaps[#gaps + 1] = t - last end
  last = t
end
table.sort(gaps)
print(("%-44s %10s %10s"):format(("burst of %d commands (heartbeat %.1f s)"):format(BURST, HB), "VmRSS", "RssAnon"))
print(("%-44s %10d %10d"):format("before, after a full GC, KiB", before.VmRSS, before.RssAnon))
print(("%-44s %10d %10d"):format("after the burst and a full GC, KiB", burst_after.VmRSS, burst_after.RssAnon))
print(("%-44s %10d %10d"):format("growth, KiB", burst_after.VmRSS - before.VmRSS, burst_after.RssAnon - before.RssAnon))
print(("%-44s %10d (%d dropped) in %.2f s"):format("commands handled", handled, dropped, burst_took))
print(("%-44s %10s"):format("heartbeat gaps during the burst, s (min/median/max)",
  #gaps > 0 and ("%.2f/%.2f/%.2f"):format(gaps[1], gaps[(#gaps + 1) // 2], gaps[#gaps]) or "none"))
