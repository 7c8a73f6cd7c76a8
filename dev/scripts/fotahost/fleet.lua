--- fotahost.fleet: many simulated devices in one process, over an MQTT
-- broker (development wing; `fotahost cloud fleet-sim`, bench/fleet.lua,
-- spec/fleet_spec.lua).
--
-- Each device is what `fotahost app` runs, minus the process: an
-- fotahost.mcs client on the MQTT transport, the real update policy
-- (fotahost.fota: download, MD5, signature when keys are set, journal,
-- verify, commit) with a state directory of its own, flashing the record
-- board (fotahost.recordboard: the image goes to DIR/<id>/chip/flash.bin).
-- Ids and keys are derived, so the cloud can be told them without a list:
-- device i (1..n) is PREFIX0001 with key PREFIX0001-key.
--
--     sched.run(function()
--       local f = fleet.start{ n = 1000, broker = "mqtt://127.0.0.1:1883",
--                              api = "http://127.0.0.1:8080", dir = "/tmp/fleet" }
--       f.wait_connected()
--       ...
--       print(f.summary())
--     end)

local sched = require "fotahost.sched"
local sys = require "fotahost.sys"
local mcs = require "fotahost.mcs"
local fota = require "fotahost.fota"
local config = require "fotahost.fota.config"
local record = require "fotahost.recordboard"

local M = {}

M.PREFIX = "sim"

--- Device i's id and key.
function M.device(prefix, i)
  local id = ("%s%04d"):format(prefix or M.PREFIX, i)
  return id, id .. "-key"
end

local function mkdir(path)
  local ok, err = sys.mkdir(path, tonumber("700", 8)) -- (as mkdir -p: one that exists is fine)
  if not ok then error(("mkdir %s: %s"):format(path, err), 0) end
end

-- The config `fotahost app` would read for device i.
local function device_config(o, i, ddir)
  local id, key = M.device(o.prefix, i)
  local c, err = config.check({
    device_id = id, device_key = key, api = o.api,
    board = "record", state_dir = ddir .. "/state", volatile_state_ok = true,
    heartbeat = o.heartbeat or 30, backoff_cap = o.backoff_cap or 5,
    http = { retries = 3 }, trusted_keys = o.trusted_keys,
    transport = "mqtt", mqtt = { url = o.broker, username = o.username, password = o.password },
  }, "fleet device " .. id)
  if not c then error(err, 0) end
  return c
end

-- One device: its policy on the record board, its client, its counters in `f`.
local function start_device(f, o, i)
  local ddir = ("%s/%s"):format(o.dir, (M.device(o.prefix, i)))
  mkdir(ddir)
  mkdir(ddir .. "/chip")
  local c = device_config(o, i, ddir)
  local policy = record.attach(fota.new(c), ddir .. "/chip")
  local d = { id = c.device_id, chip = ddir .. "/chip", policy = policy }
  policy.on_status = function(msg)
    d.status = msg
    if msg == "done" then f.done = f.done + 1
    elseif msg:find("^failed: ") then f.failed = f.failed + 1 end
    if f.on_status then f.on_status(d, msg) end
  end
  policy:recover()
  local cloud = mcs.register{ device_id = c.device_id, device_key = c.device_key, api = c.api,
    heartbeat = c.heartbeat, backoff_cap = c.backoff_cap, http = c.http,
    transport = require "fotahost.mcs.mqtt_channel", mqtt = c.mqtt }
  cloud:on_state(function(state)
    if state == "connected" and not d.connected then
      d.connected, f.connected = true, f.connected + 1
    elseif state ~= "connected" and d.connected then
      d.connected, f.connected = false, f.connected - 1
    end
  end)
  policy:attach(cloud)
  cloud:on("FOTA", function(value) policy:push(value) end)
  cloud:on_unreadable("FOTA", function(why) policy:status("failed: " .. why) end)
  d.cloud = cloud
  return d
end

--- Starts `o.n` devices (inside sched.run). `o`: n, broker (URL), api
-- (the cloud's URL), dir (each device's state and record board under
-- dir/<id>), prefix, and optionally username/password (one broker account
-- for all), trusted_keys, heartbeat, backoff_cap. Returns the fleet:
-- devices, connected, done, failed, wait_connected(timeout), summary().
function M.start(o)
  record.add()
  mkdir(o.dir)
  local f = { devices = {}, connected = 0, done = 0, failed = 0, started = sched.now() }
  for i = 1, o.n do
    f.devices[i] = start_device(f, o, i)
    -- let the ones started connect while the rest are made
    if i % 50 == 0 then sched.yield() end
  end
  --- Waits until every device is connected; true, or nil after `timeout` s.
  function f.wait_connected(timeout)
    local deadline = sched.now() + (timeout or math.huge)
    while f.connected < o.n do
      if sched.now() > deadline then return nil end
      sched.sleep(0.05)
    end
    return true
  end
  --- One line: how many devices are connected, how many updates ended done or failed.
  function f.summary()
    return ("fleet: %d devices, %d connected, %d updates done, %d failed, up %.1f s")
      :format(o.n, f.connected, f.done, f.failed, sched.now() - f.started)
  end
  return f
end

return M
