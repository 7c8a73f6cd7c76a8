-- The Lua of the whole tree passes luacheck with the project's .luacheckrc
-- (std lua54, busted in spec/, 120 columns). A lint finding is a failing
-- test, shown in the failure message, so `make test` stays the one gate.
local h = require "helper"

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end

describe("luacheck", function()
  it("finds nothing in the tree", function()
    local where = sh("command -v luacheck")
    assert(where ~= "", "luacheck not found: install lua-check (sh .ci/install-deps)")
    -- the exit status rides on the output's last line: io.popen's close
    -- does not give it back under every Lua build
    local out = sh(("cd %s && luacheck --formatter plain --no-color . 2>&1; echo \"exit $?\"")
      :format(h.q(h.top)))
    local report, status = out:match("^(.-)exit (%d+)\n$")
    assert.are.equal("", report, "luacheck:\n" .. out)
    assert.are.equal("0", status, "luacheck:\n" .. out)
  end)
end)
