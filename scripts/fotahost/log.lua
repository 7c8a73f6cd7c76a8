--- fotahost.log: levelled logging to stderr or syslog, with secrets masked.
--
--     local log = require("fotahost.log").get("mcs")
--     log.info("connected to %s:%d", host, port)
--     log.secret(device_key)          -- never printed from now on
--
-- Where it goes: stderr when stderr is a terminal (someone is watching),
-- syslog otherwise (run as a service). $FOTAHOST_LOG=stderr|syslog|both
-- forces a choice; $FOTAHOST_LOG_LEVEL (debug, info, notice, warn, error)
-- sets the threshold, default "info". configure{} does the same from Lua.
--
-- Secrets: every string passed to secret() is replaced by "****" in every
-- message, and so is any value written after `deviceKey` (a header, a
-- query parameter, a JSON field): the MCS device key must never reach a
-- log, even in an error message quoted from elsewhere.

local sys = require "fotahost.sys"

local M = {}

local LEVELS = { debug = 1, info = 2, notice = 3, warn = 4, error = 5 }
local NAMES = { "debug", "info", "notice", "warn", "error" }
local SYSLOG_PRIO = { "debug", "info", "notice", "warning", "error" }
local MASK = "****"

local threshold
local sink            -- function(level_name, component, message)
local secrets = {}    -- list of strings to mask, longest first
local opened_syslog = false

local function stderr_sink(level, component, msg)
  local t = sys.time()
  local stamp = os.date("%H:%M:%S", math.floor(t)) .. ("%.3f"):format(t % 1):sub(2)
  io.stderr:write(("%s %-6s %s: %s\n"):format(stamp, level, component, msg))
end

local function syslog_sink(level, component, msg)
  if not opened_syslog then
    sys.openlog("fotahost")
    opened_syslog = true
  end
  sys.syslog(SYSLOG_PRIO[LEVELS[level]], component .. ": " .. msg)
end

local function both_sink(...)
  stderr_sink(...)
  syslog_sink(...)
end

local SINKS = { stderr = stderr_sink, syslog = syslog_sink, both = both_sink }

local function default_sink()
  local choice = os.getenv("FOTAHOST_LOG")
  if choice and SINKS[choice] then return SINKS[choice] end
  return sys.isatty(2) and stderr_sink or syslog_sink
end

local function level_value(name, what)
  local v = LEVELS[name]
  if not v then
    error(("%s: unknown log level '%s' (expected debug, info, notice, warn or error)")
      :format(what, tostring(name)), 3)
  end
  return v
end

--- Sets where messages go and which are kept.
-- `opts.sink`: "stderr", "syslog", "both", or a function(level, component,
-- message) (tests use this); `opts.level`: the lowest level kept.
function M.configure(opts)
  if opts.sink ~= nil then
    if type(opts.sink) == "function" then
      sink = opts.sink
    else
      sink = SINKS[opts.sink] or error(("log.configure: unknown sink '%s'"):format(tostring(opts.sink)), 2)
    end
  end
  if opts.level ~= nil then
    threshold = level_value(opts.level, "log.configure")
  end
end

--- Masks `value` in every later message. Short values would mask half of
-- every message, so fewer than 4 characters is a mistake.
function M.secret(value)
  if value == nil then return end
  value = tostring(value)
  if #value < 4 then
    error("log.secret: a secret shorter than 4 characters cannot be masked safely", 2)
  end
  for _, s in ipairs(secrets) do
    if s == value then return end
  end
  secrets[#secrets + 1] = value
  table.sort(secrets, function(a, b) return #a > #b end)
end

local function plain(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

--- Returns `msg` with secrets and deviceKey values masked.
function M.redact(msg)
  for _, s in ipairs(secrets) do
    msg = msg:gsub(plain(s), MASK)
  end
  -- deviceKey: v / deviceKey=v / "deviceKey":"v" / deviceKey v, any case.
  msg = msg:gsub("([dD][eE][vV][iI][cC][eE][_%-]?[kK][eE][yY]\"?%s*[:=]?%s*\"?)([^%s\"&,;]+)",
    function(prefix, value)
      -- masked already (a URL from http.redact_url) and followed by the
      -- colon before a cause ("...?deviceKey=****: HTTP 404"): that colon
      -- is no part of a key, keep it
      if value == MASK .. ":" then return prefix .. value end
      return prefix .. MASK
    end)
  return msg
end

local function emit(level, component, fmt, ...)
  if not threshold then
    local env = os.getenv("FOTAHOST_LOG_LEVEL")
    threshold = env and LEVELS[env] or LEVELS.info
  end
  if LEVELS[level] < threshold then return end
  if not sink then sink = default_sink() end
  local msg
  if select("#", ...) > 0 then
    local ok, s = pcall(string.format, fmt, ...)
    msg = ok and s or (tostring(fmt) .. " (bad log format: " .. tostring(s) .. ")")
  else
    msg = tostring(fmt)
  end
  sink(level, component, M.redact(msg))
end

for _, name in ipairs(NAMES) do
  --- log.<level>(component, fmt, ...): `fmt` is a string.format format
  -- when arguments follow, else the message as it is.
  M[name] = function(component, fmt, ...)
    return emit(name, component, fmt, ...)
  end
end

--- A logger bound to a component name: `get("mcs").info("fmt", ...)`.
function M.get(component)
  local logger = { secret = M.secret }
  for _, name in ipairs(NAMES) do
    logger[name] = function(fmt, ...) return emit(name, component, fmt, ...) end
  end
  return logger
end

return M
