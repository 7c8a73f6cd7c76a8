-- Power cuts at random moments (issue 11, "Done when"): the app, the local
-- cloud and the simulated chip as in fota_spec.lua; each trial pushes the
-- version not installed and SIGKILLs the app at a random moment of the
-- update, then starts it again and, once it has settled, checks that
--   * flash.bin holds one whole image, the old or the new, byte for byte;
--   * installed.json names that image, lkg.hex is it, no journal is left;
--   * the cloud's last status is "idle: <that version> installed", and the
--     version it shows is that one.
--
-- The moment: each trial aims at a phase, in turn from a random first one
-- (download, flash, health check, commit), waits until the update has
-- reached it and then for a random part of that phase's length (the
-- download is throttled, the chip writes slowly and the health check
-- waits, so each window is wide enough to hit). Commit takes milliseconds:
-- for it the health check stops the app (SIGSTOP on itself) as it ends,
-- and a shell resumes and kills it a random number of loop turns later
-- (~3 us each), drawn between bounds that close in on the commit: a kill
-- that landed before it raises the lower one, one after it lowers the
-- upper one (both start over if they meet).
-- Where the kill landed is read from what it left (the journal, the
-- markers the health check writes, installed.json), not from the aim, and
-- the counts per phase are printed at the end.
--
-- TORTURE_TRIALS (default 4: make test) trials; `make torture` runs 32.
-- TORTURE_SEED replays a run: the seed is printed first, and with every
-- failure. TORTURE_PHASE aims every kill at one phase; TORTURE_SPIN is
-- the most loop turns between the resume and the kill in a commit.
local h = require "helper"
local stream = require "fotahost.stream"
local ihex = require "fotahost.ihex"
local digest = require "fotahost.digest"
local cjson = require "cjson.safe"

local TRIALS = math.tointeger(tonumber(os.getenv("TORTURE_TRIALS") or "")) or 4
local SEED = math.tointeger(tonumber(os.getenv("TORTURE_SEED") or "")) or (os.time() % 1000000)
local FLASH_SIZE = 32768
local WAIT = 90
local PHASES = { "download", "flash", "health check", "commit" }
if os.getenv("TORTURE_PHASE") then PHASES = { os.getenv("TORTURE_PHASE") } end -- aim at one only
local SPIN = math.tointeger(tonumber(os.getenv("TORTURE_SPIN") or "")) or 12000
local DOWNLOAD_RATE = 120000 -- bytes/s: a 28 KB image as HEX (~79 KB) takes ~0.7 s
local SLOW_WRITE = 2         -- the chip's busy periods twice as long: ~1 s of flashing
local HEALTH_SECONDS = 0.5   -- the health check's length

local function sleep(s) stream.pause(nil, s) end

local until_true = h.until_true

local pattern = h.pattern

-- Whether process `pid` is stopped (SIGSTOP).
local function stopped(pid)
  local stat = h.read("/proc/" .. pid .. "/stat")
  return stat and stat:match("%) (%a)") == "T"
end

