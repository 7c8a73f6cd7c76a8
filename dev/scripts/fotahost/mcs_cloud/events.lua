--- fotahost.mcs_cloud.events: what happens in the local cloud, for the
-- web console to follow live: devices connecting, heartbeats, data
-- points, version reports, firmwares registered, commands sent, rollout
-- states. A ring of the last MAX events, each with a sequence number;
-- GET /admin/events?since=N&wait=S long-polls it. Its functions are
-- methods of the cloud object (fotahost.mcs_cloud installs them).
--
-- A waiting request joins the "pulse", a task that only sleeps; an
-- event cancels it, which wakes every joiner at once. The pulse lives
-- only while some request waits.

local sched = require "fotahost.sched"
local sys = require "fotahost.sys"
local C = require "fotahost.mcs_cloud.common"

local fmt = string.format
local array, send_json, fail = C.array, C.send_json, C.fail

local E = {}
local methods = {}
E.methods = methods

E.MAX = 1000        -- events kept
E.MAX_WAIT = 25     -- s a request may wait for one (under the usual 30 s proxy and browser limits)
E.MAX_VALUE = 200   -- bytes of a data point's value an event carries

--- Sets up a new cloud's ring (at new()).
function E.open(self)
  self.events = { seq = 0, ring = {} }
  self._event_waiters = 0
end

-- `text` cut to at most `max` bytes, never inside a UTF-8 sequence.
-- @return text, cut (true when something was left out)
function E.cut(text, max)
  if #text <= max then return text, false end
  local at = max
  while at > 0 and (text:byte(at + 1) or 0) & 0xC0 == 0x80 do at = at - 1 end
  return text:sub(1, at), true
end

--- Records an event: `fields` (a table, taken over) gets its seq, time
-- and type; waiting requests wake.
function methods:emit(kind, fields)
  local ev = self.events
  ev.seq = ev.seq + 1
  fields.seq, fields.at, fields.type = ev.seq, sys.time(), kind
  ev.ring[(ev.seq - 1) % E.MAX + 1] = fields
  local pulse = self._pulse
  if pulse then
    self._pulse = nil
    sched.cancel(pulse) -- its joiners wake
  end
end

--- The events after `since`: list, and whether some were lost (since
-- is older than the ring, or from before a restart: the caller must
-- refetch everything). A lost stretch gives the whole ring.
function methods:events_since(since)
  local ev = self.events
  local oldest = math.max(1, ev.seq - E.MAX + 1)
  local reset = since > ev.seq or since + 1 < oldest
  local list = {}
  for n = reset and oldest or since + 1, ev.seq do
    list[#list + 1] = ev.ring[(n - 1) % E.MAX + 1]
  end
  return list, reset
end

--- Records a data point `dev` sent: its value as text (the JSON of
-- `values` when it has no "value"), cut to MAX_VALUE bytes.
function methods:emit_point(dev, channel, timestamp, values)
  local text = C.as_text(values.value) or C.encode(values)
  local value, cut = E.cut(text, E.MAX_VALUE)
  self:emit("point", { device = dev.id, channel = channel, value = value, timestamp = timestamp,
                       truncated = cut or nil })
end

-- The pulse waiting requests join: a live one, or a new one.
local function pulse(self)
  local p = self._pulse
  if not p or p.status == "done" or p.status == "failed" or p.status == "cancelled" then
    p = sched.spawn({ name = "cloud events pulse", log_errors = false }, function()
      while true do sched.sleep(3600) end
    end)
    self._pulse = p
  end
  return p
end

-- The last waiter gone, the pulse goes too: no task lingers unasked.
local function leave(self)
  self._event_waiters = self._event_waiters - 1
  local p = self._pulse
  if self._event_waiters == 0 and p and p ~= sched.current() then
    self._pulse = nil
    sched.cancel(p)
  end
end

--- Waits until an event comes after `since`, at most `seconds`.
function methods:events_wait(since, seconds)
  local deadline = sched.now() + seconds
  self._event_waiters = self._event_waiters + 1
  local _ <close> = setmetatable({}, { __close = function() leave(self) end })
  while self.events.seq == since and not self._closed do
    local left = deadline - sched.now()
    if left <= 0 then return end
    sched.join(pulse(self), left)
  end
end

--- Ends the pulse (close()).
function methods:events_close()
  local p = self._pulse
  self._pulse = nil
  if p and p ~= sched.current() then sched.cancel(p) end
end

-- A query parameter as an integer in [lo, hi], `default` when absent.
-- @return n | nil, why
local function int_arg(args, name, default, lo, hi)
  local v = args[name]
  if v == nil then return default end
  local n = math.tointeger(tonumber(v))
  if not n or n < lo or n > hi then
    return nil, fmt("%s=%s: an integer from %d to %d expected", name, v, lo, hi)
  end
  return n
end

-- GET /admin/events?since=N&wait=S: the events after N, waiting up to S
-- seconds (default and at most MAX_WAIT; 0: none) for one to come.
local function get_events(self, req, res)
  local since, err = int_arg(req.args, "since", 0, 0, math.maxinteger)
  local wait
  if since then wait, err = int_arg(req.args, "wait", E.MAX_WAIT, 0, E.MAX_WAIT) end
  if not since or not wait then return fail(res, 400, err) end
  if wait > 0 and since == self.events.seq then self:events_wait(since, wait) end
  local list, reset = self:events_since(since)
  return send_json(res, 200, { seq = self.events.seq, events = array(list), reset = reset })
end

E.ROUTES = {
  { "GET", "^/admin/events$", get_events },
}

return E
