--- fotahost.mcs_cloud.rollout_runner: the local cloud runs one rollout
-- (fotahost.mcs_cloud.rollout, the state machine) at a time: it pushes
-- through push_fota(), as the admin API's push does, feeds the machine
-- the fota_status points and version reports devices send, and saves it
-- (cloud-rollout.json in the firmware directory) on every change, so a
-- restarted cloud goes on where it stopped. Its admin routes are under
-- /admin/rollout; its functions are methods of the cloud object
-- (fotahost.mcs_cloud installs them).

local sched = require "fotahost.sched"
local sys = require "fotahost.sys"
local cjson = require "cjson.safe"
local logmod = require "fotahost.log"
local C = require "fotahost.mcs_cloud.common"
local R = require "fotahost.mcs_cloud.rollout"

local log = logmod.get("cloud")
local fmt = string.format
local array, as_text, send_json, fail, decode_body = C.array, C.as_text, C.send_json, C.fail, C.decode_body

local RR = {}
local methods = {}
RR.methods = methods

RR.TICK = 0.5          -- s between two looks at the timeouts and the devices that came back
RR.VERSION_GRACE = 2   -- s a connected device has to report its version before it is pushed

local function path(self) return self.firmware_dir .. "/" .. C.ROLLOUT end

--- Writes the rollout when it changed since the last save: the new file
-- replaces the old one whole (a cut leaves one or the other). Every
-- change is an event, not only a new state: a device's timeout, a push
-- that could not be sent, the next batch - the console shows progress.
function methods:rollout_save()
  local ro = self.rollout
  local text = C.encode(ro) .. "\n"
  if text ~= self._rollout_shown then
    self._rollout_shown = text
    self:emit("rollout", { firmware = ro.firmware, state = ro.state, reason = ro.reason })
  end
  if text == self._rollout_saved then return end
  local ok, err = sys.write_file(path(self), text)
  if not ok then
    log.warn("rollout not saved: %s", err)
    return
  end
  self._rollout_saved = text
end

