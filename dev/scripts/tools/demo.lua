-- fotahost demo: the whole tutorial on this machine, no board needed.
--
-- Builds the example firmware, signs it with minisign (a fresh key pair
-- the app trusts), starts the local cloud (`fotahost cloud serve`) and the
-- virtual board (`fotahost board --sim`), flashes the tutorial's
-- serial-led sketch and runs the blink test, starts the app (fotahost
-- app), pushes blink-1000 then blink-250 from the cloud and
-- measures LED D13's half-period after each (1.000 s, then 0.250 s, in the
-- board's simulated time), and shows what the cloud received. Every step
-- prints OK or FAIL with a figure; the exit status is 0 only if all held.
--
--   fotahost demo [--keep] [--stay]
--
-- Each program runs as a process of its own, exactly as a user would start
-- it; its stdout and stderr go to files in the work directory. Whatever
-- happens (a failed step, Ctrl-C, an error here), every process started is
-- stopped: closing a pipe only this process holds tells a small watcher
-- beside each one to send it SIGTERM, so even a demo killed with SIGKILL
-- leaves nothing running.

local sys = require "fotahost.sys"
local stream = require "fotahost.stream"
local host = require "fotahost.host"

local USAGE = [[
usage: fotahost demo [--keep] [--stay]
Runs the tutorial locally, start to finish: builds examples/firmware, signs it
with minisign (a new key pair; the app trusts only it), starts the local cloud
and the virtual board, flashes serial-led and runs the blink test, starts
fotahost app, pushes blink-1000 then blink-250 from the cloud and
measures LED D13's half-period after each, and shows what the cloud received.
Needs a source checkout (avr-gcc, avr-libc, minisign, and simavr for the virtual board).
  --keep       keep the work directory (logs of every process, the simulated chip)
  --stay       once every step held, keep the cloud, the virtual board and the app
               running until Ctrl-C: push more from the cloud's web console
  -h, --help   this help
Exit status 0 only if every step held; 130 after Ctrl-C.
]]

local cli = require("fotahost.cli").new("demo", USAGE)

local opts = {}
for a in cli:each(arg) do
  if a == "--keep" then opts.keep = true
  elseif a == "--stay" then opts.stay = true
  else cli:fail("unknown argument '%s'", a) end
end

io.stdout:setvbuf("line")

local ID, KEY = "demo7688", "DemoKey7688duo"
local BIN = (host.exe_dir or ".") .. "/fotahost"
local TOP = host.checkout
local now = sys.now

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read(path) return (sys.read_file(path, 1 << 24)) end -- nil when missing

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function pause(s) stream.pause(nil, s) end

