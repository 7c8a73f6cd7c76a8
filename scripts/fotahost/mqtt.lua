--- fotahost.mqtt: an MQTT 3.1.1 client for scripts, on libmosquitto, inside
-- the scheduler.
--
--     local mqtt = require "fotahost.mqtt"
--     local c <close>, err = mqtt.connect{ url = "mqtt://127.0.0.1:1883", client_id = "dev-1" }
--     if not c then error(err) end
--     assert(c:subscribe("devices/dev-1/cmd", 1))
--     assert(c:publish("devices/dev-1/state", '{"up":true}', 1))
--     local topic, payload = c:receive(30)
--
-- A call that waits (connect, subscribe, publish at QoS 1 or 2, receive)
-- waits in the scheduler on the client's one socket, so the other tasks
-- run meanwhile; outside any task it waits in a poller of its own (one
-- more fd while the client lives). The connection is serviced only while
-- one of its calls waits, at least once a second then (keepalive pings
-- included): a client is meant to have a task in receive() most of the
-- time. When two tasks wait on one client, one drives the socket and the
-- other looks every 50 ms for its own answer.
--
-- Failures return `nil, "<url>: <cause>"` for connect, `nil, cause` for
-- the calls on a client. URLs in messages never show user:password, and
-- the password is a log secret (fotahost.log), so nobody prints it.
--
-- TLS (mqtts://) verifies the broker's chain and host name against
-- `cafile`/`capath`, or the system's CA store; `insecure = true` turns
-- that off and is logged as a warning each time. Names are looked up by
-- libmosquitto (getaddrinfo) when connecting: that may block the process
-- briefly; a numeric address never does.

local core = require "fotahost.mqtt.core"
local sched = require "fotahost.sched"
local stream = require "fotahost.stream"
local http = require "fotahost.http"
local logmod = require "fotahost.log"

local log = logmod.get("mqtt")

local M = {}

local now = sched.now

-- Why a broker refused the connection (the CONNACK's return code), in words.
local REFUSED = {
  [1] = "refused: the broker does not speak MQTT 3.1.1",
  [2] = "refused: client id rejected",
  [3] = "refused: the broker is unavailable",
  [4] = "refused: bad credentials (user name or password)",
  -- mosquitto answers a wrong password with this one too
  [5] = "refused: not authorised (bad credentials, or no access for this client)",
}

-- scheme, host, port, user, password from "mqtt[s]://[user[:password]@]host[:port][/...]".
local function parse_url(url)
  local scheme, rest = url:match("^(mqtts?)://([^/?#]+)")
  if not scheme then return nil, "not an mqtt:// or mqtts:// URL" end
  local userinfo, hostport = rest:match("^(.*)@(.*)$")
  hostport = hostport or rest
  local user, password
  if userinfo then
    user, password = userinfo:match("^([^:]*):(.*)$")
    user = user or userinfo
  end
  local host, port = hostport:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = hostport:match("^([^:]+):?(%d*)$") end
  if not host then return nil, "no host" end
  port = tonumber(port) or (scheme == "mqtts" and 8883 or 1883)
  if port < 1 or port > 65535 then return nil, "bad port" end
  return scheme, host, math.tointeger(port), user, password
end

local function check_opts(o)
  if type(o) ~= "table" then error("mqtt.connect: options table expected", 3) end
  if type(o.url) ~= "string" then error("mqtt.connect: url must be a string", 3) end
  if type(o.client_id) ~= "string" or o.client_id == "" then
    error("mqtt.connect: client_id required (a non-empty string)", 3)
  end
  if o.will ~= nil and (type(o.will) ~= "table" or type(o.will.topic) ~= "string") then
    error("mqtt.connect: will must be a table with a topic", 3)
  end
end

local Client = {}
local client_mt = {
  __name = "fotahost.mqtt.client",
  __index = function(c, k)
    if k == "counters" then
      if not c._core then return c._counters end
      local received, dropped, too_long = c._core:counters()
      return { received = received, dropped = dropped, too_long = too_long }
    end
    return Client[k]
  end,
  __close = function(c) c:close() end,
  __gc = function(c) c:close() end,
  __tostring = function(c) return "mqtt client " .. c.name end,
}

-- Releases the client's socket for another task however a wait ends.
local release_mt = { __close = function(r) r.c._driver = nil end }

-- Services the connection until `done()` is true (returns true) or
-- `deadline` passes (returns false). Only one task at a time drives the
-- socket (sched.wait_fd allows one waiter per fd and direction); the
-- others look again every 50 ms.
local function drive(c, deadline, done)
  local me = sched.current() or "main"
  while not done() do
    local left = deadline - now()
    if left <= 0 then return false end
    if c._driver and c._driver ~= me then
      stream.pause(c, math.min(left, 0.05))
    else
      c._driver = me
      local _ <close> = setmetatable({ c = c }, release_mt)
      local raw = c._core
      raw:step()
      if done() then return true end
      local fd = raw:fd()
      if not fd then return done() end -- closed: done() sees it or never will
      -- at least once a second, so loop_misc pings the broker in time
      stream.wait(c, fd, raw:want_write() and "w" or "r", math.min(deadline, now() + 1))
    end
  end
  return true
end

local function live(c, what)
  if not c._core then error(("mqtt: %s on a closed client"):format(what), 3) end
  return c._core
end

local function closed_why(raw)
  local closed, why = raw:closed()
  return closed and "closed: " .. why or nil
end

--- Connects and waits for the broker's CONNACK (at most `connect_timeout`
-- seconds, default 10). Returns the client, or `nil, "<url>: <cause>"`.
-- See docs/api/fotahost.mqtt.lua for the options.
function M.connect(opts)
  check_opts(opts)
  local name = http.redact_url(opts.url)
  local function fail(cause) return nil, logmod.redact(name .. ": " .. cause) end
  local scheme, host, port, user, password = parse_url(opts.url)
  if not scheme then return fail(host) end
  password = opts.password or password
  -- (fotahost.log cannot mask a secret of under 4 characters; we never
  -- print the password ourselves either way)
  if password and #password >= 4 then logmod.secret(password) end
  if opts.insecure then
    log.warn("TLS certificate and host verification are OFF for %s (insecure = true)", name)
  end
  local raw = core.new{
    client_id = opts.client_id, host = host, port = port, tls = scheme == "mqtts",
    clean_session = opts.clean_session == true, username = opts.username or user,
    password = password, cafile = opts.cafile, capath = opts.capath,
    insecure = opts.insecure == true, keepalive = opts.keepalive, will = opts.will,
    max_payload = opts.max_payload, max_queue = opts.max_queue,
  }
  local c = setmetatable({ _core = raw, name = name, url = opts.url,
                           timeout = opts.connect_timeout or 10 }, client_mt)
  local ok, err = raw:connect()
  if not ok then
    c:close()
    return fail(err)
  end
  local deadline = now() + c.timeout
  local got = drive(c, deadline, function() return raw:connack() or raw:closed() end)
  local rc, session_present = raw:connack()
  if rc == 0 then
    c.session_present = session_present
    return c
  end
  local why = rc and (REFUSED[rc] or "refused (CONNACK " .. rc .. ")")
    or (got and select(2, raw:closed()))
    or ("timeout: no CONNACK after %g s"):format(c.timeout)
  c:close()
  return fail(why)
end

--- Subscribes to `topic` (a filter) at `qos` (default 1) and waits for the
-- SUBACK. Returns the QoS the broker granted, or `nil, why`: "subscription
-- to TOPIC refused by the broker" (SUBACK 0x80), "timeout", "closed: ...".
function Client:subscribe(topic, qos)
  local raw = live(self, "subscribe")
  qos = qos or 1
  local mid, err = raw:subscribe(topic, qos)
  if not mid then return nil, closed_why(raw) or err end
  local granted
  raw:expect(mid)
  drive(self, now() + self.timeout, function()
    granted = raw:ack(mid)
    return granted ~= nil or raw:closed()
  end)
  if granted == nil then
    raw:ack(mid, true)
    return nil, closed_why(raw) or "timeout"
  end
  if granted == 0x80 then
    -- (MCS topics hold the device key: masked when it is a log secret)
    return nil, logmod.redact(("subscription to %s refused by the broker"):format(topic))
  end
  return granted
end

--- Publishes `payload` on `topic` at `qos` (default 0), `retain` (default
-- false). QoS 0 returns true once the message is handed to the socket; QoS
-- 1 and 2 wait for the broker's acknowledgement (`connect_timeout`
-- seconds at most). Returns true, or `nil, why`: "timeout", "closed: ...".
function Client:publish(topic, payload, qos, retain)
  local raw = live(self, "publish")
  qos = qos or 0
  local mid, err = raw:publish(topic, payload, qos, retain == true)
  if not mid then return nil, closed_why(raw) or err end
  if qos == 0 then
    -- flushed by the next step; give it one now
    drive(self, now() + self.timeout, function() return not raw:want_write() or raw:closed() end)
    return true
  end
  local acked
  raw:expect(mid)
  drive(self, now() + self.timeout, function()
    acked = raw:ack(mid)
    return acked ~= nil or raw:closed()
  end)
  if acked == nil then
    raw:ack(mid, true)
    return nil, closed_why(raw) or "timeout"
  end
  return true
