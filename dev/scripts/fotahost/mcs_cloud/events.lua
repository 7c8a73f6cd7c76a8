--- fotahost.mcs_cloud.events: what happens in the local cloud, for the
-- web console to follow live: devices connecting, heartbeats, data
-- points, version reports, firmwares registered, commands sent, rollout
-- states. A ring of the last MAX events, each with a sequence number;
-- GET /admin/events?since=N&wait=S long-polls it. Its functions are
-- methods of the cloud object (fotahost.mcs_cloud installs them).
--
-- A waiting request joins a "watch" of its own: a task that waits for
-- the request's socket to turn readable (the client went away, or sent
-- more) and ends then, or at the deadline; an event cancels every watch,
-- which wakes their requests at once. A client that leaves so frees its
-- connection slot at once, not 25 s later; and at most max_waiters()
-- requests wait at a time, so long polls never hold the slots devices'
-- requests and firmware downloads need.

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
E.MAX_WAITERS = 8   -- requests waiting at once (and never more than half the connection slots)

--- Sets up a new cloud's ring (at new()).
function E.open(self)
  self.events = { seq = 0, ring = {} }
  self._event_waiters = 0
  self._event_watches = {} -- watch task -> true, for every waiting request
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
  self:events_wake()
end

--- Wakes every waiting request (an event came, or the cloud closes).
function methods:events_wake()
  local watches = self._event_watches
  self._event_watches = {}
  for w in pairs(watches) do sched.cancel(w) end -- its request wakes
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
-- `values` when it has no "value"), cut to MAX_VALUE bytes, and its
-- channel cut to MAX_CHANNEL (the parsers refuse longer ones: this
-- keeps the ring bounded whatever a new way in lets through).
function methods:emit_point(dev, channel, timestamp, values)
  -- (never raising: the point is stored already, and the rollout must still see it)
  local text = C.as_text(values.value) or C.try_encode(values) or "(not JSON)"
  local value, cut = E.cut(text, E.MAX_VALUE)
  self:emit("point", { device = dev.id, channel = (E.cut(channel, C.MAX_CHANNEL)), value = value,
                       timestamp = timestamp, truncated = cut or nil })
end

-- A waiting request's watch: ends when the request's socket turns
-- readable (the client closed it, or sent another request), or after
-- `seconds`.
local function watch(sock, seconds)
  sched.wait_fd(sock:fd(), "r", seconds)
end

--- How many requests may wait at once: MAX_WAITERS, and at most half
-- of the HTTP connection slots.
function methods:events_max_waiters()
  local slots = self.http and self.http.max_connections or E.MAX_WAITERS * 2
  return math.min(E.MAX_WAITERS, slots // 2)
end

--- Waits until an event comes after `since`, at most `seconds`, or until
-- the client on `sock` goes away (or sends more).
function methods:events_wait(since, seconds, sock)
  local deadline = sched.now() + seconds
  self._event_waiters = self._event_waiters + 1
  local _ <close> = setmetatable({}, { __close = function() self._event_waiters = self._event_waiters - 1 end })
  while self.events.seq == since and not self._closed do
    local left = deadline - sched.now()
    if left <= 0 then return end
    local w = sched.spawn({ name = "cloud events watch", log_errors = false }, watch, sock, left)
    self._event_watches[w] = true
    local _ <close> = setmetatable({}, { __close = function()
      self._event_watches[w] = nil
      if w.status ~= "done" and w.status ~= "cancelled" and w.status ~= "failed" then sched.cancel(w) end
    end })
    sched.join(w, left + 1)
    -- only an event (or close()) cancels a watch: anything else ends the wait
    if w.status ~= "cancelled" then return end
  end
end

--- Wakes the waiting requests for good (close()).
function methods:events_close()
  self:events_wake()
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
  -- past the waiters' cap, answer at once, as for wait=0
  if wait > 0 and since == self.events.seq and self._event_waiters < self:events_max_waiters() then
    self:events_wait(since, wait, res.sock)
  end
  local list, reset = self:events_since(since)
  return send_json(res, 200, { seq = self.events.seq, events = array(list), reset = reset })
end

E.ROUTES = {
  { "GET", "^/admin/events$", get_events },
}

return E
