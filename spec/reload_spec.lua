-- Editing on the board without losing the board (issue 20, items 5 and
-- 2), through the real CLI: `fotahost app` as a process with an override
-- scripts directory (FOTAHOST_SCRIPTS_DIR), the local cloud and the
-- simulated chip. SIGHUP checks the edits first (fotahost check) and keeps
-- the running code when they are broken; takes them in the same process
-- (one reconnect) when they pass, never in the middle of an update. An
-- edited script that raises mid-update leaves a complete image and a
-- truthful status, and the app takes the next push.
local h = require "helper"
local ihex = require "fotahost.ihex"

local WAIT = h.wait_limit(90) -- seconds for anything to happen (CI is a loaded 2-core machine)
local FLASH_SIZE = 32768

describe("editing on the board: reload and contained errors", function()
  local cloud, fwdir
  local fw = {}
  local cleanups = {}
  local ndev = 0

  setup(function()
    fwdir = h.tmpdir()
    local args = {}
    for _, v in ipairs({ "blink-1000", "blink-250" }) do
      fw[v] = assert(ihex.load(h.firmware(v .. ".hex")))
      args[#args + 1] = "--firmware"
      args[#args + 1] = v .. "=" .. h.firmware(v .. ".hex")
    end
    cloud = h.start_cloud(fwdir, 0, args)
  end)
  teardown(function()
    if cloud then cloud.stop() end
    h.rmdir(fwdir)
  end)
  after_each(function()
    for i = #cleanups, 1, -1 do cleanups[i]() end
    cleanups = {}
  end)

  local function admin(method, path, value) return h.cloud_admin(cloud.url, method, path, value) end

  local function log(t) return h.read(t.dir .. "/app.log") or "" end
  local function device(t) return admin("GET", "/devices/" .. t.id) end

  -- Waits for the cloud to show the device connected (by a connection
  -- other than `old`, when given); its connected_since.
  local function connected(t, old)
    local ok, since = pcall(h.until_true, "the app to connect", WAIT, function()
      assert(h.alive(t.app.pid), "the app exited")
      local d = device(t)
      return d.connected and d.connected_since ~= old and d.connected_since
    end)
    assert(ok, tostring(since) .. "; its log:\n" .. log(t))
    return since
  end

  -- A device: an id in the cloud, a chip, a state directory, an override
  -- scripts directory, a config (with extra(t), Lua fields), and its app
  -- running and connected (t.since: since when). `cmd(t)`, shell text, runs
  -- the app instead of `fotahost app`.
  local function start(extra, cmd)
    ndev = ndev + 1
    local dir = h.tmpdir()
    local t = { id = "reload" .. ndev, key = ("key%05d"):format(ndev), dir = dir, chip = dir .. "/chip",
                scripts = dir .. "/scripts", cfg = dir .. "/config.lua" }
    cleanups[#cleanups + 1] = function() h.rmdir(dir) end
    h.must(("mkdir -p %s %s/fotahost/avr"):format(h.q(t.chip), h.q(t.scripts)))
    admin("POST", "/devices", { id = t.id, key = t.key })
    h.write(t.cfg, ([[
return {
  device_id = %q, device_key = %q, api = %q,
  board = "sim", sim_dir = %q, state_dir = %q,
  heartbeat = 1, backoff_cap = 2, http = { retries = 0 }, volatile_state_ok = true,
%s}
]]):format(t.id, t.key, cloud.url, t.chip, dir .. "/state", extra and extra(t) or ""))
    -- the app's start records (kept whenever an override is in use) in a
    -- directory of its own, not the machine's /var/run/fotahost
    t.app = h.start_app(dir, t.cfg, ("env FOTAHOST_SCRIPTS_DIR=%s FOTAHOST_RUN_DIR=%s ")
      :format(h.q(t.scripts), h.q(dir .. "/run")), cmd and cmd(t))
    cleanups[#cleanups + 1] = function() h.stop_app(t.app) end
    t.since = connected(t)
    return t
  end

  local function wait_log(t, text)
    local ok, err = pcall(h.until_true, "'" .. text .. "' in the app's log", WAIT, function()
      assert(h.alive(t.app.pid), "the app exited")
      return log(t):find(text, 1, true)
    end)
    assert(ok, tostring(err) .. "; its log:\n" .. log(t))
    return ok and err
  end

  -- The fota_status values the cloud received, without the "idle: ..." ones.
  local function statuses(t)
    local out = {}
    for _, p in ipairs(admin("GET", "/devices/" .. t.id .. "/datapoints?channel=fota_status").datapoints) do
      if not p.values.value:find("^idle: ") then out[#out + 1] = p.values.value end
    end
    return out
  end

  -- Pushes `version` and waits for its final status (the n-th one).
  local function push(t, version)
    local n = 0
    for _, s in ipairs(statuses(t)) do if s == "done" or s:find("^failed: ") then n = n + 1 end end
    admin("POST", "/devices/" .. t.id .. "/fota", { version = version })
    local final
    h.until_true(version .. "'s final status", WAIT, function()
      local k = 0
      for _, s in ipairs(statuses(t)) do
        if s == "done" or s:find("^failed: ") then
          k = k + 1
          if k == n + 1 then final = s return true end
        end
      end
    end)
    return final
  end

  local function assert_flash(t, version)
    h.assert_flash_holds(t.chip, fw[version]:bytes(0, FLASH_SIZE - 1), version)
  end

  -- The bundled script `name` copied into the override directory with
  -- `from` replaced by `to` (which must occur once).
  local function edit(t, name, from, to)
    local text = assert(h.read(h.top .. "/scripts/" .. name))
    local s, e = text:find(from, 1, true)
    assert(s and not text:find(from, e + 1, true), "the text to edit is not in " .. name .. " once")
    return h.write(t.scripts .. "/" .. name, text:sub(1, s - 1) .. to .. text:sub(e + 1))
  end

  local function hup(t) assert(os.execute("kill -HUP " .. t.app.pid)) end

  it("keeps the running code when SIGHUP finds a broken edit, and says why", function()
    local t = start()
    local path = edit(t, "fotahost/fota.lua", "local M = {}\n", "local M = {\n") -- a typo
    hup(t)
    wait_log(t, "reload refused: " .. path .. ":")
    wait_log(t, "reload refused: still running the config and scripts it started with")
    -- the same process, never disconnected
    assert.is_true(h.alive(t.app.pid))
    assert.is_nil(log(t):find("reloading", 1, true))
    -- and the next push flashes as before
    assert.are.equal("done", push(t, "blink-250"))
    assert_flash(t, "blink-250")
    assert.are.equal(t.since, device(t).connected_since)
    -- one SIGHUP, one check: the signal's fd was read empty
    local _, refusals = log(t):gsub("reload refused: still running", "")
    assert.are.equal(1, refusals)
    -- a broken config is refused the same way
    h.write(t.cfg, h.read(t.cfg):gsub("heartbeat = 1", "heartbeat = \"often\""))
    hup(t)
    wait_log(t, "reload refused: " .. t.cfg .. ": heartbeat")
    assert.are.equal("done", push(t, "blink-1000"))
    assert_flash(t, "blink-1000")
    assert.are.equal(t.since, device(t).connected_since)
  end)

  it("a service's app that never takes SIGHUP (an override older than reloads) is not killed by one; "
      .. "on a terminal SIGHUP still ends it", function()
    local dir = h.tmpdir()
    cleanups[#cleanups + 1] = function() h.rmdir(dir) end
    h.must("mkdir -p " .. h.q(dir .. "/scripts/tools"))
    h.write(dir .. "/scripts/tools/app.lua", [[
      local sys = require "fotahost.sys"
      os.execute("kill -HUP " .. sys.getpid())
      print("still here")
    ]])
    local env = { FOTAHOST_SCRIPTS_DIR = dir .. "/scripts", FOTAHOST_RUN_DIR = dir .. "/run" }
    local r = h.run({ "app" }, { env = env })
    assert.are.same({ 0, "still here\n" }, { r.status, r.out }, r.err)
    if not os.execute("command -v script >/dev/null") then return end -- util-linux's script: a terminal
    local _, _, code = os.execute(("env FOTAHOST_SCRIPTS_DIR=%s FOTAHOST_RUN_DIR=%s script -qec %s /dev/null "
      .. ">%s 2>&1"):format(h.q(env.FOTAHOST_SCRIPTS_DIR), h.q(env.FOTAHOST_RUN_DIR), h.q(h.q(h.bin) .. " app"),
      h.q(dir .. "/tty.out")))
    assert.are.equal(129, code, h.read(dir .. "/tty.out"))
    assert.is_nil((h.read(dir .. "/tty.out") or ""):find("still here", 1, true))
  end)

  it("on a terminal, SIGHUP stops the app as it stops any program there (the terminal closed)", function()
    if not os.execute("command -v script >/dev/null 2>&1") then
      pending("no script(1) here to give the app a terminal")
      return
    end
    -- script(1) runs the app on a pseudo-terminal, as an SSH session does
    local t = start(nil, function(t)
      t.pidfile = t.dir .. "/tty.pid"
      return "script -qec " .. h.q("echo $$ >" .. h.q(t.pidfile) .. "; exec " .. h.q(h.bin) .. " app") .. " /dev/null"
    end)
    local pid = math.tointeger(tonumber(h.read(t.pidfile)))
    assert.is_true(h.alive(pid))
    assert(os.execute("kill -HUP " .. pid))
    h.until_true("the app to stop", WAIT, function() return not h.alive(pid) end)
    assert.is_nil(log(t):find("reload", 1, true))
    -- as the help says
    local r = h.run({ "app", "--help" })
    assert.are.equal(0, r.status)
    assert.matches("SIGHUP reloads a service %(stdin not a terminal.*On a terminal SIGHUP stops the app", r.out)
  end)

  it("refuses a second app, and fotahost fota, on the state_dir an app holds (one process a MCU)", function()
    local t = start()
    local env = { FOTAHOST_CONFIG = t.cfg, FOTAHOST_RUN_DIR = t.dir .. "/run2" }
    local want = ("in use by pid %d: another fotahost updates this MCU from the same state_dir")
      :format(t.app.pid)
    -- (bounded: a second app that is let run would never end)
    local bounded = { env = env, shell_prefix = ("timeout -s KILL %d "):format(WAIT) }
    local r = h.run({ "app" }, bounded)
    assert.are.equal(1, r.status, r.err)
    assert.truthy(r.err:find(want, 1, true), r.err)
    r = h.run({ "fota", "--url", cloud.url .. "/firmwares/blink-250.hex" }, bounded)
    assert.are.equal(1, r.status, r.out .. r.err)
    assert.truthy(r.err:find(want, 1, true), r.err)
    -- neither touched the chip; the app runs on and flashes the next push
    assert.is_nil(h.read(t.chip .. "/erases.log"))
    assert.are.equal("done", push(t, "blink-250"))
    assert_flash(t, "blink-250")
  end)

  it("applies a good edit on SIGHUP in the same process, with one reconnect", function()
    local t = start()
    local pid = t.app.pid
    edit(t, "fotahost/fota.lua", '  self:status("done")\n',
      '  self:status("edited: " .. job.version .. " is in")\n  self:status("done")\n')
    hup(t)
    wait_log(t, "reloading")
    local since = connected(t, t.since)
    assert.is_true(since > t.since)
    -- the same PID, as procd expects: the process never exited (its
    -- exit status would be in app.rc), and it runs the app again
    assert.is_true(h.alive(pid))
    assert.is_nil(h.read(t.dir .. "/app.rc"))
    assert.matches("\0app\0", h.read("/proc/" .. pid .. "/cmdline"))
    -- the cloud saw the old connection go
    assert.is_number(device(t).last_disconnect)
    -- the next push runs the edited policy
    assert.are.equal("done", push(t, "blink-250"))
    assert_flash(t, "blink-250")
    local list = statuses(t)
    assert.are.equal("edited: blink-250 is in", list[#list - 1])
  end)

  -- An app whose update of blink-250 is held in its health check until the
  -- spec writes t.gate (t.reached: the check has begun).
  local function start_held_update()
    local t = start(function(t)
      t.reached, t.gate = t.dir .. "/reached", t.dir .. "/gate"
      return ([[
  health_check = function()
    local sys, sched = require "fotahost.sys", require "fotahost.sched"
    sys.write_file(%q, "")
    while not sys.exists(%q) do sched.sleep(0.02) end
    return true
  end,
]]):format(t.reached, t.gate)
    end)
    admin("POST", "/devices/" .. t.id .. "/fota", { version = "blink-250" })
    h.until_true("the health check to run", WAIT, function() return h.read(t.reached) end)
    return t
  end

  it("waits for the update under way to end before it reloads", function()
    -- the health check holds the update until the spec opens its gate
    local t = start_held_update()
    edit(t, "fotahost/fota.lua", '  self:status("done")\n', '  self:status("done")\n  log.info("edited")\n')
    hup(t)
    h.until_true("the reload to wait", WAIT, function()
      local text = log(t)
      assert(not text:find("reloading", 1, true), "reloaded in the middle of the update:\n" .. text)
      return text:find("reload: waiting for the update (or command) under way to end", 1, true)
    end)
    h.write(t.gate, "")
    wait_log(t, "reloading")
    connected(t, t.since)
    -- the update ended first, and the cloud heard so before the reconnect
    local text = log(t)
    assert.is_true(text:find("status: done", 1, true) < text:find("reloading", 1, true))
    local list = statuses(t)
    assert.are.equal("done", list[#list])
    assert_flash(t, "blink-250")
    h.until_true("the version report", WAIT, function() return device(t).version == "blink-250" end)
  end)

  it("waits for the statuses a slow cloud has not taken yet before it reloads", function()
    local t = start()
    -- an MCS client whose data points wait while the gate file exists: a slow cloud
    local gate = t.dir .. "/slow"
    edit(t, "fotahost/mcs.lua", '      res, err, code = api(self, "POST", path, body, ctype)\n', ([[
      while require("fotahost.sys").exists(%q) do sched.sleep(0.05) end
      res, err, code = api(self, "POST", path, body, ctype)
]]):format(gate))
    hup(t)
    wait_log(t, "reloading")
    t.since = connected(t, t.since)
    h.write(gate, "")
    admin("POST", "/devices/" .. t.id .. "/fota", { version = "blink-250" })
    wait_log(t, "status: done")
    hup(t)
    local text = wait_log(t, "reload: waiting for ") and log(t)
    assert.matches("reload: waiting for %d+ statuses to reach the cloud", text)
    assert.is_nil(text:find("reloading\n.*reloading"))
    os.remove(gate)
    h.until_true("the second reload", WAIT, function() return select(2, log(t):gsub("reloading\n", "")) == 2 end)
    -- the final status reached the cloud before the exec
    h.until_true("the status done", WAIT, function() return statuses(t)[#statuses(t)] == "done" end)
    assert_flash(t, "blink-250")
  end)

  it("checks the edits again once the update it waited for has ended", function()
    local t = start_held_update()
    local path = edit(t, "fotahost/fota.lua", '  self:status("done")\n',
      '  self:status("done")\n  log.info("edited")\n')
    hup(t)
    wait_log(t, "reload: waiting for the update (or command) under way to end")
    -- broken while the update runs: refused when it ends
    edit(t, "fotahost/fota.lua", "local M = {}\n", "local M = {\n")
    h.write(t.gate, "")
    wait_log(t, "reload refused: " .. path .. ":")
    wait_log(t, "reload refused: still running")
    local list = statuses(t)
    assert.are.equal("done", list[#list])
    assert.is_nil(log(t):find("reloading", 1, true))
    assert.are.equal(t.since, device(t).connected_since)
  end)

  it("finishes an update an edited script broke mid-flash, tells the truth, and takes the next push", function()
    local t = start()
    -- a copy of the ISP code with an edit that raises once, half-way through a write
    local marker = t.dir .. "/raised"
    edit(t, "fotahost/avr/isp.lua", "    self:_progress(\"write\", i, #pages)\n", ([[
    self:_progress("write", i, #pages)
    if i == 2 and not require("fotahost.sys").exists(%q) then
      require("fotahost.sys").write_file(%q, "")
      error("an edit gone wrong")
    end
]]):format(marker, marker))
    -- the app started before the edit: a reload takes it
    hup(t)
    wait_log(t, "reloading")
    t.since = connected(t, t.since)
    local final = push(t, "blink-250")
    assert.matches("^failed: .*isp%.lua:%d+: an edit gone wrong; recovered: blink%-250 flashed again after an "
      .. "interruption$", final)
    assert_flash(t, "blink-250")
    h.until_true("the version report", WAIT, function() return device(t).version == "blink-250" end)
    -- the same process, the same connection, and the next push goes through
    assert.are.equal(t.since, device(t).connected_since)
    assert.are.equal("done", push(t, "blink-1000"))
    assert_flash(t, "blink-1000")
    assert.are.equal(t.since, device(t).connected_since)
  end)
end)
