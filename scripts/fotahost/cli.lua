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

local M = {}

local Cli = {}
Cli.__index = Cli

--- A command line for tool `tool` with the help text `usage`.
function M.new(tool, usage)
  return setmetatable({ tool = tool, usage = usage }, Cli)
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

return M
