-- fotahost blink: the tutorial's board test. Sends "1" and "0" alternately
-- to the MCU's serial port; a sketch like examples/firmware/serial-led
-- turns LED D13 on for "1" and off for "0".
--
-- This is the script users edit on the board (copy it to
-- /etc/fotahost/scripts/tools/blink.lua first; that copy wins).

local sched = require "fotahost.sched"
local serial = require "fotahost.serial"

local USAGE = [[
usage: fotahost blink [options]
  --port PATH      the MCU's serial port (default /dev/ttyS0: Serial1 on the 7688 Duo)
  --baud N         baud rate (default 57600, as the sketch's Serial1.begin)
  --board sim DIR  the virtual board whose simulated chip is in DIR (port DIR/ttyS0)
  --interval S     seconds between "1" and "0" (default 1)
  --count N        on/off cycles, then stop (default: until Ctrl-C)
  -q               no line per byte
  -h, --help       this help
Ctrl-C stops it and leaves the LED off.
]]

local cli = require("fotahost.cli").new("blink", USAGE)

local opts = { port = "/dev/ttyS0", baud = 57600, interval = 1 }
for a, value in cli:each(arg) do
  if a == "--port" then opts.port = value()
  elseif a == "--baud" then opts.baud = math.tointeger(tonumber(value())) or cli:fail("--baud: a whole number")
  elseif a == "--interval" then
    opts.interval = tonumber(value())
    if not opts.interval or opts.interval <= 0 then cli:fail("--interval: seconds > 0") end
  elseif a == "--count" then
    opts.count = math.tointeger(tonumber(value()))
    if not opts.count or opts.count < 1 then cli:fail("--count: a whole number >= 1") end
  elseif a == "--board" then
    if value() ~= "sim" then cli:fail("--board: only 'sim DIR' (the virtual board)") end
    opts.board_dir = value()
    opts.port = opts.board_dir .. "/ttyS0"
  elseif a == "-q" then opts.quiet = true
  else cli:fail("unknown option '%s'", a) end
end

local function say(fmt, ...)
  if not opts.quiet then print(fmt:format(...)) end
end

-- The virtual board publishes DIR/ttyS0 with its pid in DIR/ttyS0.pid. A
-- link left by a board that died may point at a pty that now belongs to
-- someone else: refuse it rather than write there.
if opts.board_dir then
  local f = io.open(opts.board_dir .. "/ttyS0.pid", "r")
  local pid = f and math.tointeger(tonumber(f:read("l") or ""))
  if f then f:close() end
  local alive = pid and io.open("/proc/" .. pid .. "/stat", "r")
  if alive then alive:close() end
  if not alive then
    io.stderr:write(("fotahost blink: %s: no virtual board is running on %s "
      .. "(start one with: fotahost board --sim %s)\n"):format(opts.port, opts.board_dir, opts.board_dir))
    os.exit(1)
  end
end

local port, perr = serial.open(opts.port, { baud = opts.baud })
if not port then
  io.stderr:write("fotahost blink: ", perr, "\n")
  os.exit(1)
end

local ok, err = pcall(sched.run, function()
  say("blinking D13 through %s at %d baud, %g s on, %g s off", opts.port, opts.baud,
    opts.interval, opts.interval)
  local cycle = 0
  while not opts.count or cycle < opts.count do
    cycle = cycle + 1
    for _, byte in ipairs({ "1", "0" }) do
      local wok, werr = port:write(byte, 2)
      if not wok then error(("%s: %s"):format(opts.port, werr), 0) end
      say("%s  LED %s (cycle %d)", byte, byte == "1" and "on " or "off", cycle)
      sched.sleep(opts.interval)
    end
  end
end)

-- Whatever ended the test (the count, Ctrl-C, an error), the LED ends off.
-- Done here, after the scheduler has stopped, where waiting is allowed.
pcall(port.write, port, "0", 1)
port:close(1)

if not ok then
  local sig = tostring(err):match("^interrupted %((SIG%u+)%)")
  if sig then
    io.stderr:write("fotahost blink: stopped, LED off\n")
    os.exit(sig == "SIGINT" and 130 or 143)
  end
  io.stderr:write("fotahost blink: ", tostring(err), "\n")
  os.exit(1)
end
