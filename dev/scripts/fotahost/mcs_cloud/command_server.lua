--- fotahost.mcs_cloud.command_server: the local cloud's TCP command
-- channel. Devices connect, send heartbeats ("id,key,timestamp"), and
-- receive commands ("id,key,timestampMs,channel,value"), written as MCS
-- wrote them: no line end unless asked, and spaced apart. Its functions
-- are methods of the cloud object (fotahost.mcs_cloud installs them).

local sched = require "fotahost.sched"
local sys = require "fotahost.sys"
local logmod = require "fotahost.log"
local C = require "fotahost.mcs_cloud.common"

local log = logmod.get("cloud")
local fmt = string.format
local display, now_ms, push_bounded, same_secret = C.display, C.now_ms, C.push_bounded, C.same_secret

local CS = {}
local methods = {}
CS.methods = methods


--- Splits what a device sent on the command channel into messages.
-- Heartbeats are "id,key,timestamp". They may end with "\n" or "\r\n" or
-- with nothing at all: mcsjs wrote each heartbeat bare, so two may arrive
-- glued ("d,k,0d,k,0"). A message therefore ends at a line end, or where
-- the next message's "id,key," prefix starts, or - for the last one, when
-- `flush` is set because the line went quiet - at the end of the buffer.
-- @return list of messages, remainder (bytes of a message not yet ended)
function CS.split_messages(buf, flush)
  local out = {}
  while true do
    buf = buf:gsub("^[\r\n]+", "")
    if buf == "" then break end
    local eol = buf:find("[\r\n]")
    local prefix = buf:match("^[^,\r\n]+,[^,\r\n]+,")
    local nextp = prefix and buf:find(prefix, #prefix + 1, true)
    if eol and (not nextp or eol < nextp) then
      out[#out + 1] = buf:sub(1, eol - 1)
      buf = buf:sub(eol + 1)
    elseif nextp then
      out[#out + 1] = buf:sub(1, nextp - 1)
      buf = buf:sub(nextp)
    elseif flush then
      out[#out + 1] = buf
      buf = ""
    else
      break
    end
  end
  return out, buf
end

-- Checks the id and key a device sent and, the first time, binds the
-- connection to the device. @return the device | nil (ignore the
-- message) | false (close the connection)
function methods:identify(conn, id, key)
  local dev = self.devices[id]
  if not dev then
    log.warn("%s: heartbeat for unknown device %q; closing", conn.peer, id)
    return false
  end
  if not same_secret(key, dev.key) then
    log.warn("%s: heartbeat for device %s with a wrong key; closing", conn.peer, id)
    return false
  end
  if conn.device and conn.device ~= dev then
    log.warn("%s: heartbeat for device %s on %s's connection; ignored", conn.peer, id, conn.device.id)
    return nil
  end
  if not conn.device then
    -- The first valid heartbeat binds the connection. A device that
    -- reconnects (its old socket half-dead) must get its commands on the
    -- new one: the newest connection wins, and the old one is closed.
    local old = dev.conn
    conn.device = dev
    dev.conn = conn
    if old and old ~= conn then
      log.info("device %s: new connection from %s replaces the one from %s", id, conn.peer, old.peer)
      sched.cancel(old.task)
    else
      log.info("device %s connected from %s", id, conn.peer)
    end
    self:emit("device", { device = id, connected = true, transport = "tcp", peer = conn.peer })
    self:rollout_connected(dev)
  end
  return dev
end

-- Handles one message from a connection. @return false to close it
function methods:on_message(conn, msg)
  local id, key, ts = msg:match("^([^,]*),([^,]*),(.*)$")
  if not id or not ts:find("^%d*$") then
    log.warn("%s: not a heartbeat (\"deviceId,deviceKey,timestamp\"): %q; ignored",
      conn.peer, logmod.redact(msg:sub(1, 200)))
    return true
  end
  local dev = self:identify(conn, id, key)
  if not dev then return dev ~= false end
  local at = sys.time()
  dev.heartbeat_count = dev.heartbeat_count + 1
  dev.last_heartbeat = at
  push_bounded(dev.heartbeats, { at = at, timestamp = ts }, C.MAX_HEARTBEATS)
  log.debug("device %s: heartbeat %s", id, ts)
  self:emit("heartbeat", { device = id })
  return true
end

-- A device connection's record, kept in the cloud's list until it ends.
local function open_conn(self, sock)
  local task = sched.current()
  local host, port = sock:getpeername()
  local conn = { sock = sock, task = task, since = sys.time(), sends = {},
                 peer = host and display(host, port) or sock.name }
  self._conns[task] = conn
  return conn
end

-- The end of a connection, however it came.
local function close_conn(self, conn)
  -- Sends still waiting on this socket must not outlive it.
  for t in pairs(conn.sends) do sched.cancel(t) end
  conn.sock:close()
  self._conns[conn.task] = nil
  local dev = conn.device
  if dev and dev.conn == conn then
    dev.conn = nil
    dev.disconnected_at = sys.time()
    log.info("device %s (%s) disconnected", dev.id, conn.peer)
    self:emit("device", { device = dev.id, connected = false, transport = "tcp", peer = conn.peer })
  end
end

-- Reads once from a device and handles the messages that completed.
-- `st`: the bytes of a message not yet ended (`buf`), when the device last
-- sent (`last_data`). @return true to go on, false/nil to close
local function read_once(self, conn, st)
  local wait = #st.buf > 0 and C.QUIET_GAP or 60
  if self.idle_timeout then
    wait = math.max(0, math.min(wait, st.last_data + self.idle_timeout - sched.now()))
  end
  local data, why = conn.sock:read_some(65536, wait)
  if data then
    st.buf = st.buf .. data
    st.last_data = sched.now()
  end
  local msgs
  msgs, st.buf = CS.split_messages(st.buf, data == nil)
  for _, m in ipairs(msgs) do
    if not self:on_message(conn, m) then return false end
  end
  -- A first heartbeat sent bare (as mcsjs and fotahost.mcs do) ends only
  -- at the quiet gap, but its id and key are whole at the second comma:
  -- bind then, or a command pushed right after it is refused.
  local id, key = st.buf:match("^([^,\r\n]+),([^,\r\n]+),")
  if id and not conn.device and self:identify(conn, id, key) == false then return end
  if #st.buf > C.MAX_MESSAGE then
    log.warn("%s: %d bytes without a message boundary; closing", conn.peer, #st.buf)
    return false
  end
  if why and why ~= "timeout" then
    log.debug("%s: %s", conn.peer, why)
    return false
  end
  if self.idle_timeout and sched.now() - st.last_data >= self.idle_timeout then
    log.info("%s: silent for %g s; closing", conn.peer, self.idle_timeout)
    return false
  end
  return true
end

-- A device connection's task: reads until it ends or the cloud closes.
function methods:serve_device(sock)
  local conn = open_conn(self, sock)
  local _ <close> = setmetatable({}, { __close = function() close_conn(self, conn) end })
  sock:setoption("nodelay", true) -- raw chunks go out as sent
  log.debug("tcp connection from %s", conn.peer)
  local st = { buf = "", last_data = sched.now() }
  while not self._closed and read_once(self, conn, st) do end
end

function methods:accept_loop()
  while not self._closed do
    local sock, err = self.tcp:accept(60)
    if sock then
      sched.spawn({ name = "cloud device " .. sock.name, log_errors = true }, self.serve_device, self, sock)
    elseif err ~= "timeout" then
      log.warn("accept on tcp port %d: %s", self.tcp_port, tostring(err))
      sched.sleep(0.1)
    end
  end
end

--- Writes `pieces` (strings) to the device's connection, pausing `gap`
-- seconds between them, after any send already under way on it (sends are
-- serialised: one writer at a time on a socket).
-- @return the sending task (join it: true | false, err) | nil, "not connected"
function methods:send_raw(dev, pieces, gap)
  local conn = dev.conn
  if not conn then return nil, "device " .. dev.id .. " is not connected" end
  local prev = conn.last_send
  local t
  t = sched.spawn({ name = "cloud send " .. dev.id, log_errors = false }, function()
    if prev then sched.join(prev) end
    -- MCS ended no command with a line end: a client that takes one read
    -- for one command would lose the second of two written back to back.
    local wait = (conn.quiet_until or 0) - sched.now()
    if wait > 0 then sched.sleep(wait) end
    push_bounded(dev.commands, sys.time(), C.MAX_COMMANDS_KEPT)
    for i, piece in ipairs(pieces) do
      if i > 1 and gap > 0 then sched.sleep(gap) end
      local ok, why = conn.sock:write(piece, C.WRITE_TIMEOUT)
      if not ok then
        conn.sends[t] = nil
        return nil, why
      end
    end
    conn.quiet_until = sched.now() + self.command_spacing
    conn.sends[t] = nil
    return true
  end)
  conn.sends[t] = true
  conn.last_send = t
  return t
end

--- The command line for a channel and value, as MCS wrote it.
function methods:command_line(dev, channel, value)
  return fmt("%s,%s,%d,%s,%s%s", dev.id, dev.key, now_ms(), channel, value, self.newline and "\n" or "")
end

-- Sends and waits for the bytes to be written. @return true | nil, err
function methods:send_and_wait(dev, pieces, gap)
  local t, err = self:send_raw(dev, pieces, gap or 0)
  if not t then return nil, err end
  local ok, r1, r2 = sched.join(t, C.WRITE_TIMEOUT + #pieces * (gap or 0) + 5)
  if ok == nil then return nil, "timed out sending to " .. dev.id end
  if not ok then return nil, "connection to " .. dev.id .. " lost while sending: " .. tostring(r1) end
  if not r1 then return nil, "sending to " .. dev.id .. ": " .. tostring(r2) end
  dev.commands_sent = dev.commands_sent + 1
  return true
end
return CS
