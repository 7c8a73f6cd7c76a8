--- fotahost doctor's "scripts" check: one line per override in use (the
-- override directory's *.lua), as `fotahost check` sees it: OK and its
-- state (copied from which bundled version, edited), WARN when the bundled
-- file moved on since the copy, FAIL with FILE:LINE when it does not
-- compile (the app then runs the bundled module instead, or fails to start
-- for a script of the user's own).
local check = require "fotahost.check"
local overrides = require "fotahost.overrides"

local M = {}

--- Calls say(tag, what, fix) for each override; none when there is none.
function M.lines(say)
  for _, rel in ipairs(overrides.list()) do
    local r = check.script(overrides.dir() .. "/" .. rel)
    local s = r.override
    if r.level == "error" then
      say("FAIL", check.format(r), ("fix it (fotahost check %s after each save)%s"):format(r.file,
        s.bundled and ", or move it out of " .. overrides.dir() .. " to run the bundled one" or ""))
    elseif s.state == "stale" then
      say("WARN", r.file .. ": " .. overrides.describe(s), ("take today's bundled file: move yours aside, "
        .. "fotahost scripts edit %s, and bring your change back"):format(rel))
    else
      say("OK", r.file .. " (" .. overrides.describe(s) .. ")")
    end
  end
end

return M