describe("FOTA under random power cuts (seed " .. SEED .. ", " .. TRIALS .. " trials)", function()
  local cloud, web, fwdir, files, t
  local fw = {}        -- version -> { image, bytes (flash.bin after it), url, md5 }
  local landed = {}    -- phase -> kills that landed in it
  local aimed = {}     -- phase -> kills aimed at it
  local installed      -- the version installed before the next trial
  local rng = math.random
  local spin_lo, spin_hi = 0, SPIN -- loop turns before a kill aimed at the commit
  local first_phase

  local function admin(method, path, value) return h.cloud_admin(cloud.url, method, path, value) end
  local function device() return admin("GET", "/devices/" .. t.id) end
  local function statuses()
    local d = admin("GET", "/devices/" .. t.id .. "/datapoints?channel=fota_status")
    local out = {}
    for i, p in ipairs(d.datapoints) do out[i] = p.values.value end
    return out
  end
  local function app_log() return h.read(t.dir .. "/app.log") or "" end
  local function erases()
    local n = 0
    for _ in (h.read(t.chip .. "/erases.log") or ""):gmatch("\n") do n = n + 1 end
    return n
  end
  local function marker(name) return t.dir .. "/" .. name end

  -- (the cloud refuses a push to a device it does not see connected)
  local function start_app()
    t.app = h.start_app(t.dir, t.cfg)
    until_true("the app to connect", WAIT, function()
      if not h.alive(t.app.pid) then error("the app exited; its log:\n" .. app_log()) end
      return device().connected
    end)
  end
  local function kill_app()
    if not t.app then return end
    local app = t.app
    t.app = nil
    h.stop_app(app, "KILL")
    until_true("the cloud to see the app gone", WAIT, function() return not device().connected end)
  end

  -- Waits until the app, started again, has told the cloud where it
  -- stands: an "idle: ..." status after the first `n`. Returns it.
  local function settled(n)
    return until_true("the app to settle (an idle status)", WAIT, function()
      local list = statuses()
      for i = n + 1, #list do
        if list[i]:find("^idle: ") then return list[i] end
      end
      if t.app and not h.alive(t.app.pid) then error("the app exited; its log:\n" .. app_log()) end
    end)
  end

  -- The version whose image flash.bin holds, whole; nil if neither.
  local function chip_version()
    local got = h.read(t.chip .. "/flash.bin")
    for v, f in pairs(fw) do
      if got == f.bytes then return v end
    end
  end

  setup(function()
    math.randomseed(SEED)
    io.stderr:write(("\nfota torture: TORTURE_SEED=%d TORTURE_TRIALS=%d\n"):format(SEED, TRIALS))
    fwdir, files = h.tmpdir(), h.tmpdir()
    for i, v in ipairs({ "torture-a", "torture-b" }) do
      local img = ihex.from_binary(pattern(28 * 1024, 10 + i), 0)
      local path = files .. "/" .. v .. ".hex"
      assert(img:write(path))
      fw[v] = { image = img, bytes = img:bytes(0, FLASH_SIZE - 1), md5 = assert(digest.file(path, "md5")) }
    end
    -- registered (the cloud takes version reports of registered firmware
    -- only); pushed with a throttled URL of their own
    cloud = h.start_cloud(fwdir, 0, { "--firmware", "torture-a=" .. files .. "/torture-a.hex",
      "--firmware", "torture-b=" .. files .. "/torture-b.hex" })
    web = h.start_server({ "spec/support/http_test_server.lua", "--root", files })
    for v, f in pairs(fw) do f.url = ("%s/throttle/%s.hex?rate=%d"):format(web.url, v, DOWNLOAD_RATE) end
    local dir = h.tmpdir()
    t = { id = "torture", key = "keytorture", dir = dir, chip = dir .. "/chip", state = dir .. "/state",
      cfg = dir .. "/config.lua" }
    assert(os.execute("mkdir " .. h.q(t.chip)))
    admin("POST", "/devices", { id = t.id, key = t.key })
    -- The health check: marks its start, waits, and when the spec asks
    -- (commit-stop) stops the app as it ends, so the kill can be aimed
    -- at the commit that follows.
    h.write(t.cfg, ([[
return {
  device_id = %q, device_key = %q, api = %q,
  board = "sim", sim_dir = %q, state_dir = %q,
  heartbeat = 1, backoff_cap = 2,
  http = { retries = 0 },
  health_check = function(job)
    io.open(%q, "w"):close()
    require("fotahost.sched").sleep(%g)
    if not job.recovering and io.open(%q) then
      os.remove(%q)
      os.execute("kill -STOP " .. require("fotahost.sys").getpid())
    end
    return true
  end,
}
]]):format(t.id, t.key, cloud.url, t.chip, t.state, marker("health-check-started"), HEALTH_SECONDS,
      marker("commit-stop"), marker("commit-stop")))
    -- the starting point: torture-a installed by an update, so a
    -- last-known-good image is there to go back to
    start_app()
    admin("POST", "/devices/" .. t.id .. "/fota", { version = "torture-a", url = fw["torture-a"].url,
      md5 = fw["torture-a"].md5 })
    until_true("torture-a installed", WAIT, function()
      local l = statuses()
      for _, s in ipairs(l) do assert(not s:find("^failed"), s .. "; the app's log:\n" .. app_log()) end
      return l[#l] == "done"
    end)
    installed = "torture-a"
    first_phase = rng(#PHASES)
  end)

  teardown(function()
    kill_app()
    local rows = {}
    for _, p in ipairs({ "download", "flash", "health check", "commit", "after the commit", "rollback" }) do
      rows[#rows + 1] = ("%s %d/%d"):format(p, landed[p] or 0, aimed[p] or 0)
    end
    io.stderr:write(("fota torture (seed %d): kills landed/aimed per phase: %s\n")
      :format(SEED, table.concat(rows, ", ")))
    if web then web.stop() end
    if cloud then cloud.stop() end
    for _, d in ipairs({ fwdir, files, t and t.dir }) do if d then h.rmdir(d) end end
  end)

  -- Waits until the update has reached `phase`, then kills the app a
  -- random part of that phase's length later.
  local function cut(phase, n_status, n_erases)
    local pid = t.app.pid
    local function gone() if not h.alive(pid) then error("the app exited; its log:\n" .. app_log()) end end
    if phase == "download" then
      until_true("downloading", WAIT, function()
        gone()
        local l = statuses()
        return #l > n_status and l[#l] == "downloading"
      end)
      sleep(rng() * 79000 / DOWNLOAD_RATE)
    elseif phase == "flash" then
      until_true("the erase", WAIT, function() gone() return erases() > n_erases end)
      sleep(rng() * 1.0)
    elseif phase == "health check" then
      until_true("the health check", WAIT, function() gone() return h.read(marker("health-check-started")) end)
      sleep(rng() * HEALTH_SECONDS)
    else
      until_true("the app to stop after its health check", WAIT, function() gone() return stopped(pid) end)
      -- resumed and killed from one shell: builtins, no fork between them
      local spin = rng(spin_lo, spin_hi)
      os.execute(("sh -c 'kill -CONT %d; i=0; while [ $i -lt %d ]; do i=$((i+1)); done; kill -KILL %d'")
        :format(pid, spin, pid))
      kill_app()
      return spin
    end
    kill_app()
  end

  -- The simulated chip keeps its memories in the app's process and saves
  -- them to flash.bin when RESET is released: a kill after the erase and
  -- before that leaves flash.bin as it was. A power cut leaves a real chip
  -- erased, with the pages written so far: flash.bin is made so (a random
  -- number of the new image's pages). Returns that number, or nil when the
  -- chip was not erased (or its session had ended).
  local PAGE = 128 -- the ATmega32U4's flash page
  local function power_cut_chip(target, n_erases)
    if erases() <= n_erases or h.read(t.chip .. "/flash.bin") == fw[target].bytes then return nil end
    local k = rng(0, 28 * 1024 // PAGE)
    h.write(t.chip .. "/flash.bin", fw[target].bytes:sub(1, k * PAGE) .. ("\xFF"):rep(FLASH_SIZE - k * PAGE))
    return k
  end

  -- Where the kill landed, from what it left in state_dir.
  local function landing(target, n_erases)
    local j = h.read(t.state .. "/journal.json")
    local inst = cjson.decode(h.read(t.state .. "/installed.json") or "null")
    inst = type(inst) == "table" and inst.version
    if not j then
      if inst == target then return "after the commit" end
      return erases() > n_erases and "flash" or "download" -- (erased: a journal should be there)
    end
    j = cjson.decode(j)
    if j.stage == "rollback" then return "rollback" end
    if j.health == "passed" or inst == target then
      -- which of its steps it had done (commit() writes installed.json,
      -- then replaces lkg.hex, then removes the journal)
      local lkg = ihex.load(t.state .. "/lkg.hex")
      local step = inst ~= target and "the check recorded as passed"
        or (lkg and lkg:bytes(0, FLASH_SIZE - 1) == fw[target].bytes) and "lkg.hex replaced"
        or "installed.json written"
      return "commit", step
    end
    if h.read(marker("health-check-started")) then return "health check" end
    return "flash"
  end

  for trial = 1, TRIALS do
    it(("trial %d: a kill, a restart, one whole image and the truth told"):format(trial), function()
      local phase = PHASES[(first_phase + trial - 2) % #PHASES + 1]
      -- what the last trial left (the truth even after a red one)
      local inst0 = cjson.decode(h.read(t.state .. "/installed.json") or "null")
      installed = type(inst0) == "table" and inst0.version or installed
      local target = installed == "torture-a" and "torture-b" or "torture-a"
      local what = ("trial %d (TORTURE_SEED=%d), %s -> %s, kill aimed at the %s"):format(trial, SEED,
        installed, target, phase)
      aimed[phase] = (aimed[phase] or 0) + 1
      os.remove(marker("health-check-started"))
      if phase == "commit" then h.write(marker("commit-stop"), "") end
      if not t.app then start_app() end
      h.write(t.chip .. "/faults", ("slow_write %d\n"):format(SLOW_WRITE))
      local n_status, n_erases = #statuses(), erases()
      admin("POST", "/devices/" .. t.id .. "/fota", { version = target, url = fw[target].url, md5 = fw[target].md5 })
      local spin = cut(phase, n_status, n_erases)
      local where, step = landing(target, n_erases)
      if spin and where ~= "commit" then
        if where == "after the commit" then spin_hi = spin else spin_lo = spin end
        if spin_hi - spin_lo < 10 then spin_lo, spin_hi = 0, SPIN end
      end
      landed[where] = (landed[where] or 0) + 1
      what = what .. ", landed: " .. where .. (step and " (" .. step .. ")" or "")
      local pages = power_cut_chip(target, n_erases)
      if pages then what = what .. (" (the chip left erased, %d pages written)"):format(pages) end
      os.remove(marker("commit-stop"))
      os.remove(t.chip .. "/faults")
      local logged = #app_log()
      local n = #statuses()
      start_app()
      local said = settled(n)
      local v = chip_version()
      assert(v, what .. ": flash.bin holds neither image whole; the app's log:\n" .. app_log():sub(logged + 1))
      local list = statuses()
      assert.are.equal("idle: " .. v .. " installed", said, what)
      assert.are.equal(said, list[#list], what .. ": a status after the idle one")
      local inst = cjson.decode(h.read(t.state .. "/installed.json") or "null")
      assert.are.equal(v, type(inst) == "table" and inst.version, what .. ": installed.json")
      assert.is_nil(h.read(t.state .. "/journal.json"), what .. ": a journal is left")
      assert.is_true(fw[v].bytes == assert(ihex.load(t.state .. "/lkg.hex")):bytes(0, FLASH_SIZE - 1),
        what .. ": lkg.hex is not " .. v)
      local ok = pcall(until_true, "the version report", WAIT, function() return device().version == v end)
      assert.is_true(ok, what .. ": the cloud shows version " .. tostring(device().version))
      installed = v
      io.stderr:write(("fota torture: %s; the chip holds %s\n"):format(what, v))
    end)
  end
end)
