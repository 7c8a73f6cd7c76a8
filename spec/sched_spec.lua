-- The cooperative scheduler: tasks, timers, fd waits, joins, cancellation.
local sched = require "fotahost.sched"
local sys = require "fotahost.sys"
local h = require "helper"
local log = require "fotahost.log"

describe("fotahost.sched", function()
  it("interleaves a timer task and an fd-waiting task", function()
    local events = {}
    local t0
    local function note(what) events[#events + 1] = what end
    local rfd, wfd = assert(sys.pipe())
    sched.run(function()
      t0 = sched.now()
      -- task A waits on the pipe; task B ticks on a timer and feeds the pipe
      local a = sched.spawn("reader", function()
        for _ = 1, 2 do
          assert(sched.wait_fd(rfd, "r", 2))
          note("A read " .. sys.read(rfd))
        end
      end)
      sched.spawn("ticker", function()
        for i = 1, 4 do
          sched.sleep(0.05)
          note("B tick " .. i)
          if i % 2 == 0 then assert(sys.write(wfd, "m" .. i)) end
        end
      end)
      assert(sched.join(a))
    end)
    assert.are.same({ "B tick 1", "B tick 2", "A read m2", "B tick 3", "B tick 4", "A read m4" }, events)
    assert.is_true(sched.now() - t0 >= 0.2)
    sys.close(rfd)
    sys.close(wfd)
  end)

  it("wakes sleepers in deadline order and returns the main task's results", function()
    local order = {}
    local a, b = sched.run(function()
      for _, d in ipairs({ 0.03, 0.01, 0.02, 0 }) do
        sched.spawn(function() sched.sleep(d) order[#order + 1] = d end)
      end
      sched.sleep(0.05)
      return "a", "b"
    end)
    assert.are.same({ 0, 0.01, 0.02, 0.03 }, order)
    assert.are.same({ "a", "b" }, { a, b })
  end)

  it("lets a wait on an fd time out", function()
    local rfd, wfd = assert(sys.pipe())
    local ok, why, took = sched.run(function()
      local t = sched.now()
      local r, w = sched.wait_fd(rfd, "r", 0.05)
      return r, w, sched.now() - t
    end)
    assert.is_nil(ok)
    assert.are.equal("timeout", why)
    assert.is_true(took >= 0.05 and took < 1)
    sys.close(rfd)
    sys.close(wfd)
  end)

  it("lets two tasks wait on one fd, one to read and one to write", function()
    local rfd, wfd = assert(sys.pipe())
    local got = sched.run(function()
      local reader = sched.spawn(function()
        assert(sched.wait_fd(rfd, "r", 1))
        return sys.read(rfd)
      end)
      sched.spawn(function()
        assert(sched.wait_fd(wfd, "w", 1))
        sys.write(wfd, "both")
      end)
      return select(2, sched.join(reader))
    end)
    assert.are.equal("both", got)
    assert.has_error(function()
      sched.run(function()
        sched.spawn(function() sched.wait_fd(rfd, "r", 0.1) end)
        sched.yield()
        sched.wait_fd(rfd, "r", 0.1)
      end)
    end, ("sched.wait_fd: fd %d already has a task waiting to read"):format(rfd))
    sys.close(rfd)
    sys.close(wfd)
  end)

  it("keeps a timer on schedule while another task is busy in short bursts", function()
    local late = 0
    sched.run(function()
      local prev = sched.now()
      local ticker = sched.every(0.02, function()
        -- how much longer than its interval this tick waited after the last
        late = math.max(late, sched.now() - prev - 0.02)
        prev = sched.now()
      end)
      for _ = 1, 100 do -- a worker that yields between 5 ms bursts, for 0.5 s
        local t = sched.now()
        while sched.now() - t < 0.005 do end
        sched.yield()
      end
      sched.sleep(0.1)
      sched.cancel(ticker)
    end)
    -- A tick waits for the burst under way (5 ms), and on a loaded machine
    -- for the process to be scheduled again; a scheduler that let the
    -- worker's yields starve its timers would make one wait the whole 0.5 s.
    assert.is_true(late < 0.25, "a tick was late by " .. late)
  end)

  it("joins a task, with its results or its error, and with a timeout", function()
    log.configure { sink = function() end }
    local r = { sched.run(function()
      local ok_task = sched.spawn(function() sched.sleep(0.01) return 1, 2 end)
      local bad_task = sched.spawn(function() error("bad thing", 0) end)
      local slow = sched.spawn(function() sched.sleep(10) end)
      local results = { sched.join(ok_task) }
      local failed = { sched.join(bad_task) }
      local timed = { sched.join(slow, 0.01) }
      sched.cancel(slow)
      return results, failed, timed, slow.status
    end) }
    log.configure { sink = "stderr" }
    assert.are.same({ true, 1, 2 }, r[1])
    assert.are.same({ false, "bad thing" }, r[2])
    assert.are.same({ nil, "timeout" }, r[3])
    assert.are.equal("cancelled", r[4])
  end)

  it("logs a failed task with its traceback and keeps the others running", function()
    local logged = {}
    log.configure { sink = function(level, comp, msg) logged[#logged + 1] = { level, comp, msg } end }
    local survived = sched.run(function()
      sched.spawn("doomed", function() sched.sleep(0.01) error("kaboom") end)
      sched.sleep(0.03)
      return "still here"
    end)
    log.configure { sink = "stderr" }
    assert.are.equal("still here", survived)
    assert.are.equal(1, #logged)
    assert.are.equal("error", logged[1][1])
    assert.are.equal("sched", logged[1][2])
    assert.matches("^doomed failed: .*sched_spec%.lua:%d+: kaboom\nstack traceback:", logged[1][3])
  end)

  it("ends run() when the main task ends, closing the tasks still running", function()
    local closed = false
    local r = sched.run(function()
      sched.every(0.001, function() end)
      sched.spawn(function()
        local _c <close> = setmetatable({}, { __close = function() closed = true end })
        sched.sleep(60)
      end)
      sched.sleep(0.01)
      return "main done"
    end)
    assert.are.equal("main done", r)
    assert.is_true(closed)
    -- and a failing main task is not hidden by a ticker that never ends
    assert.has_error(function()
      sched.run(function()
        sched.every(0.001, function() end)
        sched.sleep(0.005)
        error("main failed", 0)
      end)
    end, "main failed")
  end)

  it("raises the main task's error from run()", function()
    assert.has_error(function()
      sched.run(function() sched.sleep(0) error("main broke", 0) end)
    end, "main broke")
    -- and the scheduler is usable again afterwards
    assert.are.equal(5, sched.run(function() return 5 end))
  end)

  it("cancels a waiting task, running its <close> variables", function()
    local closed = false
    local rfd, wfd = assert(sys.pipe())
    sched.run(function()
      local t = sched.spawn(function()
        local _c <close> = setmetatable({}, { __close = function() closed = true end })
        sched.wait_fd(rfd, "r")
      end)
      sched.yield()
      assert.are.equal("waiting", t.status)
      assert.is_true(sched.cancel(t))
      assert.is_false(sched.cancel(t))
      -- the fd is free for another waiter
      sched.spawn(function() sys.write(wfd, "x") end)
      assert(sched.wait_fd(rfd, "r", 1))
    end)
    assert.is_true(closed)
    sys.close(rfd)
    sys.close(wfd)
  end)

  it("closes a failed task's <close> variables", function()
    local closed = false
    log.configure { sink = function() end }
    sched.run(function()
      sched.spawn(function()
        local _c <close> = setmetatable({}, { __close = function() closed = true end })
        error("fail")
      end)
      sched.sleep(0.01)
    end)
    log.configure { sink = "stderr" }
    assert.is_true(closed)
  end)

  it("keeps a cancelled joiner cancelled when the task it joined ends", function()
    local ok, why = sched.run(function()
      local a = sched.spawn(function() sched.sleep(0.02) end)
      local b = sched.spawn(function() sched.join(a) end)
      sched.yield()
      sched.cancel(b)
      sched.sleep(0.03)                  -- a ends; b must not come back to life
      assert.are.equal("cancelled", b.status)
      return sched.join(b, 0.05)
    end)
    assert.is_false(ok)
    assert.are.equal("cancelled", why)
  end)

  it("says clearly that a <close> handler cannot wait while the scheduler stops", function()
    local seen
    sched.run(function()
      sched.spawn(function()
        local _c <close> = setmetatable({}, { __close = function()
          seen = select(2, pcall(sched.sleep, 0.01))
        end })
        sched.sleep(60)
      end)
      sched.sleep(0.01)
    end)
    assert.matches("sched: a task cannot wait while the scheduler stops it", seen)
  end)

  it("stops on stop(), closing what is left", function()
    local closed = false
    sched.run(function()
      sched.spawn(function()
        local _c <close> = setmetatable({}, { __close = function() closed = true end })
        sched.sleep(60)
      end)
      sched.sleep(0.01)
      sched.stop()
    end)
    assert.is_true(closed)
    assert.are.equal(0, sched.count())
  end)

  it("calls an after() function once and runs every() until cancelled", function()
    -- Counted by events, not in a fixed window: a loaded machine may stall
    -- the process, and every() then skips the ticks it missed.
    local fired, ticks, took, after_cancel = 0, 0, nil, nil
    sched.run(function()
      sched.after(0.01, function() fired = fired + 1 end)
      local t0 = sched.now()
      local e = sched.every(0.01, function() ticks = ticks + 1 end)
      while ticks < 4 and sched.now() - t0 < 2 do sched.sleep(0.001) end
      took = sched.now() - t0
      sched.cancel(e)
      after_cancel = ticks
      sched.sleep(0.03)
    end)
    assert.are.equal(1, fired)
    assert.are.equal(4, after_cancel, "every() ran " .. tostring(after_cancel) .. " times in 2 s")
    assert.is_true(took >= 0.035, ("4 ticks 10 ms apart came in %.3f s"):format(took))
    assert.are.equal(after_cancel, ticks)   -- nothing after cancel
  end)

  it("detects a deadlock instead of hanging", function()
    assert.has_error(function()
      sched.run(function()
        local a
        local b = sched.spawn(function() sched.join(a) end)
        a = sched.spawn(function() sched.join(b) end)
        sched.join(a)
      end)
    end, "sched: deadlock: 3 task(s) waiting with no timer and no fd")
  end)

  it("refuses waits outside a task, and bad arguments", function()
    assert.has_error(function() sched.sleep(1) end,
      "sched.sleep: not inside a scheduler task (use sched.run or sched.spawn)")
    assert.has_error(function() sched.wait_fd(0, "r") end,
      "sched.wait_fd: not inside a scheduler task (use sched.run or sched.spawn)")
    sched.run(function()
      assert.has_error(function() sched.sleep(-1) end)
      assert.has_error(function() sched.wait_fd(0, "x") end)
      assert.has_error(function() sched.wait_fd(-3, "r") end)
      assert.has_error(function() sched.run(function() end) end,
        "sched.run: the scheduler is already running")
      -- misuse names the caller's line, not the scheduler's
      local jok, jerr = pcall(function() local r = sched.join({}) return r end)
      assert.is_false(jok)
      assert.matches("sched_spec%.lua:%d+: sched%.join: task expected$", jerr)
      local ok, err = pcall(sched.wait_fd, 999, "r", 0.1)
      assert.is_false(ok)
      assert.matches("watch fd 999: " .. h.literal(h.strerror.EBADF), err)
    end)
  end)

  it("does not keep the timers of waits that ended early", function()
    local rfd, wfd = assert(sys.pipe())
    local peak = sched.run(function()
      local peak = 0
      for _ = 1, 5000 do
        assert(sys.write(wfd, "x"))
        assert(sched.wait_fd(rfd, "r", 100)) -- ready at once; its timer is stale
        assert(sys.read(rfd))
        peak = math.max(peak, sched.timer_count())
      end
      return peak
    end)
    sys.close(rfd)
    sys.close(wfd)
    assert.is_true(peak < 300, "timers kept: " .. peak)
  end)

  it("gives tasks names and a readable tostring", function()
    sched.run(function()
      local t = sched.spawn("worker", function() end)
      assert.are.equal("task worker (ready)", tostring(t))
      assert.are.equal("main", sched.current().name)
      sched.yield()
      assert.are.equal("task worker (done)", tostring(t))
    end)
    assert.is_nil(sched.current())
  end)
end)
