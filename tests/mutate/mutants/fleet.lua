-- Mutants of the fleet simulation (development wing): the record board
-- (dev/scripts/fotahost/recordboard.lua) must record what a chip would
-- hold and check it, or a fleet run proves nothing about the policy; the
-- simulator must count what happened.
local RB = "dev/scripts/fotahost/recordboard.lua"
local SPEC = "spec/fleet_spec.lua"

return {
  { name = "recordboard-verify-believes", file = RB,
    from = "    if got ~= seg.data then\n",
    to = "    if false then\n",
    specs = { SPEC },
    why = "a verify that never reads back: a policy that wrote nothing, or the wrong image, reports done" },
  { name = "recordboard-write-over-unerased", file = RB,
    from = "    if old ~= (\"\\xFF\"):rep(psize) then\n",
    to = "    if false then\n",
    specs = { SPEC },
    why = "a page written without an erase holds the new data, unlike a chip: a policy that skips the erase passes" },
  { name = "recordboard-erase-unrecorded", file = RB,
    from = "  return append(self.dir .. \"/erases.log\", (\"%.3f chip erase\\n\"):format(sys.time()))\n",
    to = "  return true\n",
    specs = { SPEC },
    why = "erases go uncounted: a policy that erases twice (or never) is not seen" },
  { name = "fleet-done-uncounted", file = "dev/scripts/fotahost/fleet.lua",
    from = "    if msg == \"done\" then f.done = f.done + 1\n",
    to = "    if msg == \"done\" then f.done = f.done + 0\n",
    specs = { SPEC },
    why = "the summary says nothing was installed while the fleet was updated" },
}
