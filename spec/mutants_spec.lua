-- The mutation check's list stays true to the code: a change that rewrites
-- a line a mutant breaks must update the mutant, or `make mutate` (run in
-- CI, and too long for every edit) would stop at once. This catches it in
-- `make test`.
local h = require "helper"

describe("the mutation check's list", function()
  it("rewrites text that occurs exactly once in its file, for every mutant", function()
    local p = io.popen(("cd %s && lua5.4 tests/mutate/run.lua --check 2>&1; echo \"exit $?\"")
      :format(h.q(h.top)))
    local out = p:read("a")
    p:close()
    assert.matches("exit 0\n$", out)
    assert.matches("^mutate: %d+ mutants; every rewrite matches the code once\n", out)
  end)
end)