-- The last `n` lines of a file, indented, for a failure's explanation.
local function tail(path, n)
  local lines = {}
  for l in (read(path) or ""):gmatch("[^\n]+") do lines[#lines + 1] = l end
  local out = {}
  for i = math.max(1, #lines - (n or 8) + 1), #lines do out[#out + 1] = "       | " .. lines[i] end
  if #out == 0 then return "" end
  return "\n" .. table.concat(out, "\n")
end

---------------------------------------------------------------- processes

local work        -- the work directory
local procs = {}  -- every process started, in order

local function alive(pid)
  local stat = read("/proc/" .. pid .. "/stat")
  if not stat then return false end
  local state = stat:match("%) (%a)")
  return state ~= "Z" and state ~= "X"
end

local Proc = {}
local proc_mt = { __index = Proc }

--- Starts `argv` (a list; argv[1] the program) in the background, stdout
-- and stderr in WORK/NAME.out and .err. Its stdin is a pipe whose write end
-- only this process holds; a watcher shell beside it reads the same pipe
-- and sends SIGTERM when it reaches end of file: when stop() closes it, or
-- when this process ends, however it ends.
local function spawn(name, argv, env)
  local rfd, wfd = assert(sys.pipe())
  local base = work .. "/" .. name
  local e = { "FOTAHOST_LOG=stderr" }
  for k, v in pairs(env or {}) do e[#e + 1] = k .. "=" .. q(v) end
  local words = {}
  for i, a in ipairs(argv) do words[i] = q(a) end
  local script = ("exec 3<&0; env %s %s <&3 >%s 2>%s 3<&- & c=$!; echo $c >%s.tmp; mv %s.tmp %s; "
    .. "(cat >/dev/null; kill -TERM $c 2>/dev/null) <&3 & wait $c; echo $? >%s.tmp; mv %s.tmp %s")
    :format(table.concat(e, " "), table.concat(words, " "), q(base .. ".out"), q(base .. ".err"),
      q(base .. ".pid"), q(base .. ".pid"), q(base .. ".pid"),
      q(base .. ".status"), q(base .. ".status"), q(base .. ".status"))
  -- The shell opens the read end through /proc: ours is close-on-exec.
  os.execute(("cd %s && sh -c %s < /proc/%d/fd/%d &"):format(q(TOP), q(script), sys.getpid(), rfd))
  local p = setmetatable({ name = name, base = base, wfd = wfd, out = base .. ".out", err = base .. ".err" },
    proc_mt)
  procs[#procs + 1] = p
  local deadline = now() + 5
  while not p.pid do
    p.pid = math.tointeger(tonumber(read(base .. ".pid") or ""))
    if not p.pid then
      if now() > deadline then
        sys.close(rfd)
        error(name .. ": the process did not start within 5 s", 0)
      end
      pause(0.01)
    end
  end
  -- the shell has opened its stdin: the read end is the child's alone now
  sys.close(rfd)
  return p
end

--- The exit status once the process has ended, else nil.
function Proc:status()
  return math.tointeger(tonumber(read(self.base .. ".status") or ""))
end

function Proc:running()
  return self:status() == nil and alive(self.pid)
end

--- Stops the process (SIGTERM through its watcher, SIGKILL 3 s later) and
-- waits for it. Returns "exited" or "killed".
function Proc:stop()
  if self.stopped then return self.stopped end
  if self.wfd then sys.close(self.wfd) self.wfd = nil end
  local deadline = now() + 3
  while self:status() == nil and alive(self.pid) and now() < deadline do pause(0.02) end
  self.stopped = "exited"
  if alive(self.pid) then
    os.execute("kill -KILL " .. self.pid .. " 2>/dev/null")
    self.stopped = "killed"
  end
  -- The shell beside it writes the exit status once the process is gone:
  -- wait for that too, so nothing writes in the work directory after this.
  deadline = now() + 2
  while self:status() == nil and now() < deadline do pause(0.02) end
  return self.stopped
end

--- Runs `argv` to its end, at most `timeout` seconds. Returns its exit
-- status (nil on a timeout, the process then stopped), and the seconds taken.
local function run(name, argv, timeout, env)
  local t0 = now()
  local p = spawn(name, argv, env)
  while p:status() == nil do
    if now() - t0 > timeout then
      p:stop()
      return nil, now() - t0, p
    end
    pause(0.02)
  end
  p:stop()
  return p:status(), now() - t0, p
end

---------------------------------------------------------------- steps

local results = {}
local Abort = {}  -- raised (as a table) when a step fails: the rest depends on it

local function line(tag, name, detail)
  io.stdout:write(("%-4s %s: %s\n"):format(tag, name, detail))
end

--- Runs one step: `fn` returns a detail for the OK line, or nil and what
-- went wrong. A failure ends the demo (the later steps need this one).
local function step(name, fn)
  local ok, detail, err = pcall(fn)
  if ok and detail then
    results[#results + 1] = { ok = true, name = name }
    line("OK", name, detail)
    return detail
  end
  if not ok then
    if type(detail) == "string" and detail:find("interrupted (", 1, true) then error(detail, 0) end
    err = tostring(detail)
  end
  results[#results + 1] = { ok = false, name = name }
  line("FAIL", name, tostring(err))
  error(Abort, 0)
end

local function exit_text(status)
  if status == nil then return "timed out" end
  if status > 128 then return ("killed by signal %d"):format(status - 128) end
  return ("exit status %d"):format(status)
end

-- Waits until `cond()` returns a value (returned), `timeout` seconds at
-- most (nil then); gives up early when process `p` ends.
local function wait_for(timeout, cond, p)
  local deadline = now() + timeout
  while true do
    local v = cond()
    if v then return v end
    if now() > deadline or (p and not p:running()) then return nil end
    pause(0.05)
  end
end

---------------------------------------------------------------- the cloud

local cloud_url
local token_file -- where the cloud wrote its admin token (the console's login)
local http

local function device()
  -- the admin token: in the token file `fotahost cloud serve` wrote
  local headers = require("fotahost.mcs_cloud").admin_headers(cloud_url)
  local v = headers and http.json("GET", cloud_url .. "/admin/devices/" .. ID, nil,
    { connect_timeout = 2, timeout = 5, headers = headers })
  return v
end

-- The values of the status data points, oldest first, without the
-- "idle: ..." each connection brings (not part of a push's trail).
local function statuses()
  local d = device()
  local list = {}
  for _, pnt in ipairs(d and d.datapoints and d.datapoints.fota_status or {}) do
    local v = type(pnt.values) == "table" and tostring(pnt.values.value) or "?"
    if not v:find("^idle: ") then list[#list + 1] = v end
  end
  return list
end

---------------------------------------------------------------- the board

local files = {}

-- D13 transitions in d13.log after simulated time `after`.
local function transitions(after)
  local list = {}
  for t, s in (read(files.d13) or ""):gmatch("t=([%d.]+) D13 (%a+)") do
    t = tonumber(t)
    if t > after then list[#list + 1] = { t = t, on = s == "on" } end
  end
  return list
end

-- The board's restarts from new flash so far: how many, the last one's
-- simulated time, and whether RESET is held now.
local function restarts()
  local n, last, halted = 0, 0, false
  for l in (read(files.board_out) or ""):gmatch("[^\n]+") do
    local t = l:match("^MCU restarted from new flash at ([%d.]+) s")
    if t then n, last, halted = n + 1, tonumber(t), false end
    if l:match("^MCU halted for programming") then halted = true end
  end
  return n, last, halted
end

-- Half-period of D13 from `list` (alternating transitions): the mean
-- interval, and the largest deviation of one interval from `want`.
local function half_period(list, want)
  local sum, worst = 0, 0
  for i = 2, #list do
    if list[i].on == list[i - 1].on then return nil, ("two D13 %s in a row at %.3f s"):format(
      list[i].on and "on" or "off", list[i].t) end
    local d = list[i].t - list[i - 1].t
    sum = sum + d
    worst = math.max(worst, math.abs(d - want))
  end
  return sum / (#list - 1), worst
end

---------------------------------------------------------------- the demo

local chip, fw            -- the simulated chip's directory, the built firmwares
local cloud, board, app   -- the processes the demo starts

-- Builds the example firmwares (serial-led, blink-1000, blink-250).
local function build_firmware()
  local st, secs, p = run("make-firmware", { "make", "-s", "-C", TOP .. "/examples/firmware", "O=" .. fw }, 60)
  if st ~= 0 then
    return nil, ("make -C examples/firmware: %s (it needs gcc-avr and avr-libc)%s"):format(exit_text(st),
      tail(p.err))
  end
  local sizes = {}
  for _, n in ipairs({ "serial-led", "blink-1000", "blink-250" }) do
    local data = read(fw .. "/" .. n .. ".hex")
    if not data then return nil, fw .. "/" .. n .. ".hex: not built" end
    sizes[#sizes + 1] = ("%s.hex (%d bytes)"):format(n, #data)
  end
  return ("built %s in %.1f s"):format(table.concat(sizes, ", "), secs)
end

-- Signs both blink firmwares as a user does (README: Signed firmware): a
-- key pair, then each HEX signed with its version, part and counter; the
-- cloud serves FILE.minisig beside each, and the app trusts the key.
local function sign_firmware()
  local t0 = now()
  local pub = work .. "/fotahost.pub"
  local st, _, p = run("minisign-keys", { "minisign", "-G", "-W", "-p", pub, "-s", work .. "/fotahost.key" }, 30)
  if st ~= 0 then return nil, "minisign -G: " .. exit_text(st) .. " (apt-get install minisign)" .. tail(p.err) end
  for counter, n in ipairs({ "blink-1000", "blink-250" }) do
    st, _, p = run("minisign-" .. n, { "minisign", "-S", "-s", work .. "/fotahost.key", "-m", fw .. "/" .. n .. ".hex",
      "-t", ("fotahost version=%s part=m32u4 counter=%d"):format(n, counter) }, 30)
    if st ~= 0 then return nil, "minisign -S " .. n .. ": " .. exit_text(st) .. tail(p.err) end
  end
  local id = (read(pub) or ""):match("minisign public key (%x+)")
  return ("minisign made key %s and signed blink-1000 (counter 1) and blink-250 (counter 2) in %.1f s")
    :format(tostring(id), now() - t0)
end

-- Starts the local cloud with the demo device and both blink firmwares.
local function start_cloud()
  http = require "fotahost.http"
  cloud = spawn("cloud", { BIN, "cloud", "serve", "--port", "0", "--device", ID .. ":" .. KEY,
    "--firmware-dir", work .. "/cloud-firmware",
    "--firmware", "blink-1000=" .. fw .. "/blink-1000.hex",
    "--firmware", "blink-250=" .. fw .. "/blink-250.hex", "--watch-stdin" })
  local ready = wait_for(10, function() return (read(cloud.out) or ""):match("cloud (http://%S+) tcp (%S+)") end,
    cloud)
  if not ready then
    return nil, "fotahost cloud serve did not start: " .. exit_text(cloud:status()) .. tail(cloud.err)
  end
  local tcp
  cloud_url, tcp = (read(cloud.out)):match("cloud (http://%S+) tcp (%S+)")
  token_file = wait_for(5, function() return (read(cloud.out) or ""):match("admin token in (%S+)") end, cloud)
  return ("fotahost cloud serve at %s (commands on tcp %s), device %s, firmwares blink-1000 and blink-250")
    :format(cloud_url, tcp, ID)
end

-- Flashes the tutorial's sketch onto the simulated chip.
local function flash_sketch()
  os.execute("mkdir -p " .. q(chip))
  local st, secs, p = run("flash", { BIN, "flash", "-q", "-c", "sim", "-P", chip, "-p", "m32u4",
    "-U", "flash:w:" .. fw .. "/serial-led.hex" }, 60)
  if st ~= 0 then return nil, "fotahost flash: " .. exit_text(st) .. tail(p.err) end
  return ("fotahost flash -c sim wrote and verified the tutorial's sketch in %.1f s"):format(secs)
end

-- Starts the virtual board on the simulated chip, D13 logged.
local function start_board()
  board = spawn("board", { BIN, "board", "--sim", chip, "--log", files.d13 })
  files.board_out = board.out
  local ready = wait_for(10, function() return (read(board.out) or ""):match("Serial1 on (%S+)") end, board)
  if not ready then
    return nil, "fotahost board did not start: " .. exit_text(board:status()) .. tail(board.err)
      .. " (the virtual board needs simavr: apt-get install libsimavr-dev, then make)"
  end
  return ("fotahost board --sim runs the ATmega32U4, Serial1 on %s"):format(ready)
end

-- Blinks D13 twice over Serial1 and checks what the board saw.
local function blink_test()
  local before = #transitions(0)
  local st, secs, p = run("blink", { BIN, "blink", "--board", "sim", chip, "--count", "2",
    "--interval", "0.3", "-q" }, 20)
  if st ~= 0 then return nil, "fotahost blink: " .. exit_text(st) .. tail(p.err) end
  -- the paced board may lag real time a little: give it a moment
  local list = wait_for(3, function()
    local l = transitions(0)
    return #l >= before + 4 and l
  end)
  list = list or transitions(0)
  local seen = {}
  for i = before + 1, #list do seen[#seen + 1] = list[i].on and "on" or "off" end
  local got = table.concat(seen, ", ")
  if got ~= "on, off, on, off" then
    return nil, ("D13 after 2 cycles: %s, expected on, off, on, off (see %s)"):format(
      got == "" and "no transition" or got, files.d13)
  end
  local gap = (list[#list].t - list[before + 1].t) / 3
  return ("fotahost blink sent 1,0,1,0 in %.1f s; D13 went on, off, on, off, %.2f s apart"):format(secs, gap)
end

-- Starts fotahost app against the local cloud; waits for a heartbeat.
local function start_app()
  local config = work .. "/config.lua"
  write(config, ("return {\n  device_id = %q, device_key = %q,\n  api = %q,\n  board = \"sim\", sim_dir = %q,\n"
    .. "  state_dir = %q,\n  volatile_state_ok = true, -- a throw-away demo in /tmp\n  heartbeat = 5,\n"
    .. "  status_channel = \"fota_status\",\n  trusted_keys = %q, -- only signed firmware\n}\n")
    :format(ID, KEY, cloud_url, chip, work .. "/state", work .. "/fotahost.pub"))
  app = spawn("app", { BIN, "app" }, { FOTAHOST_CONFIG = config })
  local t0 = now()
  local d = wait_for(15, function()
    local dv = device()
    return dv and dv.connected and dv.heartbeats and (dv.heartbeats.count or 0) >= 1 and dv
  end, app)
  if not d then
    return nil, ("fotahost app did not connect to the cloud (%s)%s"):format(
      app:running() and "still running after 15 s" or exit_text(app:status()), tail(app.err))
  end
  return ("fotahost app connected in %.1f s (FOTAHOST_CONFIG=%s)"):format(now() - t0, config)
end

-- Shows `fotahost cloud status`; checks the version the device ended on.
local function cloud_status()
  local all = statuses()
  local d = device()
  local st, _, p = run("cloud-status", { BIN, "cloud", "status", "--cloud", cloud_url }, 10)
  if st ~= 0 then return nil, "fotahost cloud status: " .. exit_text(st) .. tail(p.err) end
  local text = (read(p.out) or ""):gsub("\n+$", "")
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do io.stdout:write("       | ", l, "\n") end
  if not d or d.version ~= "blink-250" then
    return nil, "the cloud has version " .. tostring(d and d.version) .. ", expected blink-250"
  end
  return ("device %s runs version %s; %d status points: %s"):format(ID, d.version, #all,
    table.concat(all, ", "))
end
-- One push: the status points it causes, the version the app reports,
-- and D13's half-period on the new firmware.
local function push(version, want)
  local n_before = #statuses()
  local r_before = restarts()
  local t0 = now()
  step("push " .. version, function()
    local st, _, p = run("push-" .. version, { BIN, "cloud", "push", "--cloud", cloud_url, "--device", ID,
      "--version", version }, 15)
    if st ~= 0 then return nil, "fotahost cloud push: " .. exit_text(st) .. tail(p.err) end
    local seen
    local final = wait_for(40, function()
      local all = statuses()
      seen = {}
      for i = n_before + 1, #all do seen[#seen + 1] = all[i] end
      for _, v in ipairs(seen) do
        if v == "done" or v:match("^failed") or v:match("^skipped") then return v end
      end
    end, app)
    local trail = table.concat(seen or {}, " > ")
    if final ~= "done" then
      return nil, ("status %s%s"):format(final and trail
          or (trail ~= "" and trail .. " (no result within 40 s)" or "points: none within 40 s"),
        app:running() and "" or (", the app ended: " .. exit_text(app:status()))) .. tail(app.err)
    end
    local v = wait_for(5, function()
      local d = device()
      return d and d.version == version and d.version
    end)
    if not v then
      local d = device()
      return nil, ("status done, but the cloud has version %s, not %s"):format(tostring(d and d.version), version)
    end
    return ("status %s in %.1f s; the app reported version %s"):format(trail, now() - t0, v)
  end)
  step("D13 " .. version, function()
    -- the board restarted from the new flash, and RESET is released
    local restarted = wait_for(5, function()
      local n, t, halted = restarts()
      return n > r_before and not halted and t
    end)
    if not restarted then return nil, "the virtual board did not restart from new flash" .. tail(board.err) end
    local list = wait_for(want * 4 + 5, function()
      local l = transitions(restarted)
      return #l >= 4 and l
    end, board) or transitions(restarted)
    if #list < 4 then
      return nil, ("%d D13 transition(s) in the %.1f s after the restart, 4 needed"):format(#list,
        want * 4 + 5)
    end
    local mean, worst = half_period(list, want)
    if not mean then return nil, worst end
    local detail = ("half-period %.3f s over %d intervals (expected %.3f s; simulated time)"):format(
      mean, #list - 1, want)
    if worst > want * 0.02 then
      return nil, detail .. (", one interval off by %.3f s"):format(worst)
    end
    return detail
  end)
end

local function demo()
  local t_start = now()
  chip, fw = work .. "/chip", work .. "/fw"
  files.d13 = work .. "/d13.log"
  step("firmware", build_firmware)
  step("sign", sign_firmware)
  step("cloud", start_cloud)
  io.stdout:write(("     console %s/ (log in with the admin token in %s)\n"):format(cloud_url, tostring(token_file)))
  step("flash serial-led", flash_sketch)
  step("virtual board", start_board)
  step("blink test", blink_test)
  step("app", start_app)
  push("blink-1000", 1.0)
  push("blink-250", 0.25)
  step("cloud status", cloud_status)
  return now() - t_start
end

-- --stay: the cloud, the board and the app run on until an interruption
-- (raised out of here); returns why when one of them ends first.
local function stay()
  while true do
    for _, p in ipairs({ cloud, board, app }) do
      if not p:running() then return ("%s ended (%s)"):format(p.name, exit_text(p:status())) end
    end
    pause(0.5)
  end
end

---------------------------------------------------------------- main

if not TOP then
  io.stderr:write("fotahost demo: runs from a source checkout (it builds examples/firmware)"
    .. "; this fotahost (" .. BIN .. ") is not in one\n")
  os.exit(1)
end

do
  local p = io.popen("mktemp -d /tmp/fotahost-demo-XXXXXX")
  work = p and p:read("l")
  if p then p:close() end
  if not work or work == "" then
    io.stderr:write("fotahost demo: mktemp -d failed: cannot make a work directory in /tmp\n")
    os.exit(1)
  end
end

-- Runs however the demo ends: every process stopped (the app first, the
-- cloud last), the work directory removed unless --keep.
local cleanup = setmetatable({}, { __close = function()
  for i = #procs, 1, -1 do
    local p = procs[i]
    if p:stop() == "killed" then
      io.stderr:write(("fotahost demo: %s did not stop within 3 s of SIGTERM: killed\n"):format(p.name))
    end
  end
  local left = {}
  for _, p in ipairs(procs) do
    if alive(p.pid) then left[#left + 1] = p.name .. " " .. p.pid end
  end
  if #left > 0 then
    io.stderr:write("fotahost demo: still running after SIGKILL: ", table.concat(left, ", "), "\n")
  end
  if opts.keep then
    io.stdout:write("work directory kept: ", work, "\n")
  else
    os.execute("rm -rf " .. q(work))
  end
end })

io.stdout:write(("fotahost demo: the tutorial on the virtual board and a local cloud (work directory %s)\n")
  :format(work))

local ok, secs = pcall(demo)
local n_ok = 0
for _, r in ipairs(results) do if r.ok then n_ok = n_ok + 1 end end
local stayed, ended
if ok and opts.stay then
  io.stdout:write(("demo: all %d steps held in %.1f s; the cloud, the virtual board and the app run on: "
    .. "the console is at %s/ (Ctrl-C stops them)\n"):format(n_ok, secs, cloud_url))
  stayed, ended = pcall(stay)
end
do local _ <close> = cleanup end

if ok and opts.stay then
  if stayed or not tostring(ended):find("interrupted (", 1, true) then
    io.stderr:write("fotahost demo: ", stayed and ("the " .. ended .. " while the demo stayed") or tostring(ended),
      "; every process stopped\n")
    os.exit(1)
  end
  io.stdout:write("demo: stopped; every process stopped\n")
  os.exit(0)
end
if ok then
  io.stdout:write(("demo: all %d steps held in %.1f s; every process stopped\n"):format(n_ok, secs))
  os.exit(0)
end
local sig = type(secs) == "string" and secs:match("interrupted %((SIG%u+)%)")
if sig then
  io.stderr:write("fotahost demo: stopped (", sig == "SIGINT" and "Ctrl-C" or sig, "); every process stopped\n")
  os.exit(sig == "SIGINT" and 130 or 143)
end
if secs ~= Abort then
  io.stderr:write("fotahost demo: ", tostring(secs), "\n")
end
io.stdout:write(("demo: FAILED after %d step(s) held%s\n"):format(n_ok,
  opts.keep and "" or "; run `fotahost demo --keep` to keep the logs"))
os.exit(1)