end

--- The next message received: `topic, payload`, waiting at most `timeout`
-- seconds (default: for ever). Or `nil, "timeout"`, or `nil, "closed:
-- why"` once the connection is gone and every message kept was taken.
function Client:receive(timeout)
  local raw = live(self, "receive")
  if timeout ~= nil then stream.check_timeout(timeout, "mqtt receive") end
  local topic, payload = raw:pop()
  if topic then return topic, payload end
  local deadline = now() + (timeout or math.huge)
  drive(self, deadline, function()
    topic, payload = raw:pop()
    return topic ~= nil or raw:closed()
  end)
  if topic then return topic, payload end
  return nil, closed_why(raw) or "timeout"
end

--- Sends DISCONNECT (the broker then drops the will) and frees the
-- client. Safe twice; __close and __gc do it too. `final` ({ topic,
-- payload, retain }): a last message, published at QoS 0 just before
-- without waiting (what the will would have said, for a clean end).
function Client:close(final)
  local raw = self._core
  if not raw then return end
  if final and not raw:closed() then
    -- best effort, never waiting (a close may run while a task is being
    -- cancelled): QoS 0, written at once with the DISCONNECT that follows
    pcall(raw.publish, raw, final.topic, final.payload, 0, final.retain == true)
  end
  self._counters = self.counters
  self._core = nil
  raw:close()
  stream.drop_poller(self)
end

--- libmosquitto's version, e.g. "libmosquitto 2.0.11".
M.version = core.version

return M
