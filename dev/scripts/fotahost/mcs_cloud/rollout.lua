--- fotahost.mcs_cloud.rollout: a staged rollout of one firmware to a
-- fleet, as a pure state machine (no I/O, the time given): the cloud
-- (fotahost.mcs_cloud.rollout_runner) feeds it the devices' outcomes and
-- pushes what advance() asks for.
--
-- The devices go in batches: the canaries first (the first N of the
-- list), then batches of P% of the fleet (rounded up, at least 1). A
-- batch starts only when every device of the previous one finished and
-- its failures stayed within max_failures%. Any canary failure aborts; a
-- later batch aborts as soon as its failures exceed max_failures% of its
-- size (the pushes under way finish and are counted; none starts again).
--
-- A device's states: pending (not pushed yet: its batch has not come, or
-- it is offline), pushed (its outcome awaited), done (status "done", or
-- the version reported), failed (status "failed: ..."), timeout (no
-- outcome within step_timeout of its push), skipped (already on the
-- version when its batch came: a success, never pushed). An offline
-- device is pushed when it connects, and its step_timeout starts then:
-- its batch waits for it (status shows it offline; abort to give up).

local R = {}

R.STATES = { "pending", "pushed", "done", "failed", "timeout", "skipped" }
local FINISHED = { done = true, failed = true, timeout = true, skipped = true }
local FAILURE = { failed = true, timeout = true }
R.DEFAULTS = { canary = 1, batch = 25, max_failures = 0, step_timeout = 600 }

local fmt = string.format

local function number_in(v, lo, hi, what, integer)
  local n = tonumber(v)
  if integer then n = n and math.tointeger(n) end
  if not n or n < lo or (hi and n > hi) then
    return nil, fmt("%s %s: %s %s%s expected", what, tostring(v), integer and "an integer" or "a number",
      ">= " .. lo, hi and (" and <= " .. hi) or "")
  end
  return n
end

