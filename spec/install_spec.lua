-- `make install` gives a working fotahost that finds its installed scripts;
-- building the example firmware leaves the source tree clean.
local h = require "helper"

describe("make install", function()
  it("installs a fotahost that runs its tools from PREFIX", function()
    local dir = h.tmpdir()
    -- a fresh build with this PREFIX, as a packager would do it
    local cmd = ("cd %s && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s BUILD=%s PREFIX=%s install > %s 2>&1")
      :format(h.q(h.top), h.q(dir .. "/build"), h.q(dir .. "/usr"), h.q(dir .. "/make.log"))
    local ok = os.execute(cmd)
    assert.is_true(ok, h.read(dir .. "/make.log"))
    local bin = dir .. "/usr/bin/fotahost"
    local p = io.popen(h.q(bin) .. " --paths 2>&1")
    local paths = p:read("a")
    p:close()
    p = io.popen("cd / && " .. h.q(bin) .. " hello 1 2>&1")
    local out = p:read("a")
    p:close()
    local header = h.read(dir .. "/usr/include/fotahost/fotahost.h")
    local doc = h.read(dir .. "/usr/share/doc/fotahost/scheduler.md")
    h.rmdir(dir)
    assert.matches("source checkout: %(none%)", paths)
    assert.matches(dir:gsub("%p", "%%%0") .. "/usr/share/fotahost/scripts\n", paths)
    assert.matches(dir:gsub("%p", "%%%0") .. "/usr/lib/fotahost/plugins\n", paths)
    assert.matches("done: the reader got 4 bytes", out)
    assert.truthy(header and header:find("fh_result_errno", 1, true))
    assert.truthy(doc)
  end)
end)

describe("make -C examples/firmware", function()
  it("builds the example firmware into build/, leaving the source tree as it was", function()
    -- a copy of the project's layout: examples/firmware and nothing built yet
    local dir = h.tmpdir()
    local src = dir .. "/examples/firmware"
    assert(os.execute(("mkdir -p %s && cp %s/examples/firmware/* %s"):format(h.q(src), h.q(h.top), h.q(src))))
    local function listing(d)
      local p = io.popen("ls -A " .. h.q(d) .. " 2>&1")
      local out = p:read("a")
      p:close()
      return out
    end
    local before = listing(src)
    local ok = os.execute(("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C %s >%s/make.log 2>&1")
      :format(h.q(src), h.q(dir)))
    local log, after, built = h.read(dir .. "/make.log"), listing(src), listing(dir .. "/build/examples/firmware")
    h.rmdir(dir)
    assert.is_true(ok, log)
    assert.are.equal(before, after)
    assert.are.equal("blink-1000.hex\nblink-250.hex\ndark.hex\nserial-led.hex\n", built)
  end)
end)
