-- `make install` gives a working fotahost that finds its installed scripts.
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
