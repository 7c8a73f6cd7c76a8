--- fotahost.mcs.tcp_channel: the MCS command channel over TCP (the
-- transport the public service and mcsjs used). One session: ask the REST
-- API where the command server is, connect, send a heartbeat at once and
-- then every `heartbeat` seconds, and deliver every command read. A
-- session returns (with the reason) when the connection ends;
-- reconnecting is the client's job (fotahost.mcs).
--
-- It is a transport as docs/transport.md describes: `session(ctx)`, where
-- ctx is all it knows of the client (device id and key, options, a REST
-- call, connected(), deliver(), a log and the counters it keeps:
-- heartbeats_sent, cut_off).

local sched = require "fotahost.sched"
local tcp = require "fotahost.tcp"
local framer = require "fotahost.mcs.framer"
local cjson = require "cjson.safe"

local M = {}

local function count(ctx, name)
  ctx.counters[name] = (ctx.counters[name] or 0) + 1
end

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
function M.find_server(ctx)
  local res, err = ctx.api("GET", "/connections.csv")
  if not res then return nil, err end
  return M.parse_server(res.body)
end

-- Connects to the command server. @return sock, "ip:port" | nil, why
local function connect(ctx)
  local o = ctx.opts
  local ip, port = M.find_server(ctx)
  if not ip then return nil, port end
  local sock, err = tcp.connect(ip, port, o.connect_timeout)
  if not sock then return nil, err end
  sock:setoption("keepalive", true)
  -- A heartbeat the server has not acknowledged within this time means
  -- the connection is dead (a cloud gone without a reset, a lost NAT
  -- mapping): the next read fails and the client reconnects, instead of
  -- waiting for TCP's own ~15 minutes.
  sock:setoption("user_timeout", o.heartbeat * 2 + 10)
  return sock, ("%s:%d"):format(ip, port)
end

-- The task that sends a heartbeat every `heartbeat` seconds; when one
-- cannot be sent it says why in `s.ended` and wakes the reader.
local function heartbeats(ctx, s, beat)
  local o = ctx.opts
  return sched.spawn({ name = "mcs heartbeat" }, function()
    while true do
      sched.sleep(o.heartbeat)
      local ok, why = s.sock:write(beat, o.write_timeout)
      if not ok then
        s.ended = s.ended or ("%s: heartbeat not sent: %s"):format(s.sock.name, why)
        s.sock:shutdown("rw") -- wakes the reader
        return
      end
      count(ctx, "heartbeats_sent")
      ctx.log.debug("heartbeat sent")
    end
  end)
end

-- Hands what the framer found to the client: a command, or the news that
-- an over-long one was cut off.
local function pass_on(ctx, s, kind, a)
  if kind == "command" then return ctx.deliver(a) end
  count(ctx, "cut_off")
  ctx.log.warn("%s: a command of %d bytes, longer than max_command (%d), was cut off",
    s.sock.name, a, ctx.opts.max_command)
end

-- How long to wait for bytes: with a command buffered, only for a quiet
-- gap (longer once the server has been seen to end commands with line
-- ends: a pause inside one is then a slow network, not its end).
local function read_wait(o, s)
  local f = s.framer
  local wait = f:pending() and (f.saw_eol and o.eol_gap or o.quiet_gap) or o.heartbeat
  if o.dead_peer then
    wait = math.min(wait, math.max(0, s.last_heard + o.dead_peer - sched.now()))
  end
  return wait
end

-- One read's worth: bytes framed and delivered, a quiet gap that ends a
-- buffered command, or the end of the connection (in `s.ended`).
local function read_once(ctx, s)
  local o, f = ctx.opts, s.framer
  local data, why = s.sock:read_some(65536, read_wait(o, s))
  if data then
    s.last_heard = sched.now()
    -- A server may send without a pause (a flood): read_some returns at
    -- once while bytes are buffered, so the reader yields after each
    -- command and each read, and heartbeats and handlers still run.
    for kind, a in f:feed(data) do
      pass_on(ctx, s, kind, a)
      sched.yield()
    end
    sched.yield()
  elseif why == "timeout" then
    if f:pending() then
      for kind, a in f:flush() do pass_on(ctx, s, kind, a) end
    end
    if o.dead_peer and sched.now() - s.last_heard >= o.dead_peer then
      s.ended = ("%s: nothing heard for %g s"):format(s.sock.name, o.dead_peer)
    end
  else
    for kind, a in f:flush() do pass_on(ctx, s, kind, a) end
    s.ended = s.ended or (why == "closed" and ("%s: closed by the server"):format(s.sock.name) or why)
  end
end

--- One connected session; returns nil, why when it ends.
function M.session(ctx)
  local o = ctx.opts
  local beat = ("%s,%s,0"):format(ctx.device_id, ctx.device_key)
  if o.heartbeat_newline then beat = beat .. "\n" end
  local sock <close>, where = connect(ctx)
  if not sock then return nil, where end
  -- A heartbeat goes out at once: the server learns who we are.
  local ok, why = sock:write(beat, o.write_timeout)
  if not ok then return nil, ("%s: heartbeat not sent: %s"):format(sock.name, why) end
  count(ctx, "heartbeats_sent")
  ctx.connected(where)
  -- why the session ended (`ended`), set by whichever task saw it first
  local s = { sock = sock, framer = framer.new(ctx.device_id, ctx.device_key, o.max_command),
              last_heard = sched.now(), ended = nil }
  local beater = heartbeats(ctx, s, beat)
  local _ <close> = setmetatable({}, { __close = function() sched.cancel(beater) end })
  while not s.ended do read_once(ctx, s) end
  return nil, s.ended
end

return M
