-- An HTTPS file server for specs: `openssl s_server -WWW` run as a process
-- of its own, with the life of spec/helper.lua's start_server:
--
--   ./build/fotahost spec/support/tls_server.lua --dir DIR --cert CERT --key KEY
--
-- serves the files in DIR on a free port of 127.0.0.1 with the given
-- certificate (PEM; CERT may hold the chain), prints "listening
-- 127.0.0.1:PORT" once s_server accepts connections, and stops s_server,
-- then itself, when its stdin reaches end of file or on SIGTERM. s_server
-- also runs under `timeout`, so nothing outlives a wedged spec by long.

local sched = require "fotahost.sched"
local sys = require "fotahost.sys"

local LIFETIME = 900 -- seconds s_server may run at most
local READY_WITHIN = 10

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function fail(msg)
  io.stderr:write("tls_server: " .. msg .. "\n")
  os.exit(2)
end

local opts, i = {}, 1
while arg[i] do
  local a = arg[i]
  if a == "--dir" or a == "--cert" or a == "--key" then
    opts[a:sub(3)] = arg[i + 1] or fail(a .. " needs a value")
    i = i + 2
  else
    fail("unknown argument " .. a .. " (usage: --dir DIR --cert CERT --key KEY)")
  end
end
if not (opts.dir and opts.cert and opts.key) then fail("--dir, --cert and --key are required") end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local p = io.popen("mktemp -d /tmp/fotahost-tls-XXXXXX")
local work = p:read("l")
p:close()

-- `timeout` is the pid we hold: a TERM to it reaches s_server too.
assert(os.execute(("cd %s && timeout %d openssl s_server -WWW -accept 127.0.0.1:0 -cert %s -key %s"
  .. " < /dev/null > %s/out 2> %s/err & echo $! > %s/pid")
  :format(q(opts.dir), LIFETIME, q(opts.cert), q(opts.key), q(work), q(work), q(work))))
local pid = math.tointeger(tonumber(read(work .. "/pid") or ""))

local function alive()
  local stat = read("/proc/" .. pid .. "/stat")
  local state = stat and stat:match("%) (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

-- Waits up to `seconds` for s_server (and `timeout`, which waits for it)
-- to be gone. @return true when it is
local function gone_within(seconds)
  local poller <close> = assert(require("fotahost.poll").new())
  local deadline = sys.now() + seconds
  while alive() do
    if sys.now() > deadline then return false end
    poller:wait(0.01)
  end
  return true
end

-- Stops s_server before we exit, so that a spec that saw us exit finds
-- the port closed.
local function stop()
  if pid and alive() then
    os.execute("kill -TERM " .. pid .. " 2>/dev/null")
    if not gone_within(5) then
      os.execute("kill -KILL " .. pid .. " 2>/dev/null")
      gone_within(1)
    end
  end
  os.execute("rm -rf " .. q(work))
end

local ok, err = pcall(sched.run, function()
  local deadline = sched.now() + READY_WITHIN
  local port
  repeat
    port = (read(work .. "/out") or ""):match("ACCEPT 127%.0%.0%.1:(%d+)")
    if not port then
      if not alive() or sched.now() > deadline then
        error("openssl s_server did not start: " .. (read(work .. "/err") or ""), 0)
      end
      sched.sleep(0.01)
    end
  until port
  io.stdout:write(("listening 127.0.0.1:%s\n"):format(port))
  io.stdout:flush()
  -- until stdin reaches end of file (data read is dropped)
  while true do
    local r = sched.wait_fd(0, "r", 3600)
    if r then
      local data, why = sys.read(0, 4096)
      if not data and why ~= "wouldblock" then return end
    end
  end
end)
stop()
if not ok then
  local sig = sys.interrupted()
  if sig then os.exit(sig == "SIGINT" and 130 or 143) end
  fail(tostring(err))
end
