local sys = require "fotahost.sys"

describe("fotahost.sys", function()
  it("has a monotonic clock and a wall clock", function()
    local a = sys.now()
    local b = sys.now()
    assert.is_true(b >= a)
    assert.is_true(math.abs(sys.time() - os.time()) < 2)
  end)

  it("makes non-blocking pipes and reads what was written", function()
    local r, w = assert(sys.pipe())
    assert.are.same({ nil, "wouldblock" }, { sys.read(r) })
    assert.are.equal(5, sys.write(w, "hello"))
    assert.are.equal("hel", sys.read(r, 3))
    assert.are.equal("lo", sys.read(r))
    assert.is_true(sys.close(w))
    assert.are.same({ nil, "closed" }, { sys.read(r) })
    assert.is_true(sys.close(r))
  end)

  it("reports a full pipe as wouldblock", function()
    local r, w = assert(sys.pipe())
    local total, n = 0, nil
    repeat
      n = sys.write(w, string.rep("x", 65536))
      total = total + (n or 0)
    until not n
    assert.is_true(total >= 4096)
    assert.are.same({ nil, "wouldblock" }, { sys.write(w, "x") })
    sys.close(r)
    sys.close(w)
  end)

  it("names the fd and the cause on errors", function()
    local r, w = assert(sys.pipe())
    sys.close(r)
    sys.close(w)
    local ok, msg, code = sys.read(r)
    assert.is_nil(ok)
    assert.are.equal(("read fd %d: Bad file descriptor"):format(r), msg)
    assert.are.equal(9, code) -- EBADF
    ok, msg = sys.close(w)
    assert.is_nil(ok)
    assert.matches("^close fd %d+: Bad file descriptor$", msg)
  end)

  it("rejects misuse with an error", function()
    assert.has_error(function() sys.read(-1) end, "bad argument #1 to 'read' (not a file descriptor)")
    assert.has_error(function() sys.read(0, 0) end, "bad argument #2 to 'read' (size out of range)")
    assert.has_error(function() sys.syslog("loud", "x") end, "bad argument #1 to 'syslog' (invalid option 'loud')")
    assert.has_error(function() sys.arm("x") end)
  end)

  it("knows whether an fd is a terminal, and its pid", function()
    assert.is_false(sys.isatty(assert(sys.pipe())))
    assert.is_true(sys.getpid() > 1)
  end)
end)