--- Reads the rollout a previous run saved, if any (at new()).
function methods:rollout_load()
  local text = sys.read_file(path(self), 64 << 20)
  if not text then return end
  local ro, err = R.check(cjson.decode(text))
  if not ro then
    log.warn("%s: %s; ignored", path(self), err)
    return
  end
  if R.active(ro) then
    R.restarted(ro, sys.time())
    log.info("rollout of %s resumed (%s, batch %d of %d)", ro.firmware, ro.state, ro.current, #ro.batches)
  end
  self.rollout, self._rollout_saved, self._rollout_shown = ro, text, text
end

-- What the cloud knows of device `id`, for R.advance.
function methods:rollout_fleet(id)
  local dev = self.devices[id]
  if not dev then return nil end
  -- since when it is connected: by TCP, else through the broker
  local since = dev.conn and dev.conn.since or dev.mqtt_since
  -- A device reports its version on connecting: one already on the
  -- firmware must be skipped, not pushed again.
  local ready = since ~= nil and ((dev.version_at or 0) >= since or sys.time() - since >= RR.VERSION_GRACE)
  return { version = dev.version, ready = ready }
end

local function push_one(self, ro, id)
  -- paused or aborted since the push was asked for (this task ran later):
  -- it waits, as a device whose push could not be sent does
  if self.rollout ~= ro or ro.state ~= "running" then return R.push_failed(ro, id) end
  local dev, fw = self.devices[id], self.fw_by_version[ro.firmware]
  if not fw then
    -- (a restarted cloud whose firmware file is gone)
    R.push_failed(ro, id)
    R.abort(ro, sys.time(), "firmware " .. ro.firmware .. " is no longer registered")
    log.warn("rollout of %s aborted: %s", ro.firmware, ro.reason)
    return self:rollout_save()
  end
  local line, err = self:push_fota(dev, fw.version, fw.md5, self:firmware_url(fw))
  if self.rollout ~= ro then return end
  if line then
    log.info("rollout %s: pushed to %s (batch %d)", ro.firmware, id, ro.devices[id].batch)
  else
    log.warn("rollout %s: push to %s not sent: %s; it is pushed when it connects again", ro.firmware, id, err)
    R.push_failed(ro, id)
    self:rollout_save()
  end
end

--- Moves the rollout on: timeouts, the next batch, the pushes due.
function methods:rollout_tick()
  local ro = self.rollout
  if not R.active(ro) or self._closed then return end
  local was = ro.state
  local pushes = R.advance(ro, function(id) return self:rollout_fleet(id) end, sys.time())
  if ro.state ~= was then
    log.info("rollout of %s %s%s", ro.firmware, ro.state, ro.reason and ": " .. ro.reason or "")
  end
  self:rollout_save()
  for _, id in ipairs(pushes) do
    sched.spawn({ name = "rollout push " .. id, log_errors = true }, push_one, self, ro, id)
  end
end

--- A data point from `dev`: its fota_status values are outcomes.
function methods:rollout_point(dev, channel, values)
  local ro = self.rollout
  if channel ~= "fota_status" or not ro then return end
  if R.on_status(ro, dev.id, as_text(values.value), sys.time()) then self:rollout_tick() end
end

--- A version `dev` reported: an outcome, or what its push waited for.
function methods:rollout_version(dev)
  local ro = self.rollout
  if not ro then return end
  R.on_version(ro, dev.id, dev.version, sys.time())
  self:rollout_tick()
end

--- `dev` connected: pushed once its version report had time to come.
function methods:rollout_connected(dev)
  local ro = self.rollout
  if R.active(ro) and ro.devices[dev.id] then
    sched.after(RR.VERSION_GRACE, function() self:rollout_tick() end, "cloud rollout " .. dev.id)
  end
end

function methods:rollout_start_driver()
  self._rollout_task = sched.every(RR.TICK, function() self:rollout_tick() end, "cloud rollout")
end

---------------------------------------------------------------- admin API

--- The rollout as the admin API shows it.
function methods:rollout_json()
  local ro = self.rollout
  local sum = R.summary(ro)
  local batches = {}
  for k, ids in ipairs(ro.batches) do
    local list = {}
    for i, id in ipairs(ids) do
      local d, dev = ro.devices[id], self.devices[id]
      list[i] = { id = id, state = d.state, why = d.why, connected = dev ~= nil and (dev.conn or dev.mqtt_since) ~= nil,
                  pushed_at = d.pushed_at, ended_at = d.ended_at }
    end
    batches[k] = { number = k, canary = sum.batches[k].canary, size = #ids, counts = sum.batches[k].counts,
                   devices = list }
  end
  return { firmware = ro.firmware, state = ro.state, reason = ro.reason or cjson.null, options = ro.options,
           started_at = ro.started_at, ended_at = ro.ended_at or cjson.null, current_batch = ro.current,
           devices = sum.size, counts = sum.total, batches = array(batches) }
end

local H = {}

-- The device list of a start: "all" (every device, sorted by id: a
-- stable order), or a list of known ids. @return ids | nil, why
local function device_list(self, given)
  if given == nil or given == "all" then
    local ids = table.move(self.device_order, 1, #self.device_order, 1, {})
    table.sort(ids)
    return ids
  end
  if type(given) ~= "table" then return nil, "\"devices\" must be \"all\" or a list of device ids" end
  for i, id in ipairs(given) do
    if type(id) ~= "string" or not self.devices[id] then
      return nil, fmt("devices[%d]: no device %s", i, tostring(id))
    end
  end
  return given
end

function H.start(self, req, res)
  local doc = decode_body(req, res)
  if not doc then return end
  if R.active(self.rollout) then
    return fail(res, 409, fmt("a rollout of %s is %s already: abort it first (fotahost cloud rollout abort)",
      self.rollout.firmware, self.rollout.state))
  end
  local version = as_text(doc.firmware)
  if not version or not self.fw_by_version[version] then
    return fail(res, 400, fmt("unknown firmware version %s: register it first", tostring(version)))
  end
  local ids, err = device_list(self, doc.devices)
  if not ids then return fail(res, 400, err) end
  local ro
  ro, err = R.new({ firmware = version, devices = ids, canary = doc.canary, batch = doc.batch,
                    max_failures = doc.max_failures, step_timeout = doc.step_timeout, now = sys.time() })
  if not ro then return fail(res, 400, err) end
  self.rollout = ro
  log.info("rollout of %s started: %d devices in %d batches", version, #ids, #ro.batches)
  self:rollout_tick()
  return send_json(res, 201, self:rollout_json())
end

function H.status(self, _req, res)
  if not self.rollout then return fail(res, 404, "no rollout yet") end
  return send_json(res, 200, self:rollout_json())
end

local DONE = { pause = "paused", resume = "resumed", abort = "aborted" }

local function operator(action)
  return function(self, _req, res)
    if not self.rollout then return fail(res, 404, "no rollout yet") end
    local ok, err = R[action](self.rollout, sys.time())
    if not ok then return fail(res, 409, err) end
    log.info("rollout of %s %s by the operator", self.rollout.firmware, DONE[action])
    self:rollout_tick()
    self:rollout_save() -- a rollout no longer active is saved here
    return send_json(res, 200, self:rollout_json())
  end
end

RR.ROUTES = {
  { "GET",  "^/admin/rollout$", H.status },
  { "POST", "^/admin/rollout$", H.start },
  { "POST", "^/admin/rollout/pause$", operator("pause") },
  { "POST", "^/admin/rollout/resume$", operator("resume") },
  { "POST", "^/admin/rollout/abort$", operator("abort") },
}

return RR
