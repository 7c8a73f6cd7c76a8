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
--   browsers) that tests and the `fotahost cloud` CLI drive, and the web
--   console at / (a page of the admin API; docs/cloud.md);
-- * a TCP command server: devices connect, send heartbeats, and receive
--   commands ("id,key,timestampMs,channel,value"), FOTA pushes included;
-- * with opts.mqtt, a client of an MQTT broker: MCS's topics, devices'
--   data points and presence in, commands out (fotahost.mcs_cloud.broker).
--
--     local cloud = assert(mcs_cloud.new { devices = { "dev1:key12345" } })
--     sched.run(function()
--       assert(cloud:start())
--       print(cloud:ready_line())   -- cloud http://127.0.0.1:8080 tcp 127.0.0.1:40123
--       sched.sleep(60)
--       cloud:close()
--     end)
--
-- State is in memory (bounded), except registered firmwares and the
-- rollout: their files live in the firmware directory with a manifest
-- (cloud-firmwares.json) and cloud-rollout.json, so a restarted cloud
-- knows them again and goes on with the rollout.
--
-- This module is the cloud's face: new(), the life cycle and the routing.
-- Each concern is a part of its own under fotahost.mcs_cloud.*: store
-- (devices, firmwares), command_server (TCP), device_api (REST under
-- /mcs/v2), admin_api (/admin), token (the admin token), broker (MQTT),
-- rollout_runner (/admin/rollout and its pushes; rollout, its state
-- machine), events (what happened, for the web console: /admin/events),
-- console (the web console's files, its headers and the Host check),
-- common (limits, JSON answers). The parts' methods are the cloud
-- object's.

local sched = require "fotahost.sched"
local httpd = require "fotahost.httpd"
local tcp = require "fotahost.tcp"
local logmod = require "fotahost.log"
local C = require "fotahost.mcs_cloud.common"
local store = require "fotahost.mcs_cloud.store"
local command_server = require "fotahost.mcs_cloud.command_server"
local device_api = require "fotahost.mcs_cloud.device_api"
local admin_api = require "fotahost.mcs_cloud.admin_api"
local token = require "fotahost.mcs_cloud.token"
local broker = require "fotahost.mcs_cloud.broker"
local rollout_runner = require "fotahost.mcs_cloud.rollout_runner"
local events = require "fotahost.mcs_cloud.events"
local console = require "fotahost.mcs_cloud.console"

local log = logmod.get("cloud")
local fmt = string.format
local encode, fail, display = C.encode, C.fail, C.display

local M = {}

-- The limits (MAX_POINTS, QUIET_GAP, COMMAND_SPACING, MAX_FIRMWARE...),
-- as fotahost.mcs_cloud.common sets them: read them here.
for k, v in pairs(C) do
  if type(v) ~= "function" and k:match("^%u[%u_]*$") and k ~= "WILDCARD" then M[k] = v end
end

M.token_dir, M.token_path = token.token_dir, token.token_path
M.read_token, M.admin_headers = token.read_token, token.admin_headers
M.split_messages = command_server.split_messages
M.parse_csv = device_api.parse_csv

local methods = {} -- every part's methods: a cloud's
local mt = { __index = methods }
local PARTS = { store, command_server, device_api, admin_api, token, broker, rollout_runner, events, console }
for _, part in ipairs(PARTS) do
  for name, fn in pairs(part.methods) do
    assert(methods[name] == nil, "mcs_cloud: two parts define " .. name)
    methods[name] = fn
  end
end

-- Device routes first, then the admin API's and the console's.
local ROUTES = {}
for _, part in ipairs({ device_api, admin_api, rollout_runner, events, console }) do
  table.move(part.ROUTES, 1, #part.ROUTES, #ROUTES + 1, ROUTES)
end

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
--   mqtt            { url, username, password, cafile, client_id }: the cloud on an
--                   MQTT broker too (fotahost.mcs_cloud.broker)
--   max_connections HTTP connections served at once (default httpd's 64; past
--                   it a client gets 503 with Retry-After)
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
    command_spacing = opts.command_spacing or C.COMMAND_SPACING,
    token_file = opts.token_file,
    idle_timeout = opts.idle_timeout,
    max_connections = opts.max_connections,
    _conns = {},       -- task -> conn, every TCP connection
  }, mt)
  events.open(self) -- first: the store records the firmwares it registers
  local ok, err = store.open(self, opts)
  if not ok then return nil, err end
  broker.open(self, opts)
  self:rollout_load()
  return self
end

---------------------------------------------------------------- HTTP: routing

function methods:handle(req, res)
  if console.guarded(req.path) then
    res.extra_headers = console.HEADERS
    local misdirected, why = self:host_refusal(req)
    if misdirected then return fail(res, misdirected, why) end
  end
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
function methods:start()
  local srv, err = httpd.listen {
    host = self.host, port = self.want_port, max_body = C.MAX_FIRMWARE * 2,
    max_connections = self.max_connections,
    handler = function(req, res) return self:handle(req, res) end,
    on_response = function(req, status)
      log.info("%s %s %s -> %d", req.peer or "-", req.method or "-", req.target or "-", status)
    end,
  }
  if not srv then return nil, "http: " .. err end
  local listener, terr = tcp.listen(self.host, self.want_tcp_port, 64)
  if not listener then
    srv:close()
    return nil, "tcp: " .. terr
  end
  self.http, self.tcp = srv, listener
  self.port = srv.port
  self.tcp_port = select(2, listener:getsockname())
  self.url = srv.url
  self.public_url = self.public_url or srv.url
  self.console_dir = console.find_dir()
  if not self.console_dir then log.warn("the web console's files are not installed: / answers 404") end
  local cleartext = self:cleartext_warning()
  if cleartext then log.warn("%s", cleartext) end
  local ok, terr2 = self:write_token()
  if not ok then
    srv:close()
    listener:close()
    return nil, terr2
  end
  if self.broker then
    local bok, berr = self:broker_start()
    if not bok then
      self:close()
      return nil, berr
    end
  end
  self._accept = sched.spawn({ name = "cloud tcp accept", log_errors = true }, self.accept_loop, self)
  self:rollout_start_driver()
  return true
end

--- "cloud http://HOST:PORT tcp HOST:TCPPORT", the line `fotahost cloud serve` prints.
function methods:ready_line()
  return fmt("cloud %s tcp %s", self.url, display(self.host, self.tcp_port))
end

--- Stops both listeners and closes every device connection. Idempotent.
function methods:close()
  if self._closed then return true end
  self._closed = true
  -- Before the port is free again: a cloud started on it next writes its own.
  self:remove_token_file()
  local me = sched.current()
  if self._accept and self._accept ~= me then sched.cancel(self._accept) end
  if self.broker then self:broker_close() end
  if self._rollout_task and self._rollout_task ~= me then sched.cancel(self._rollout_task) end
  self:events_close()
  for task in pairs(self._conns) do
    if task ~= me then sched.cancel(task) end
  end
  if self.tcp then self.tcp:close() end
  if self.http then self.http:close() end
  return true
end

mt.__close = methods.close

--- Removes the firmware directory when new() made it (no firmware_dir
-- given): a temporary cloud leaves nothing behind.
function methods:remove_temp_dir()
  local dir = self.firmware_dir
  if self.temp_dir and dir:match("^/tmp/fotahost%-cloud%-[%w]+$") then
    os.execute("rm -rf '" .. dir .. "'")
  end
end

return M
