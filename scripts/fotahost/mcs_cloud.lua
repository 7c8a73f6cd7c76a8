--- fotahost.mcs_cloud: a local stand-in for MediaTek Cloud Sandbox (MCS).
--
-- A development and test tool: a device client written against the public
-- MCS documentation (docs of the protocol: /work/shared/docs/mcs-protocol.md,
-- summarised in docs/cloud.md) works against it unchanged. One process, two
-- listeners, everything on fotahost.sched tasks:
--
-- * an HTTP server (fotahost.httpd): the device REST API under /mcs/v2,
--   firmware files under /firmwares/NAME, and an admin API under /admin
--   (JSON only, a bearer token made at start, no cross-site requests from
--   browsers) that tests and the `fotahost cloud` CLI drive;
-- * a TCP command server: devices connect, send heartbeats, and receive
--   commands ("id,key,timestampMs,channel,value"), FOTA pushes included.
--
--     local cloud = assert(mcs_cloud.new { devices = { "dev1:key12345" } })
--     sched.run(function()
--       assert(cloud:start())
--       print(cloud:ready_line())   -- cloud http://127.0.0.1:8080 tcp 127.0.0.1:40123
--       sched.sleep(60)
--       cloud:close()
--     end)
--
-- State is in memory (bounded), except registered firmwares: their files
-- live in the firmware directory with a manifest (cloud-firmwares.json), so
-- a restarted cloud knows them again.

local sched = require "fotahost.sched"
local sys = require "fotahost.sys"
local httpd = require "fotahost.httpd"
local tcp_socket = require "fotahost.tcp_socket"
local cjson = require "cjson.safe"
local logmod = require "fotahost.log"

local log = logmod.get("cloud")
local fmt, concat = string.format, table.concat

local M = {}

M.MAX_POINTS = 1000           -- data points kept per device and channel
M.MAX_HEARTBEATS = 100        -- heartbeat arrival times kept per device
M.MAX_POINTS_PER_REQUEST = 5  -- as the MCS reference says
M.QUIET_GAP = 0.2             -- s of silence that ends an unterminated device message
M.MAX_MESSAGE = 4096          -- bytes of device message without a boundary: the peer is closed
M.WRITE_TIMEOUT = 10          -- s a command write may wait for the device to take it
M.DEFAULT_GAP_MS = 20         -- pause between raw chunks unless gap_ms says otherwise
M.COMMAND_SPACING = 0.02      -- s between two commands to one device (MCS sent no terminator)
M.MAX_COMMANDS_KEPT = 20      -- command write times kept per device
M.MAX_FIRMWARE = 4 << 20      -- bytes of one firmware file (an uploaded body, or --firmware)
M.TOKEN_BYTES = 32            -- random bytes in the admin token (hex: twice as many characters)
M.MANIFEST = "cloud-firmwares.json"

local Cloud = {}
Cloud.__index = Cloud

---------------------------------------------------------------- helpers

local function now_ms()
  return math.floor(sys.time() * 1000)
end

local function display(host, port)
  return fmt(host:find(":", 1, true) and "[%s]:%d" or "%s:%d", host, port)
end

-- lua-cjson 2.1 encodes an empty table as {}: lists that may be empty go
-- through array(), and encode() turns the marker back into [].
local EMPTY_ARRAY = "\1fotahost-empty-array\1"
local function array(t)
  if #t == 0 then return EMPTY_ARRAY end
  return t
end
local function encode(value)
  local s = assert(cjson.encode(value))
  return (s:gsub('"\\u0001fotahost%-empty%-array\\u0001"', "[]"))
end

-- A JSON value as a command or label string: cjson decodes every number as
-- a float, and 2.0 must read "2", not "2.0".
local function as_text(v)
  if type(v) == "number" then
    local i = math.tointeger(v)
    return i and tostring(i) or fmt("%.14g", v)
  end
  if type(v) == "string" then return v end
  return nil
end

-- A firmware file name fit for /firmwares/NAME: no directory, nothing hidden.
local function safe_name(name)
  return type(name) == "string" and name ~= "" and not name:find("[/%c]") and name:sub(1, 1) ~= "."
end

-- Why `name` in the firmware directory `dir` is not a firmware file the
-- cloud may read, or nil when it is one: a regular file, not a link (a
-- link could name any file of the host), not a device or FIFO.
local function unfit_file(dir, name)
  if not safe_name(name) or name == M.MANIFEST then
    return fmt("bad firmware file name %q (a name inside the firmware directory %s)", tostring(name), dir), 400
  end
  local st = sys.lstat(dir .. "/" .. name)
  if not st then return fmt("%s/%s: no such firmware file", dir, name), 404 end
  if st.type ~= "file" then
    return fmt("%s/%s: a %s, not a regular file: refused", dir, name, st.type), 400
  end
  return nil
end

