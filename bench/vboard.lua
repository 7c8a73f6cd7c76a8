-- bench/vboard.lua: how fast the virtual board runs unpaced.
--
--   fotahost bench/vboard.lua [SCRATCH_DIR]
--
-- Builds examples/firmware, flashes blink-1000 into a simulated chip with
-- `fotahost flash -c sim`, runs the unpaced board for 10 simulated seconds
-- and prints simulated seconds per wall second (and MCU cycles per wall
-- second). blink-1000 sleeps between its timer interrupts, as real
-- firmware does, so this is the cost of the board's machinery around a
-- mostly idle core more than simavr's instruction rate.
local vboard = require "fotahost.vboard"
local sys = require "fotahost.sys"

local SIM_SECONDS = 10
local bin = arg[-1] or "fotahost"
local top = (debug.getinfo(1, "S").source:match("^@(.*)/bench/[^/]+$")) or "."

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function sh(cmd)
  if not os.execute(cmd) then error("failed: " .. cmd, 0) end
end

local scratch = arg[1]
local own = not scratch
if own then
  local p = io.popen("mktemp -d /tmp/fotahost-bench-XXXXXX")
  scratch = p:read("l")
  p:close()
end
local chip = scratch .. "/chip"
sh(("mkdir -p %s && make -s -C %s O=%s >/dev/null"):format(q(chip), q(top .. "/examples/firmware"), q(scratch)))
sh(("%s flash -q -c sim -P %s -U flash:w:%s/blink-1000.hex"):format(q(bin), q(chip), q(scratch)))

local board <close> = assert(vboard.open(chip, { pace = false }))
local t0 = sys.now()
while board:time() < SIM_SECONDS do board:step(0.1, SIM_SECONDS) end
local wall = sys.now() - t0
local st = board:stats()
local n = #board:led_events()
board:close()
if own then os.execute("rm -rf " .. q(scratch)) end

-- It toggles at 1, 2, ... 9 s (and 10 s plus the 5 µs start-up).
assert(n == SIM_SECONDS - 1, ("expected %d D13 transitions, saw %d"):format(SIM_SECONDS - 1, n))
print(("%-44s %14.0f"):format("virtual board, blink-1000 unpaced: sim s / wall s", st.sim_seconds / wall))
print(("%-44s %14.0f"):format("  MCU cycles per wall second", st.cycles / wall))
print(("%-44s %14.6f"):format("  wall seconds for 10 simulated seconds", wall))
