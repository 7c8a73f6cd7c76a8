-- Issue 20, items 1 and 3: a broken edit in the override scripts
-- directory never takes the update path down. A module that fails to load
-- gives way to its bundled twin (one error line naming file and line); an
-- override app that fails to load gives way to the bundled app at once,
-- one that crashes at start after FH_APP_FAILS (3) failed starts in a row.
-- The app tells the cloud once per start, as a "warning: ..." status.
--
-- Each case runs the real binary with FOTAHOST_SCRIPTS_DIR (the override
-- directory) and FOTAHOST_RUN_DIR (the app's start records) in a scratch
-- directory of its own, against one local cloud and a simulated chip.
local h = require "helper"
local ihex = require "fotahost.ihex"

local WAIT = h.wait_limit(90)           -- seconds for anything to happen (CI is a loaded 2-core machine)
local BUNDLED = h.layout.scripts[1]   -- the bundled scripts the binary under test finds
local until_true = h.until_true

describe("a broken override falls back to the bundled script", function()
  local cloud, fwdir, blink250
  local cleanups = {}
  local ndev = 0

  local function admin(method, path, value) return h.cloud_admin(cloud.url, method, path, value) end
  local function device(t) return admin("GET", "/devices/" .. t.id) end

  --- Every fota_status value the cloud received from the device, in order.
  local function statuses(t)
    local out = {}
    for _, p in ipairs(admin("GET", "/devices/" .. t.id .. "/datapoints?channel=fota_status").datapoints) do
      out[#out + 1] = p.values.value
    end
    return out
  end

  --- The statuses matching `pattern`.
  local function matching(t, pattern)
    local out = {}
    for _, s in ipairs(statuses(t)) do
      if s:find(pattern) then out[#out + 1] = s end
    end
    return out
  end

  local function app_log(t) return h.read(t.dir .. "/app.log") or "" end

  -- A device of its own: an id in the cloud, an empty chip, a state
  -- directory, a config, an override scripts directory and a run directory.
  local function new_device()
    ndev = ndev + 1
    local dir = h.tmpdir()
    cleanups[#cleanups + 1] = function() h.rmdir(dir) end
    local t = { id = ("over%d"):format(ndev), key = ("key%05d"):format(ndev), dir = dir,
      chip = dir .. "/chip", state = dir .. "/state", cfg = dir .. "/config.lua",
      scripts = dir .. "/scripts", run = dir .. "/run" }
    h.must("mkdir -p " .. h.q(t.chip) .. " " .. h.q(t.scripts))
    admin("POST", "/devices", { id = t.id, key = t.key })
    h.write(t.cfg, ([[
return {
  device_id = %q, device_key = %q, api = %q,
  board = "sim", sim_dir = %q, state_dir = %q, volatile_state_ok = true,
  heartbeat = 1, backoff_cap = 2, http = { retries = 0 },
}
]]):format(t.id, t.key, cloud.url, t.chip, t.state))
    t.env = { FOTAHOST_SCRIPTS_DIR = t.scripts, FOTAHOST_RUN_DIR = t.run, FOTAHOST_CONFIG = t.cfg,
      FOTAHOST_LOG = "stderr" }
    return t
  end

  --- Writes the override `rel` (e.g. "fotahost/fota.lua"): `text`, or the
  -- bundled file with `edit(lines)` applied. Returns its path.
  local function override(t, rel, text, edit)
    local path = t.scripts .. "/" .. rel
    h.must("mkdir -p " .. h.q(path:match("^(.*)/")))
    if not text then
      local lines = {}
      for l in (h.read(BUNDLED .. "/" .. rel) .. ""):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
      edit(lines)
      text = table.concat(lines, "\n") .. "\n"
    end
    return h.write(path, text)
  end

  --- The bundled `rel` with one typo (a doubled `local`) on a line of its
  -- own before its last top-level function, deep in the file as a user's
  -- edit would be. Returns the override's path and the typo's line.
  local function typo(t, rel)
    local n
    local file = override(t, rel, nil, function(lines)
      for i, l in ipairs(lines) do
        if l:find("^function ") or l:find("^local function ") then n = i end
      end
      table.insert(lines, n, "local local typo")
    end)
    return file, n
  end

  local function stop_app(t)
    if t.app then h.stop_app(t.app) t.app = nil end
  end

  --- Starts `fotahost app` (h.start_app) with the device's directories and
  -- waits until the cloud shows it connected.
  local function start_app(t)
    t.app = h.start_app(t.dir, t.cfg, ("env FOTAHOST_SCRIPTS_DIR=%s FOTAHOST_RUN_DIR=%s ")
      :format(h.q(t.scripts), h.q(t.run)))
    cleanups[#cleanups + 1] = function() stop_app(t) end
    local pid = t.app.pid
    local ok, err = pcall(until_true, "the app to connect", WAIT, function()
      if not h.alive(pid) then error("the app exited") end
      return device(t).connected
    end)
    if not ok then error(tostring(err) .. "; its log:\n" .. app_log(t), 2) end
    return t
  end

  --- Pushes blink-250 and waits for its final status: "done", and the chip
  -- holds it.
  local function flashes_next_push(t)
    admin("POST", "/devices/" .. t.id .. "/fota", { version = "blink-250" })
    local final = until_true("the update's final status", WAIT, function()
      for _, s in ipairs(statuses(t)) do
        if s == "done" or s:find("^failed: ") then return s end
      end
    end)
    assert.are.equal("done", final, app_log(t))
    h.assert_flash_holds(t.chip, blink250:bytes(0, 32767), "blink-250")
  end

  --- The warning status arrives, exactly once; returns it.
  local function warned_once(t, module)
    local pattern = "^warning: .*; running the bundled " .. h.literal(module) .. "$"
    until_true("the warning status", WAIT, function() return #matching(t, pattern) > 0 end)
    local got = matching(t, pattern)
    assert.are.equal(1, #got, table.concat(statuses(t), "\n"))
    return got[1]
  end

  setup(function()
    fwdir = h.tmpdir()
    local fw = h.firmware("blink-250.hex")
    blink250 = assert(ihex.load(fw))
    cloud = h.start_cloud(fwdir, 0, { "--firmware", "blink-250=" .. fw })
  end)

  teardown(function()
    if cloud then cloud.stop() end
    if fwdir then h.rmdir(fwdir) end
  end)

  after_each(function()
    for i = #cleanups, 1, -1 do pcall(cleanups[i]) end
    cleanups = {}
  end)

  ---------------------------------------------------------------- modules

  for _, case in ipairs({
    { rel = "fotahost/fota.lua", module = "fotahost.fota", what = "the FOTA policy" },
    { rel = "fotahost/mcs.lua", module = "fotahost.mcs", what = "the MCS client" },
    { rel = "fotahost/fota/config.lua", module = "fotahost.fota.config", what = "the config loader" },
  }) do
    it("a typo in " .. case.what .. " (" .. case.rel .. "): one log line, the bundled module, "
        .. "a connected app that flashes the next push, the warning once", function()
      local t = new_device()
      local file, n = typo(t, case.rel)
      start_app(t)
      local why = ("%s:%d: <name> expected near 'local'"):format(file, n)
      local line = ("error  scripts: %s; running the bundled %s\n"):format(why, case.module)
      local log = app_log(t)
      local _, times = log:gsub(h.literal(line), "")
      assert.are.equal(1, times, log)
      -- at the start, before any push
      local warning = ("warning: %s; running the bundled %s"):format(why, case.module)
      assert.are.equal(warning, warned_once(t, case.module))
      flashes_next_push(t)
      assert.are.equal(warning, warned_once(t, case.module))
    end)
  end

  it("an override that raises at load: the bundled module runs, the warning names the line", function()
    local t = new_device()
    local file = override(t, "fotahost/fota.lua", nil, function(lines)
      table.insert(lines, 3, 'error("half-done edit")')
    end)
    start_app(t)
    flashes_next_push(t)
    assert.are.equal(("warning: %s:3: half-done edit; running the bundled fotahost.fota"):format(file),
      warned_once(t, "fotahost.fota"))
  end)

  it("an override first required by a push (lazily): reported after that push, once", function()
    local t = new_device()
    -- a health check that needs a module the app does not load at start
    h.write(t.cfg, (h.read(t.cfg):gsub("http = { retries = 0 },", "http = { retries = 0 },\n"
      .. "  health_check = function() return require(\"fotahost.overrides\").dir() ~= nil end,", 1)))
    local file, n = typo(t, "fotahost/overrides.lua")
    start_app(t)
    assert.are.same({}, matching(t, "^warning: .*running the bundled"))
    flashes_next_push(t)
    assert.are.equal(("warning: %s:%d: <name> expected near 'local'; running the bundled fotahost.overrides")
      :format(file, n), warned_once(t, "fotahost.overrides"))
    -- the next push reports nothing new
    admin("POST", "/devices/" .. t.id .. "/fota", { version = "blink-250" })
    until_true("the second push's final status", WAIT, function()
      return #matching(t, "^done$") + #matching(t, "^skipped: ") == 2
    end)
    assert.are.equal(1, #matching(t, "^warning: .*running the bundled"))
  end)

  it("an override that returns nothing usable gives way too", function()
    local t = new_device()
    local file = override(t, "fotahost/fota/config.lua", "local M = {}\n")
    start_app(t)
    assert.are.equal(("warning: %s: the module returned nil, not a module; running the bundled "
      .. "fotahost.fota.config"):format(file), warned_once(t, "fotahost.fota.config"))
  end)

  it("an override that loads is used, not replaced", function()
    local t = new_device()
    override(t, "fotahost/fota.lua", nil, function(lines)
      for i, l in ipairs(lines) do lines[i] = l:gsub('"idle: ', '"idle (edited): ') end
    end)
    start_app(t)
    until_true("the edited idle status", WAIT, function()
      return #matching(t, "^idle %(edited%): ") > 0
    end)
    assert.are.same({}, matching(t, "^warning: "))
    assert.is_nil(app_log(t):find("running the bundled", 1, true))
  end)

  it("a user module with no bundled twin fails as require does", function()
    local t = new_device()
    local file = override(t, "mine.lua", "local local x\n")
    local r = h.run({ "-e", 'require "mine"' }, { env = t.env })
    assert.are.equal(1, r.status)
    assert.matches("error loading module 'mine' from file '" .. h.literal(file) .. "':\n\t"
      .. h.literal(file) .. ":1: <name> expected near 'local'", r.err)
    assert.is_nil(r.err:find("running the bundled", 1, true))
  end)

  it("other tools survive a broken override too (doctor)", function()
    local t = new_device()
    local file, n = typo(t, "fotahost/fota/config.lua")
    local r = h.run({ "doctor", "--help" }, { env = t.env })
    assert.are.equal(0, r.status, r.err)
    assert.matches("^usage: fotahost doctor", r.out)
    assert.matches(h.literal(file) .. ":" .. n .. ": <name> expected near 'local'; running the bundled "
      .. "fotahost.fota.config", r.err)
  end)

  ---------------------------------------------------------------- the app

  it("a typo in the app script: the bundled app runs at once and says why", function()
    local t = new_device()
    local file, n = typo(t, "tools/app.lua")
    start_app(t)
    assert.are.equal(("warning: %s:%d: <name> expected near 'local'; running the bundled app"):format(file, n),
      warned_once(t, "app"))
  end)

  --- Runs the override app through the CLI `n` times; each must fail.
  local function failed_starts(t, n, says)
    for i = 1, n do
      -- a bounded run: a bundled app started by mistake would run for ever
      local r = h.run({ "app" }, { env = t.env, shell_prefix = "timeout 30" })
      assert.are_not.equal(0, r.status, ("start %d: %s"):format(i, r.err))
      assert.matches("override app starting", r.err)
      if says then assert.matches(says, r.err) end
    end
  end

  for _, case in ipairs({
    { what = "raises right after its start", code = 'error("cannot start")',
      says = "cannot start", why = ":2: cannot start" },
    { what = "exits with os.exit(1)", code = "os.exit(1)", why = " with: exited with status 1" },
    { what = "is killed (kill -9)", code = 'os.execute("kill -KILL " .. require("fotahost.sys").getpid())',
      why = " ended without a word %(killed or crashed%)" },
  }) do
    it("an app that " .. case.what .. ": 3 failed starts, the 4th runs the bundled app and says why",
        function()
      local t = new_device()
      local file = override(t, "tools/app.lua", 'io.stderr:write("override app starting\\n")\n'
        .. case.code .. "\n")
      failed_starts(t, 3, case.says)
      start_app(t)
      local warning = warned_once(t, "app")
      assert.matches("^warning: " .. h.literal(file) .. ": 3 failed starts in a row, the last"
        .. (case.why:sub(1, 1) == ":" and " with: " .. h.literal(file) or "") .. case.why
        .. "; running the bundled app$", warning)
      flashes_next_push(t)
    end)
  end

  it("a module override that loads but raises when called (in recover): 3 failed starts, the 4th runs "
      .. "the bundled scripts (the user's own modules still load), says why and flashes the next push; "
      .. "the 5th tries the override again", function()
    local t = new_device()
    local file = override(t, "fotahost/fota.lua", nil, function(lines)
      for i, l in ipairs(lines) do
        if l == "function Policy:recover()" then
          lines[i] = l .. ' io.stderr:write("override app starting\\n") recover_journal_typo()'
        end
      end
    end)
    -- a module of the user's own, with no bundled twin, that the config needs: it still loads
    override(t, "mine.lua", "return { heartbeat = 1 }\n")
    h.write(t.cfg, 'local mine = require "mine"\n' .. h.read(t.cfg):gsub("heartbeat = 1", "heartbeat = mine.heartbeat"))
    local why = h.literal(file) .. ":%d+: attempt to call a nil value %(global 'recover_journal_typo'%)"
    failed_starts(t, 3, why)
    start_app(t)
    local warning = warned_once(t, "scripts")
    assert.matches("^warning: " .. h.literal(t.scripts) .. ": 3 failed starts in a row, the last with: "
      .. why .. "; running the bundled scripts$", warning)
    assert.matches("error  scripts: " .. h.literal(t.scripts) .. ": 3 failed starts in a row", app_log(t))
    flashes_next_push(t)
    stop_app(t)
    failed_starts(t, 1, why)
  end)

  it("a record file with a torn or an overlong line is read as the records it holds", function()
    local t = new_device()
    override(t, "tools/app.lua", 'io.stderr:write("override app starting\\n") error("crash")\n')
    local now = math.floor(tonumber(h.read("/proc/uptime"):match("^[%d.]+")))
    h.must("mkdir -m 700 " .. h.q(t.run))
    -- the overlong error's rest ("C") is no clean end; the bare "E" (cut
    -- short) gives no text of a line before
    h.write(t.run .. "/app-starts", ("S %d\nS %d\nE %sC\nS %d\nE"):format(now, now, ("x"):rep(317), now))
    local r = h.run({ "app", "--help" }, { env = t.env })
    assert.matches("^usage: fotahost app", r.out)
    assert.matches("3 failed starts in a row, the last ended without a word", r.err)
  end)

  it("an error of any length is kept to its first 200 bytes: the count holds", function()
    local t = new_device()
    override(t, "tools/app.lua", 'io.stderr:write("override app starting\\n") error(("x"):rep(317) .. "C", 0)\n')
    failed_starts(t, 3)
    local r = h.run({ "app", "--help" }, { env = t.env })
    assert.matches("^usage: fotahost app", r.out)
    assert.matches("3 failed starts in a row, the last with: " .. ("x"):rep(200) .. "; running", r.err)
  end)

  it("keeps no count through a symbolic link or in a directory others may write to", function()
    local t = new_device()
    override(t, "tools/app.lua", 'io.stderr:write("override app starting\\n") error("crash")\n')
    local victim = h.write(t.dir .. "/victim", "mine\n")
    h.must("mkdir -m 700 " .. h.q(t.run) .. " && ln -s " .. h.q(victim) .. " " .. h.q(t.run .. "/app-starts"))
    local r = h.run({ "app" }, { env = t.env })
    assert.matches("cannot keep the app's starts in " .. h.literal(t.run) .. ": app%-starts is a symbolic link", r.err)
    assert.are.equal("mine\n", h.read(victim))
    h.must("rm " .. h.q(t.run .. "/app-starts") .. " && chmod 777 " .. h.q(t.run))
    r = h.run({ "app" }, { env = t.env })
    assert.matches("cannot keep the app's starts in " .. h.literal(t.run) .. ": others may write to it", r.err)
    assert.is_nil(h.read(t.run .. "/app-starts"))
  end)

  it("a clean end resets the count; the start after the bundled one tries the override again", function()
    local t = new_device()
    local crash = t.dir .. "/crash"
    override(t, "tools/app.lua", ([[
io.stderr:write("override app starting\n")
if io.open(%q) then error("crash") end
]]):format(crash))
    h.write(crash, "")
    failed_starts(t, 2, "crash")
    os.remove(crash)
    local r = h.run({ "app" }, { env = t.env })
    assert.are.equal(0, r.status, r.err)
    h.write(crash, "")
    failed_starts(t, 3, "crash") -- not 2: the clean end began the count afresh
    r = h.run({ "app", "--help" }, { env = t.env })
    assert.matches("3 failed starts in a row", r.err)
    assert.matches("^usage: fotahost app", r.out)
    failed_starts(t, 1, "crash")
  end)

  it("a stop by SIGTERM is a clean end: the count begins afresh", function()
    local t = new_device()
    local crash = t.dir .. "/crash"
    -- the bundled app, crashing while the file `crash` exists
    override(t, "tools/app.lua", nil, function(lines)
      table.insert(lines, 1, ('io.stderr:write("override app starting\\n") if io.open(%q) then error("crash") end')
        :format(crash))
    end)
    h.write(crash, "")
    failed_starts(t, 2, "crash")
    os.remove(crash)
    start_app(t)
    h.stop_app(t.app)
    t.app = nil
    assert.are.equal("143", until_true("the app's exit status", WAIT, function()
      return (h.read(t.dir .. "/app.rc") or ""):match("%d+")
    end))
    assert.is_nil(app_log(t):find("running the bundled", 1, true))
    h.write(crash, "")
    failed_starts(t, 3, "crash")
  end)
end)
