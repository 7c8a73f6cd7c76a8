-- Shared by the specs: run the real fotahost CLI and look at what a user
-- would see (exit status, stdout, stderr), and make scratch files.
local M = {}

M.bin = os.getenv("FOTAHOST_BIN") or "./build/fotahost"

-- The status an update without trusted_keys says between "verifying" and
-- "flashing": unsigned firmware goes on, but never silently.
M.UNSIGNED = "warning: unsigned firmware accepted (no trusted_keys configured)"
-- The peers the specs start with start_server (the local cloud, test
-- servers, the virtual board): the same binary, but under make board-test
-- the native build, so the board's build under qemu is only what a board
-- would run.
M.peer_bin = os.getenv("FOTAHOST_PEER_BIN") or M.bin
M.top = os.getenv("FOTAHOST_TOP") or (M.bin:match("^(.*)/[^/]+/[^/]+$")) or "."
-- The build directory tests/run was given (build, build-asan, or the
-- board's object directory under make board-test), as an absolute path.
local build = os.getenv("BUILD") or "build"
M.build = build:sub(1, 1) == "/" and build or M.top .. "/" .. build

-- Under make board-test: the board's tree (root: what make install laid
-- out; test_root: root with the development wing added, where the binary
-- under test runs from) and the emulator command. nil in a native run.
if os.getenv("FOTAHOST_BOARD_ROOT") then
  M.board = { root = os.getenv("FOTAHOST_BOARD_ROOT"), test_root = os.getenv("FOTAHOST_BOARD_TEST_ROOT"),
    qemu = os.getenv("FOTAHOST_BOARD_QEMU"), config = os.getenv("BOARD_CONFIG") }
end

