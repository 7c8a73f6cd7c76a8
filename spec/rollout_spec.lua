-- Rollouts end to end (issue 16 item 3): a real `fotahost cloud` and a
-- few real apps (`fotahost app`) on simulated chips. `fotahost cloud
-- rollout` starts, pauses, resumes and shows a rollout; the cloud pushes
-- batch by batch, aborts at a canary the health check rejects, goes on
-- after its own restart, and updates a device that was offline when it
-- returns. (spec/rollout_unit_spec.lua checks the state machine alone.)
local h = require "helper"
local cjson = require "cjson"
local sys = require "fotahost.sys"

local WAIT = h.wait_limit(90) -- seconds for anything to happen (CI is a loaded 2-core machine)

describe("rollouts: the cloud, apps and simulated chips", function()
  local dir, good, bad
  local cleanups = {}
  local nrun = 0

  setup(function()
    dir = h.tmpdir()
    good, bad = h.firmware("blink-1000.hex"), h.firmware("blink-250.hex")
  end)
  teardown(function() h.rmdir(dir) end)
  after_each(function()
    for i = #cleanups, 1, -1 do pcall(cleanups[i]) end
    cleanups = {}
  end)

  -- A fleet of `n` devices and a cloud that knows them (given with
  -- --device, so a restarted cloud knows them too) and the firmwares
  -- "good" and "bad": the devices' health check rejects "bad"; it takes 3 s
  -- on a device whose dir holds a file "slow".
  local function fleet(n)
    nrun = nrun + 1
    local f = { devices = {}, fwdir = ("%s/fw%d"):format(dir, nrun) }
    f.extra = { "--firmware", "good=" .. good, "--firmware", "bad=" .. bad }
    for i = 1, n do
      local d = ("%s/run%d-dev%d"):format(dir, nrun, i)
      local t = { id = ("r%dd%d"):format(nrun, i), key = ("rkey%04d"):format(i), dir = d, chip = d .. "/chip",
                  state = d .. "/state", cfg = d .. "/config.lua" }
      assert(os.execute("mkdir -p " .. h.q(t.chip)))
      f.devices[i] = t
      table.insert(f.extra, "--device")
      table.insert(f.extra, t.id .. ":" .. t.key)
    end
    f.cloud = h.start_cloud(f.fwdir, nil, f.extra)
    cleanups[#cleanups + 1] = function() f.cloud.stop() end
    for _, t in ipairs(f.devices) do
      h.write(t.cfg, ([[
return {
  device_id = %q, device_key = %q, api = %q,
  board = "sim", sim_dir = %q, state_dir = %q, volatile_state_ok = true,
  heartbeat = 1, backoff_cap = 1, http = { retries = 0 },
  health_check = function(job)
    if job.version == "bad" then return false, "the sketch never said hello" end
    local slow = io.open(%q)
    if slow then
      slow:close()
      io.open(%q, "w"):close()
      require("fotahost.sched").sleep(3)
    end
    return true
  end,
}
]]):format(t.id, t.key, f.cloud.url, t.chip, t.state, t.dir .. "/slow", t.dir .. "/checking"))
    end
    return f
  end

  local function admin(f, method, path, value) return h.cloud_admin(f.cloud.url, method, path, value) end
  local function connected(f, t) return admin(f, "GET", "/devices/" .. t.id).connected end

  local function start_app(f, t)
    t.app = h.start_app(t.dir, t.cfg, "")
    local app = t.app
    cleanups[#cleanups + 1] = function() h.stop_app(app) end
    h.until_true("the app to connect", WAIT, function()
      if not h.alive(app.pid) then error("the app exited; its log:\n" .. (h.read(t.dir .. "/app.log") or "")) end
      return connected(f, t)
    end)
  end

  -- Whether the cloud would push to `t` now: connected, and its version
  -- reported since, or VERSION_GRACE s gone by (a fresh chip reports none).
  -- Until then a rollout leaves it pending, and a canary started a moment
  -- later may fail first: the rollout is aborted before it is pushed.
  local GRACE = require("fotahost.mcs_cloud.rollout_runner").VERSION_GRACE
  local function ready(f, t)
    local d = admin(f, "GET", "/devices/" .. t.id)
    if not d.connected then return false end
    local reported = d.version_reported_at ~= cjson.null and d.version_reported_at >= d.connected_since
    return reported or sys.time() - d.connected_since >= GRACE
  end

  -- Starts the apps of devices from..to, and waits until the cloud would push to each.
  local function start_apps(f, from, to)
    for i = from or 1, to or #f.devices do start_app(f, f.devices[i]) end
    for i = from or 1, to or #f.devices do
      h.until_true(f.devices[i].id .. " to be ready for a push", WAIT, function() return ready(f, f.devices[i]) end)
    end
  end

  local function rollout_cli(f, ...)
    local args = { "cloud", "rollout", ... }
    table.move({ "--cloud", f.cloud.url }, 1, 2, #args + 1, args)
    local r = h.run(args)
    assert(r.status == 0, "fotahost cloud rollout " .. table.concat({ ... }, " ") .. ": " .. (r.err or ""))
    return r.out
  end

  local function status(f) return cjson.decode(rollout_cli(f, "status", "--json")) end

  local function until_state(f, want)
    return h.until_true("the rollout to be " .. want, WAIT, function()
      local s = status(f)
      return s.state == want and s
    end)
  end

  local function device_state(s, id)
    for _, b in ipairs(s.batches) do
      for _, d in ipairs(b.devices) do
        if d.id == id then return d.state, d end
      end
    end
  end

  local function erases(t)
    local n = 0
    for _ in (h.read(t.chip .. "/erases.log") or ""):gmatch("\n") do n = n + 1 end
    return n
  end

  it("aborts at a canary the health check rejects: no other chip is touched", function()
    local f = fleet(5)
    start_apps(f)
    local out = rollout_cli(f, "start", "--firmware", "bad", "--canary", "2", "--batch", "50%",
      "--max-failures", "50%")
    assert.matches("rollout of bad: running", out)
    local s = until_state(f, "aborted")
    assert.matches("^canary failure: %d of 2 canaries failed$", s.reason)
    -- the other canary, under way, finishes and is counted
    s = h.until_true("both canaries' outcomes", WAIT, function()
      local st = status(f)
      return st.counts.pushed == 0 and st
    end)
    assert.are.same({ pending = 3, pushed = 0, done = 0, failed = 2, timeout = 0, skipped = 0 }, s.counts)
    assert.matches("health check: the sketch never said hello", select(2, device_state(s, f.devices[1].id)).why)
    for i, t in ipairs(f.devices) do
      if i <= 2 then
        assert.is_true(erases(t) > 0, t.id .. ": a canary was flashed")
      else
        assert.are.equal(0, erases(t), t.id .. ": erased, after the canary failed")
      end
    end
    local text = rollout_cli(f, "status")
    assert.matches("rollout of bad: aborted %(canary failure: %d of 2 canaries failed%)", text)
    assert.matches("5 devices: 3 pending, 2 failed", text)
  end)

  it("updates the fleet batch by batch, each batch only after the previous one finished", function()
    local f = fleet(5)
    start_apps(f)
    rollout_cli(f, "start", "--firmware", "good", "--canary", "1", "--batch", "50%", "--devices",
      table.concat({ f.devices[5].id, f.devices[1].id, f.devices[2].id, f.devices[3].id, f.devices[4].id }, ","))
    local r = h.run({ "cloud", "rollout", "start", "--firmware", "good", "--cloud", f.cloud.url })
    assert.are.equal(1, r.status)
    assert.matches("a rollout of good is running already: abort it first", r.err)
    local s = until_state(f, "completed")
    assert.are.same({ pending = 0, pushed = 0, done = 5, failed = 0, timeout = 0, skipped = 0 }, s.counts)
    -- the canary (the list's first), then 3 (50% of 5, rounded up), then the last
    local sizes, first = {}, {}
    for k, b in ipairs(s.batches) do sizes[k], first[k] = b.size, b.devices[1].id end
    assert.are.same({ 1, 3, 1 }, sizes)
    assert.are.equal(f.devices[5].id, first[1])
    for k = 2, #s.batches do
      local finished = 0
      for _, d in ipairs(s.batches[k - 1].devices) do finished = math.max(finished, d.ended_at) end
      for _, d in ipairs(s.batches[k].devices) do
        assert.is_true(d.pushed_at >= finished,
          ("%s (batch %d) pushed before batch %d finished"):format(d.id, k, k - 1))
      end
    end
    for _, t in ipairs(f.devices) do
      assert.are.equal("good", admin(f, "GET", "/devices/" .. t.id).version)
    end
    -- a second rollout of the same firmware skips every device
    rollout_cli(f, "start", "--firmware", "good", "--canary", "0", "--batch", "100")
    s = until_state(f, "completed")
    assert.are.equal(5, s.counts.skipped)
  end)

  it("pauses (what is under way finishes, nothing new starts) and resumes", function()
    local f = fleet(4)
    start_apps(f)
    h.write(f.devices[1].dir .. "/slow", "")
    rollout_cli(f, "start", "--firmware", "good", "--canary", "1", "--batch", "100%")
    -- (pushed once its version report had time to come: a device already
    -- on the firmware is skipped, never pushed again)
    h.until_true("the canary pushed", WAIT, function() return status(f).counts.pushed == 1 end)
    assert.matches("rollout of good: paused", rollout_cli(f, "pause"))
    local s = h.until_true("the canary's outcome", WAIT, function()
      local st = status(f)
      return st.counts.done == 1 and st
    end)
    assert.are.equal("paused", s.state)
    assert.are.equal(3, s.counts.pending)
    assert.are.equal(1, s.current_batch)
    for i = 2, 4 do assert.are.equal(0, erases(f.devices[i])) end
    assert.matches("rollout of good: running", rollout_cli(f, "resume"))
    s = until_state(f, "completed")
    assert.are.equal(4, s.counts.done)
  end)

  it("goes on after a restart of the cloud in the middle of a batch", function()
    local f = fleet(4)
    start_apps(f)
    for i = 2, 4 do h.write(f.devices[i].dir .. "/slow", "") end
    rollout_cli(f, "start", "--firmware", "good", "--canary", "1", "--batch", "100%")
    h.until_true("batch 2 in its health checks", WAIT, function()
      for i = 2, 4 do
        if not h.read(f.devices[i].dir .. "/checking") then return false end
      end
      return true
    end)
    local saved = cjson.decode(h.read(f.fwdir .. "/cloud-rollout.json"))
    assert.are.equal(2, saved.current)
    assert.are.equal("pushed", saved.devices[f.devices[2].id].state)
    local port = f.cloud.port
    f.cloud.stop()
    f.cloud = h.start_cloud(f.fwdir, port, f.extra)
    local s = until_state(f, "completed")
    assert.are.equal(4, s.counts.done)
    for _, t in ipairs(f.devices) do assert.is_true(erases(t) > 0, t.id .. " was never flashed") end
  end)

  it("updates a device offline during its batch when it returns", function()
    local f = fleet(3)
    start_apps(f, 1, 2)
    local offline = f.devices[3]
    rollout_cli(f, "start", "--firmware", "good", "--canary", "1", "--batch", "100%")
    local s = h.until_true("batch 2's online device done", WAIT, function()
      local st = status(f)
      return device_state(st, f.devices[2].id) == "done" and st
    end)
    assert.are.equal("running", s.state)
    assert.are.equal("pending", device_state(s, offline.id))
    assert.matches(offline.id .. " %(offline%)", rollout_cli(f, "status"))
    start_app(f, offline)
    s = until_state(f, "completed")
    assert.are.equal(3, s.counts.done)
    assert.are.equal("good", admin(f, "GET", "/devices/" .. offline.id).version)
  end)
end)
