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

  describe("durable files", function()
    local h = require "helper"
    local dir
    before_each(function() dir = h.tmpdir() end)
    after_each(function() h.rmdir(dir) end)

    it("writes a file atomically, leaving no temporary behind", function()
      local path = dir .. "/state.lua"
      h.write(path, "old")
      assert.is_true(sys.write_file(path, "new\0bytes"))
      assert.are.equal("new\0bytes", h.read(path))
      local p = io.popen("ls -A " .. h.q(dir))
      local listing = p:read("a")
      p:close()
      assert.are.equal("state.lua\n", listing)
    end)

    it("leaves the old file as it was when the write fails", function()
      local ro = dir .. "/ro"
      os.execute("mkdir " .. h.q(ro) .. " && chmod 555 " .. h.q(ro))
      local ok, err, code = sys.write_file(ro .. "/x", "data")
      if ok then return end -- running as root: permissions do not bind
      assert.is_nil(ok)
      assert.are.equal(ro .. "/x: Permission denied", err)
      assert.are.equal(13, code)
    end)

    it("replaces a finished file over another, naming both on failure", function()
      h.write(dir .. "/a.part", "whole")
      h.write(dir .. "/a", "old")
      assert.is_true(sys.replace(dir .. "/a.part", dir .. "/a"))
      assert.are.equal("whole", h.read(dir .. "/a"))
      assert.is_nil(h.read(dir .. "/a.part"))
      local ok, err = sys.replace(dir .. "/none", dir .. "/a")
      assert.is_nil(ok)
      assert.are.equal(dir .. "/none: No such file or directory", err)
      assert.are.equal("whole", h.read(dir .. "/a"))
    end)
  end)
end)
