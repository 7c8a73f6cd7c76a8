--- fotahost.mcs_cloud.broker: the local cloud on an MQTT broker (MCS's
-- MQTT variant: ../shared/docs/mcs-protocol.md, section 4; the device's
-- side is fotahost.mcs.mqtt_channel). Its functions are methods of the
-- cloud object (fotahost.mcs_cloud installs them); `serve --mqtt URL`
-- turns it on.
--
-- The cloud is one more client of the broker: a stable client id and
-- clean session off (what was published while it was away is delivered
-- when it is back), subscribed to `mcs/+/+/+` at QoS 1. A message on
-- `mcs/<id>/<key>/<channel>` whose id is a known device and whose key is
-- that device's, payload `timestamp,channel,value`, is a data point,
-- stored as the REST API stores one; channel `online` (`,online,1`
-- retained once a device is connected, `,online,0` its will) is whether
-- the device is connected. Anything else is counted and ignored, and the
-- key in a topic is never logged. Commands, FOTA pushes included, go out
-- as QoS 1 publishes (not retained: the broker keeps them in an offline
-- device's persistent session).

local sched = require "fotahost.sched"
local sys = require "fotahost.sys"
local logmod = require "fotahost.log"
local C = require "fotahost.mcs_cloud.common"
local echoes = require("fotahost.mcs.mqtt_channel").echoes

local log = logmod.get("cloud")
local fmt = string.format
local now_ms, push_bounded, same_secret = C.now_ms, C.push_bounded, C.same_secret

local B = {}
local methods = {}
B.methods = methods

B.SUBSCRIPTION = "mcs/+/+/+"
local ONLINE = "online"
local RETRY_MAX = 30 -- s between two attempts to reach the broker again, at most
local STABLE_AFTER = 10 -- s connected before the delay starts over (as the device client)
local KEEPALIVE = 30
local MAX_QUEUE = 8192 -- messages received and not yet read (the ring: 32 bytes a slot)

--- id, key, channel of an MCS topic `mcs/<id>/<key>/<channel>`, or nil.
function B.parse_topic(topic)
  return topic:match("^mcs/([^/]+)/([^/]+)/([^/]+)$")
end

--- A payload `timestamp,channel,value` (the value keeps its commas; an
-- empty timestamp means "now"): { timestamp = ms|nil, channel, value } | nil
-- (nil too for a channel id longer than MAX_CHANNEL, as the REST API).
function B.parse_payload(payload)
  local ts, channel, value = payload:match("^(%d*),([%w_%-]+),(.*)$")
  if not ts or #channel > C.MAX_CHANNEL then return nil end
  return { timestamp = math.tointeger(tonumber(ts)), channel = channel, value = value }
end

local function count(b, name) b.counters[name] = b.counters[name] + 1 end

--- The broker part of new()'s options: opts.mqtt = { url, username,
-- password, cafile, client_id }; nil when the cloud has no broker.
function B.open(self, opts)
  local o = opts.mqtt
  if not o then return end
  -- (fotahost.log refuses a secret under 4 characters: such a password is never printed anyway)
  if o.password and #o.password >= 4 then logmod.secret(o.password) end
  self.broker = {
    url = o.url, username = o.username, password = o.password, cafile = o.cafile,
    client_id = o.client_id or "fotahost-cloud",
    shown = (o.url:gsub("//[^/@]*@", "//")), -- never user:password
    own = echoes(),
    counters = { messages = 0, points = 0, presence = 0, unknown_device = 0, wrong_key = 0,
                 malformed = 0, own_echoes = 0, published = 0, connects = 0 },
  }
end

-- Connects and subscribes. @return true | nil, why
function methods:broker_connect()
  local b = self.broker
  local mqtt = require "fotahost.mqtt" -- a plugin: loaded when the cloud is on a broker
  local c, err = mqtt.connect {
    url = b.url, client_id = b.client_id, clean_session = false, username = b.username,
    -- a fleet's statuses come in bursts (a batch, and the echoes of the
    -- cloud's own pushes): kept until read, up to MAX_QUEUE
    password = b.password, cafile = b.cafile, keepalive = KEEPALIVE, max_queue = MAX_QUEUE,
  }
  if not c then return nil, err end
  local granted, serr = c:subscribe(B.SUBSCRIPTION, 1)
  if not granted then
    c:close()
    return nil, fmt("%s: subscribing to %s: %s", b.shown, B.SUBSCRIPTION, tostring(serr))
  end
  b.client = c
  count(b, "connects")
  log.info("broker %s: connected as %s (session %s), subscribed to %s", b.shown, b.client_id,
    c.session_present and "resumed" or "new", B.SUBSCRIPTION)
  return true
end

