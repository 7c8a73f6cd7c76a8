-- fotahost app: the tutorial's app.js, done safely; the service the
-- OpenWrt package runs (/etc/init.d/fotahost). Reads the configuration,
-- finishes any update a power cut interrupted, registers with the cloud,
-- and hands every FOTA push to the update policy (scripts/fotahost/fota.lua).
local sched = require "fotahost.sched"
local mcs = require "fotahost.mcs"
local fota = require "fotahost.fota"
local cli = require "fotahost.cli"
local sys = require "fotahost.sys"
local log = require("fotahost.log").get("app")

local USAGE = [[
usage: fotahost app [--config PATH]
  --config PATH   the Lua configuration (default $FOTAHOST_CONFIG, else
                  /etc/fotahost/config.lua), read with the UCI file
                  /etc/config/fotahost ($FOTAHOST_UCI_CONFIG) when there is
                  one: its options win
  -h, --help      this help
Runs until stopped (SIGTERM: exit status 143): finishes an update a power
cut interrupted, registers with the cloud, and installs every FOTA push.
SIGHUP reloads a service (stdin not a terminal: procd's, or one started
with </dev/null): the config and the scripts are checked first (fotahost
check); if they pass, the app starts again in the same process once no
update runs and its statuses have reached the cloud; if not, it keeps
running as it was and logs why. On a terminal SIGHUP stops the app, as it
does any program there: the terminal (an SSH session, say) has closed.
]]

local path
local args = cli.new("app", USAGE)
for a, value in args:each(arg) do
  if a == "--config" then path = value()
  else args:fail("unknown argument '%s'", a) end
end

-- For a service SIGHUP asks for a reload (not the end of the process):
-- taken first, so a reload asked for while we start does not kill us. On
-- a terminal it keeps its default action: it means the terminal closed
-- (an SSH session ended), and an app that reloaded then would run on
-- detached, unseen.
local hangups = not sys.isatty(0) and assert(sys.hangups())

local config, config_err = require("fotahost.fota.config").load(path)
-- A mistake in the config is the user's to fix, not a crash: one line
-- naming the file and the key, and status 1.
if not config then
  log.error("%s", config_err)
  os.exit(1)
end

-- Whether the edited config and scripts pass `fotahost check`; if not,
-- each error is logged and the app runs on as it was. (The cloud is not
-- told: its status channel is the updates' truth, and nothing changed.)
local function checked()
  local ok, check = pcall(require, "fotahost.check")
  local results, nerrors = check, nil
  if ok then ok, results, nerrors = pcall(check.run, { config = path }) end
  if ok and nerrors == 0 then return true end
  if not ok then log.error("reload refused: the check could not run: %s", tostring(results)) end
  for _, r in ipairs(ok and results or {}) do
    if r.level == "error" then log.error("reload refused: %s", check.format(r)) end
  end
  log.warn("reload refused: still running the config and scripts it started with")
  return false
end

local function hangup()
  if not hangups then repeat sched.sleep(3600) until false end -- on a terminal: no reload
  sched.wait_fd(hangups, "r")
  repeat until not sys.read(hangups, 64)
end

-- A quiet moment: no update runs or waits, no command handler is busy.
local function quiet(policy, cloud) return not (policy.busy or policy.pending) and cloud:idle() end

-- The exec drops the data points still queued: a final "done" among them
-- would never reach the cloud. A reload is not urgent: it waits for them
-- as long as the cloud takes, the app working on meanwhile (a push is
-- handled, then the quiet moment waited for again).
local function flushed(cloud)
  if cloud:flush(10) then return end
  log.info("reload: waiting for %d statuses to reach the cloud", cloud:unsent())
  cloud:flush()
end

-- SIGHUP, edits that pass the check, a quiet moment (checked again if an
-- update ran meanwhile), the data points sent (a final "done" among them),
-- the cloud client stopped: then sched.run returns and the host execs
-- itself again (host.reexec): the same PID, one reconnect.
local function reload(policy, cloud)
  local waited
  repeat
    repeat hangup() until checked()
    waited = not quiet(policy, cloud)
    if waited then log.info("reload: waiting for the update (or command) under way to end") end
    repeat
      while not quiet(policy, cloud) do sched.sleep(0.2) end
      flushed(cloud)
    until quiet(policy, cloud) -- nothing yields from here to the close (check.run neither): no push slips in
  until not waited or checked()
  log.info("reloading")
  cloud:close()
  return "reload"
end

-- A broken override the host replaced with the bundled script (or the
-- bundled app run instead of a crashing one) is told to the cloud once
-- per start (the data point waits in the queue for a connection): the
-- device still updates, and whoever edited it learns why their edit is
-- not running. Called again after each push: a module required lazily
-- (on an update's path) falls back only then; each is told once.
local reported = 0
local function report_fallbacks(policy)
  local list = require("fotahost.host").fallbacks()
  for i = reported + 1, #list do
    policy:status(("warning: %s; running the bundled %s"):format(list[i].why, list[i].module))
  end
  reported = #list
end

local ok, err = pcall(sched.run, function()
  local policy = fota.new(config)
  local locked, lock_err = policy:lock()   -- one process a state_dir, so one a MCU
  if not locked then log.error("%s", lock_err) os.exit(1) end
  policy:recover()                    -- before anything else: the MCU must hold a good image
  local cloud = mcs.register{ device_id = config.device_id, device_key = config.device_key,
                              api = config.api, heartbeat = config.heartbeat,
                              backoff_cap = config.backoff_cap, http = config.http,
                              -- commands over MCS's TCP channel (the default) or a broker
                              transport = config.transport == "mqtt" and require "fotahost.mcs.mqtt_channel" or nil,
                              mqtt = config.mqtt }
  policy:attach(cloud)
  report_fallbacks(policy)
  cloud:on("FOTA", function(value)
    local ok, err = pcall(policy.push, policy, value)
    report_fallbacks(policy)
    if not ok then error(err, 0) end
  end)
  -- a push that cannot be read (cut by a pause, say) is not met with silence
  cloud:on_unreadable("FOTA", function(why) policy:status("failed: " .. why) end)
  return reload(policy, cloud)
end)
-- A service stop (SIGTERM) is not a crash: one line, and status 143. An
-- update it cut short is finished by recover() at the next start.
if not ok then cli.exit_on_signal(err, function(sig) log.info("stopped (%s)", sig) end) end
if err == "reload" then require("fotahost.host").reexec() end
