-- bench/fleet.lua: a fleet over MQTT. A mosquitto on a free local port,
-- the local cloud (firmware files, version reports), and
-- `fotahost cloud fleet-sim N` (N devices in one process, each with the
-- real update policy on the record board). One firmware is pushed to all
-- at once, by publishing each device's FOTA command on its topic, timed
-- from the first publish to N `done` statuses seen on the broker; then
-- another by the cloud's own rollout through the broker (`cloud serve
-- --mqtt`: a canary of 10, then batches of 20%, each when the one before
-- is done), timed from its start to its state "completed". Then one
-- device on the virtual board (the simulated chip, bit-banged): from the
-- push to its `done` after a verified flash, over MQTT (published on the
-- broker, the status seen there) and over the TCP channel (the cloud's
-- admin push, the status seen at the cloud), runs interleaved.
--
--   fotahost bench/fleet.lua [N [runs]]      (default 1000 devices, 3 runs)
local sched = require "fotahost.sched"
local http = require "fotahost.http"
local ihex = require "fotahost.ihex"
local mqtt = require "fotahost.mqtt"
local tcp = require "fotahost.tcp"

local N = math.tointeger(tonumber(arg[1])) or 1000
local RUNS = math.tointeger(tonumber(arg[2])) or 3
local bin = arg[-1] or "fotahost"
local DONE_WITHIN = 300

local function sh(cmd) assert(os.execute(cmd), cmd) end
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end
local dir = assert(io.popen("mktemp -d /tmp/fotahost-bench-fleet-XXXXXX")):read("l")
for _, d in ipairs({ "fw", "fleet", "sim1", "sim2", "state1", "state2" }) do sh("mkdir -p " .. q(dir .. "/" .. d)) end

local function free_port()
  local s <close> = assert(tcp.listen("127.0.0.1", 0))
  local _, port = s:getsockname()
  return port
end

-- Images: random code-sized data.
math.randomseed(1000)
local function image(version)
  local t = {}
  for i = 1, 4096 do t[i] = string.char(math.random(0, 254)) end
  local path = ("%s/fw/%s.hex"):format(dir, version)
  assert(ihex.from_binary(table.concat(t), 0):write(path))
  return ("--firmware %s=%s"):format(version, path)
end
local fw_args = { image("fleet4"), image("staged4") }
for r = 1, RUNS do
  fw_args[#fw_args + 1] = image("mqtt4-" .. r)
  fw_args[#fw_args + 1] = image("tcp4-" .. r)
end

-- Processes: each writes its pid to DIR/NAME.pid; those that watch stdin
-- stop when it closes.
local procs, pids = {}, {}
local function start(name, cmd)
  procs[name] = assert(io.popen(("sh -c %s > %s/%s.out 2> %s/%s.err"):format(
    q(("echo $$ > %s/%s.pid; exec %s"):format(dir, name, cmd)), dir, name, dir, name), "w"))
end
local function wait_file(path, pattern, within)
  local deadline = os.time() + (within or 30)
  while os.time() <= deadline do
    local m = (read(path) or ""):match(pattern)
    if m then return m end
    os.execute("sleep 0.02")
  end
  error("timed out waiting for " .. pattern .. " in " .. path .. ":\n" .. (read(path) or ""))
end
local function pid(name)
  pids[name] = pids[name] or math.tointeger(tonumber(wait_file(("%s/%s.pid"):format(dir, name), "(%d+)")))
  return pids[name]
end
local function mem(name)
  local t = {}
  for line in io.lines("/proc/" .. pid(name) .. "/status") do
    local k, v = line:match("^(%w+):%s+(%d+) kB")
    if k then t[k] = tonumber(v) end
  end
  return t
end

local r = {}
local api, broker
local ok, err = pcall(sched.run, function()
  -- The broker: anonymous, plain, every message kept for a device away.
  local port = free_port()
  broker = "mqtt://127.0.0.1:" .. port
  write(dir .. "/mosquitto.conf", table.concat({ "persistence false", "log_dest file " .. dir .. "/mosquitto.log",
    "log_type error", "log_type warning", "log_type notice", "log_type information", "user root",
    "max_queued_messages 1000",
    "listener " .. port .. " 127.0.0.1", "allow_anonymous true", "" }, "\n"))
  start("broker", "mosquitto -c " .. q(dir .. "/mosquitto.conf"))
  wait_file(dir .. "/mosquitto.log", " running")

  start("cloud", ("%s cloud serve --port 0 --tcp-port 0 --spacing 0 --max-connections 1100 --mqtt %s"
    .. " --token-file %s/token --firmware-dir %s/cfw"
    .. " --device OneMqtt:OneMqttKey1 --device OneTcp:OneTcpKey12 %s --watch-stdin")
    :format(bin, broker, dir, dir, table.concat(fw_args, " ")))
  api = wait_file(dir .. "/cloud.out", "cloud (http://%S+) tcp")

  local headers = assert(require("fotahost.mcs_cloud").admin_headers(api, nil, dir .. "/token"))
  local function admin(method, path, value)
    return assert(http.json(method, api .. "/admin" .. path, value, { headers = headers }))
  end

  -- The one-device boards and apps (fotahost app, as a board runs it).
  local function one_device(k, id, key, transport)
    start("board" .. k, ("%s board --sim %s/sim%d"):format(bin, dir, k))
    write(("%s/app%d.lua"):format(dir, k), ("return { device_id = %q, device_key = %q, api = %q, board = 'sim',"
      .. " sim_dir = %q, state_dir = %q, volatile_state_ok = true, transport = %q, mqtt = { url = %q } }")
      :format(id, key, api, ("%s/sim%d"):format(dir, k), ("%s/state%d"):format(dir, k), transport, broker))
    start("app" .. k, ("env FOTAHOST_CONFIG=%s/app%d.lua FOTAHOST_LOG=stderr %s app"):format(dir, k, bin))
  end
  one_device(1, "OneMqtt", "OneMqttKey1", "mqtt")
  one_device(2, "OneTcp", "OneTcpKey12", "tcp")

  local fleet_cmd = ("env FOTAHOST_LOG=stderr %s cloud fleet-sim %%d --prefix %%s --broker %s --api %s --register"
    .. " --token-file %s/token --dir %s/%%s"):format(bin, broker, api, dir, dir)

  local fws = {}
  for _, f in ipairs(admin("GET", "/firmwares").firmwares) do fws[f.version] = f end
  local function command(version)
    local f = fws[version]
    return ("%d,FOTA,%s,%s,%s"):format(os.time() * 1000, version, f.md5, f.url)
  end

  -- the controller: publishes the commands, reads every device's statuses
  local ctl = assert(mqtt.connect{ url = broker, client_id = "bench-ctl", clean_session = true, max_queue = 100000 })
  assert(ctl:subscribe("mcs/+/+/fota_status", 1))
  local function next_status(within)
    local topic, payload = ctl:receive(within)
    if not topic then error("no status for " .. within .. " s: " .. tostring(payload)) end
    return topic:match("^mcs/([^/]+)/"), payload:match("^[^,]*,fota_status,(.*)$")
  end

  -- A fleet of one first: the simulator's own footprint.
  start("fleet1", fleet_cmd:format(1, "solo", "fleet1"))
  wait_file(dir .. "/fleet1.out", "devices connected")
  sched.sleep(0.5)
  r.base = mem("fleet1").VmRSS
  procs.fleet1:close() -- its stdin closed: it stops
  procs.fleet1 = nil

  start("fleet", fleet_cmd:format(N, "sim", "fleet"))
  r.connected_in = tonumber(wait_file(dir .. "/fleet.out", "devices connected in (%S+) s", 120))
  sched.sleep(1)
  r.idle = mem("fleet").VmRSS
  r.broker_idle = mem("broker").VmRSS

  -- Pushes `version` to devices first..last, one publish each; returns
  -- when each has a final status: the number done and failed.
  local function push_all(version, first, last)
    for i = first, last do
      local id = ("sim%04d"):format(i)
      assert(ctl:publish(("mcs/%s/%s-key/FOTA"):format(id, id), command(version), 1))
    end
    local final, ndone, nfailed = {}, 0, 0
    while ndone + nfailed < last - first + 1 do
      local id, status = next_status(DONE_WITHIN)
      if not final[id] and status == "done" then final[id], ndone = true, ndone + 1
      elseif not final[id] and status and status:find("^failed: ") then
        final[id], nfailed = true, nfailed + 1
        io.stderr:write("bench/fleet.lua: ", id, ": ", status, "\n")
      end
    end
    return ndone, nfailed
  end

  -- the fleet at once: one publish per device, then N done statuses
  local t0 = sched.now()
  r.done, r.failed = push_all("fleet4", 1, N)
  r.fleet_time = sched.now() - t0

  -- the cloud's rollout through the broker: a canary of 10, then batches
  -- of 20%, each once the one before is all done (the controller, idle
  -- meanwhile, is closed and connected again after)
  ctl:close()
  local ids = {}
  for i = 1, N do ids[i] = ("sim%04d"):format(i) end
  t0 = sched.now()
  admin("POST", "/rollout", { firmware = "staged4", devices = ids, canary = 10, batch = 20, max_failures = 5,
    step_timeout = DONE_WITHIN })
  local ro
  repeat
    sched.sleep(0.1)
    ro = admin("GET", "/rollout")
  until ro.state ~= "running"
  r.staged_time = sched.now() - t0
  r.staged_state, r.staged_batches = ro.state, #ro.batches
  r.staged_done, r.staged_failed = ro.counts.done + ro.counts.skipped, ro.counts.failed + ro.counts.timeout
  if ro.state ~= "completed" then error("the rollout ended " .. ro.state .. ": " .. tostring(ro.reason)) end
  ctl = assert(mqtt.connect{ url = broker, client_id = "bench-ctl", clean_session = true, max_queue = 100000 })
  assert(ctl:subscribe("mcs/+/+/fota_status", 1))
  r.fleet_peak = mem("fleet").VmHWM
  r.broker_peak = mem("broker").VmHWM
  r.cloud_peak = mem("cloud").VmHWM

  -- one device on the simulated chip, MQTT and TCP in turn
  wait_file(dir .. "/app1.err", "connected to the command server mqtt")
  while not admin("GET", "/devices/OneTcp").connected do sched.sleep(0.05) end
  r.mqtt, r.tcp = {}, {}
  local seen_tcp = 0
  for run = 1, RUNS do
    local t = sched.now()
    assert(ctl:publish("mcs/OneMqtt/OneMqttKey1/FOTA", command("mqtt4-" .. run), 1))
    while true do
      local id, status = next_status(60)
      if id == "OneMqtt" and status == "done" then break end
      if id == "OneMqtt" and status and status:find("^failed") then error("OneMqtt: " .. status) end
    end
    r.mqtt[run] = sched.now() - t

    t = sched.now()
    admin("POST", "/devices/OneTcp/fota", { version = "tcp4-" .. run })
    while true do
      local list = admin("GET", "/devices/OneTcp/datapoints?channel=fota_status").datapoints
      local point = list[#list]
      local value = point and (point.values and point.values.value or point.value)
      if #list > seen_tcp and value == "done" then seen_tcp = #list break end
      if value and value:find("^failed") then error("OneTcp: " .. value) end
      sched.sleep(0.005)
    end
    r.tcp[run] = sched.now() - t
  end
  ctl:close()
end)

-- the fleet first (its summary counts the devices still connected), then
-- what does not watch stdin (the apps, the boards, the broker) by pid
if procs.fleet then pcall(procs.fleet.close, procs.fleet) procs.fleet = nil end
for _, name in ipairs({ "app1", "app2", "board1", "board2", "broker" }) do
  local p = read(("%s/%s.pid"):format(dir, name))
  if p then os.execute("kill " .. math.tointeger(tonumber(p)) .. " 2>/dev/null") end
end
for _, p in pairs(procs) do pcall(p.close, p) end
local fleet_summary = (read(dir .. "/fleet.out") or ""):match("(fleet: %d+ devices, [^\n]*)")
if not ok then
  io.stderr:write("bench/fleet.lua: ", tostring(err), "\n")
  for _, name in ipairs({ "fleet", "cloud", "app1", "app2" }) do
    os.execute(("tail -3 %s/%s.err >&2 2>/dev/null"):format(q(dir), name))
  end
  os.execute("rm -rf " .. q(dir))
  os.exit(1)
end
os.execute("rm -rf " .. q(dir))

local function median(t)
  local s = table.move(t, 1, #t, 1, {})
  table.sort(s)
  return s[(#s + 1) // 2]
end
local function row(what, fmt, ...) print(("%-58s " .. fmt):format(what, ...)) end
print(("Fleet over MQTT: %d simulated devices (record board), one mosquitto, the local cloud"):format(N))
row("all connected (fleet-sim start to its line), s", "%10.1f", r.connected_in)
row(("all at once: first publish to %d/%d done on the broker, s"):format(r.done, N), "%10.2f", r.fleet_time)
row("  failed", "%10d", r.failed)
row(("cloud rollout, 10 then 20%% (%d batches): %d/%d done, s"):format(r.staged_batches,
  r.staged_done, N), "%10.2f", r.staged_time)
row("  failed", "%10d", r.staged_failed)
row("broker RSS idle / peak (VmHWM), KiB", "%10d %10d", r.broker_idle, r.broker_peak)
row("cloud peak RSS (VmHWM), KiB", "%10d", r.cloud_peak)
row("simulator RSS: 1 device / N idle / N peak, KiB", "%10d %10d %10d", r.base, r.idle, r.fleet_peak)
row("per simulated device: idle / peak, KiB", "%10.1f %10.1f", (r.idle - r.base) / (N - 1),
  (r.fleet_peak - r.base) / (N - 1))
if fleet_summary then print("  " .. fleet_summary) end
print(("One device on the simulated chip, 4 KB image (%d runs each, interleaved)"):format(RUNS))
row("publish on the broker to done seen there (MQTT), median s", "%10.2f", median(r.mqtt))
row("cloud push to done at the cloud (TCP channel), median s", "%10.2f", median(r.tcp))
row("  min-max, MQTT / TCP, s", "%4.2f-%4.2f %4.2f-%4.2f", math.min(table.unpack(r.mqtt)),
  math.max(table.unpack(r.mqtt)), math.min(table.unpack(r.tcp)), math.max(table.unpack(r.tcp)))
