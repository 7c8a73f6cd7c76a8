-- A real MQTT broker for specs: Debian's mosquitto 2.0, started on free
-- local ports with a configuration, password file and ACL of its own in a
-- temporary directory, and stopped after.
--
--   local broker = require("support.mosquitto").start{
--     users = { alice = "secret" },            -- mosquitto_passwd -b; none: anonymous
--     acl = { "pattern readwrite devices/%c/#" },
--     tls = true,                              -- a TLS listener too (self-signed CA)
--     config = { "max_queued_messages 0" },    -- more global lines for mosquitto.conf
--   }
--   broker.url, broker.tls_url, broker.cafile, broker.port, broker.dir
--   broker.pub{ "-t", "x", "-m", "hi", "-q", "1" }  -- mosquitto_pub against it
--   broker.sub({ "-t", "x", "-v", "-i", "sub-1" }, file) -- mosquitto_sub in the background, subscribed
--   broker.kill()  -- SIGKILL; broker.stop() -- SIGTERM, wait, remove the directory
--   broker.restart()  -- SIGKILL, then started again on the same ports
--
-- start() returns once mosquitto says it is running (its log, polled).

local h = require "helper"
local sched = require "fotahost.sched"
local stream = require "fotahost.stream"
local tcp = require "fotahost.tcp"

local M = {}

local READY_WITHIN = 10

