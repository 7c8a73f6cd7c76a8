--- fotahost.mcs: the MediaTek Cloud Sandbox (MCS) device client.
--
-- The protocol is in docs/mcs.md (from MediaTek's API reference and what
-- mcsjs did). A device registers, keeps a command channel open to receive
-- pushes (a switch turned on, a FOTA push), and makes REST calls: data
-- points up, the installed firmware version, the firmwares available.
--
--     local sched = require "fotahost.sched"
--     local mcs = require "fotahost.mcs"
--     sched.run(function()
--       local cloud = mcs.register{ device_id = "Dbxx9k", device_key = "TPJVxxxxBxBv",
--                                   api = "http://127.0.0.1:8080" }
--       cloud:on("LED", function(value, timestamp) print("LED", value) end)
--       cloud:on("FOTA", function(value) ... end)   -- "version,md5,url"
--       cloud:emit("temperature", 21.5)
--       sched.sleep(math.huge)
--     end)
--
-- register() returns at once; the client then stays connected by itself:
-- when the connection drops, the server restarts, a REST call fails or
-- (with `dead_peer`) nothing is heard for a while, it reconnects after a
-- delay that doubles from `backoff_base` up to `backoff_cap` (default 60 s),
-- with jitter, never giving up. The delay starts over once a connection has
-- lasted `stable_after` seconds. State changes go to the log and to the
-- functions given to on_state().
--
-- Handlers run in scheduler tasks of their own (at most `max_handlers` at
-- once): a slow one (a download and a flash) never stops the heartbeats or
-- the reading of further commands, and an error in one is logged, not
-- fatal. Commands wait for a free handler task in a queue of at most
-- `max_pending`; a server that sends faster than the handlers take them
-- (a flood) has the excess dropped, counted in `dropped` and summed up in
-- one log line per burst, so memory stays flat and heartbeats go on.
--
-- A command that cannot be read (malformed, or not for this device and
-- key: a fragment of one split by a pause may start with part of the key)
-- is logged by its length and what is wrong, never quoted. When one of
-- its first fields names a channel given to on_unreadable() (a FOTA push
-- that cannot be parsed), that function is told, so the cloud can be.
--
-- Commands come through a transport (`transport`, default
-- fotahost.mcs.tcp_channel): one session per connection, given a context
-- (ids, options, a REST call, connected(), deliver(), a log, counters of
-- its own) and nothing else of the client. docs/transport.md is the
-- contract; reconnecting and backoff stay here, shared by every transport.
--
-- Errors: misuse (bad options, a transport without a session function)
-- raises. The REST calls return nil, "url: why", code: code is the HTTP
-- status when the cloud answered with an error, else fotahost.http's kind
-- string ("timeout", "connect", ...), or "protocol" for an answer that is
-- not what the API promises.

local sched = require "fotahost.sched"
local sys = require "fotahost.sys"
local http = require "fotahost.http"
local logmod = require "fotahost.log"
local cjson = require "cjson.safe"

local log = logmod.get("mcs")

local M = {}

--- What register() uses where its options say nothing.
M.DEFAULTS = {
  api = "https://api.mediatek.com", -- the public service's base URL (gone now)
  heartbeat = 50,         -- seconds between heartbeats (mcsjs: 50; the reference: 120)
  heartbeat_newline = false, -- mcsjs sent none; servers must cope with either
  connect_timeout = 10,   -- seconds, TCP connect to the command server
  write_timeout = 10,     -- seconds, a heartbeat write
  quiet_gap = 0.2,        -- seconds of silence that end an unterminated command
  eol_gap = 5,            -- the same, once the server has sent line ends
  max_command = 8192,     -- bytes; a longer command is cut off, not buffered
  dead_peer = nil,        -- seconds without a byte from the server before
                          -- reconnecting; off by default, as servers send
                          -- nothing between commands (TCP keepalive is on)
  backoff_base = 1,       -- seconds, the first reconnect delay
  backoff_cap = 60,       -- seconds, the longest
  stable_after = 10,      -- seconds connected before the delay starts over
  max_queue = 100,        -- data points kept while the API is unreachable
  max_handlers = 4,       -- handler tasks running at once
  max_pending = 64,       -- commands waiting for a handler; more are dropped
  http = nil,             -- options for fotahost.http (cainfo, timeouts...)
  transport = nil,        -- the command channel (docs/transport.md); default fotahost.mcs.tcp_channel
}