-- A device's presence on the broker: `,online,1` / `,online,0`.
local function presence(self, dev, value)
  if value == "1" then
    if not dev.mqtt_since then
      dev.mqtt_since = sys.time()
      log.info("device %s connected through the broker", dev.id)
      self:emit("device", { device = dev.id, connected = true, transport = "mqtt", peer = self.broker.shown })
      self:rollout_connected(dev)
    end
  elseif value == "0" then
    if dev.mqtt_since then
      dev.mqtt_since, dev.disconnected_at = nil, sys.time()
      log.info("device %s disconnected from the broker", dev.id)
      self:emit("device", { device = dev.id, connected = false, transport = "mqtt", peer = self.broker.shown })
    end
  else
    count(self.broker, "malformed")
    return
  end
  count(self.broker, "presence")
end

--- One message from the broker: a data point or a presence, when its
-- topic names a known device with that device's key.
function methods:on_broker_message(topic, payload)
  local b = self.broker
  count(b, "messages")
  if b.own.take(topic .. "\0" .. payload) then return count(b, "own_echoes") end
  local id, key, channel = B.parse_topic(topic)
  if not id then return count(b, "malformed") end -- not mcs/<id>/<key>/<channel>
  local dev = self.devices[id]
  if not dev then
    count(b, "unknown_device")
    log.debug("broker: a message for an unknown device; ignored")
    return
  end
  if not same_secret(key, dev.key) then
    count(b, "wrong_key")
    log.warn("broker: a message for device %s with a wrong key in its topic; ignored", dev.id)
    return
  end
  local p = B.parse_payload(payload)
  if not p or p.channel ~= channel then
    count(b, "malformed")
    local shown = channel:sub(1, C.MAX_CHANNEL)
    log.warn("device %s: not \"timestamp,%s,value\" on channel %s's topic; ignored", dev.id, shown, shown)
    return
  end
  if channel == ONLINE then return presence(self, dev, p.value) end
  self:store_point(dev, channel, p.timestamp, { value = p.value })
  count(b, "points")
end

-- Every device seen through the broker: unknown again (the retained
-- `online` messages come back with the next subscription).
local function forget_presence(self)
  for _, id in ipairs(self.device_order) do
    local dev = self.devices[id]
    if dev.mqtt_since then
      dev.mqtt_since = nil
      self:emit("device", { device = id, connected = false, transport = "mqtt", peer = self.broker.shown })
    end
  end
end

-- Takes messages until the connection ends. @return why it ended
local function receive_all(self, c)
  while not self._closed do
    local topic, payload = c:receive(60)
    if topic then
      self:on_broker_message(topic, payload)
      sched.yield() -- a flood must not starve the HTTP and TCP tasks
    elseif payload ~= "timeout" then
      return payload
    end
  end
end

--- The broker's task: takes messages, and reconnects (capped, jittered
-- backoff) when the connection is lost.
function methods:broker_loop()
  local b = self.broker
  local delay = 1
  while not self._closed do
    local c = b.client
    if c then
      local since = sched.now()
      local why = receive_all(self, c)
      if self._closed then break end
      b.client = nil
      c:close()
      forget_presence(self)
      log.warn("broker %s: %s; reconnecting", b.shown, tostring(why))
      -- the delay starts over only after a connection that lasted: one
      -- dropped at once (taken over, kicked) must not loop every second
      if sched.now() - since >= STABLE_AFTER then delay = 1 end
    else
      sched.sleep(delay / 2 + math.random() * delay / 2)
      delay = math.min(delay * 2, RETRY_MAX)
      local ok, err = self:broker_connect()
      if not ok then log.warn("broker: %s", err) end
    end
  end
end

--- Publishes a command to the device through the broker: QoS 1, not
-- retained, payload `timestampMs,channel,value`.
-- @return the payload | nil, why
function methods:broker_publish(dev, channel, value)
  local b = self.broker
  if not b.client then return nil, "the broker " .. b.shown .. " is not connected" end
  local topic = fmt("mcs/%s/%s/%s", dev.id, dev.key, channel)
  local payload = fmt("%d,%s,%s", now_ms(), channel, value)
  b.own.add(topic .. "\0" .. payload) -- before: the echo may come before the PUBACK
  local ok, err = b.client:publish(topic, payload, 1, false)
  if not ok then return nil, "publishing to the broker: " .. tostring(err) end
  push_bounded(dev.commands, sys.time(), C.MAX_COMMANDS_KEPT)
  dev.commands_sent = dev.commands_sent + 1
  count(b, "published")
  return payload
end

--- The broker as the admin API shows it.
function methods:broker_json()
  local b = self.broker
  return { url = b.shown, client_id = b.client_id, connected = b.client ~= nil, counters = b.counters }
end

--- Ends the broker's task and connection. Idempotent.
function methods:broker_close()
  local b = self.broker
  if b._task and b._task ~= sched.current() then sched.cancel(b._task) end
  b._task = nil
  if b.client then
    b.client:close()
    b.client = nil
  end
end

--- Connects (start() fails when the broker cannot be reached or refuses:
-- a wrong URL or password shows at once) and starts the broker's task.
-- @return true | nil, why
function methods:broker_start()
  local ok, err = self:broker_connect()
  if not ok then return nil, "broker: " .. err end
  self.broker._task = sched.spawn({ name = "cloud broker", log_errors = true }, self.broker_loop, self)
  return true
end

return B
