-- A busted helper for the mutation check's narrowed runs (tests/mutate/run.lua
-- passes it as --helper): a mutant is killed by its first failure, so
-- nothing after one is worth the time. Once a test fails, or a setup,
-- teardown or hook errs, every test, describe block and spec file not yet
-- begun is refused at its start (each counts as an error, "not run"), so
-- their servers and waits never start; the blocks already begun still run
-- their after_each and teardown, and busted prints its summary as ever.
--
-- Prints "fail-fast: first failure: NAME" once, for the runner's verdict.
-- The whole-suite run of a survivor does not use it.
local busted = require("busted")

local first = nil

local function failed(element)
  if first then return end
  first = element and element.name or "?"
  io.stdout:write("\nfail-fast: first failure: ", first, "\n")
  io.stdout:flush()
end

busted.subscribe({ "test", "end" }, function(element, _, status)
  if status == "failure" or status == "error" then failed(element) end
end)
busted.subscribe({ "failure" }, function(element) failed(element) end)
busted.subscribe({ "error" }, function(element) failed(element) end)

local function refuse()
  if first then error("not run: the mutation check stops at the first failure (" .. first .. ")", 0) end
end
busted.subscribe({ "file", "start" }, refuse)
busted.subscribe({ "describe", "start" }, refuse)
busted.subscribe({ "test", "start" }, refuse)
