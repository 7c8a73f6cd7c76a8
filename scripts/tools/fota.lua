-- fotahost fota: run the update policy once from the command line, without
-- a cloud: the same download, checks, flash, verify, journal and rollback as
-- a FOTA push (scripts/fotahost/fota.lua), for testing a firmware by hand.

local sched = require "fotahost.sched"
local fota = require "fotahost.fota"
local config = require "fotahost.fota.config"

local USAGE = [[
usage: fotahost fota --url URL [--md5 HEX] [--version V] [--config PATH] [--force] [--allow-downgrade]
  --url URL        the firmware (Intel HEX) to install: http:// or https://
  --md5 HEX        its MD5; without it the file is not checked against one
  --version V      the version label recorded (default: the file name)
  --config PATH    the Lua configuration (default $FOTAHOST_CONFIG or /etc/fotahost/config.lua),
                   read with the UCI file /etc/config/fotahost when there is one (its options win)
  --force          install even if this version is already installed
  --allow-downgrade  take a signed image whose counter= is below the highest accepted
                   (anti-rollback), and make its counter the highest from now on:
                   a deliberate downgrade, which only an operator on the board can allow
  -h, --help       this help
Any update a power cut interrupted is finished first. Exit status 0 when the
image is installed and verified (or already was), 1 when it is not.
]]

local cli = require("fotahost.cli").new("fota", USAGE)

local o = {}
for a, value in cli:each(arg) do
  if a == "--url" then o.url = value()
  elseif a == "--md5" then o.md5 = value()
  elseif a == "--version" then o.version = value()
  elseif a == "--config" then o.config = value()
  elseif a == "--force" then o.force = true
  elseif a == "--allow-downgrade" then o.allow_downgrade = true
  else cli:fail("unknown option %s", a) end
end
if not o.url then cli:fail("--url is required") end
o.version = o.version or o.url:match("([^/?#]+)%.[hH][eE][xX]") or o.url:match("([^/?#]+)$") or "manual"

local cfg, err = config.load(o.config)
if not cfg then
  io.stderr:write("fotahost fota: ", err, "\n")
  os.exit(1)
end

local job
job, err = fota.parse_command(("%s,%s,%s"):format(o.version, o.md5 or "null", o.url))
if not job then
  io.stderr:write("fotahost fota: ", err, "\n")
  os.exit(1)
end
job.force, job.allow_downgrade = o.force, o.allow_downgrade

local ran, ok, why = pcall(sched.run, function()
  local policy = fota.new(cfg)
  policy.on_status = function(text) io.stdout:write(text, "\n") io.stdout:flush() end
  local locked, lerr = policy:lock()
  if not locked then return nil, lerr end
  local rec = policy:recover()
  if rec then io.stdout:write(rec, "\n") end
  return policy:update(job)
end)
if not ran then  -- a stop by signal: the journal lets the next run finish
  require("fotahost.cli").exit_on_signal(ok, function(sig) io.stderr:write("fotahost fota: stopped (", sig, ")\n") end)
end
if not ok then
  io.stderr:write("fotahost fota: ", why, "\n")
  os.exit(1)
end
