-- fotahost board: run the virtual LinkIt Smart 7688 Duo and watch its MCU.
--
-- The board's ATmega32U4 runs whatever `fotahost flash -c sim -P DIR`
-- wrote to the simulated chip in DIR; flashing it again while this runs
-- halts the MCU for the session and restarts it on the new firmware, as on
-- the real board. D13's transitions are printed as they happen, with the
-- MCU's own (simulated) time; Serial1 is the pseudo-terminal DIR/ttyS0.
--
--   fotahost board --sim DIR [--for SECONDS] [--unpaced] [--log FILE]

local sched = require "fotahost.sched"
local vboard = require "fotahost.vboard"

local USAGE = [[
usage: fotahost board --sim DIR [--for SECONDS] [--unpaced] [--log FILE]
  --sim DIR       the simulated chip (what `fotahost flash -c sim -P DIR` programs);
                  Serial1 appears as the pseudo-terminal DIR/ttyS0
  --for SECONDS   stop after SECONDS of simulated time (default: until Ctrl-C)
  --unpaced       run as fast as possible instead of in step with real time
  --log FILE      also append each D13 transition to FILE ("t=1.000000 D13 on")
  -h, --help      this help
]]

local cli = require("fotahost.cli").new("board", USAGE)

local opts = {}
for a, value in cli:each(arg, "option %s needs a value") do
  if a == "--sim" then opts.dir = value()
  elseif a == "--for" then
    local v = value()
    opts.duration = tonumber(v)
    if not opts.duration or opts.duration <= 0 then
      cli:fail("--for %s: a number of seconds > 0 expected", v)
    end
  elseif a == "--unpaced" then opts.unpaced = true
  elseif a == "--log" then opts.log = value()
  else cli:fail("unknown argument '%s'", a) end
end
if not opts.dir then cli:fail("--sim DIR is required") end

io.stdout:setvbuf("line")

-- Both kinds of event, in the MCU's time order.
local function report(board)
  local lines = {}
  for _, e in ipairs(board:led_events()) do
    lines[#lines + 1] = { t = e.t, text = ("D13 %-3s at %.3f s"):format(e.on and "on" or "off", e.t) }
  end
  for _, e in ipairs(board:reset_events()) do
    lines[#lines + 1] = { t = e.t, text = e.halted
      and ("MCU halted for programming at %.3f s"):format(e.t)
      or ("MCU restarted from new flash at %.3f s"):format(e.t) }
  end
  table.sort(lines, function(a, b) return a.t < b.t end)
  for _, l in ipairs(lines) do io.stdout:write(l.text, "\n") end
end

-- Ctrl-C ends the run: the board is closed by <close> as the scheduler
-- unwinds, and the exit status is the shell's for the signal.
local ok, err = pcall(sched.run, function()
  local board <close>, err = vboard.open(opts.dir, { pace = not opts.unpaced, led_log = opts.log })
  if not board then
    io.stderr:write("fotahost board: ", err, "\n")
    os.exit(1)
  end
  local link, pts = board:tty()
  io.stdout:write(("board %s: Serial1 on %s (%s)%s\n"):format(opts.dir, link, pts,
    board:stats().halted and "; MCU held in reset" or ""))
  vboard.run(board, { until_time = opts.duration, on_step = report })
  report(board)
end)
if not ok then
  require("fotahost.cli").exit_on_signal(err, function(sig)
    io.stderr:write("fotahost board: stopped (", sig == "SIGINT" and "Ctrl-C" or sig, ")\n")
  end)
end
