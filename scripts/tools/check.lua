-- fotahost check: before the app runs them, do the user's scripts and
-- config hold? Compiles (never runs) every override script and the app
-- script, reads the config as the app does, and warns of an override whose
-- bundled file moved on since the copy (fotahost.check does the work).
-- Editors run it on save: one line per file, FILE:LINE: message on error.

local USAGE = [[
usage: fotahost check [--config PATH] [FILE...]
  --config PATH   the Lua configuration (default $FOTAHOST_CONFIG, else
                  /etc/fotahost/config.lua), read with the UCI file
                  /etc/config/fotahost ($FOTAHOST_UCI_CONFIG) when there is one
  FILE            check only these: a .lua script is compiled (not run), the
                  config file (the Lua one in use, or the UCI file) is read as
                  the app reads it
  -h, --help      this help
With no FILE: every *.lua in the override directory (fotahost --paths), the
app script in use and the config. Prints one line per file: "FILE: ok",
"FILE:LINE: message" or "FILE: warning: message" (a stale override: its
bundled file changed since the copy). Exit status 1 on any error, else 0.
]]

local cli = require("fotahost.cli").new("check", USAGE)
local check = require "fotahost.check"

local opts = {}
for a, value in cli:each(arg) do
  if a == "--config" then opts.config = value()
  elseif a:match("^%-%-config=") then opts.config = a:sub(10)
  elseif a:match("^%-.") then cli:fail("unknown option '%s'", a)
  else
    opts.files = opts.files or {}
    opts.files[#opts.files + 1] = a
  end
end

local results, nerrors = check.run(opts)
for _, r in ipairs(results) do io.stdout:write(check.format(r), "\n") end
os.exit(nerrors > 0 and 1 or 0)
