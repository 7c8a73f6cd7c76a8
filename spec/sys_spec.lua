local sys = require "fotahost.sys"
local h = require "helper"

-- What is in `dir`, one name a line, sorted.
local function listing(dir)
  local p = io.popen("ls -A " .. h.q(dir))
  local names = p:read("a")
  p:close()
  return names
end

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
    local total, n = 0
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
    assert.are.equal(("read fd %d: %s"):format(r, h.strerror.EBADF), msg)
    assert.are.equal(h.errno.EBADF, code)
    ok, msg = sys.close(w)
    assert.is_nil(ok)
    assert.matches("^close fd %d+: " .. h.literal(h.strerror.EBADF) .. "$", msg)
  end)

  it("gives this system's errno numbers and messages, for specs to compare with", function()
    -- the same number and message a failing call returns
    local _, msg, code = sys.lstat("/nonexistent-fotahost-path")
    assert.are.equal(sys.errno.ENOENT, code)
    assert.are.equal("/nonexistent-fotahost-path: " .. sys.strerror(code), msg)
    for _, name in ipairs({ "EADDRINUSE", "ECONNREFUSED", "EISDIR", "ENOTDIR", "ENOSPC", "ENOTTY", "EIO" }) do
      assert.are.equal("integer", math.type(sys.errno[name]), name)
      assert.is_true(#sys.strerror(sys.errno[name]) > 0, name)
    end
    assert.has_error(function() sys.strerror(-1) end, "bad argument #1 to 'strerror' (not an errno value)")
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

  it("turns SIGHUP into a readable fd for the process that asks, and leaves it deadly elsewhere", function()
    local r = h.run({ "-e", [[
      local sys = require "fotahost.sys"
      local fd = assert(sys.hangups())
      assert(sys.hangups() == fd, "a second call made another pipe")
      assert(sys.read(fd) == nil)
      os.execute("kill -HUP " .. sys.getpid() .. "; kill -HUP " .. sys.getpid())
      local data = sys.read(fd)   -- a byte per signal (two that come together may make one)
      print(#data >= 1, select(2, sys.read(fd)))
    ]] })
    assert.are.same({ 0, "true\twouldblock\n" }, { r.status, r.out }, r.err)
    -- every other tool keeps SIGHUP's default action: it ends the process
    r = h.run({ "-e", [[os.execute("kill -HUP " .. require("fotahost.sys").getpid()) print("still here")]] })
    assert.are.same({ 129, "" }, { r.status, r.out })
  end)

  describe("durable files", function()
    local dir
    before_each(function() dir = h.tmpdir() end)
    after_each(function() h.rmdir(dir) end)

    it("writes a file atomically, leaving no temporary behind", function()
      local path = dir .. "/state.lua"
      h.write(path, "old")
      assert.is_true(sys.write_file(path, "new\0bytes"))
      assert.are.equal("new\0bytes", h.read(path))
      assert.are.equal("state.lua\n", listing(dir))
    end)

    it("leaves the old file as it was when the write fails", function()
      -- (failures that bind as root too: permissions do not)
      local path = dir .. "/state.lua"
      h.write(path, "old")
      -- the target's directory is missing
      local ok, err, code = sys.write_file(dir .. "/gone/state.lua", "new")
      assert.are.same({ nil, dir .. "/gone/state.lua: " .. h.strerror.ENOENT, h.errno.ENOENT }, { ok, err, code })
      -- a directory stands where the temporary file goes
      local tmp = path .. ".tmp-" .. sys.getpid()
      os.execute("mkdir " .. h.q(tmp))
      ok, err, code = sys.write_file(path, "new")
      assert.are.same({ nil, path .. ": " .. h.strerror.EISDIR, h.errno.EISDIR }, { ok, err, code })
      assert.are.equal("old", h.read(path))
      os.execute("rmdir " .. h.q(tmp))
      assert.are.equal("state.lua\n", listing(dir))
    end)

    it("never writes through a symbolic link planted where the temporary file goes", function()
      local path, outside = dir .. "/state.json", dir .. "/outside.txt"
      h.write(outside, "keep me")
      local tmp = path .. ".tmp-" .. sys.getpid()
      assert(os.execute("ln -s " .. h.q(outside) .. " " .. h.q(tmp)))
      assert.is_true(sys.write_file(path, "new"))
      assert.are.equal("keep me", h.read(outside))
      assert.are.equal("new", h.read(path))
      assert.are.equal("file", sys.lstat(path).type)
      assert.are.equal("outside.txt\nstate.json\n", listing(dir))
    end)

    it("makes a directory with its parents and mode, and describes files without following links", function()
      local deep = dir .. "/a/b/state"
      assert.is_true(sys.mkdir(deep, tonumber("700", 8)))
      assert.is_true(sys.mkdir(deep, tonumber("700", 8)))     -- already there: fine
      local st = sys.lstat(deep)
      assert.are.equal("directory", st.type)
      assert.are.equal(tonumber("700", 8), st.mode)
      assert.are.equal(sys.geteuid(), st.uid)
      h.write(dir .. "/f", "abc")
      local ok, err, code = sys.mkdir(dir .. "/f/sub")
      assert.are.same({ nil, dir .. "/f/sub: " .. h.strerror.ENOTDIR, h.errno.ENOTDIR }, { ok, err, code })
      ok, err, code = sys.mkdir(dir .. "/f")
      assert.are.same({ nil, dir .. "/f: " .. h.strerror.ENOTDIR, h.errno.ENOTDIR }, { ok, err, code })
      assert(os.execute("ln -s f " .. h.q(dir .. "/l")))
      st = sys.lstat(dir .. "/f")
      assert.are.same({ type = "file", size = 3 }, { type = st.type, size = st.size })
      assert.are.equal("link", sys.lstat(dir .. "/l").type)
      assert.are.equal("char", sys.lstat("/dev/null").type)
      assert.are.same({ nil, dir .. "/none: " .. h.strerror.ENOENT, h.errno.ENOENT }, { sys.lstat(dir .. "/none") })
    end)

    it("tells whether a path names something, following links", function()
      h.write(dir .. "/f", "")
      assert(os.execute("ln -s f " .. h.q(dir .. "/l") .. " && ln -s none " .. h.q(dir .. "/dangling")))
      assert.are.same({ true, true, true, false, false, false },
        { sys.exists(dir .. "/f"), sys.exists(dir .. "/l"), sys.exists(dir), sys.exists(dir .. "/none"),
          sys.exists(dir .. "/dangling"), sys.exists(dir .. "/f/sub") })
      assert.has_error(function() sys.exists() end)
    end)

    -- A real tmpfs of 64 KiB (mounted as root, else in a namespace of its
    -- own): its type, its size, and free space that shrinks as it fills.
    it("tells a filesystem's type, size and free space (statfs)", function()
      local fs = h.tmpfs(dir .. "/ram", 64)
      local ok, r = pcall(h.run, { "-e", ([[
local sys = require "fotahost.sys"
local a = assert(sys.statfs(%q))
local f = assert(io.open(%q, "wb")) f:write(("x"):rep(8192)) f:close()
local b = assert(sys.statfs(%q .. "/file"))
io.write(("%%s %%#x %%d %%d %%d %%d"):format(a.type, a.magic, a.total, a.free, a.free - b.free, a.bsize))]])
        :format(dir .. "/ram", dir .. "/ram/file", dir .. "/ram") }, { shell_prefix = fs.wrap })
      fs.umount()
      assert(ok, r)
      assert.are.equal(0, r.status, r.err)
      assert.are.equal("tmpfs 0x1021994 65536 65536 8192 4096", r.out)
      local st = assert(sys.statfs(dir))
      assert.is_true(st.total > 0 and st.free <= st.total and st.type ~= "")
      assert.are.same({ nil, dir .. "/none: " .. h.strerror.ENOENT, h.errno.ENOENT }, { sys.statfs(dir .. "/none") })
    end)

    it("reads a regular file up to a limit, and refuses devices and FIFOs without reading", function()
      h.write(dir .. "/f", "12345")
      assert.are.equal("12345", sys.read_file(dir .. "/f", 5))
      assert.are.same({ nil, dir .. "/f: file too large (5 bytes, limit 4 bytes)" }, { sys.read_file(dir .. "/f", 4) })
      assert.are.same({ nil, "/dev/zero: a character device, not a regular file: refused" },
        { sys.read_file("/dev/zero", 100) })
      assert(os.execute("mkfifo " .. h.q(dir .. "/fifo")))   -- no writer: must not wait for one
      assert.are.same({ nil, dir .. "/fifo: a FIFO, not a regular file: refused" },
        { sys.read_file(dir .. "/fifo", 100) })
      assert.are.same({ nil, dir .. "/none: " .. h.strerror.ENOENT, h.errno.ENOENT },
        { sys.read_file(dir .. "/none", 1) })
      -- a file that says it is empty and is not (as /proc files do) is cut off at the limit
      assert.are.same({ nil, "/proc/self/status: file too large (more than 10 bytes)" },
        { sys.read_file("/proc/self/status", 10) })
    end)

    it("writes into a character device or FIFO, and into nothing else", function()
      assert.is_true(sys.write_device("/dev/null", "x"))
      assert.are.equal("char", sys.lstat("/dev/null").type)
      assert(os.execute("mkfifo " .. h.q(dir .. "/fifo")))
      assert.are.same({ nil, dir .. "/fifo: a FIFO no process reads" }, { sys.write_device(dir .. "/fifo", "x") })
      h.write(dir .. "/f", "old")
      assert.are.same({ nil, dir .. "/f: not a character device or FIFO" }, { sys.write_device(dir .. "/f", "new") })
      assert.are.equal("old", h.read(dir .. "/f"))
      assert.is_nil(sys.write_device(dir .. "/new", "x"))     -- never created
      assert.is_nil(h.read(dir .. "/new"))
    end)

    it("keeps the old file and leaves no temporary when the disk fills up mid-write", function()
      local path = dir .. "/state.lua"
      h.write(path, "old")
      -- a file size limit of 4 KiB (ulimit -f) fails the write as a full disk does
      local r = h.run({ "-e", ("local ok, err, code = require('fotahost.sys').write_file(%q, (%q):rep(100000)) "
        .. "io.write(tostring(ok), '|', tostring(err), '|', tostring(code))"):format(path, "x") },
        { shell_prefix = "trap '' XFSZ; ulimit -f 8;" })
      assert.are.equal(0, r.status, r.err)
      assert.are.equal("nil|" .. path .. ": File too large|27", r.out)
      assert.are.equal("old", h.read(path))
      assert.are.equal("state.lua\n", listing(dir))
    end)

    it("replaces a finished file over another, naming both on failure", function()
      h.write(dir .. "/a.part", "whole")
      h.write(dir .. "/a", "old")
      assert.is_true(sys.replace(dir .. "/a.part", dir .. "/a"))
      assert.are.equal("whole", h.read(dir .. "/a"))
      assert.is_nil(h.read(dir .. "/a.part"))
      local ok, err = sys.replace(dir .. "/none", dir .. "/a")
      assert.is_nil(ok)
      assert.are.equal(dir .. "/none: " .. h.strerror.ENOENT, err)
      assert.are.equal("whole", h.read(dir .. "/a"))
    end)
  end)

  -- A disk that fails to flush (spec/support/fsync_fault.c, preloaded into
  -- a fotahost of its own): the file's fsync fails, or the directory's.
  describe("durable files on a disk that fails to flush", function()
    local dir, shim
    setup(function()
      shim = h.tmpdir()
      assert(os.execute(("cc -shared -fPIC -o %s/fsync_fault.so %s -ldl > %s/cc.log 2>&1")
        :format(h.q(shim), h.q(h.top .. "/spec/support/fsync_fault.c"), h.q(shim))), h.read(shim .. "/cc.log"))
    end)
    teardown(function() h.rmdir(shim) end)
    before_each(function() dir = h.tmpdir() end)
    after_each(function() h.rmdir(dir) end)

    -- Runs `call` (Lua source of a sys call) in a fotahost whose fsync()
    -- fails on `what`; returns "ok|err|errno" as it printed them.
    local function failing(what, call)
      local r = h.run({ "-e", "local sys = require 'fotahost.sys' local ok, err, code = " .. call
        .. " io.write(tostring(ok), '|', tostring(err), '|', tostring(code))" },
        { env = { LD_PRELOAD = shim .. "/fsync_fault.so", FSYNC_FAULT = what,
                  -- an ASan build wants its runtime first; the shim is not instrumented
                  ASAN_OPTIONS = (os.getenv("ASAN_OPTIONS") or "") .. ":verify_asan_link_order=0" } })
      assert.are.equal(0, r.status, r.err)
      return r.out
    end

    it("write_file keeps the old file, and no temporary, when the new one cannot be flushed", function()
      local path = h.write(dir .. "/state.lua", "old")
      assert.are.equal("nil|" .. path .. ": " .. h.strerror.EIO .. "|" .. h.errno.EIO,
        failing("file", ("sys.write_file(%q, 'new')"):format(path)))
      assert.are.equal("old", h.read(path))
      assert.are.equal("state.lua\n", listing(dir))
    end)

    it("write_file says so when the rename cannot be flushed to the directory", function()
      local path = h.write(dir .. "/state.lua", "old")
      assert.are.equal("nil|" .. path .. ": " .. h.strerror.EIO .. "|" .. h.errno.EIO,
        failing("dir", ("sys.write_file(%q, 'new')"):format(path)))
      assert.are.equal("state.lua\n", listing(dir))
    end)

    it("replace leaves the old file in place when the finished one cannot be flushed", function()
      local tmp, path = h.write(dir .. "/a.part", "whole"), h.write(dir .. "/a", "old")
      assert.are.equal("nil|" .. tmp .. ": " .. h.strerror.EIO .. "|" .. h.errno.EIO,
        failing("file", ("sys.replace(%q, %q)"):format(tmp, path)))
      assert.are.equal("old", h.read(path))
      assert.are.equal("whole", h.read(tmp))
      assert.are.equal("nil|" .. path .. ": " .. h.strerror.EIO .. "|" .. h.errno.EIO,
        failing("dir", ("sys.replace(%q, %q)"):format(tmp, path)))
    end)
  end)
end)
