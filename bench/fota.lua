-- bench/fota.lua: the whole FOTA path on the virtual board, timed: from the
-- push (the cloud's admin call) to the "done" status the app sends after a
-- verified flash, for a 4 KB and a 28 KB image; and the app's memory, idle
-- and at its peak during the updates. Processes: the local cloud, the
-- virtual board (simavr running the MCU), and the app (fotahost app).
--
--   fotahost bench/fota.lua [runs [app-command]]
--
-- app-command runs the app instead of this fotahost (bench/board.sh runs
-- the board's stack, built for x86-64 musl, that way).
local sched = require "fotahost.sched"
local http = require "fotahost.http"
local ihex = require "fotahost.ihex"

local RUNS = tonumber(arg[1]) or 3
local bin = arg[-1] or "fotahost"
local app_bin = arg[2] or bin
local ID, KEY = "BenchDev", "BenchKey1234"

local function sh(cmd) assert(os.execute(cmd), cmd) end
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local dir = assert(io.popen("mktemp -d /tmp/fotahost-bench-XXXXXX")):read("l")
sh("mkdir -p " .. q(dir .. "/sim") .. " " .. q(dir .. "/state") .. " " .. q(dir .. "/fw"))

-- Images: random code-sized data, as a compiler would leave no 0xFF pages.
math.randomseed(7688)
local function image(path, size)
  local t = {}
  for i = 1, size do t[i] = string.char(math.random(0, 254)) end
  assert(ihex.from_binary(table.concat(t), 0):write(path))
end
local args = {}
for r = 1, RUNS do
  for _, kb in ipairs({ 4, 28 }) do
    local v = ("img%d-%d"):format(kb, r)
    image(("%s/fw/%s.hex"):format(dir, v), kb * 1024 - (kb == 28 and 2 or 0))
    args[#args + 1] = ("--firmware %s=%s/fw/%s.hex"):format(v, dir, v)
  end
end

local procs = {}
local function start(name, cmd)
  procs[#procs + 1] = assert(io.popen(("exec %s > %s/%s.out 2> %s/%s.err"):format(cmd, dir, name, dir, name), "w"))
end
local function wait_file(path, pattern)
  for _ = 1, 1000 do
    local f = io.open(path)
    local text = f and f:read("a") or ""
    if f then f:close() end
    local m = text:match(pattern)
    if m then return m end
    os.execute("sleep 0.01")
  end
  error("timed out waiting for " .. path)
end

start("cloud", ("%s cloud serve --port 0 --tcp-port 0 --device %s:%s --firmware-dir %s/cfw %s --watch-stdin")
  :format(bin, ID, KEY, dir, table.concat(args, " ")))
local url = wait_file(dir .. "/cloud.out", "cloud (http://%S+) tcp")
start("board", ("%s board --sim %s/sim"):format(bin, dir))
local f = assert(io.open(dir .. "/config.lua", "w"))
f:write(("return { device_id = %q, device_key = %q, api = %q, board = 'sim', sim_dir = %q, state_dir = %q }")
  :format(ID, KEY, url, dir .. "/sim", dir .. "/state"))
f:close()
start("app", ("sh -c 'echo $$ > %s/app.pid; exec env FOTAHOST_CONFIG=%s/config.lua FOTAHOST_LOG=stderr"
  .. " %s app'"):format(dir, dir, app_bin))

local function app_pid()
  return wait_file(dir .. "/app.pid", "(%d+)")
end
local function mem(pid)
  local t = {}
  for line in io.lines("/proc/" .. pid .. "/status") do
    local k, v = line:match("^(%w+):%s+(%d+) kB")
    if k then t[k] = tonumber(v) end
  end
  return t
end

local results = { [4] = {}, [28] = {} }
local idle, peak
local ok, err = pcall(sched.run, function()
  local function admin(method, path, value)
    return assert(http.json(method, url .. "/admin" .. path, value,
      { headers = assert(require("fotahost.mcs_cloud").admin_headers(url)) }))
  end
  while not admin("GET", "/devices/" .. ID).connected do sched.sleep(0.05) end
  sched.sleep(1)
  local pid = app_pid()
  idle = mem(pid)
  local seen = 0
  local function statuses()
    local d = admin("GET", "/devices/" .. ID .. "/datapoints?channel=fota_status")
    return d.datapoints or d
  end
  for r = 1, RUNS do
    for _, kb in ipairs({ 4, 28 }) do
      local v = ("img%d-%d"):format(kb, r)
      local t0 = sched.now()
      admin("POST", "/devices/" .. ID .. "/fota", { version = v })
      while true do
        local list = statuses()
        local last = list[#list]
        local value = last and (last.values and last.values.value or last.value)
        if #list > seen and value == "done" then seen = #list break end
        if value and value:find("^failed") then error(v .. ": " .. value) end
        sched.sleep(0.005)
      end
      table.insert(results[kb], sched.now() - t0)
    end
  end
  peak = mem(pid)
end)
-- the app and the board do not watch stdin: stop them first
local apf = io.open(dir .. "/app.pid")
if apf then os.execute("kill " .. apf:read("l") .. " 2>/dev/null") apf:close() end
os.execute("pkill -f " .. q(dir) .. " 2>/dev/null")
for _, p in ipairs(procs) do pcall(p.close, p) end
if not ok then
  io.stderr:write("bench/fota.lua: ", tostring(err), "\n")
  os.execute("tail -5 " .. q(dir .. "/app.err") .. " >&2")
  os.execute("rm -rf " .. q(dir))
  os.exit(1)
end
os.execute("rm -rf " .. q(dir))

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end
print(("%-52s %10s %10s"):format("FOTA on the virtual board (" .. RUNS .. " runs each)", "4 KB", "28 KB"))
print(("%-52s %10.2f %10.2f"):format("push to verified flash (\"done\"), median s",
  median(results[4]), median(results[28])))
print(("%-52s %10.2f %10.2f"):format("  slowest, s", results[4][#results[4]], results[28][#results[28]]))
print(("%-52s %10d"):format("app RSS idle (connected), KiB", idle.VmRSS))
print(("%-52s %10d"):format("  of which private (RssAnon), KiB", idle.RssAnon))
print(("%-52s %10d"):format("app peak RSS over the updates (VmHWM), KiB", peak.VmHWM))
print(("%-52s %10d"):format("  private after the updates (RssAnon), KiB", peak.RssAnon))
