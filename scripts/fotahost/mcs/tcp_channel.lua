--- fotahost.mcs.tcp_channel: the MCS command channel over TCP (the
-- transport the public service and mcsjs used). One session: ask the REST
-- API where the command server is, connect, send a heartbeat at once and
-- then every `heartbeat` seconds, and hand every command read to the
-- client. A session returns (with the reason) when the connection ends;
-- reconnecting is the client's job (fotahost.mcs), so another transport
-- (MQTT, a later issue) only has to provide the same `session`.
--
-- Transport interface, as fotahost.mcs uses it:
--   transport.session(client, on_connected) -> nil, "why the session ended"
-- where client gives `device_id`, `device_key`, `opts` and the methods
-- `_api(method, path, body)` (a REST call), `_command(text)` (dispatch
-- one command) and `_log`.

local sched = require "fotahost.sched"
local tcp_socket = require "fotahost.tcp_socket"
local framer = require "fotahost.mcs.framer"
local cjson = require "cjson.safe"

local M = {}

--- Parses the connections answer, in its CSV ("ip,port") or JSON form.
function M.parse_server(body)
  local ip, port = body:match("^%s*([^,%s]+)%s*,%s*(%d+)%s*$")
  if not ip then
    local j = cjson.decode(body)
    if type(j) == "table" then ip, port = j.ip, j.port end
  end
  port = tonumber(port)
  if type(ip) ~= "string" or ip == "" or not port or port < 1 or port > 65535 or port % 1 ~= 0 then
    return nil, "the command server's address is not ip,port: " .. body:sub(1, 80)
  end
  return ip, math.tointeger(port)
end

--- Where the command server is: ip, port | nil, why.
function M.find_server(client)
  local res, err = client:_api("GET", "/connections.csv")
  if not res then return nil, err end
  return M.parse_server(res.body)
end

--- One connected session; returns nil, why when it ends.
function M.session(client, on_connected)
  local o, log = client.opts, client._log
  local ip, port = M.find_server(client)
  if not ip then return nil, port end
  local sock <close>, err = tcp_socket.connect(ip, port, o.connect_timeout)
  if not sock then return nil, err end
  sock:setoption("keepalive", true)
  -- A heartbeat the server has not acknowledged within this time means
  -- the connection is dead (a cloud gone without a reset, a lost NAT
  -- mapping): the next read fails and the client reconnects, instead of
  -- waiting for TCP's own ~15 minutes.
  sock:setoption("user_timeout", o.heartbeat * 2 + 10)
  local name = sock.name
  local beat = ("%s,%s,0"):format(client.device_id, client.device_key)
  if o.heartbeat_newline then beat = beat .. "\n" end

  -- A heartbeat goes out at once: the server learns who we are.
  local ok, why = sock:write(beat, o.write_timeout)
  if not ok then return nil, ("%s: heartbeat not sent: %s"):format(name, why) end
  client.heartbeats_sent = client.heartbeats_sent + 1
  on_connected(("%s:%d"):format(ip, port))

  local ended -- why the session ended, set by whichever task saw it first
  local beater = sched.spawn({ name = "mcs heartbeat" }, function()
    while true do
      sched.sleep(o.heartbeat)
      local wok, wwhy = sock:write(beat, o.write_timeout)
      if not wok then
        ended = ended or ("%s: heartbeat not sent: %s"):format(name, wwhy)
        sock:shutdown("rw") -- wakes the reader below
        return
      end
      client.heartbeats_sent = client.heartbeats_sent + 1
      log.debug("heartbeat sent")
    end
  end)
  local _ <close> = setmetatable({}, { __close = function() sched.cancel(beater) end })

  local f = framer.new(client.device_id, client.device_key, o.max_command)
  local last_heard = sched.now()
  local function deliver(kind, a)
    if kind == "command" then
      client:_command(a)
    else
      client.cut_off = client.cut_off + 1
      log.warn("%s: a command of %d bytes, longer than max_command (%d), was cut off",
        name, a, o.max_command)
    end
  end
  while not ended do
    -- Wait for bytes; with a command buffered, only for a quiet gap.
    -- (longer once the server has been seen to end commands with line
    -- ends: a pause inside one is then a slow network, not its end)
    local wait = f:pending() and (f.saw_eol and o.eol_gap or o.quiet_gap) or o.heartbeat
    if o.dead_peer then
      wait = math.min(wait, math.max(0, last_heard + o.dead_peer - sched.now()))
    end
    local data, rwhy = sock:read_some(65536, wait)
    if data then
      last_heard = sched.now()
      -- A server may send without a pause (a flood): read_some returns at
      -- once while bytes are buffered, so the reader yields after each
      -- command and each read, and heartbeats and handlers still run.
      for kind, a in f:feed(data) do
        deliver(kind, a)
        sched.yield()
      end
      sched.yield()
    elseif rwhy == "timeout" then
      if f:pending() then
        for kind, a in f:flush() do deliver(kind, a) end
      end
      if o.dead_peer and sched.now() - last_heard >= o.dead_peer then
        ended = ("%s: nothing heard for %g s"):format(name, o.dead_peer)
      end
    else
      for kind, a in f:flush() do deliver(kind, a) end
      ended = ended or (rwhy == "closed" and ("%s: closed by the server"):format(name) or rwhy)
    end
  end
  return nil, ended
end

return M
