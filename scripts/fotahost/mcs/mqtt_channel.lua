--- fotahost.mcs.mqtt_channel: MCS's command channel over an MQTT broker,
-- a transport for fotahost.mcs (docs/transport.md; the topics are MCS's:
-- ../docs/mcs.md, "MQTT"). Chosen with `transport = "mqtt"` in the app's
-- config, or `mcs.register{ ..., transport = require "fotahost.mcs.mqtt_channel",
-- mqtt = { url = "mqtts://broker:8883", cafile = ..., username = ..., password = ... } }`.
--
-- One session is one broker connection:
--   - connect with a stable client id (`mqtt.client_id`, default
--     fotahost-<deviceId>) and clean session off, so the broker keeps the
--     subscription and the QoS 1 commands sent while the device was away,
--     and delivers them when it is back;
--   - a will, retained: `mcs/<id>/<key>/online` = `,online,0`, which the
--     broker publishes when the connection dies uncleanly; `,online,1` is
--     published, retained, once connected, so a cloud that starts later
--     still knows;
--   - subscribe to `mcs/<id>/<key>/+` at QoS 1; each message is one
--     command, payload `timestamp,channel,value` (a FOTA value keeps its
--     commas), delivered to the client as the TCP channel's are;
--   - data points go out as QoS 1 publishes to `mcs/<id>/<key>/<channel>`
--     (ctx.publisher) while connected; the version report stays on REST,
--     as MCS had it.
-- Liveness is MQTT's keepalive (`mqtt.keepalive`, default the client's
-- heartbeat): a broker that stops answering ends the session, and the
-- client reconnects with its usual backoff.

local sched = require "fotahost.sched"
local framer = require "fotahost.mcs.framer"

local M = {}

-- Our own publishes come back on the wildcard subscription (MQTT 3.1.1
-- has no "no local"). Each one published is remembered (at most ECHOES,
-- the oldest forgotten first) and its first echo skipped: a command the
-- cloud sends on a channel the device also reports on still gets through.
-- Channel `online` is the connection's own (the will, and its retained
-- copy the broker sends at every subscribe): never a command.
local ECHOES = 256
local ONLINE = "online"

local function echoes()
  local count, order, first, last = {}, {}, 1, 0
  local e = {}
  function e.add(key)
    last = last + 1
    order[last] = key
    count[key] = (count[key] or 0) + 1
    if last - first >= ECHOES then
      local old = order[first]
      order[first], first = nil, first + 1
      if count[old] then count[old] = count[old] > 1 and count[old] - 1 or nil end
    end
  end
  function e.take(key) -- true when `key` was published and its echo not yet seen
    local n = count[key]
    if not n then return false end
    count[key] = n > 1 and n - 1 or nil
    return true
  end
  return e
end

-- The cloud (fotahost.mcs_cloud.broker) skips its own echoes the same way.
M.echoes = echoes

local function count(ctx, name) ctx.counters[name] = (ctx.counters[name] or 0) + 1 end

-- The broker's address for messages: the URL's scheme, host and port.
local function shown(url) return (url:gsub("/+$", "")) end

-- Connects to the broker as the device. @return client | nil, why
local function connect(ctx, base)
  local o = ctx.opts.mqtt or {}
  if not o.url then return nil, "no broker: the mqtt table has no url" end
  local mqtt = require "fotahost.mqtt" -- a plugin: loaded when the transport is used
  return mqtt.connect {
    url = o.url, client_id = o.client_id or "fotahost-" .. ctx.device_id, clean_session = false,
    username = o.username, password = o.password, cafile = o.cafile, capath = o.capath, insecure = o.insecure,
    keepalive = o.keepalive or math.max(5, math.floor(ctx.opts.heartbeat)),
    connect_timeout = ctx.opts.connect_timeout, max_payload = ctx.opts.max_command,
    will = { topic = base .. ONLINE, payload = ",online,0", qos = 1, retain = true },
  }
end

-- One message from the broker: a command for the client, unless it is
-- one of our own data points echoed back.
local function on_message(ctx, base, own, topic, payload)
  if topic:sub(1, #base) ~= base then
    count(ctx, "foreign") -- not ours: a broker that routes wrongly
    return
  end
  local channel = topic:sub(#base + 1)
  if channel == ONLINE or own.take(topic .. "\0" .. payload) then return end
  local c = framer.parse_payload(ctx.device_id, ctx.device_key, payload)
  if not c.error and c.channel ~= channel then
    c = { text = payload, error = ("sent on channel %s's topic, naming channel %s"):format(channel, c.channel) }
  end
  count(ctx, "messages")
  ctx.deliver(c)
end

--- One session (docs/transport.md): returns nil, why when it ends.
function M.session(ctx)
  local base = ("mcs/%s/%s/"):format(ctx.device_id, ctx.device_key)
  local c, err = connect(ctx, base)
  if not c then return nil, err end
  -- however the session ends (a service stop cancels it): say offline,
  -- as the will says it for an unclean end
  local _ <close> = setmetatable({}, { __close = function()
    c:close { topic = base .. ONLINE, payload = ",online,0", retain = true }
  end })
  local granted
  granted, err = c:subscribe(base .. "+", 1)
  if not granted then return nil, err end
  local ok
  local own = echoes()
  ok, err = c:publish(base .. ONLINE, ",online,1", 1, true)
  if not ok then return nil, "publishing online: " .. tostring(err) end
  ctx.connected(shown(ctx.opts.mqtt.url))
  ctx.publisher(function(points)
    for _, p in ipairs(points) do
      local payload = ("%s,%s,%s"):format(p.timestamp and ("%d"):format(p.timestamp) or "", p.channel, p.value)
      own.add(base .. p.channel .. "\0" .. payload)
      local pok, perr = c:publish(base .. p.channel, payload, 1, false)
      if not pok then return nil, perr end
      count(ctx, "points_published")
    end
    return true
  end)
  while true do
    local topic, payload = c:receive(60)
    if topic then
      on_message(ctx, base, own, topic, payload)
      sched.yield() -- a flood must not starve the handlers and the publisher
    elseif payload ~= "timeout" then
      return nil, payload
    end
  end
end

return M