-- A port nobody listens on now (the kernel's choice for port 0).
function M.free_port()
  local s <close> = assert(tcp.listen("127.0.0.1", 0))
  local _, port = s:getsockname()
  return port
end

-- A CA and a server certificate for 127.0.0.1 and localhost, in `dir`.
local function make_certs(dir)
  local q = h.q
  local d = q(dir)
  h.must(("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=spec-ca " ..
    "-keyout ca.key -out ca.crt"):format(d))
  h.must(("cd %s && openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 " ..
    "-keyout server.key -out server.csr"):format(d))
  h.write(dir .. "/san.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
  h.must(("cd %s && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial " ..
    "-days 2 -extfile san.ext -out server.crt"):format(d))
end

local function config(b, opts)
  local lines = {
    "persistence false",
    "log_dest file " .. b.dir .. "/log",
    "log_type all",
    "user root", -- never drop privileges: the files are in a 0700 directory
  }
  for _, l in ipairs(opts.config or {}) do lines[#lines + 1] = l end
  lines[#lines + 1] = "listener " .. b.port .. " 127.0.0.1"
  if opts.users then
    lines[#lines + 1] = "allow_anonymous false"
    lines[#lines + 1] = "password_file " .. b.dir .. "/passwd"
  else
    lines[#lines + 1] = "allow_anonymous true"
  end
  if opts.acl then lines[#lines + 1] = "acl_file " .. b.dir .. "/acl" end
  if opts.tls then
    for _, l in ipairs({ "listener " .. b.tls_port .. " 127.0.0.1", "cafile " .. b.dir .. "/ca.crt",
      "certfile " .. b.dir .. "/server.crt", "keyfile " .. b.dir .. "/server.key" }) do
      lines[#lines + 1] = l
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

local function wait_running(b)
  local deadline = sched.now() + READY_WITHIN
  while true do
    local log = h.read(b.dir .. "/log") or ""
    if log:find(" running", 1, true) then return end
    if not h.alive(b.pid) or sched.now() > deadline then
      local why = h.alive(b.pid) and "not running after " .. READY_WITHIN .. " s" or "exited"
      b.stop()
      error(("mosquitto %s; its log:\n%s\n%s"):format(why, log, h.read(b.dir .. "/err") or ""), 3)
    end
    stream.pause(nil, 0.01)
  end
end

--- Starts `cmd` (a shell command line) in the background, its output in
-- `file`; returns its pid.
function M.background(cmd, file)
  local pidfile = file .. ".pid"
  h.must(("%s > %s 2>&1 & echo $! > %s"):format(cmd, h.q(file), h.q(pidfile)))
  return math.tointeger(tonumber(h.read(pidfile)))
end

--- Waits until `file` (a mosquitto_sub's output) holds `n` lines; returns them.
function M.lines_of(file, n, timeout)
  return h.until_true(n .. " lines in " .. file, timeout or 10, function()
    local t = {}
    for l in (h.read(file) or ""):gmatch("[^\n]+") do t[#t + 1] = l end
    return #t >= n and t
  end)
end

--- Starts a broker (see the header for `opts`); returns its handle.
function M.start(opts)
  opts = opts or {}
  local b = { dir = h.tmpdir(), port = M.free_port() }
  b.url = "mqtt://127.0.0.1:" .. b.port
  if opts.tls then
    b.tls_port = M.free_port()
    b.tls_url = "mqtts://127.0.0.1:" .. b.tls_port
    b.cafile = b.dir .. "/ca.crt"
    make_certs(b.dir)
  end
  for user, password in pairs(opts.users or {}) do
    h.must(("mosquitto_passwd -b %s %s %s %s"):format(
      h.read(b.dir .. "/passwd") and "" or "-c", h.q(b.dir .. "/passwd"), h.q(user), h.q(password)))
  end
  if opts.acl then h.write(b.dir .. "/acl", table.concat(opts.acl, "\n") .. "\n") end
  h.write(b.dir .. "/mosquitto.conf", config(b, opts))
  local function run()
    h.must(("mosquitto -c %s >> %s 2>&1 & echo $! > %s"):format(
      h.q(b.dir .. "/mosquitto.conf"), h.q(b.dir .. "/err"), h.q(b.dir .. "/pid")))
    b.pid = math.tointeger(tonumber(h.read(b.dir .. "/pid")))
  end
  run()

  local stopped
  --- SIGKILL: the broker is gone at once, its clients' sockets reset.
  function b.kill()
    os.execute("kill -KILL " .. b.pid .. " 2>/dev/null")
    h.until_true("mosquitto to die", 5, function() return not h.alive(b.pid) end)
  end
  --- SIGTERM (SIGKILL after 3 s), then the directory goes. Safe twice.
  function b.stop()
    if stopped then return end
    stopped = true
    if h.alive(b.pid) then
      os.execute("kill -TERM " .. b.pid .. " 2>/dev/null")
      local ok = pcall(h.until_true, "mosquitto to stop", 3, function() return not h.alive(b.pid) end)
      if not ok then b.kill() end
    end
    h.rmdir(b.dir)
  end
  --- SIGKILL, then the same broker again: same ports, config and files.
  function b.restart()
    b.kill()
    os.remove(b.dir .. "/log")
    run()
    wait_running(b)
  end
  --- The broker's log so far.
  function b.log() return h.read(b.dir .. "/log") or "" end
  -- The mosquitto_pub / mosquitto_sub command line against this broker,
  -- with `args` (a list) quoted after it.
  function b.cmd(tool, args)
    local parts = { tool, "-h", "127.0.0.1", "-p", tostring(b.port) }
    for _, a in ipairs(args) do parts[#parts + 1] = h.q(a) end
    return table.concat(parts, " ")
  end
  --- Runs mosquitto_pub with `args`; must succeed.
  function b.pub(args) return h.must(b.cmd("mosquitto_pub", args)) end
  --- Starts mosquitto_sub with `args` (ending with "-i", ID) in the
  -- background, its output in `file`, and waits until the broker has its
  -- subscription (the log says so). Returns its pid.
  function b.sub(args, file)
    local pid = M.background(b.cmd("mosquitto_sub", args), file)
    local id = args[#args]
    h.until_true("mosquitto_sub's subscription", 10, function()
      return b.log():find(id .. " 1 ", 1, true) or b.log():find(id .. " 0 ", 1, true)
    end)
    return pid
  end

  wait_running(b)
  return b
end

--- Starts mosquitto on a configuration written elsewhere (`fotahost cloud
-- broker-config`): o.conf, o.port (its plain listener), o.log (the file
-- its log_dest names), o.dir (a h.tmpdir(): its stderr and pid go there,
-- and stop() removes it). Returns { url, port, pid, dir, log(), kill(),
-- stop() } once its log says it is running.
function M.run(o)
  local b = { dir = o.dir, port = o.port, url = "mqtt://127.0.0.1:" .. o.port }
  local at = #(h.read(o.log) or "") -- a restart appends to the same log
  h.must(("mosquitto -c %s >> %s 2>&1 & echo $! > %s"):format(h.q(o.conf), h.q(b.dir .. "/err"), h.q(b.dir .. "/pid")))
  b.pid = math.tointeger(tonumber(h.read(b.dir .. "/pid")))
  function b.log() return h.read(o.log) or "" end
  function b.kill()
    os.execute("kill -KILL " .. b.pid .. " 2>/dev/null")
    h.until_true("mosquitto to die", 5, function() return not h.alive(b.pid) end)
  end
  function b.stop()
    if h.alive(b.pid) then
      os.execute("kill -TERM " .. b.pid .. " 2>/dev/null")
      if not pcall(h.until_true, "mosquitto to stop", 3, function() return not h.alive(b.pid) end) then b.kill() end
    end
    if h.read(b.dir .. "/pid") then h.rmdir(b.dir) end
  end
  function b.cmd(tool, args)
    local parts = { tool, "-h", "127.0.0.1", "-p", tostring(b.port) }
    for _, a in ipairs(args) do parts[#parts + 1] = h.q(a) end
    return table.concat(parts, " ")
  end
  h.until_true("mosquitto running (" .. o.conf .. ")", 10, function()
    if not h.alive(b.pid) then error("mosquitto exited: " .. (h.read(b.dir .. "/err") or ""), 0) end
    return b.log():find(" running", at + 1, true)
  end)
  return b
end

return M
