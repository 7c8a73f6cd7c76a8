-- The rollout state machine (fotahost.mcs_cloud.rollout) on its own: no
-- process, no cloud; a fleet is a table and the time a number.
-- (spec/rollout_spec.lua runs rollouts on a real cloud and real apps.)
require "helper"
local R = require "fotahost.mcs_cloud.rollout"

-- A fleet of `n` connected devices d1..dn on version "v1".
local function fleet(n)
  local f = { ids = {}, dev = {} }
  for i = 1, n do
    local id = "d" .. i
    f.ids[i] = id
    f.dev[id] = { version = "v1", ready = true }
  end
  f.view = function(id) return f.dev[id] end
  return f
end

local function new(f, opts)
  opts.firmware, opts.devices, opts.now = opts.firmware or "v2", f.ids, 0
  return assert(R.new(opts))
end

describe("the rollout state machine", function()
  it("cuts the fleet into the canaries, then batches of P% rounded up", function()
    local ids = { "a", "b", "c", "d", "e", "f", "g" }
    assert.are.same({ { "a", "b" }, { "c", "d" }, { "e", "f" }, { "g" } }, R.batches(ids, 2, 25))
    assert.are.same({ { "a" }, { "b", "c", "d", "e", "f", "g" } }, R.batches(ids, 1, 100))
    assert.are.same({ { "a" }, { "b" }, { "c" }, { "d" }, { "e" }, { "f" }, { "g" } }, R.batches(ids, 0, 1))
  end)

  it("refuses bad options, naming them", function()
    local f = fleet(3)
    local function why(opts)
      opts.firmware, opts.devices = opts.firmware or "v2", opts.devices or f.ids
      return select(2, R.new(opts))
    end
    assert.matches("canary 4", why({ canary = 4 }))
    assert.matches("batch 0", why({ batch = 0 }))
    assert.matches("max%-failures 101", why({ max_failures = 101 }))
    assert.matches("step%-timeout 0", why({ step_timeout = 0 }))
    assert.matches("d1 is listed twice", why({ devices = { "d1", "d1" } }))
    assert.matches("at least one device", why({ devices = {} }))
  end)

  it("pushes batch by batch, each only once the previous one finished", function()
    local f = fleet(5)
    local ro = new(f, { canary = 1, batch = 40, max_failures = 50 })
    assert.are.same({ "d1" }, R.advance(ro, f.view, 1))
    assert.are.same({}, R.advance(ro, f.view, 2))
    R.on_status(ro, "d1", "downloading", 3)
    assert.are.same({}, R.advance(ro, f.view, 3))
    assert.is_true(R.on_status(ro, "d1", "done", 4))
    assert.are.same({ "d2", "d3" }, R.advance(ro, f.view, 5))
    R.on_status(ro, "d2", "done", 6)
    assert.are.same({}, R.advance(ro, f.view, 6)) -- d3 still under way
    R.on_version(ro, "d3", "v2", 7)               -- a version report is an outcome too
    assert.are.same({ "d4", "d5" }, R.advance(ro, f.view, 8))
    R.on_status(ro, "d4", "done", 9)
    R.on_status(ro, "d5", "failed: health check: no", 9)
    R.advance(ro, f.view, 10)
    assert.are.equal("completed", ro.state) -- 1 of 2 failed: 50%, not over 50%
    local s = R.summary(ro)
    assert.are.same({ pending = 0, pushed = 0, done = 4, failed = 1, timeout = 0, skipped = 0 }, s.total)
    assert.are.equal("health check: no", ro.devices.d5.why)
  end)

  it("aborts at a canary failure: no other device is pushed", function()
    local f = fleet(4)
    local ro = new(f, { canary = 2, batch = 50, max_failures = 50 })
    assert.are.same({ "d1", "d2" }, R.advance(ro, f.view, 0))
    R.on_status(ro, "d1", "failed: health check: the sketch said no", 1)
    assert.are.same({}, R.advance(ro, f.view, 1))
    assert.are.equal("aborted", ro.state)
    assert.matches("canary failure: 1 of 2", ro.reason)
    -- the canary under way still counts
    R.on_status(ro, "d2", "done", 2)
    assert.are.equal("done", ro.devices.d2.state)
    assert.are.same({}, R.advance(ro, f.view, 3))
    assert.are.equal("pending", ro.devices.d3.state)
  end)

  it("aborts when a batch's failures exceed the threshold, at once", function()
    local f = fleet(7)
    local ro = new(f, { canary = 1, batch = 50, max_failures = 25 })
    R.advance(ro, f.view, 0)
    R.on_status(ro, "d1", "done", 1)
    assert.are.same({ "d2", "d3", "d4", "d5" }, R.advance(ro, f.view, 1))
    R.on_status(ro, "d2", "failed: x", 2)
    R.advance(ro, f.view, 2)
    assert.are.equal("running", ro.state) -- 1 of 4: 25%, not over
    R.on_status(ro, "d3", "failed: y", 3)
    assert.are.same({}, R.advance(ro, f.view, 3))
    assert.are.equal("aborted", ro.state)
    assert.matches("batch 2: 2 of 4 devices failed %(50%%, more than %-%-max%-failures 25%%%)", ro.reason)
    assert.are.equal("pending", ro.devices.d6.state)
  end)

  it("times a push out after step_timeout: a failure", function()
    local f = fleet(3)
    local ro = new(f, { canary = 1, batch = 100, max_failures = 0, step_timeout = 30 })
    R.advance(ro, f.view, 100)
    assert.are.same({}, R.advance(ro, f.view, 129))
    R.advance(ro, f.view, 130)
    assert.are.equal("timeout", ro.devices.d1.state)
    assert.are.equal("aborted", ro.state)
    -- an outcome after the timeout changes nothing
    assert.is_false(R.on_status(ro, "d1", "done", 131))
  end)

  it("skips a device already on the version, and pushes an offline one when it is ready", function()
    local f = fleet(3)
    f.dev.d2.version = "v2"
    f.dev.d3.ready = false
    local ro = new(f, { canary = 1, batch = 100 })
    R.advance(ro, f.view, 0)
    R.on_status(ro, "d1", "done", 1)
    assert.are.same({}, R.advance(ro, f.view, 2))
    assert.are.equal("skipped", ro.devices.d2.state)
    assert.are.equal("pending", ro.devices.d3.state)
    assert.are.same({}, R.advance(ro, f.view, 500)) -- offline: no timeout runs
    f.dev.d3.ready = true
    assert.are.same({ "d3" }, R.advance(ro, f.view, 501))
    assert.are.equal(501, ro.devices.d3.pushed_at)
    R.on_status(ro, "d3", "done", 502)
    R.advance(ro, f.view, 503)
    assert.are.equal("completed", ro.state)
  end)

  it("a push not sent goes back to pending; ignores idle, queued and warning statuses", function()
    local f = fleet(1)
    local ro = new(f, { canary = 0, batch = 100 })
    assert.are.same({ "d1" }, R.advance(ro, f.view, 0))
    R.push_failed(ro, "d1")
    assert.are.equal("pending", ro.devices.d1.state)
    assert.are.same({ "d1" }, R.advance(ro, f.view, 1))
    for _, v in ipairs({ "idle: v1 installed", "queued: v2", "warning: slow", "verifying", "flashing" }) do
      assert.is_false(R.on_status(ro, "d1", v, 2))
    end
    assert.is_false(R.on_version(ro, "d1", "v1", 2))
    assert.are.equal("pushed", ro.devices.d1.state)
  end)

  it("takes the final status of the update before as that one's, when the device said queued", function()
    local f = fleet(2)
    local ro = new(f, { canary = 0, batch = 100 })
    assert.are.same({ "d1", "d2" }, R.advance(ro, f.view, 0))
    -- d1 was busy with v1: its done is v1's; then v2's own run
    assert.is_false(R.on_status(ro, "d1", "queued: v2 (an update is running)", 1))
    assert.is_false(R.on_status(ro, "d1", "done", 2))
    assert.is_false(R.on_status(ro, "d1", "failed: download: x", 2))
    assert.are.equal("pushed", ro.devices.d1.state)
    assert.is_false(R.on_status(ro, "d1", "downloading", 3))
    assert.is_true(R.on_status(ro, "d1", "failed: health check: silent", 4))
    assert.are.equal("failed", ro.devices.d1.state)
    -- d2's v1 failed, and with it the queued v2: that failure is v2's
    R.on_status(ro, "d2", "queued: v2 (an update is running)", 1)
    assert.is_false(R.on_status(ro, "d2", "failed: MD5 mismatch", 2))
    assert.is_true(R.on_status(ro, "d2", "failed: v2 was not started: the update before it failed", 2))
    assert.are.equal("failed", ro.devices.d2.state)
  end)

  it("pauses (the pushes under way are counted, none starts), resumes, and aborts", function()
    local f = fleet(3)
    local ro = new(f, { canary = 1, batch = 100 })
    R.advance(ro, f.view, 0)
    assert.is_true(R.pause(ro))
    assert.is_nil(R.pause(ro))
    R.on_status(ro, "d1", "done", 1)
    assert.are.same({}, R.advance(ro, f.view, 2))
    assert.are.equal("done", ro.devices.d1.state)
    assert.are.equal("paused", ro.state)
    assert.are.equal(1, ro.current)
    assert.is_true(R.resume(ro))
    assert.are.same({ "d2", "d3" }, R.advance(ro, f.view, 3))
    assert.is_true(R.abort(ro, 4))
    assert.are.equal("aborted by the operator", ro.reason)
    assert.are.same({}, R.advance(ro, f.view, 5))
    assert.is_nil(R.resume(ro))
    assert.is_nil(R.abort(ro, 6))
  end)

  it("pushes nothing once aborted, not even to a device that comes back", function()
    local f = fleet(3)
    f.dev.d3.ready = false
    local ro = new(f, { canary = 1, batch = 100 })
    R.advance(ro, f.view, 0)
    R.on_status(ro, "d1", "done", 1)
    assert.are.same({ "d2" }, R.advance(ro, f.view, 2))
    assert.is_true(R.abort(ro, 3))
    f.dev.d3.ready = true
    assert.are.same({}, R.advance(ro, f.view, 4))
    assert.are.equal("pending", ro.devices.d3.state)
    R.on_status(ro, "d2", "done", 5) -- under way: counted
    assert.are.equal("done", ro.devices.d2.state)
    assert.are.equal("aborted", ro.state)
  end)

  it("reads its saved form back, refusing one that is not a rollout", function()
    local cjson = require "cjson"
    local f = fleet(3)
    local ro = new(f, { canary = 1, batch = 100, step_timeout = 10 })
    R.advance(ro, f.view, 0)
    local back = assert(R.check(cjson.decode(cjson.encode(ro))))
    R.restarted(back, 1000)
    assert.are.equal(1000, back.devices.d1.pushed_at) -- a whole step_timeout again
    assert.are.same({}, R.advance(back, f.view, 1005))
    assert.are.equal("pushed", back.devices.d1.state)
    assert.is_nil(R.check({}))
    assert.is_nil(R.check(cjson.decode('{"firmware":"v2","state":"gone","batches":[],"devices":{},"options":{}}')))
    local bad = cjson.decode(cjson.encode(ro))
    bad.devices.d2 = nil
    assert.matches("bad device d2", select(2, R.check(bad)))
    -- what no batch names, and times that are not numbers, are dropped
    local edited = cjson.decode(cjson.encode(ro))
    edited.devices.intruder = { state = "pushed", pushed_at = "soon" }
    edited.devices.d1.pushed_at = "soon"
    back = assert(R.check(edited))
    assert.is_nil(back.devices.intruder)
    assert.are.same({}, R.advance(back, f.view, 11))
    assert.are.equal("timeout", back.devices.d1.state) -- pushed at an unknown time: at 0
  end)
end)