-- Where the binary under test finds its files: a source checkout (its
-- scripts, then the development wing's; plugins in the build directory),
-- or under make board-test a staged install (one scripts directory holding
-- the product's and the development wing's, tools and all).
if M.board then
  local share = M.board.test_root .. "/usr/share/fotahost/scripts"
  M.layout = { checkout = nil, scripts = { share }, dev_tools = share .. "/tools",
    plugins = M.board.test_root .. "/usr/lib/fotahost/plugins" }
else
  M.layout = { checkout = M.top, scripts = { M.top .. "/scripts", M.top .. "/dev/scripts" },
    dev_tools = M.top .. "/dev/scripts/tools", plugins = M.build .. "/plugins" }
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.q = shell_quote

-- This system's errno numbers and messages, by name (h.errno.ENOENT,
-- h.strerror.ENOENT): they differ between CPUs (EADDRINUSE is 98 on x86,
-- 125 on MIPS) and between libcs (glibc's "Address already in use" is
-- musl's "Address in use"), so specs never spell them out.
local sys = require "fotahost.sys"
M.errno = setmetatable({}, { __index = function(_, name)
  return sys.errno[name] or error("helper: no errno named " .. tostring(name), 2)
end })
M.strerror = setmetatable({}, { __index = function(_, name) return sys.strerror(M.errno[name]) end })

--- `s` as a Lua pattern that matches exactly s (for messages in patterns).
function M.literal(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  return path
end

--- How long a spec waits for something to happen: `seconds`, or less when
-- $FOTAHOST_SPEC_WAIT says so (the mutation check: a mutant that stops
-- the event for good is killed sooner; tests/mutate/run.lua).
function M.wait_limit(seconds)
  local cap = tonumber(os.getenv("FOTAHOST_SPEC_WAIT") or "")
  return cap and math.min(cap, seconds) or seconds
end

function M.tmpdir()
  local p = io.popen("mktemp -d /tmp/fotahost-spec-XXXXXX")
  local dir = p:read("l")
  p:close()
  return dir
end

function M.rmdir(dir)
  assert(dir:match("^/tmp/fotahost%-spec%-"), "refusing to remove " .. dir)
  os.execute("rm -rf " .. shell_quote(dir))
end

--- Runs fotahost with `args` (a list, each quoted, or a string used as it
-- is). opts: stdin (string), env (table), cwd, shell_prefix.
-- Returns { status = n, out = stdout, err = stderr }.
function M.run(args, opts, retried)
  opts = opts or {}
  local dir = M.tmpdir()
  local argv = args
  if type(args) == "table" then
    local parts = {}
    for i, a in ipairs(args) do parts[i] = shell_quote(a) end
    argv = table.concat(parts, " ")
  end
  local env = {}
  for k, v in pairs(opts.env or {}) do
    env[#env + 1] = k .. "=" .. shell_quote(v)
  end
  local cmd = ("%s %s env %s %s %s < %s > %s/out 2> %s/err"):format(
    opts.cwd and ("cd " .. shell_quote(opts.cwd) .. " &&") or "",
    opts.shell_prefix or "",
    table.concat(env, " "), shell_quote(M.bin), argv,
    opts.stdin and M.write(dir .. "/in", opts.stdin) or "/dev/null", dir, dir)
  local _, _, code = os.execute(cmd)
  local r = { status = code, out = M.read(dir .. "/out"), err = M.read(dir .. "/err") }
  M.rmdir(dir)
  -- Under check-asan, LeakSanitizer's check at exit stops every thread with
  -- a tracer that now and then crashes itself ("Tracer caught signal 11":
  -- a tool failure, with no leak report; tests/run does the same for the
  -- spec process). The command ran to its end: it runs once more, the
  -- second run's result counting.
  if code ~= 0 and (r.err or ""):find("LeakSanitizer has encountered a fatal error", 1, true)
      and not r.err:find("LeakSanitizer: detected memory leaks", 1, true) and not retried then
    io.stderr:write("helper: LeakSanitizer's tracer failed at the exit of ", M.bin, " ", tostring(argv):sub(1, 80),
      "; running it again\n")
    return M.run(args, opts, true)
  end
  return r
end

-- Background servers (start_server) wait with these; the specs run in
-- the fotahost binary, so its modules are there.
local sched = require "fotahost.sched"
local stream = require "fotahost.stream"

--- `n` deterministic pseudo-random bytes from `seed`, never 0xFF: an
-- image made of them writes every flash page.
function M.pattern(n, seed)
  local t, x = {}, seed
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    t[i] = string.char((x >> 16) % 255)
  end
  return table.concat(t)
end

--- Polls pred() every `step` seconds (default 0.02) until it returns a
-- true value, which is returned; raises "timed out after N s waiting for
-- <what>" at the caller's line after `timeout` seconds.
function M.until_true(what, timeout, pred, step)
  local deadline = sched.now() + timeout
  while true do
    local v = pred()
    if v then return v end
    if sched.now() > deadline then error("timed out after " .. timeout .. " s waiting for " .. what, 2) end
    stream.pause(nil, step or 0.02)
  end
end

-- Whether process `pid` still runs (a zombie no longer does).
local function alive(pid)
  local stat = M.read("/proc/" .. pid .. "/stat")
  if not stat then return false end
  local state = stat:match("%) (%a)")
  return state ~= "Z" and state ~= "X"
end
M.alive = alive

-- Waits up to `seconds` for `pid` to end. @return true when it has
local function wait_exit(pid, seconds)
  local deadline = sched.now() + seconds
  while alive(pid) do
    if sched.now() > deadline then return false end
    stream.pause(nil, 0.01)
  end
  return true
end

--- Starts fotahost running `args` (a list: a script and its arguments) in
-- the background, and waits at most `opts.timeout` seconds (default 5) for
-- it to print "listening HOST:PORT" on stdout (or a line matching
-- `opts.ready`, a pattern capturing host and port). Its stdin is a pipe whose
-- only write end this process holds (close-on-exec, so no other child
-- inherits it): stop() closes it, and so does this process dying, so a
-- server that exits at the end of its stdin never outlives the specs.
-- Returns { host, port, url, pid, dir (its out and err files), stderr(),
-- stop() }; stop() closes stdin, waits 2 s for the server to exit, else
-- sends SIGTERM (then SIGKILL), removes dir, and returns "exited" or
-- "killed" and what the server wrote on stderr.
function M.start_server(args, opts)
  opts = opts or {}
  local dir = M.tmpdir()
  local rfd, wfd = assert(sys.pipe())
  local parts = {}
  for i, a in ipairs(args) do parts[i] = shell_quote(a) end
  -- The child opens the read end through /proc: ours is close-on-exec.
  os.execute(("%s %s < /proc/%d/fd/%d > %s/out 2> %s/err & echo $! > %s/pid"):format(
    shell_quote(M.peer_bin), table.concat(parts, " "), sys.getpid(), rfd,
    shell_quote(dir), shell_quote(dir), shell_quote(dir)))
  local pid = math.tointeger(tonumber(M.read(dir .. "/pid") or ""))
  local srv = { pid = pid, dir = dir }
  function srv.stderr() return M.read(dir .. "/err") or "" end
  local result
  function srv.stop()
    if result then return table.unpack(result) end
    if wfd then sys.close(wfd) wfd = nil end
    if rfd then sys.close(rfd) rfd = nil end
    local how = "exited"
    if pid and not wait_exit(pid, 2) then
      how = "killed"
      os.execute("kill -TERM " .. pid .. " 2>/dev/null")
      if not wait_exit(pid, 2) then
        os.execute("kill -KILL " .. pid .. " 2>/dev/null")
        wait_exit(pid, 1)
      end
    end
    result = { how, srv.stderr() }
    M.rmdir(dir)
    return how, result[2]
  end
  local deadline = sched.now() + (opts.timeout or 5)
  while true do
    local out = M.read(dir .. "/out") or ""
    local host, port = out:match(opts.ready or "listening (%S+):(%d+)\n")
    if port then
      srv.host, srv.port = host, math.tointeger(tonumber(port))
      srv.url = ("http://%s:%d"):format(host, srv.port)
      srv.out = out
      break
    end
    if not pid or not alive(pid) or sched.now() > deadline then
      local err = srv.stderr()
      local why = (pid and alive(pid)) and "did not say it was ready within "
        .. (opts.timeout or 5) .. " s" or "exited before listening"
      srv.stop()
      error(("server %s %s; its stderr:\n%s"):format(table.concat(args, " "), why, err), 2)
    end
    stream.pause(nil, 0.01)
  end
  -- it has opened its stdin: the read end is its alone now
  sys.close(rfd)
  rfd = nil
  return srv
end

---------------------------------------------------------------- the cloud and the app
-- The FOTA specs drive the local cloud and the app through these, so a
-- change in how the cloud is started or asked is made here once.

--- Starts `fotahost cloud serve` (HTTP and MCS on free ports, or HTTP on
-- `port`) with `fwdir` as its firmware directory and `extra` arguments;
-- an h.start_server handle.
function M.start_cloud(fwdir, port, extra)
  local args = { "cloud", "serve", "--port", tostring(port or 0), "--tcp-port", "0",
    "--firmware-dir", fwdir, "--watch-stdin" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return M.start_server(args, { ready = "cloud http://(%S+):(%d+) tcp", timeout = 30 })
end

--- A call to the cloud at `base` (its URL): `method` on /admin`path`,
-- with `value` as its JSON body and the admin token that cloud wrote for
-- its port. Returns the decoded answer; raises on an error.
function M.cloud_admin(base, method, path, value)
  local headers = assert(require("fotahost.mcs_cloud").admin_headers(base))
  local v, res_or_err = require("fotahost.http").json(method, base .. "/admin" .. path, value,
    { retries = 0, headers = headers })
  assert(v, res_or_err)
  return v
end

--- Starts `fotahost app` with the config file `cfg`, its
-- output appended to `dir`/app.log; `wrap` is put before the command (a
-- shell prefix). The app has no stdin to watch: a watchdog shell holds a
-- pipe of ours and SIGKILLs the app if this process dies, so it never
-- outlives the specs. A subshell waits for the app and leaves its exit
-- status in `dir`/app.rc. Returns { pid, rfd, wfd } for stop_app.
-- `cmd`, shell text, replaces `fotahost app` (the checkout's fotahost).
function M.start_app(dir, cfg, wrap, cmd)
  local rfd, wfd = assert(sys.pipe())
  local log, pidf, rcf = dir .. "/app.log", dir .. "/app.pid", dir .. "/app.rc"
  os.remove(pidf)
  os.remove(rcf)
  os.execute(("( %senv FOTAHOST_CONFIG=%s FOTAHOST_LOG=stderr %s %s </dev/null >>%s 2>&1 & app=$!; "
    .. "echo $app >%s.tmp && mv %s.tmp %s; "
    .. "(cat >/dev/null; kill -KILL $app 2>/dev/null) </proc/%d/fd/%d >/dev/null 2>&1 & "
    .. "wait $app; echo $? >%s.tmp && mv %s.tmp %s ) >/dev/null 2>&1 &")
    :format(wrap or "", shell_quote(cfg), cmd or shell_quote(M.bin), cmd and "" or "app",
      shell_quote(log), shell_quote(pidf), shell_quote(pidf), shell_quote(pidf), sys.getpid(), rfd,
      shell_quote(rcf), shell_quote(rcf), shell_quote(rcf)))
  local deadline = sched.now() + 10
  local pid
  repeat
    pid = math.tointeger(tonumber(M.read(pidf) or ""))
    if not pid then
      if sched.now() > deadline then error("the app's pid did not appear in " .. pidf, 2) end
      stream.pause(nil, 0.01)
    end
  until pid
  return { pid = pid, rfd = rfd, wfd = wfd }
end

--- Stops an app start_app started: `signal` (default TERM), SIGKILL if
-- it still runs 5 s later; returns once it is gone.
function M.stop_app(app, signal)
  if alive(app.pid) then
    os.execute(("kill -%s %d 2>/dev/null"):format(signal or "TERM", app.pid))
    if not wait_exit(app.pid, 5) then
      os.execute(("kill -KILL %d 2>/dev/null"):format(app.pid))
      wait_exit(app.pid, 10)
    end
  end
  -- the watchdog's pipe: closed only now, the app being gone
  sys.close(app.wfd)
  sys.close(app.rfd)
end

--- The example firmware (examples/firmware), built once per test run into
-- a scratch directory; returns the path of `name` (e.g. "serial-led.hex").
local fwdir
function M.firmware(name)
  if not fwdir then
    local dir = M.tmpdir()
    local ok = os.execute(("make -s -C %s O=%s >%s/make.log 2>&1")
      :format(shell_quote(M.top .. "/examples/firmware"), shell_quote(dir), shell_quote(dir)))
    local log = M.read(dir .. "/make.log") or ""
    if not ok then
      M.rmdir(dir)
      error("building examples/firmware failed (it needs gcc-avr and avr-libc):\n" .. log)
    end
    fwdir = dir
  end
  return fwdir .. "/" .. name
end

--- Asserts that the simulated chip in `dir` holds `want` (the whole
-- flash, as bytes), naming the first byte that differs and `what` it
-- should hold.
function M.assert_flash_holds(dir, want, what)
  local got = M.read(dir .. "/flash.bin")
  assert(got, "no flash.bin in " .. dir)
  assert(#got == #want, ("flash.bin has %d bytes, not %d"):format(#got, #want))
  if got == want then return end
  local i = 1
  while got:byte(i) == want:byte(i) do i = i + 1 end
  error(("flash.bin does not hold %s: at 0x%04X it has 0x%02X, the image 0x%02X")
    :format(what, i - 1, got:byte(i), want:byte(i)), 3)
end


--- A tmpfs of `kib` KiB on the directory `dir` (made if missing), for a
-- state_dir that is a RAM disk or a disk that fills up. As root it is
-- mounted here, visible to the spec and to every process; otherwise (no
-- right to mount) each process started with `wrap` as its shell prefix
-- gets a tmpfs of its own, in a mount namespace of its own (unshare -rm).
-- Returns { mounted = boolean, wrap = shell prefix ("" when mounted),
-- umount() } -- umount() is a no-op for a namespace's tmpfs, which goes
-- with its process; call it in an after_each or a finally.
function M.tmpfs(dir, kib)
  os.execute("mkdir -p " .. shell_quote(dir))
  local opts = ("size=%dk,mode=0700"):format(kib)
  local mount = ("mount -t tmpfs -o %s tmpfs %s"):format(opts, shell_quote(dir))
  local fs = { mounted = os.getenv("FOTAHOST_SPEC_NO_MOUNT") == nil
    and os.execute(mount .. " 2>/dev/null") == true }
  if fs.mounted then
    fs.wrap = ""
    function fs.umount()
      if not fs.mounted then return end
      fs.mounted = false
      if not os.execute("umount " .. shell_quote(dir) .. " 2>/dev/null") then
        os.execute("umount -l " .. shell_quote(dir))
      end
    end
  else
    fs.wrap = ("unshare -rm sh -c %s sh %s %s "):format(
      shell_quote('mount -t tmpfs -o "$1" tmpfs "$2" && shift 2 && exec "$@"'), shell_quote(opts), shell_quote(dir))
    function fs.umount() end
  end
  return fs
end

-- The files named `pattern` (a find -name glob) under `dir` of the
-- checkout, as sorted paths relative to it.
function M.find(dir, pattern)
  local p = assert(io.popen(("cd %s && find %s -name %s -type f 2>/dev/null | sort")
    :format(shell_quote(M.top), shell_quote(dir), shell_quote(pattern))))
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

--- Runs a shell command: its output (stdout and stderr) and exit status.
function M.sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end

--- Runs a shell command that must succeed: its output, or an error naming
-- the command and what it printed.
function M.must(cmd)
  local out, code = M.sh(cmd)
  assert(code == 0, cmd .. ":\n" .. out)
  return out
end

-- How long fn() took (sched's monotonic clock), then what it returned.
function M.elapsed(fn)
  local t0 = sched.now()
  local r = table.pack(fn())
  return sched.now() - t0, table.unpack(r, 1, r.n)
end

return M
