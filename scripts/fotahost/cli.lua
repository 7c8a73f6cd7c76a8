--- fotahost.cli: the command-line loop the bundled tools share.
--
--     local cli = require("fotahost.cli").new("board", USAGE)
--     for a, value in cli:each(arg) do
--       if a == "--sim" then opts.dir = value()
--       elseif a == "--unpaced" then opts.unpaced = true
--       else cli:fail("unknown argument '%s'", a) end
--     end
--
-- -h and --help print the usage on stdout and exit 0; a usage error prints
-- "fotahost TOOL: <message>" and the usage on stderr and exits 2, as every
-- tool has done.
--
-- A program stopped by a signal (a service manager's SIGTERM, Ctrl-C)
-- says so in one line and exits with the status a shell reports for the
-- signal, instead of showing the interrupt as a crash with a traceback:
--
--     local ok, err = pcall(sched.run, main)
--     if not ok then cli.exit_on_signal(err, function(sig) log.info("stopped (%s)", sig) end) end

local M = {}

local Cli = {}
local cli_mt = { __name = "fotahost.cli", __index = Cli }

--- A command line for tool `tool` with the help text `usage`.
function M.new(tool, usage)
  return setmetatable({ tool = tool, usage = usage }, cli_mt)
end

--- Prints the message and the usage on stderr, and exits 2.
function Cli:fail(fmt, ...)
  io.stderr:write("fotahost ", self.tool, ": ", fmt:format(...), "\n", self.usage)
  os.exit(2)
end

--- Iterates over `argv`: each argument, with a function that takes the
-- next one as its value (a missing value fails with `needs`, default
-- "%s needs a value", formatted with the option).
function Cli:each(argv, needs)
  local i = 0
  return function()
    i = i + 1
    local a = argv[i]
    if a == nil then return nil end
    if a == "-h" or a == "--help" then
      io.stdout:write(self.usage)
      os.exit(0)
    end
    return a, function()
      i = i + 1
      if argv[i] == nil then self:fail(needs or "%s needs a value", a) end
      return argv[i]
    end
  end
end

-- What a shell reports for a process a signal ended (128 + its number).
local SIGNAL_STATUS = { SIGINT = 130, SIGTERM = 143 }

--- When `err` is the interrupt a signal raised (`interrupted (SIGTERM)`),
-- calls say(name), e.g. "SIGTERM", to tell it in one line and exits with
-- statuses[name] or the shell's status for it (130, 143). Any other error
-- is raised again: a bug still shows as one.
function M.exit_on_signal(err, say, statuses)
  local sig = tostring(err):match("^interrupted %((SIG%u+)%)")
  if not sig then error(err, 0) end
  say(sig)
  os.exit(statuses and statuses[sig] or SIGNAL_STATUS[sig] or 1)
end

return M