-- `text` with every occurrence of `secret` replaced by "****".
local function mask(text, secret)
  local out, at = {}, 1
  while true do
    local s, e = text:find(secret, at, true)
    if not s then break end
    out[#out + 1] = text:sub(at, s - 1) .. "****"
    at = e + 1
  end
  out[#out + 1] = text:sub(at)
  return concat(out)
end

---------------------------------------------------------------- the admin token

--- Where admin tokens live by default: a directory of this user's own
-- ($XDG_RUNTIME_DIR/fotahost, else ~/.local/state/fotahost).
-- @return dir | nil, err
function M.token_dir()
  local run = os.getenv("XDG_RUNTIME_DIR")
  if run and run:sub(1, 1) == "/" then return run .. "/fotahost" end
  local home = os.getenv("HOME")
  if home and home:sub(1, 1) == "/" then return home .. "/.local/state/fotahost" end
  return nil, "neither XDG_RUNTIME_DIR nor HOME is set: give --token-file"
end

--- The default token file of the cloud whose HTTP port is `port`: one per
-- port, so clouds side by side and the CLI find theirs.
function M.token_path(port)
  local dir, err = M.token_dir()
  if not dir then return nil, err end
  return fmt("%s/cloud-%d.token", dir, port)
end

-- Makes `dir` (mode 0700) and checks nobody else can plant a file there:
-- a link or a directory of another user is refused (as fota.private_dir
-- does for the app's state_dir).
local function private_dir(dir)
  -- parents as usual (~/.local is not ours to close), the directory 0700
  local parent = dir:match("^(.+)/[^/]+/*$")
  if parent then sys.mkdir(parent, tonumber("755", 8)) end
  local ok, err = sys.mkdir(dir, tonumber("700", 8))
  if not ok then return nil, err end
  local st
  st, err = sys.lstat((dir:gsub("(.)/+$", "%1")))
  if not st then return nil, err end
  if st.type == "link" then return nil, dir .. ": a symbolic link: refused" end
  if st.uid ~= sys.geteuid() then
    return nil, fmt("%s: owned by uid %d, not by this user: refused", dir, st.uid)
  end
  return true
end

local function new_token()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(M.TOKEN_BYTES)
  if f then f:close() end
  if not bytes or #bytes ~= M.TOKEN_BYTES then return nil, "/dev/urandom: cannot read random bytes" end
  return (bytes:gsub(".", function(c) return fmt("%02x", c:byte()) end))
end

--- The admin token kept in `path` (default: the token file of the cloud
-- at `url`). @return token | nil, err
function M.read_token(url, path)
  if not path then
    local port = url:match("^%a[%w+.-]*://[^/?#]-:(%d+)") or (url:match("^https:") and "443" or "80")
    local err
    path, err = M.token_path(math.tointeger(tonumber(port)))
    if not path then return nil, err end
  end
  local data, err = sys.read_file(path, 4096)
  if not data then return nil, "admin token: " .. err end
  local token = data:match("^(%x+)\n?$")
  if not token then return nil, path .. ": not an admin token" end
  return token
end

--- The headers an admin request to the cloud at `url` needs: the token
-- `token`, or the one in `path` (default: the cloud's token file).
-- @return headers | nil, err
function M.admin_headers(url, token, path)
  if not token then
    local err
    token, err = M.read_token(url, path)
    if not token then return nil, err end
  end
  return { Authorization = "Bearer " .. token }
end

-- Compares a secret given (an admin token, a device key) with the real one
-- in a time that does not depend on where they differ: a remote guesser
-- learns nothing from timing. `given` may be nil (not sent).
local function same_secret(given, token)
  if type(given) ~= "string" then return false end
  if #given ~= #token then return false end
  local diff = 0
  for i = 1, #token do diff = diff | (given:byte(i) ~ token:byte(i)) end
  return diff == 0
end

--- Splits what a device sent on the command channel into messages.
-- Heartbeats are "id,key,timestamp". They may end with "\n" or "\r\n" or
-- with nothing at all: mcsjs wrote each heartbeat bare, so two may arrive
-- glued ("d,k,0d,k,0"). A message therefore ends at a line end, or where
-- the next message's "id,key," prefix starts, or - for the last one, when
-- `flush` is set because the line went quiet - at the end of the buffer.
-- @return list of messages, remainder (bytes of a message not yet ended)
function M.split_messages(buf, flush)
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

--- Parses a datapoints.csv body: lines "chn,timestamp,value" where the
-- value is everything after the second comma (GPS "lat,lon,alt", PWM
-- "value,period") and an empty timestamp means "now".
-- @return list of { channel, timestamp|nil, value } | nil, message
function M.parse_csv(body)
  local points, n = {}, 0
  for line in (body .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = line:gsub("\r$", "")
    if line ~= "" then
      local chn, ts, value = line:match("^([^,]*),([^,]*),(.*)$")
      if not chn then
        return nil, fmt("line %d: expected \"dataChnId,timestamp,value\", got %q", n, line)
      end
      if not chn:find("^[%w_%-]+$") then
        return nil, fmt("line %d: bad data channel id %q", n, chn)
      end
      if ts ~= "" and not ts:find("^%d+$") then
        return nil, fmt("line %d: timestamp must be milliseconds or empty, got %q", n, ts)
      end
      points[#points + 1] = { channel = chn, timestamp = math.tointeger(tonumber(ts)), value = value }
    end
  end
  return points
end

---------------------------------------------------------------- the cloud

--- Creates a cloud (nothing listens yet; start() does that). opts:
--   host ("127.0.0.1"), port (8080), tcp_port (0: any free one)
--   devices         list of "ID:KEY" strings or { id =, key = } tables
--   firmware_dir    where firmware files live (default: a fresh /tmp dir)
--   firmwares       list of { version =, file = } registered at start (file:
--                   a path on this host, copied into the firmware directory)
--   public_url      base of the firmware URLs handed out (default http://HOST:PORT)
--   newline         end commands with "\n" (default false: MCS sent no terminator)
--   token_file      where start() writes the admin token (default: token_path(port))
--   idle_timeout    s of silence after which a device connection is closed (nil: never)
-- @return cloud | nil, err
function M.new(opts)
  opts = opts or {}
  local self = setmetatable({
    host = opts.host or "127.0.0.1",
    want_port = opts.port or 8080,
    want_tcp_port = opts.tcp_port or 0,
    public_url = opts.public_url and opts.public_url:gsub("/+$", ""),
    public_url_given = opts.public_url ~= nil,
    newline = opts.newline == true,
    token_file = opts.token_file,
    idle_timeout = opts.idle_timeout,
    devices = {},      -- id -> device
    device_order = {}, -- ids, in the order added
    firmwares = {},    -- list, in the order registered
    fw_by_version = {},
    fw_by_id = {},
    next_fw = 1,
    _conns = {},       -- task -> conn, every TCP connection
  }, Cloud)
  for _, d in ipairs(opts.devices or {}) do
    local id, key
    if type(d) == "table" then
      id, key = d.id, d.key
    else
      id, key = tostring(d):match("^([^:]+):(.+)$")
    end
    if not id then return nil, fmt("device %q: expected ID:KEY", tostring(d)) end
    local ok, err = self:add_device(id, key)
    if not ok then return nil, err end
  end
  local dir = opts.firmware_dir
  if not dir then
    local p = io.popen("mktemp -d /tmp/fotahost-cloud-XXXXXX")
    dir = p and p:read("l")
    if p then p:close() end
    if not dir then return nil, "cannot create a temporary firmware directory" end
    self.temp_dir = true
  else
    dir = dir:gsub("(.)/+$", "%1")
    if not os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'") then
      return nil, dir .. ": cannot create the firmware directory"
    end
  end
  self.firmware_dir = dir
  self:load_manifest()
  for _, fw in ipairs(opts.firmwares or {}) do
    local content, err = sys.read_file(fw.file, M.MAX_FIRMWARE)
    if not content then return nil, "firmware " .. tostring(fw.version) .. ": " .. err end
    local ok, uerr = self:upload_firmware(fw.version, fw.file:match("([^/]+)$"), content)
    if not ok then return nil, uerr end
  end
  return self
end

--- Adds a device. IDs and keys are short ASCII strings without commas
-- (they are fields of the command lines). @return device | nil, err
function Cloud:add_device(id, key)
  if type(id) ~= "string" or not id:find("^[%w_%-%.]+$") then
    return nil, fmt("bad device id %q (letters, digits, _ - . only)", tostring(id))
  end
  if type(key) ~= "string" or key == "" or key:find("[,%s%c]") then
    return nil, fmt("device %s: bad key (no commas, spaces or control characters)", id)
  end
  if self.devices[id] then return nil, "device " .. id .. " exists already" end
  if #key >= 4 then log.secret(key) end
  local dev = {
    id = id, key = key,
    conn = nil,           -- the bound TCP connection, if any
    heartbeats = {},      -- recent { at = epoch s, timestamp = "..." }
    heartbeat_count = 0,
    points = {},          -- channel -> list of { timestamp, values, received }
    channel_order = {},
    commands_sent = 0,
    commands = {},        -- when the latest commands were written (epoch s)
  }
  self.devices[id] = dev
  self.device_order[#self.device_order + 1] = id
  return dev
end

---------------------------------------------------------------- firmwares

local WILDCARD = { ["0.0.0.0"] = true, ["::"] = true }

-- Where firmware URLs point: --public-url, else the address listened on;
-- when that is every address, the host the request was sent to.
function Cloud:base_url(req)
  if not self.public_url_given and WILDCARD[self.host] and req and req.headers.host then
    return "http://" .. req.headers.host
  end
  return self.public_url
end

function Cloud:firmware_url(fw, req)
  return self:base_url(req) .. "/firmwares/" .. fw.name:gsub("[^%w%-%._~]", function(c)
    return fmt("%%%02X", c:byte())
  end)
end

function Cloud:save_manifest()
  local list = {}
  for i, fw in ipairs(self.firmwares) do
    list[i] = { fwId = fw.fwId, version = fw.version, name = fw.name }
  end
  local path = self.firmware_dir .. "/" .. M.MANIFEST
  local f, err = io.open(path .. ".tmp", "wb")
  if not f then log.warn("cannot save the firmware manifest: %s", err) return end
  f:write(encode({ firmwares = array(list) }), "\n")
  f:close()
  os.rename(path .. ".tmp", path)
end

-- Registers again what a previous run registered (files still there only).
function Cloud:load_manifest()
  local data = sys.read_file(self.firmware_dir .. "/" .. M.MANIFEST, 1 << 20)
  if not data then return end
  local doc = cjson.decode(data)
  if type(doc) ~= "table" or type(doc.firmwares) ~= "table" then
    log.warn("%s/%s: not a firmware manifest; ignored", self.firmware_dir, M.MANIFEST)
    return
  end
  for _, e in ipairs(doc.firmwares) do
    local n = type(e.fwId) == "string" and math.tointeger(tonumber(e.fwId:match("^fw(%d+)$") or ""))
    if n and n >= self.next_fw then self.next_fw = n + 1 end
    local fw, err = self:register_firmware(as_text(e.version), e.name, e.fwId, true)
    if not fw then log.warn("manifest: %s; skipped", err) end
  end
end

--- Registers `version` as the file `name` of the firmware directory (a
-- name, never a path: the admin API must not make the cloud read, and
-- then serve, any file of its host). A version registered again is
-- replaced (its fwId kept). Versions may not hold commas or line ends:
-- they are a field of the FOTA command.
-- @return firmware | nil, err, http_status
local function bad_version(version)
  if type(version) ~= "string" or version == "" or version:find("[,%c]") then
    return fmt("bad firmware version %q (a non-empty label without commas)", tostring(version))
  end
end

function Cloud:register_firmware(version, name, fw_id, quiet)
  local bad = bad_version(version)
  if bad then return nil, bad, 400 end
  local dir = self.firmware_dir
  local unfit, status = unfit_file(dir, name)
  if unfit then return nil, "firmware " .. version .. ": " .. unfit, status end
  local path = dir .. "/" .. name
  local digest = require "fotahost.digest" -- a plugin: loaded when first needed
  local md5, err = digest.file(path, "md5")
  if not md5 then return nil, err, 500 end
  local fw = self.fw_by_version[version]
  if not fw then
    if not fw_id then
      fw_id = "fw" .. self.next_fw
      self.next_fw = self.next_fw + 1
    end
    fw = { fwId = fw_id, version = version }
    self.firmwares[#self.firmwares + 1] = fw
    self.fw_by_version[version] = fw
    self.fw_by_id[fw_id] = fw
  end
  fw.name, fw.path, fw.md5, fw.registered_at = name, path, md5, sys.time()
  if not quiet then
    self:save_manifest()
    log.info("firmware %s registered: %s (md5 %s, %s)", version, path, md5, fw.fwId)
  end
  return fw
end

--- Stores `content` (an uploaded firmware) as `name` in the firmware
-- directory and registers it as `version`. Another version's file of the
-- same name is kept: this one is then stored as VERSION-NAME.
-- @return firmware | nil, err, http_status
function Cloud:upload_firmware(version, name, content)
  local bad = bad_version(version)
  if bad then return nil, bad, 400 end
  if type(content) ~= "string" or content == "" then
    return nil, "firmware " .. version .. ": empty content", 400
  end
  if not safe_name(name) or name == M.MANIFEST then
    return nil, fmt("bad firmware file name %q (no /, not hidden)", tostring(name)), 400
  end
  for _, other in ipairs(self.firmwares) do
    if other.name == name and other.version ~= version then
      name = version:gsub("[^%w%-%._]", "_") .. "-" .. name
      break
    end
  end
  -- write_file replaces a link at `name` instead of writing through it
  local ok, err = sys.write_file(self.firmware_dir .. "/" .. name, content)
  if not ok then return nil, "storing the firmware: " .. err, 500 end
  return self:register_firmware(version, name)
end

function Cloud:firmware_json(fw, req)
  return { fwId = fw.fwId, version = fw.version, name = fw.name, md5 = fw.md5,
           url = self.public_url and self:firmware_url(fw, req), file = fw.path }
end

---------------------------------------------------------------- devices

local function push_bounded(list, item, max)
  list[#list + 1] = item
  if #list > max then table.remove(list, 1) end
end

function Cloud:store_point(dev, channel, timestamp, values)
  local list = dev.points[channel]
  if not list then
    list = {}
    dev.points[channel] = list
    dev.channel_order[#dev.channel_order + 1] = channel
  end
  push_bounded(list, { timestamp = timestamp or now_ms(), values = values, received = now_ms() },
    M.MAX_POINTS)
end

-- A device as the admin API shows it; `recent`: how many of the latest
-- data points per channel (nil: all kept).
function Cloud:device_json(dev, recent)
  local conn = dev.conn
  local beats = {}
  for i, hb in ipairs(dev.heartbeats) do beats[i] = hb.at end
  local points = {}
  for _, chn in ipairs(dev.channel_order) do
    local list = dev.points[chn]
    local from = recent and math.max(1, #list - recent + 1) or 1
    points[chn] = array(table.move(list, from, #list, 1, {}))
  end
  return {
    id = dev.id,
    connected = conn ~= nil,
    peer = conn and conn.peer or cjson.null,
    connected_since = conn and conn.since or cjson.null,
    last_heartbeat = dev.last_heartbeat or cjson.null,
    last_disconnect = dev.disconnected_at or cjson.null,
    -- recent: arrival times (epoch s); last_timestamp: the field the last one carried
    heartbeats = { count = dev.heartbeat_count, recent = array(beats),
                   last_timestamp = #dev.heartbeats > 0 and dev.heartbeats[#dev.heartbeats].timestamp or cjson.null },
    version = dev.version or cjson.null,
    version_reported_at = dev.version_at or cjson.null,
    commands_sent = dev.commands_sent,
    commands_recent = array(table.move(dev.commands, 1, #dev.commands, 1, {})),
    datapoints = points,
  }
end

---------------------------------------------------------------- TCP command channel

-- Checks the id and key a device sent and, the first time, binds the
-- connection to the device. @return the device | nil (ignore the
-- message) | false (close the connection)
function Cloud:identify(conn, id, key)
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
  end
  return dev
end

-- Handles one message from a connection. @return false to close it
function Cloud:on_message(conn, msg)
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
  push_bounded(dev.heartbeats, { at = at, timestamp = ts }, M.MAX_HEARTBEATS)
  log.debug("device %s: heartbeat %s", id, ts)
  return true
end

function Cloud:serve_device(sock)
  local task = sched.current()
  local host, port = sock:getpeername()
  local conn = { sock = sock, task = task, since = sys.time(), sends = {},
                 peer = host and display(host, port) or sock.name }
  self._conns[task] = conn
  local _ <close> = setmetatable({}, { __close = function()
    -- Sends still waiting on this socket must not outlive it.
    for t in pairs(conn.sends) do sched.cancel(t) end
    sock:close()
    self._conns[task] = nil
    local dev = conn.device
    if dev and dev.conn == conn then
      dev.conn = nil
      dev.disconnected_at = sys.time()
      log.info("device %s (%s) disconnected", dev.id, conn.peer)
    end
  end })
  sock:setoption("nodelay", true) -- raw chunks go out as sent
  log.debug("tcp connection from %s", conn.peer)
  local buf, last_data = "", sched.now()
  while not self._closed do
    local wait = #buf > 0 and M.QUIET_GAP or 60
    if self.idle_timeout then
      wait = math.max(0, math.min(wait, last_data + self.idle_timeout - sched.now()))
    end
    local data, why = sock:read_some(65536, wait)
    local flush = data == nil
    if data then
      buf = buf .. data
      last_data = sched.now()
    end
    local msgs
    msgs, buf = M.split_messages(buf, flush)
    for _, m in ipairs(msgs) do
      if not self:on_message(conn, m) then return end
    end
    -- A first heartbeat sent bare (as mcsjs and fotahost.mcs do) ends only
    -- at the quiet gap, but its id and key are whole at the second comma:
    -- bind then, or a command pushed right after it is refused.
    local id, key = buf:match("^([^,\r\n]+),([^,\r\n]+),")
    if id and not conn.device and self:identify(conn, id, key) == false then return end
    if #buf > M.MAX_MESSAGE then
      log.warn("%s: %d bytes without a message boundary; closing", conn.peer, #buf)
      return
    end
    if why and why ~= "timeout" then
      log.debug("%s: %s", conn.peer, why)
      return
    end
    if self.idle_timeout and sched.now() - last_data >= self.idle_timeout then
      log.info("%s: silent for %g s; closing", conn.peer, self.idle_timeout)
      return
    end
  end
end

function Cloud:accept_loop()
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
function Cloud:send_raw(dev, pieces, gap)
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
    push_bounded(dev.commands, sys.time(), M.MAX_COMMANDS_KEPT)
    for i, piece in ipairs(pieces) do
      if i > 1 and gap > 0 then sched.sleep(gap) end
      local ok, why = conn.sock:write(piece, M.WRITE_TIMEOUT)
      if not ok then
        conn.sends[t] = nil
        return nil, why
      end
    end
    conn.quiet_until = sched.now() + M.COMMAND_SPACING
    conn.sends[t] = nil
    return true
  end)
  conn.sends[t] = true
  conn.last_send = t
  return t
end

--- The command line for a channel and value, as MCS wrote it.
function Cloud:command_line(dev, channel, value)
  return fmt("%s,%s,%d,%s,%s%s", dev.id, dev.key, now_ms(), channel, value, self.newline and "\n" or "")
end

-- Sends and waits for the bytes to be written. @return true | nil, err
function Cloud:send_and_wait(dev, pieces, gap)
  local t, err = self:send_raw(dev, pieces, gap or 0)
  if not t then return nil, err end
  local ok, r1, r2 = sched.join(t, M.WRITE_TIMEOUT + #pieces * (gap or 0) + 5)
  if ok == nil then return nil, "timed out sending to " .. dev.id end
  if not ok then return nil, "connection to " .. dev.id .. " lost while sending: " .. tostring(r1) end
  if not r1 then return nil, "sending to " .. dev.id .. ": " .. tostring(r2) end
  dev.commands_sent = dev.commands_sent + 1
  return true
end

---------------------------------------------------------------- HTTP: responses

local function send_json(res, status, value)
  return res:send(status, { ["Content-Type"] = "application/json" }, encode(value))
end

-- MCS error bodies: {"code": N, "message": "..."}.
local function fail(res, status, message)
  return send_json(res, status, { code = status, message = message })
end

local function decode_body(req, res)
  local value, err = cjson.decode(req.body)
  if type(value) ~= "table" then
    fail(res, 400, "request body must be a JSON object" .. (err and ": " .. err or ""))
    return nil
  end
  return value
end

-- The address devices are told to connect to: the public URL's host when
-- one was given, the listening address, or - when listening on every
-- address - the host name the device used to reach us.
local function url_host(url)
  local authority = url and url:match("^%a[%w+.-]*://([^/?#]*)")
  if not authority then return nil end
  authority = authority:gsub("^.*@", "")
  return authority:match("^%[([^%]]+)%]") or authority:match("^([^:]+)")
end

function Cloud:advertised_ip(req)
  local h = self.public_url_given and url_host(self.public_url)
  if h then return h end
  if not WILDCARD[self.host] then return self.host end
  local hh = req.headers.host or ""
  return hh:match("^%[([^%]]+)%]") or hh:match("^([^:]+)") or "127.0.0.1"
end

---------------------------------------------------------------- HTTP: device API

local H = {} -- route handlers: H.name(cloud, req, res, captures...)

function H.connections_csv(self, req, res)
  return res:send(200, { ["Content-Type"] = "text/csv" }, fmt("%s,%d", self:advertised_ip(req), self.tcp_port))
end

function H.connections_json(self, req, res)
  return send_json(res, 200, { ip = self:advertised_ip(req), port = self.tcp_port })
end

local function too_many(res, n)
  return fail(res, 400, fmt("at most %d data points per request, got %d", M.MAX_POINTS_PER_REQUEST, n))
end

function H.datapoints_csv(self, req, res, dev)
  local points, err = M.parse_csv(req.body)
  if not points then return fail(res, 400, err) end
  if #points == 0 then return fail(res, 400, "no data points in the request body") end
  if #points > M.MAX_POINTS_PER_REQUEST then return too_many(res, #points) end
  for _, p in ipairs(points) do
    self:store_point(dev, p.channel, p.timestamp, { value = p.value })
  end
  return res:send(200, { ["Content-Type"] = "text/plain" }, "Success.")
end

function H.datapoints_json(self, req, res, dev)
  local doc = decode_body(req, res)
  if not doc then return end
  local list = doc.datapoints
  if type(list) ~= "table" or #list == 0 then
    return fail(res, 400, "\"datapoints\" must be a non-empty list")
  end
  if #list > M.MAX_POINTS_PER_REQUEST then return too_many(res, #list) end
  local checked = {}
  for i, p in ipairs(list) do
    local chn = type(p) == "table" and as_text(p.dataChnId)
    if not chn or not chn:find("^[%w_%-]+$") then
      return fail(res, 400, fmt("datapoints[%d]: bad or missing dataChnId", i))
    end
    local ts = p.timestamp
    if ts ~= nil and ts ~= cjson.null and not math.tointeger(ts) then
      return fail(res, 400, fmt("datapoints[%d]: timestamp must be integer milliseconds", i))
    end
    if type(p.values) ~= "table" or p.values.value == nil and next(p.values) == nil then
      return fail(res, 400, fmt("datapoints[%d]: \"values\" must be an object such as {\"value\": \"26\"}", i))
    end
    checked[i] = { chn, ts ~= cjson.null and math.tointeger(ts) or nil, p.values }
  end
  for _, c in ipairs(checked) do self:store_point(dev, c[1], c[2], c[3]) end
  return send_json(res, 200, { code = 200, message = "Request has succeeded" })
end

function H.report_version(self, req, res, dev)
  local doc = decode_body(req, res)
  if not doc then return end
  local version = as_text(doc.version)
  if not version then return fail(res, 400, "\"version\" (a string) required") end
  local fw = self.fw_by_version[version]
  if not fw then
    return fail(res, 400, fmt("unknown firmware version %q: register it first (POST /admin/firmwares)", version))
  end
  dev.version, dev.version_at = version, sys.time()
  log.info("device %s reports firmware %s", dev.id, version)
  return send_json(res, 200, { code = 200, message = "Request has succeeded", fwId = fw.fwId })
end

-- "Firmwares compatible with the reported version": here, those registered
-- after the one the device reports (all of them when it reported none).
function H.available(self, req, res, dev)
  local results, after = {}, dev.version == nil or self.fw_by_version[dev.version] == nil
  local with_url = req.args.url == "true"
  for _, fw in ipairs(self.firmwares) do
    if after then
      results[#results + 1] = { fwid = fw.fwId, name = fw.name, description = cjson.null,
                                version = fw.version, URL = with_url and self:firmware_url(fw, req) or nil }
    end
    if fw.version == dev.version then after = true end
  end
  return send_json(res, 200, { results = array(results) })
end

function H.firmware_url(self, req, res, dev, fw_id)
  local fw = self.fw_by_id[httpd.unescape(fw_id)]
  if not fw then return fail(res, 404, "no firmware " .. httpd.unescape(fw_id)) end
  return send_json(res, 200, { url = self:firmware_url(fw, req) })
end

-- Firmware files: what the URLs handed out point to (no key, as a CDN).
function H.firmware_file(self, req, res, name)
  name = httpd.unescape(name)
  if unfit_file(self.firmware_dir, name) then return fail(res, 404, "no such firmware file") end
  return res:send_file(self.firmware_dir .. "/" .. name)
end

---------------------------------------------------------------- HTTP: admin API

local function admin_device(self, res, id)
  local dev = self.devices[httpd.unescape(id)]
  if not dev then fail(res, 404, "no device " .. httpd.unescape(id)) end
  return dev
end

function H.admin_devices(self, req, res)
  local list = {}
  for _, id in ipairs(self.device_order) do
    list[#list + 1] = self:device_json(self.devices[id], 10)
  end
  return send_json(res, 200, { now = sys.time(), devices = array(list) })
end

function H.admin_add_device(self, req, res)
  local doc = decode_body(req, res)
  if not doc then return end
  if self.devices[doc.id] then return fail(res, 409, "device " .. tostring(doc.id) .. " exists already") end
  local dev, err = self:add_device(doc.id, doc.key)
  if not dev then return fail(res, 400, err) end
  return send_json(res, 201, self:device_json(dev, 10))
end

function H.admin_device(self, req, res, id)
  local dev = admin_device(self, res, id)
  if not dev then return end
  return send_json(res, 200, self:device_json(dev))
end

function H.admin_datapoints(self, req, res, id)
  local dev = admin_device(self, res, id)
  if not dev then return end
  local chn = req.args.channel
  if chn then
    return send_json(res, 200, { device = dev.id, channel = chn, datapoints = array(dev.points[chn] or {}) })
  end
  local all = {}
  for _, c in ipairs(dev.channel_order) do all[c] = array(dev.points[c]) end
  return send_json(res, 200, { device = dev.id, channels = all })
end

function H.admin_disconnect(self, req, res, id)
  local dev = admin_device(self, res, id)
  if not dev then return end
  if not dev.conn then return fail(res, 409, "device " .. dev.id .. " is not connected") end
  sched.cancel(dev.conn.task)
  return send_json(res, 200, { code = 200, message = "disconnected" })
end

function H.admin_firmwares(self, req, res)
  local list = {}
  for i, fw in ipairs(self.firmwares) do list[i] = self:firmware_json(fw, req) end
  return send_json(res, 200, { firmwares = array(list) })
end

-- {"version", "name", "content"}: an upload; {"version", "file"}: a file
-- already in the firmware directory, by name.
function H.admin_register(self, req, res)
  local doc = decode_body(req, res)
  if not doc then return end
  local version = as_text(doc.version)
  local fw, err, status
  if doc.content ~= nil then
    if type(doc.content) ~= "string" then return fail(res, 400, "\"content\" must be a string") end
    fw, err, status = self:upload_firmware(version, doc.name, doc.content)
  elseif doc.file ~= nil then
    fw, err, status = self:register_firmware(version, doc.file)
  else
    return fail(res, 400, "\"content\" (an upload, with a \"name\") or \"file\" (a name in the firmware directory) required")
  end
  if not fw then return fail(res, status or 400, err) end
  return send_json(res, 200, self:firmware_json(fw, req))
end

-- `text` with every device key masked: what the admin API and the log
-- may show of a command.
function Cloud:without_keys(text)
  for _, id in ipairs(self.device_order) do text = mask(text, self.devices[id].key) end
  return logmod.redact(text)
end

-- Sends `line` to a connected device and answers the admin request. The
-- answer shows the command with the key masked: a device key never leaves
-- the cloud but to its device.
local function command_reply(self, res, dev, pieces, gap, shown)
  local ok, err = self:send_and_wait(dev, pieces, gap)
  if not ok then return fail(res, 409, err) end
  shown = self:without_keys(shown)
  log.info("device %s: sent %s", dev.id, (shown:gsub("\n$", "")))
  return send_json(res, 200, { code = 200, message = "sent", command = shown })
end

-- FOTA push: "id,key,ts,FOTA,version,MD5,URL". A registered version gets
-- its own MD5 and URL; a test may instead give any version, url and md5
-- (null, or a wrong one) to exercise a client's checks.
function H.admin_fota(self, req, res, id)
  local dev = admin_device(self, res, id)
  if not dev then return end
  local doc = decode_body(req, res)
  if not doc then return end
  local version = as_text(doc.version)
  if not version then return fail(res, 400, "\"version\" required") end
  local fw = self.fw_by_version[version]
  local url, md5
  if doc.url ~= nil then
    url = as_text(doc.url)
    if not url then return fail(res, 400, "\"url\" must be a string") end
    md5 = fw and fw.md5 or "null"
  elseif fw then
    url, md5 = self:firmware_url(fw, req), fw.md5
  else
    return fail(res, 400, fmt("unknown firmware version %q: register it first, or give a \"url\"", version))
  end
  if doc.md5 == cjson.null then
    md5 = "null"
  elseif doc.md5 ~= nil then
    md5 = as_text(doc.md5)
    if not md5 then return fail(res, 400, "\"md5\" must be a string or null") end
  end
  if not dev.conn then return fail(res, 409, "device " .. dev.id .. " is not connected") end
  local line = self:command_line(dev, "FOTA", concat({ version, md5, url }, ","))
  return command_reply(self, res, dev, { line }, 0, line)
end

-- Any command ({"channel","value"}), or raw bytes split into chunks with
-- a pause between them, to test how a client frames what it reads.
function H.admin_command(self, req, res, id)
  local dev = admin_device(self, res, id)
  if not dev then return end
  local doc = decode_body(req, res)
  if not doc then return end
  local pieces, gap, shown = {}, 0, nil
  if doc.raw ~= nil then
    local raw = as_text(doc.raw)
    if not raw or raw == "" then return fail(res, 400, "\"raw\" must be a non-empty string") end
    local chunks = doc.chunks or {}
    if type(chunks) ~= "table" then return fail(res, 400, "\"chunks\" must be a list of sizes") end
    local at = 1
    for i, n in ipairs(chunks) do
      n = math.tointeger(n)
      if not n or n < 1 then return fail(res, 400, fmt("chunks[%d]: a size >= 1 expected", i)) end
      if at + n - 1 > #raw then return fail(res, 400, "\"chunks\" add up to more than \"raw\" holds") end
      pieces[#pieces + 1] = raw:sub(at, at + n - 1)
      at = at + n
    end
    if at <= #raw then pieces[#pieces + 1] = raw:sub(at) end
    local gap_ms = doc.gap_ms == nil and M.DEFAULT_GAP_MS or tonumber(doc.gap_ms)
    if not gap_ms or gap_ms < 0 then return fail(res, 400, "\"gap_ms\" must be a number >= 0") end
    gap, shown = gap_ms / 1000, raw
  else
    local chn, value = as_text(doc.channel), as_text(doc.value)
    if not chn or chn == "" or chn:find("[,%c]") then
      return fail(res, 400, "\"channel\" required (no commas)")
    end
    if not value then return fail(res, 400, "\"value\" (a string) required") end
    shown = self:command_line(dev, chn, value)
    pieces[1] = shown
  end
  if not dev.conn then return fail(res, 409, "device " .. dev.id .. " is not connected") end
  return command_reply(self, res, dev, pieces, gap, shown)
end

---------------------------------------------------------------- HTTP: routing

-- Method, path pattern (captures are the handler's arguments), handler.
-- `device = true`: the first capture is a device ID whose deviceKey header
-- is checked, and the handler gets the device instead.
local DEVICE = "^/mcs/v2/devices/([^/]+)"
local ROUTES = {
  { "GET",  DEVICE .. "/connections%.csv$", H.connections_csv, device = true },
  { "GET",  DEVICE .. "/connections$", H.connections_json, device = true },
  { "POST", DEVICE .. "/datapoints%.csv$", H.datapoints_csv, device = true },
  { "POST", DEVICE .. "/datapoints$", H.datapoints_json, device = true },
  { "PUT",  DEVICE .. "/firmwares$", H.report_version, device = true },
  { "GET",  DEVICE .. "/firmwares/available$", H.available, device = true },
  { "GET",  DEVICE .. "/firmwares/([^/]+)/url$", H.firmware_url, device = true },
  { "GET",  "^/firmwares/([^/]+)$", H.firmware_file },
  { "GET",  "^/admin/devices$", H.admin_devices },
  { "POST", "^/admin/devices$", H.admin_add_device },
  { "GET",  "^/admin/devices/([^/]+)$", H.admin_device },
  { "GET",  "^/admin/devices/([^/]+)/datapoints$", H.admin_datapoints },
  { "POST", "^/admin/devices/([^/]+)/fota$", H.admin_fota },
  { "POST", "^/admin/devices/([^/]+)/commands$", H.admin_command },
  { "POST", "^/admin/devices/([^/]+)/disconnect$", H.admin_disconnect },
  { "GET",  "^/admin/firmwares$", H.admin_firmwares },
  { "POST", "^/admin/firmwares$", H.admin_register },
}

-- The device of a device route, or nil after answering 404 / 401.
function Cloud:authorize(req, res, id)
  id = httpd.unescape(id)
  local dev = self.devices[id]
  if not dev then
    fail(res, 404, "no device " .. id)
    return nil
  end
  local key = req.headers.devicekey
  if not same_secret(key, dev.key) then
    fail(res, 401, key and "wrong deviceKey" or "deviceKey header required")
    return nil
  end
  return dev
end

-- The origins the cloud's own pages have: what it listens on (under
-- localhost too, when that is loopback) and its public URL.
local function origin_of(url)
  return url and url:match("^(%a[%w+.-]*://[^/?#]+)")
end

-- A browser sends Origin with every cross-site POST, including the "simple"
-- ones it sends without asking first (a form, text/plain): any web page the
-- user visits could otherwise drive the admin API of a cloud on loopback and
-- push a firmware to their devices. Tools (curl, fotahost cloud) send no
-- Origin; a page of the cloud's own sends the cloud's.
function Cloud:foreign_origin(req)
  local origin = req.headers.origin
  if origin == nil then return false end
  if origin == origin_of(self.url) or origin == origin_of(self.public_url) then return false end
  if self.host == "127.0.0.1" and origin == fmt("http://localhost:%d", self.port) then return false end
  return true
end

local function media_type(value)
  local t = value and value:match("^%s*([^;%s]+)")
  return t and t:lower()
end

-- Why an admin request is refused (status, message), or nil. A browser
-- page can send a cross-site POST with a text/plain or form body without
-- asking first, but neither an Authorization header nor a JSON body.
function Cloud:admin_refusal(req)
  if self:foreign_origin(req) then
    return 403, fmt("the admin API takes no cross-site requests (Origin %s)", req.headers.origin)
  end
  local given = (req.headers.authorization or ""):match("^[Bb]earer +(%S+) *$")
  if not given then
    return 401, "the admin API needs its token: header \"Authorization: Bearer TOKEN\", the token being in "
      .. (self.token_file or "the token file")
  end
  if not same_secret(given, self.token) then return 401, "wrong admin token" end
  if (req.method == "POST" or req.method == "PUT") and media_type(req.headers["content-type"]) ~= "application/json" then
    return 415, "the admin API takes application/json bodies only"
  end
end

function Cloud:handle(req, res)
  if req.path:find("^/admin") then
    local status, why = self:admin_refusal(req)
    if status then return fail(res, status, why) end
  end
  local method = req.method == "HEAD" and "GET" or req.method
  local allowed
  for _, r in ipairs(ROUTES) do
    local caps = table.pack(req.path:match(r[2]))
    if caps[1] ~= nil then
      if r[1] == method then
        if r.device then
          local dev = self:authorize(req, res, caps[1])
          if not dev then return end
          caps[1] = dev
        end
        return r[3](self, req, res, table.unpack(caps, 1, caps.n))
      end
      allowed = allowed and (allowed .. ", " .. r[1]) or r[1]
    end
  end
  if allowed then
    return res:send(405, { ["Content-Type"] = "application/json", Allow = allowed },
      encode({ code = 405, message = req.method .. " not allowed here; use " .. allowed }))
  end
  return fail(res, 404, "no such resource: " .. req.path)
end

---------------------------------------------------------------- life cycle

--- Starts both listeners; call inside a scheduler task.
-- @return true | nil, err
function Cloud:start()
  local srv, err = httpd.listen {
    host = self.host, port = self.want_port, max_body = M.MAX_FIRMWARE * 2,
    handler = function(req, res) return self:handle(req, res) end,
    on_response = function(req, status)
      log.info("%s %s %s -> %d", req.peer or "-", req.method or "-", req.target or "-", status)
    end,
  }
  if not srv then return nil, "http: " .. err end
  local tcp, terr = tcp_socket.listen(self.host, self.want_tcp_port, 64)
  if not tcp then
    srv:close()
    return nil, "tcp: " .. terr
  end
  self.http, self.tcp = srv, tcp
  self.port = srv.port
  self.tcp_port = select(2, tcp:getsockname())
  self.url = srv.url
  self.public_url = self.public_url or srv.url
  local ok, terr2 = self:write_token()
  if not ok then
    srv:close()
    tcp:close()
    return nil, terr2
  end
  self._accept = sched.spawn({ name = "cloud tcp accept", log_errors = true }, self.accept_loop, self)
  return true
end

-- Makes the admin token and writes it, mode 0600, to the token file
-- (a link there is replaced, never followed).
function Cloud:write_token()
  local token, err = new_token()
  if not token then return nil, err end
  local path = self.token_file
  if not path then
    path, err = M.token_path(self.port)
    if not path then return nil, err end
    local ok, derr = private_dir(path:match("^(.*)/"))
    if not ok then return nil, "token directory " .. derr end
  end
  log.secret(token)
  local ok, werr = sys.write_file(path, token .. "\n", tonumber("600", 8))
  if not ok then return nil, "admin token: " .. werr end
  self.token, self.token_file = token, path
  return true
end

--- "cloud http://HOST:PORT tcp HOST:TCPPORT", the line `fotahost cloud serve` prints.
function Cloud:ready_line()
  return fmt("cloud %s tcp %s", self.url, display(self.host, self.tcp_port))
end

--- Stops both listeners and closes every device connection. Idempotent.
function Cloud:close()
  if self._closed then return true end
  self._closed = true
  -- Before the port is free again: a cloud started on it next writes its own.
  self:remove_token_file()
  local me = sched.current()
  if self._accept and self._accept ~= me then sched.cancel(self._accept) end
  for task in pairs(self._conns) do
    if task ~= me then sched.cancel(task) end
  end
  if self.tcp then self.tcp:close() end
  if self.http then self.http:close() end
  return true
end

Cloud.__close = Cloud.close

--- Removes the admin token file, if it still holds this cloud's token
-- (the next cloud on the port may have written its own). Idempotent.
function Cloud:remove_token_file()
  if self.token and M.read_token(nil, self.token_file) == self.token then os.remove(self.token_file) end
end

--- Removes the firmware directory when new() made it (no firmware_dir
-- given): a temporary cloud leaves nothing behind.
function Cloud:remove_temp_dir()
  local dir = self.firmware_dir
  if self.temp_dir and dir:match("^/tmp/fotahost%-cloud%-[%w]+$") then
    os.execute("rm -rf '" .. dir .. "'")
  end
end

return M
