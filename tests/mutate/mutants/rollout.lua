-- Mutants of rollouts (dev/scripts/fotahost/mcs_cloud/rollout.lua, the
-- state machine, and rollout_runner.lua, the cloud's side): a failure
-- threshold that holds, batches in order, an abort that stops, a rollout
-- that outlives the cloud's restart.
local P = "dev/scripts/fotahost/mcs_cloud/"
local SM, RUNNER = P .. "rollout.lua", P .. "rollout_runner.lua"
local UNIT, E2E = "spec/rollout_unit_spec.lua", "spec/rollout_spec.lua"

return {
  { name = "rollout-threshold-ignored", file = SM,
    from = "if bad * 100 > ro.options.max_failures * size then",
    to = "if false then",
    specs = { UNIT, E2E },
    why = "a bad image goes on to the whole fleet once past the canaries, however many devices it breaks" },
  { name = "rollout-batch-before-previous-finished", file = SM,
    from = "    if not finished(ro, k) then break end\n",
    to = "",
    specs = { UNIT },
    why = "every batch is pushed at once: the canary and the threshold stop nothing" },
  { name = "rollout-abort-still-pushes", file = SM,
    from = [[if ro.state ~= "running" and ro.state ~= "paused" then return pushes end]],
    to = [[if ro.state == "completed" then return pushes end]],
    specs = { UNIT, E2E },
    why = "an operator's abort is shown but the pushes go on" },
  { name = "rollout-not-saved", file = RUNNER,
    from = "local ok, err = sys.write_file(path(self), text)",
    to = "local ok, err = true, nil",
    specs = { E2E }, filter = "restart",
    why = "a restarted cloud forgets the rollout: half the fleet stays on the old firmware, unnoticed" },
  { name = "rollout-queued-final-taken", file = "dev/scripts/fotahost/mcs_cloud/rollout.lua",
    from = "    if not mine then return false end\n", to = "",
    specs = { "spec/rollout_unit_spec.lua" },
    why = "a device busy with another update when pushed counts that update's done as the rollout's" },
}