local methods = {} -- a client's methods: its public API, nothing else
local mt = { __index = methods }

-- The client's own workings, defined below register() and used by it.
local keep_connected, on_command, api, send_points

local function check_id(v, what)
  if type(v) ~= "string" or v == "" or v:find("[,%c%s/?#]") then
    error(("mcs.register: %s must be a non-empty string without commas, spaces or slashes, got %s")
      :format(what, type(v) == "string" and ("%q"):format(v) or tostring(v)), 3)
  end
end

--- The time now in UNIX milliseconds, as MCS timestamps are.
function M.now_ms()
  return math.floor(sys.time() * 1000)
end

-- register()'s options over M.DEFAULTS, checked; a misuse is blamed on
-- register()'s caller (level 3).
local function options(opts)
  local o = {}
  for k, v in pairs(M.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  o.api = o.api:gsub("/+$", "")
  if not o.api:match("^https?://") then
    error("mcs.register: api must be an http:// or https:// URL, got " .. tostring(o.api), 3)
  end
  for _, k in ipairs({ "heartbeat", "connect_timeout", "write_timeout", "quiet_gap", "eol_gap", "backoff_base",
                       "backoff_cap", "stable_after" }) do
    if type(o[k]) ~= "number" or o[k] <= 0 then
      error(("mcs.register: %s must be a number > 0, got %s"):format(k, tostring(o[k])), 3)
    end
  end
  for _, k in ipairs({ "max_handlers", "max_pending" }) do
    if math.type(o[k]) ~= "integer" or o[k] < 1 then
      error(("mcs.register: %s must be an integer >= 1, got %s"):format(k, tostring(o[k])), 3)
    end
  end
  o.transport = o.transport or require "fotahost.mcs.tcp_channel"
  if type(o.transport) ~= "table" or type(o.transport.session) ~= "function" then
    error("mcs.register: transport must be a table with a session function (docs/transport.md)", 3)
  end
  return o
end

--- Starts a client; call it inside sched.run. `opts`: `device_id`,
-- `device_key`, and any of M.DEFAULTS.
function M.register(opts)
  if type(opts) ~= "table" then error("mcs.register: options table expected", 2) end
  check_id(opts.device_id, "device_id")
  check_id(opts.device_key, "device_key")
  if not sched.current() then
    error("mcs.register: call it inside sched.run (the client runs as scheduler tasks)", 2)
  end
  local o = options(opts)
  logmod.secret(o.device_key)
  local self = setmetatable({
    device_id = o.device_id,
    device_key = o.device_key,
    opts = o,
    _handlers = {},
    _catch_all = nil,
    _unreadable = {},     -- channel -> fn(why), for commands that cannot be read
    _pending = { first = 1, last = 0 }, -- commands waiting for a handler task
    _workers = 0,         -- handler tasks alive
    _bursts = {},         -- kind -> { n = events not yet logged, reporter = task }
    _state_fns = {},
    _queue = {},
    state = "connecting",
    commands = 0,         -- commands dispatched
    ignored = 0,          -- commands not for us (id or key), or malformed
    dropped = 0,          -- commands dropped: the handler queue was full
    failures = 0,         -- consecutive failed sessions
    transport_counters = {}, -- the transport's own (tcp_channel: heartbeats_sent, cut_off)
  }, mt)
  self._task = sched.spawn({ name = "mcs connection" }, function() keep_connected(self) end)
  return self
end

---------------------------------------------------------------- handlers

--- Calls `fn(value, timestamp)` for each command on `channel`. With
-- channel "*", `fn(value, timestamp, channel)` gets every command that has
-- no handler of its own. One handler per channel; nil removes it.
function methods:on(channel, fn)
  if type(channel) ~= "string" or channel == "" then error("mcs:on: channel name expected", 2) end
  if fn ~= nil and type(fn) ~= "function" then error("mcs:on: function expected", 2) end
  if channel == "*" then self._catch_all = fn else self._handlers[channel] = fn end
  return self
end

--- Calls `fn(state, detail)` on every state change: "connected" (detail:
-- "ip:port"; on every connection and reconnection, once the first
-- heartbeat is out, before any command is read), "disconnected" (why),
-- "retrying" (the delay in seconds).
function methods:on_state(fn)
  if type(fn) ~= "function" then error("mcs:on_state: function expected", 2) end
  self._state_fns[#self._state_fns + 1] = fn
  return self
end

local function set_state(self, state, detail)
  self.state = state
  if state == "connected" then
    log.info("connected to the command server %s", detail)
  elseif state == "disconnected" then
    log.warn("disconnected: %s", tostring(detail))
  elseif state == "retrying" then
    log.info("retrying in %.1f s", detail)
  end
  for _, fn in ipairs(self._state_fns) do
    local ok, err = pcall(fn, state, detail)
    if not ok then log.error("a state handler failed: %s", tostring(err)) end
  end
end

--- Calls `fn(why)` when a command that cannot be read (malformed, or not
-- for this device and key) names `channel` in one of its first four
-- fields: a FOTA push split by a pause, say. `why` gives its length and
-- what is wrong, never its bytes (they may hold part of the device key).
function methods:on_unreadable(channel, fn)
  if type(channel) ~= "string" or channel == "" then error("mcs:on_unreadable: channel name expected", 2) end
  if fn ~= nil and type(fn) ~= "function" then error("mcs:on_unreadable: function expected", 2) end
  self._unreadable[channel] = fn
  return self
end

-- Counts one event of a burst (a flood): the first `show` of a burst are
-- logged by `each()` as they come, the rest are summed up in one line,
-- `summary:format(n)`, once none has come for a second (or every minute
-- while a burst lasts).
local function burst(self, kind, show, each, summary)
  local b = self._bursts[kind]
  if not b then
    b = { n = 0, shown = 0, events = 0 }
    self._bursts[kind] = b
  end
  b.events = b.events + 1
  if b.shown < show then
    b.shown = b.shown + 1
    each()
  else
    b.n = b.n + 1
  end
  if b.reporter or self._closed then return end
  b.reporter = sched.spawn({ name = "mcs " .. kind .. " report" }, function()
    local started = sched.now()
    repeat
      local seen = b.events
      sched.sleep(1)
    until b.events == seen or sched.now() - started >= 60
    if b.n > 0 then log.warn(summary, b.n) end
    b.n, b.shown, b.reporter = 0, 0, nil
  end)
end

-- Tells on_unreadable() about a command that could not be read, when one
-- of its first four fields names a channel given there.
local function tell_unreadable(self, text, what)
  local n = 0
  for field in (text .. ","):gmatch("([^,]*),") do
    n = n + 1
    if n > 4 then break end
    local fn = self._unreadable[field]
    if fn then
      local ok, err = pcall(fn, ("a %s command of %d bytes could not be read: %s"):format(field, #text, what))
      if not ok then log.error("the %s on_unreadable function failed: %s", field, tostring(err)) end
      break
    end
  end
end

-- A command that is not obeyed: logged by its length and what is wrong
-- (`id` only when it is ours), and told to on_unreadable().
local function unread(self, text, what, id)
  self.ignored = self.ignored + 1
  local desc = id and ("a command of %d bytes for device %s"):format(#text, id)
    or ("a command of %d bytes"):format(#text)
  burst(self, "ignored", 3, function() log.warn("ignored %s: %s", desc, what) end,
    "%d more commands ignored (malformed, or not for this device)")
  if next(self._unreadable) then tell_unreadable(self, text, what) end
end

-- A handler task: runs queued commands' handlers until none is left.
local function run_handlers(self)
  local _ <close> = setmetatable({}, { __close = function() self._workers = self._workers - 1 end })
  local q = self._pending
  while q.first <= q.last and not self._closed do
    local job = q[q.first]
    q[q.first] = nil
    q.first = q.first + 1
    local ok, err = xpcall(job.fn, debug.traceback, table.unpack(job.args))
    if not ok then
      -- SIGINT/SIGTERM is not the handler's failure: it stops the process
      if sys.interrupted() then error(err, 0) end
      log.error("the %s handler failed: %s", job.channel, tostring(err))
    end
  end
end

-- Queues a handler call for a handler task (a new one while fewer than
-- max_handlers run); a full queue drops it.
local function enqueue(self, job)
  local q = self._pending
  if q.last - q.first + 1 >= self.opts.max_pending then
    self.dropped = self.dropped + 1
    burst(self, "dropped", 0, nil, ("%%d commands dropped: they came faster than the handlers took them"
      .. " (max_pending %d)"):format(self.opts.max_pending))
    return
  end
  q.last = q.last + 1
  q[q.last] = job
  if self._workers < self.opts.max_handlers then
    self._workers = self._workers + 1
    sched.spawn({ name = "mcs handlers", log_errors = false }, function() run_handlers(self) end)
  end
end

-- One command, as fotahost.mcs.framer made it, from the transport.
function on_command(self, c)
  local text = c.text
  if c.error then return unread(self, text, c.error) end
  if c.device_id ~= self.device_id or c.device_key ~= self.device_key then
    -- neither the key nor a foreign id is printed: a fragment of a
    -- command cut by a pause may start with part of our key
    if c.device_id ~= self.device_id then return unread(self, text, "the device id does not match") end
    return unread(self, text, "the device key does not match", self.device_id)
  end
  self.commands = self.commands + 1
  local fn, args = self._handlers[c.channel], { c.value, c.timestamp }
  if not fn and self._catch_all then
    fn, args = self._catch_all, { c.value, c.timestamp, c.channel }
  end
  if not fn then
    burst(self, "unhandled", 3, function() log.info("no handler for channel %s; command ignored", c.channel) end,
      "%d more commands on channels without a handler ignored")
    return
  end
  log.debug("command on %s: %s", c.channel, c.value)
  enqueue(self, { fn = fn, args = args, channel = c.channel })
end

---------------------------------------------------------------- connection

local function backoff(self)
  local o = self.opts
  local d = math.min(o.backoff_cap, o.backoff_base * 2 ^ (self.failures - 1))
  -- "equal jitter": between half the step and all of it, so delays still
  -- grow from one failure to the next while clients spread out
  return d / 2 + math.random() * d / 2
end

-- What a transport sees of the client for one session, and all it may
-- use (docs/transport.md): the client's own fields stay out of its reach.
local function session_context(self, session)
  local ctx = { device_id = self.device_id, device_key = self.device_key, opts = self.opts,
                log = log, counters = self.transport_counters }
  function ctx.api(method, path, body, content_type)
    return api(self, method, path, body, content_type)
  end
  function ctx.connected(where)
    if type(where) ~= "string" then error("mcs transport: connected(where): the peer's address expected", 2) end
    if session.connected_at or session.over then error("mcs transport: connected() once per session", 2) end
    session.connected_at = sched.now()
    set_state(self, "connected", where)
  end
  function ctx.deliver(command)
    if not session.connected_at or session.over then
      error("mcs transport: deliver() outside a connected session", 2)
    end
    if type(command) ~= "table" or type(command.text) ~= "string" then
      error("mcs transport: deliver(command): a command from fotahost.mcs.framer expected", 2)
    end
    return on_command(self, command)
  end
  -- A transport that can carry data points (MQTT) offers `fn(points)`:
  -- while its session is connected, points go through it, not REST.
  function ctx.publisher(fn)
    if not session.connected_at or session.over then
      error("mcs transport: publisher() outside a connected session", 2)
    end
    if type(fn) ~= "function" then error("mcs transport: publisher(fn): a function expected", 2) end
    session.publisher, self._publisher = fn, fn
    if #self._queue > 0 and not self._sender and not self._closed then
      self._sender = sched.spawn({ name = "mcs data points" }, function() send_points(self) end)
    end
  end
  return ctx
end

-- One session of the transport; returns why it ended, and whether it
-- lasted stable_after once connected.
local function run_session(self)
  local session = {}
  local ok, r1, r2 = pcall(self.opts.transport.session, session_context(self, session))
  session.over = true
  if self._publisher == session.publisher then self._publisher = nil end
  local why = r2
  if not ok then
    why = "the transport failed: " .. tostring(r1) -- a bug: logged, and the client goes on
    log.error("%s", why)
  end
  local connected_at = session.connected_at
  return why, connected_at and sched.now() - connected_at >= self.opts.stable_after
end

function keep_connected(self)
  while not self._closed do
    set_state(self, "connecting")
    local why, stable = run_session(self)
    if self._closed then break end
    if stable then
      self.failures = 0
    end
    self.failures = self.failures + 1
    set_state(self, "disconnected", why)
    local delay = backoff(self)
    set_state(self, "retrying", delay)
    sched.sleep(delay)
  end
end

--- Whether no command handler runs or waits for a task: a quiet moment
-- (the app reloads only then, never in the middle of a handler).
function methods:idle()
  return self._workers == 0 and self._pending.first > self._pending.last
end

--- Stops the client: the connection is closed and nothing more is sent.
function methods:close()
  if self._closed then return end
  self._closed = true
  if self._task then sched.cancel(self._task) end
  if self._sender then sched.cancel(self._sender) end
  for _, b in pairs(self._bursts) do
    if b.reporter then sched.cancel(b.reporter) end
  end
end

---------------------------------------------------------------- REST

local function api_opts(self, extra)
  local o = {}
  for k, v in pairs(self.opts.http or {}) do o[k] = v end
  for k, v in pairs(extra) do o[k] = v end
  -- The MCS API does not redirect, and libcurl would send the deviceKey
  -- header to wherever a redirect points: none are followed.
  o.max_redirects = 0
  o.headers = { deviceKey = self.device_key }
  for k, v in pairs(extra.headers or {}) do o.headers[k] = v end
  return o
end

--- A REST call under /mcs/v2/devices/{id}: the response when 2xx, else
-- nil, "<url>: HTTP n: message", n (or http's transport failure).
function api(self, method, path, body, content_type)
  local url = ("%s/mcs/v2/devices/%s%s"):format(self.opts.api, self.device_id, path)
  local res, err, code = http.request(api_opts(self, {
    url = url, method = method, body = body,
    headers = content_type and { ["Content-Type"] = content_type } or nil,
  }))
  if not res then return nil, err, code end
  if res.status < 200 or res.status > 299 then
    local j = cjson.decode(res.body)
    local msg = type(j) == "table" and type(j.message) == "string" and j.message
      or res.body:sub(1, 120):gsub("%s+", " ")
    return nil, logmod.redact(("%s: HTTP %d: %s"):format(http.redact_url(url), res.status, msg)), res.status
  end
  return res
end

--- Reports the firmware version now installed (PUT .../firmwares).
-- @return true | nil, err, code
function methods:report_version(version)
  if type(version) ~= "string" or version == "" then error("mcs:report_version: version string expected", 2) end
  local res, err, code = api(self, "PUT", "/firmwares", cjson.encode({ version = version }), "application/json")
  if not res then return nil, err, code end
  log.info("reported firmware version %s", version)
  return true
end

--- The firmwares the cloud offers this device (GET
-- .../firmwares/available?url=true): a list of { fwid, name, version,
-- description, URL }, or nil, err, code.
function methods:available_firmware()
  local res, err, code = api(self, "GET", "/firmwares/available?url=true")
  if not res then return nil, err, code end
  local j = cjson.decode(res.body)
  if type(j) ~= "table" or type(j.results) ~= "table" then
    return nil, "firmwares/available: the answer has no results list", "protocol"
  end
  return j.results
end

---------------------------------------------------------------- data points

local MAX_PER_REQUEST = 5 -- the API's limit

local function plain_csv(v)
  return not v:find("[,\r\n\"]")
end

-- The request body for up to 5 points: CSV when every value is plain,
-- else the JSON form (commas in a CSV value would read as more values).
local function datapoints_body(batch)
  local csv = true
  for _, p in ipairs(batch) do
    if not plain_csv(p.value) then csv = false break end
  end
  if csv then
    local lines = {}
    for i, p in ipairs(batch) do
      lines[i] = ("%s,%s,%s"):format(p.channel, p.timestamp and ("%d"):format(p.timestamp) or "", p.value)
    end
    return "/datapoints.csv", table.concat(lines, "\n"), "text/csv"
  end
  local list = {}
  for i, p in ipairs(batch) do
    list[i] = { dataChnId = p.channel, timestamp = p.timestamp, values = { value = p.value } }
  end
  return "/datapoints", cjson.encode({ datapoints = list }), "application/json"
end

function send_points(self)
  local failures = 0
  while #self._queue > 0 and not self._closed do
    -- The batch leaves the queue while it is sent (emit() may drop the
    -- oldest queued point meanwhile), and goes back on failure.
    local batch = {}
    for i = 1, math.min(MAX_PER_REQUEST, #self._queue) do batch[i] = table.remove(self._queue, 1) end
    self._sending = #batch
    local res, err, code
    if self._publisher then -- the transport's session carries them (docs/transport.md)
      res, err = self._publisher(batch)
    else
      local path, body, ctype = datapoints_body(batch)
      res, err, code = api(self, "POST", path, body, ctype)
    end
    self._sending = nil
    if res then
      failures = 0
      self.points_sent = (self.points_sent or 0) + #batch
    elseif math.type(code) == "integer" and code >= 400 and code < 500 and code ~= 408 and code ~= 429 then
      -- refused for what it is: sending it again would block every later point
      self.points_dropped = (self.points_dropped or 0) + #batch
      log.error("data points refused, dropped (%d): %s", #batch, err)
    else
      for i = #batch, 1, -1 do table.insert(self._queue, 1, batch[i]) end
      while #self._queue > self.opts.max_queue do table.remove(self._queue, 1) end
      failures = failures + 1
      local d = math.min(self.opts.backoff_cap, self.opts.backoff_base * 2 ^ (failures - 1))
      log.warn("data points not sent (%s); retrying in %.0f s", err, d)
      sched.sleep(d)
    end
  end
  self._sender = nil
end

--- Uploads a data point: `value` (a string or number) on `channel`, at
-- `timestamp` (UNIX ms; default: the server's time). Points are queued and
-- sent by a task of their own, up to 5 per request, and kept (at most
-- max_queue, the oldest dropped first) while the API cannot be reached.
-- @return true
function methods:emit(channel, value, timestamp)
  if type(channel) ~= "string" or not channel:match("^[%w_%-]+$") then
    error("mcs:emit: channel id expected (letters, digits, _ and -), got " .. tostring(channel), 2)
  end
  if type(value) == "number" then value = tostring(value) end
  if type(value) ~= "string" then error("mcs:emit: value must be a string or a number", 2) end
  if timestamp ~= nil and math.type(timestamp) ~= "integer" then
    error("mcs:emit: timestamp must be an integer (UNIX ms)", 2)
  end
  local q = self._queue
  if #q >= self.opts.max_queue then
    table.remove(q, 1)
    log.warn("data point queue full (%d): the oldest point was dropped", self.opts.max_queue)
  end
  q[#q + 1] = { channel = channel, value = value, timestamp = timestamp }
  if not self._sender and not self._closed then
    self._sender = sched.spawn({ name = "mcs data points" }, function() send_points(self) end)
  end
  return true
end

--- How many data points are queued or being sent.
function methods:unsent()
  return #self._queue + (self._sending or 0)
end

--- Waits until every queued data point has been sent, at most `timeout`
-- seconds. @return true | nil, "timeout"
function methods:flush(timeout)
  local deadline = sched.now() + (timeout or math.huge)
  while #self._queue > 0 or self._sender do
    if sched.now() >= deadline then return nil, "timeout" end
    sched.sleep(0.02)
  end
  return true
end

return M