--- The batches of `ids`: the first `canary` alone, then groups of
-- ceil(batch% of #ids), at least 1.
function R.batches(ids, canary, batch)
  local out, at = {}, 1
  if canary > 0 then
    out[1] = table.move(ids, 1, math.min(canary, #ids), 1, {})
    at = #out[1] + 1
  end
  local size = math.max(1, math.ceil(#ids * batch / 100))
  while at <= #ids do
    out[#out + 1] = table.move(ids, at, math.min(at + size - 1, #ids), 1, {})
    at = at + size
  end
  return out
end

--- A new rollout. opts: firmware (a version), devices (ids, in order),
-- canary, batch (%), max_failures (%), step_timeout (s), now.
-- @return rollout | nil, why
function R.new(opts)
  if type(opts.firmware) ~= "string" or opts.firmware == "" then return nil, "a firmware version is required" end
  local ids = opts.devices
  if type(ids) ~= "table" or #ids == 0 then return nil, "a rollout needs at least one device" end
  local seen = {}
  for _, id in ipairs(ids) do
    if type(id) ~= "string" then return nil, "device ids are strings" end
    if seen[id] then return nil, "device " .. id .. " is listed twice" end
    seen[id] = true
  end
  local o, err = {}
  o.canary, err = number_in(opts.canary or R.DEFAULTS.canary, 0, #ids, "canary", true)
  if not o.canary then return nil, err end
  o.batch, err = number_in(opts.batch or R.DEFAULTS.batch, 1, 100, "batch", false)
  if not o.batch then return nil, err .. " (a percentage)" end
  o.max_failures, err = number_in(opts.max_failures or R.DEFAULTS.max_failures, 0, 100, "max-failures", false)
  if not o.max_failures then return nil, err .. " (a percentage)" end
  o.step_timeout, err = number_in(opts.step_timeout or R.DEFAULTS.step_timeout, 1, nil, "step-timeout", false)
  if not o.step_timeout then return nil, err .. " (seconds)" end
  local ro = { firmware = opts.firmware, options = o, state = "running", started_at = opts.now,
               batches = R.batches(ids, o.canary, o.batch), current = 1, devices = {} }
  for k, batch in ipairs(ro.batches) do
    for _, id in ipairs(batch) do ro.devices[id] = { state = "pending", batch = k } end
  end
  return ro
end

local function abort(ro, why, now)
  ro.state, ro.reason, ro.ended_at = "aborted", why, now
end

-- The failures of batch `k` so far, and its size.
local function failures(ro, k)
  local n = 0
  for _, id in ipairs(ro.batches[k]) do
    if FAILURE[ro.devices[id].state] then n = n + 1 end
  end
  return n, #ro.batches[k]
end

local function canary_batch(ro, k)
  return k == 1 and ro.options.canary > 0
end

-- Aborts when batch k's failures are already too many, whatever the
-- devices still under way do. @return true when it aborted
local function over_threshold(ro, k, now)
  local bad, size = failures(ro, k)
  if canary_batch(ro, k) and bad > 0 then
    abort(ro, fmt("canary failure: %d of %d canaries failed", bad, size), now)
    return true
  end
  if bad * 100 > ro.options.max_failures * size then
    abort(ro, fmt("batch %d: %d of %d devices failed (%.0f%%, more than --max-failures %g%%)",
      k, bad, size, bad * 100 / size, ro.options.max_failures), now)
    return true
  end
  return false
end

local function finished(ro, k)
  for _, id in ipairs(ro.batches[k]) do
    if not FINISHED[ro.devices[id].state] then return false end
  end
  return true
end

--- Moves the rollout on at time `now`: times out the devices pushed too
-- long ago, judges the current batch, starts the next one. `fleet(id)`
-- says what the cloud knows of a device: { version =, ready = connected
-- and its version known }.
-- @return the ids to push now (marked pushed: call push_failed() for a
-- push that could not be sent)
function R.advance(ro, fleet, now)
  local pushes = {}
  if ro.state ~= "running" and ro.state ~= "paused" then return pushes end
  for _, d in pairs(ro.devices) do
    if d.state == "pushed" and now - d.pushed_at >= ro.options.step_timeout then
      d.state, d.why, d.ended_at = "timeout", fmt("no outcome within %g s", ro.options.step_timeout), now
    end
  end
  while true do
    local k = ro.current
    if over_threshold(ro, k, now) then return pushes end
    if not finished(ro, k) then break end
    if k == #ro.batches then
      ro.state, ro.ended_at = "completed", now
      return pushes
    end
    if ro.state == "paused" then return pushes end
    ro.current = k + 1
  end
  if ro.state == "paused" then return pushes end
  for _, id in ipairs(ro.batches[ro.current]) do
    local d, dev = ro.devices[id], fleet(id)
    if d.state == "pending" and dev then
      if dev.version == ro.firmware then
        d.state, d.ended_at = "skipped", now
      elseif dev.ready then
        d.state, d.pushed_at = "pushed", now
        pushes[#pushes + 1] = id
      end
    end
  end
  -- a batch of skipped devices only: the next one may start at once
  if #pushes == 0 and finished(ro, ro.current) then return R.advance(ro, fleet, now) end
  return pushes
end

--- A push advance() asked for could not be sent: the device waits for
-- its next connection.
function R.push_failed(ro, id)
  local d = ro.devices[id]
  if d and d.state == "pushed" then d.state, d.pushed_at = "pending", nil end
end

--- A fota_status value from device `id`. @return true when it changed the rollout
-- A device busy with another update when the push came says "queued: V";
-- the final status it sends next is that other update's, not this one's:
-- ignored until this update's own "downloading" (or its "failed: V was
-- not started", when the one before failed).
function R.on_status(ro, id, value, now)
  local d = ro.devices[id]
  if not d or d.state ~= "pushed" or type(value) ~= "string" then return false end
  if value:find("^queued: ") then
    d.behind = true
    return false
  elseif d.behind then
    if value == "downloading" then d.behind = nil end
    local prefix = "failed: " .. ro.firmware .. " was not started"
    local mine = value:sub(1, #prefix) == prefix
    if not mine then return false end
  end
  if value == "done" then
    d.state, d.ended_at = "done", now
  elseif value:find("^failed: ") then
    d.state, d.why, d.ended_at = "failed", value:sub(9, 400), now
  else
    return false -- downloading, verifying, flashing, warning:, idle:, queued:
  end
  return true
end

--- A version reported by device `id`: the firmware rolled out is a success.
function R.on_version(ro, id, version, now)
  local d = ro.devices[id]
  if not d or d.state ~= "pushed" or version ~= ro.firmware then return false end
  d.state, d.ended_at = "done", now
  return true
end

--- Pause, resume, abort by the operator. @return true | nil, why
function R.pause(ro)
  if ro.state ~= "running" then return nil, "the rollout is " .. ro.state .. ", not running" end
  ro.state = "paused"
  return true
end

function R.resume(ro)
  if ro.state ~= "paused" then return nil, "the rollout is " .. ro.state .. ", not paused" end
  ro.state = "running"
  return true
end

-- `why`: the cloud's reason (default: the operator's abort).
function R.abort(ro, now, why)
  if ro.state ~= "running" and ro.state ~= "paused" then return nil, "the rollout is " .. ro.state .. " already" end
  abort(ro, why or "aborted by the operator", now)
  return true
end

function R.active(ro)
  return ro ~= nil and (ro.state == "running" or ro.state == "paused")
end

--- A rollout read back after a restart: the pushes that were under way
-- get a whole step_timeout again from `now` (the cloud was away; the
-- device's version report on reconnecting settles them).
function R.restarted(ro, now)
  for _, d in pairs(ro.devices) do
    if d.state == "pushed" then d.pushed_at = now end
  end
end

--- Counts per state, for the rollout and per batch.
function R.summary(ro)
  local function zero()
    local c = {}
    for _, s in ipairs(R.STATES) do c[s] = 0 end
    return c
  end
  local total, per = zero(), {}
  for k, batch in ipairs(ro.batches) do
    local c = zero()
    for _, id in ipairs(batch) do
      local s = ro.devices[id].state
      c[s], total[s] = c[s] + 1, total[s] + 1
    end
    per[k] = { counts = c, size = #batch, canary = canary_batch(ro, k) }
  end
  local size = 0
  for _, b in ipairs(per) do size = size + b.size end
  return { total = total, batches = per, size = size }
end

--- A rollout from its saved form (JSON decoded), checked and rebuilt
-- from what it must hold: the file may have been edited or cut.
-- @return rollout | nil, why
function R.check(doc)
  if type(doc) ~= "table" or type(doc.firmware) ~= "string" or type(doc.batches) ~= "table"
      or type(doc.devices) ~= "table" or type(doc.options) ~= "table" or #doc.batches == 0 then
    return nil, "not a rollout"
  end
  if not ({ running = true, paused = true, aborted = true, completed = true })[doc.state] then
    return nil, "bad state " .. tostring(doc.state)
  end
  local ro = { firmware = doc.firmware, state = doc.state, reason = type(doc.reason) == "string" and doc.reason or nil,
               started_at = tonumber(doc.started_at) or 0, ended_at = tonumber(doc.ended_at),
               current = math.tointeger(doc.current), options = {}, batches = {}, devices = {} }
  if not ro.current or ro.current < 1 or ro.current > #doc.batches then return nil, "bad current batch" end
  local states = {}
  for _, s in ipairs(R.STATES) do states[s] = true end
  for k, batch in ipairs(doc.batches) do
    if type(batch) ~= "table" or #batch == 0 then return nil, "bad batch " .. k end
    ro.batches[k] = {}
    for i, id in ipairs(batch) do
      local d = doc.devices[id]
      if type(id) ~= "string" or ro.devices[id] or type(d) ~= "table" or not states[d.state] then
        return nil, "bad device " .. tostring(id)
      end
      ro.batches[k][i] = id
      ro.devices[id] = { state = d.state, batch = k, why = type(d.why) == "string" and d.why or nil,
                         pushed_at = tonumber(d.pushed_at), ended_at = tonumber(d.ended_at) }
      if d.state == "pushed" and not ro.devices[id].pushed_at then ro.devices[id].pushed_at = 0 end
    end
  end
  local o = doc.options
  ro.options.canary = math.tointeger(o.canary)
  ro.options.batch, ro.options.max_failures, ro.options.step_timeout =
    tonumber(o.batch), tonumber(o.max_failures), tonumber(o.step_timeout)
  if not ro.options.canary or not ro.options.max_failures or not ro.options.batch
      or not (ro.options.step_timeout and ro.options.step_timeout >= 1) then
    return nil, "bad options"
  end
  return ro
end

return R
