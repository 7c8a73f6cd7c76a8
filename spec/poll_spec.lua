local poll = require "fotahost.poll"
local sys = require "fotahost.sys"
local h = require "helper"

describe("fotahost.poll", function()
  local p, r, w
  before_each(function()
    p = assert(poll.new())
    r, w = assert(sys.pipe())
  end)
  after_each(function()
    p:close()
    sys.close(r)
    sys.close(w)
  end)

  it("times out when nothing is ready, after about the time asked", function()
    assert(p:add(r, true, false))
    local t0 = sys.now()
    assert.are.same({ nil, "timeout" }, { p:wait(0.05) })
    local took = sys.now() - t0
    assert.is_true(took >= 0.05 and took < 1, "took " .. took)
  end)

  it("reports a readable fd, and a writable one", function()
    assert(p:add(r, true, false))
    assert(p:add(w, false, true))
    local fd, rd, wr = p:wait(1)
    assert.are.same({ w, false, true }, { fd, rd, wr })
    -- level-triggered: still writable, so reported again until unwatched
    assert.are.same({ w, false, true }, { p:wait(0) })
    assert(p:set(w, false, false))
    assert.are.same({ nil, "timeout" }, { p:wait(0) })
    assert(p:set(w, false, true))
    sys.write(w, "x")
    local got = {}
    for _ = 1, 2 do
      fd, rd, wr = p:wait(1)
      got[fd] = { rd, wr }
    end
    assert.are.same({ [r] = { true, false }, [w] = { false, true } }, got)
  end)

  it("changes and removes what it watches", function()
    assert(p:add(w, false, true))
    assert(p:set(w, false, false))
    assert.are.same({ nil, "timeout" }, { p:wait(0) })
    assert(p:del(w))
    local ok, msg, code = p:del(w)
    assert.is_nil(ok)
    assert.are.equal(("unwatch fd %d: %s"):format(w, h.strerror.ENOENT), msg)
    assert.are.equal(h.errno.ENOENT, code)
  end)

  it("reports a hang-up as readable", function()
    assert(p:add(r, true, false))
    sys.close(w)
    local fd, rd = p:wait(1)
    assert.are.equal(r, fd)
    assert.is_true(rd)
    w = assert(select(2, sys.pipe())) -- something for after_each to close
  end)

  it("names the fd when it cannot watch it", function()
    local ok, msg = p:add(987, true, false)
    assert.is_nil(ok)
    assert.are.equal("watch fd 987: " .. h.strerror.EBADF, msg)
    assert.has_error(function() p:add(-1, true) end, "bad argument #1 to 'add' (not a file descriptor)")
    assert.has_error(function() p:wait() end)
    assert.has_error(function() p:wait(0 / 0) end, "bad argument #1 to 'wait' (timeout is NaN)")
  end)

  it("closes once, by close(), <close> or __gc, and refuses use after", function()
    local q = assert(poll.new())
    assert.matches("^poller %(0x", tostring(q))
    q:close()
    q:close()
    assert.are.equal("poller (closed)", tostring(q))
    assert.has_error(function() q:wait(0) end, "attempt to use a closed poller")
    do
      local c <close> = assert(poll.new())
      assert.truthy(c)
    end
    assert.has_error(function() p.wait(io.stdout, 0) end)
  end)
end)
