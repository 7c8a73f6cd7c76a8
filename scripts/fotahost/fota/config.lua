--- fotahost.fota.config: the device's configuration, a Lua file returning
-- a table, read from $FOTAHOST_CONFIG (default /etc/fotahost/config.lua)
-- and checked key by key, so a typo is an error that names the key and
-- says what it should be, never a surprise at the first push. On OpenWrt
-- the UCI file M.UCI_PATH (/etc/config/fotahost, read by fota/uci_config.lua)
-- sets the same keys and wins where both set one; see M.load.
--
--     return {
--       device_id = "Dbxx9k", device_key = "TPJVxxxxBxBv",
--       api = "https://api.mediatek.com",     -- MCS base URL
--       board = "linkit-smart-7688-duo",      -- or "sim"
--       sim_dir = "/var/lib/fotahost/sim",    -- the simulated chip, when board = "sim"
--       state_dir = "/var/lib/fotahost",      -- journal, images, last-known-good (default:
--                                             -- /etc/fotahost/state on OpenWrt, see below)
--       status_channel = "fota_status",       -- data channel for progress and results
--       -- hooks, each function(job) returning true, or nil and a reason to stop:
--       -- before_download, before_flash, after_flash, health_check
--       http = {                              -- every HTTP call: the MCS API and the firmware
--         timeout = 600,                      -- s a firmware download may take, retries included
--         min_rate = 256,                     -- B/s a download must average, checked once
--         min_rate_after = 60,                --   it has run this many seconds
--         -- cainfo, capath, connect_timeout, retries, ...: see M.HTTP_SPEC
--       },
--     }
--
-- Every other key is optional and listed in M.SPEC with its default; the
-- keys of `http` in M.HTTP_SPEC. A download past `http.timeout`, or slower
-- than `http.min_rate` on average, is given up and reported ("failed:
-- download timed out after 600 s: <url>", "failed: download too slow
-- (...): <url>"), so a server that drips its answer cannot hold the device
-- and every later push.
--
-- state_dir must survive a power cut: that is when the journal and the
-- last-known-good image are needed. On OpenWrt /var is a link to /tmp, a
-- RAM disk, so there the default is /etc/fotahost/state, on the overlay
-- (flash, written once per update); elsewhere /var/lib/fotahost. OpenWrt
-- is recognised by M.OPENWRT_RELEASE (/etc/openwrt_release, or the path in
-- $FOTAHOST_OPENWRT_RELEASE: tests point it elsewhere). An update refuses
-- a state_dir on tmpfs or ramfs unless volatile_state_ok = true.

local M = {}

M.DEFAULT_PATH = "/etc/fotahost/config.lua"

M.OPENWRT_RELEASE = os.getenv("FOTAHOST_OPENWRT_RELEASE") or "/etc/openwrt_release"

--- The UCI file read with the Lua file (see M.load): $FOTAHOST_UCI_CONFIG,
-- the empty string for none; tests point it elsewhere.
M.UCI_PATH = os.getenv("FOTAHOST_UCI_CONFIG") or "/etc/config/fotahost"

--- The default state_dir: persistent storage on this system (see above).
function M.default_state_dir()
  local f = io.open(M.OPENWRT_RELEASE, "r")
  if f then
    f:close()
    return "/etc/fotahost/state"
  end
  return "/var/lib/fotahost"
end

local function is_string(v) return type(v) == "string" and v ~= "" end
local function is_id(v) return is_string(v) and not v:find("[,%c%s/?#]") end
-- A key shorter than 4 characters could not be masked in logs without
-- masking half of every line (fotahost.log refuses it); MCS keys are 16.
local function is_key(v) return is_id(v) and #v >= 4 end
local function is_url(v) return is_string(v) and v:match("^https?://[^%s]+$") ~= nil end
-- (a number, finite: 1/0 would pass `> 0`, and as a timeout or a size mean no bound)
local function is_pos(v) return type(v) == "number" and v > 0 and v < math.huge end
local function is_pos_int(v) return math.type(v) == "integer" and v > 0 end
local function is_bool(v) return type(v) == "boolean" end
local function is_fn(v) return type(v) == "function" end
local function is_byte_or_false(v) return v == false or (math.type(v) == "integer" and v >= 0 and v <= 255) end
local function is_table(v) return type(v) == "table" end
local function is_nonneg(v) return type(v) == "number" and v >= 0 and v < math.huge end
local function is_nonneg_int(v) return math.type(v) == "integer" and v >= 0 end
-- one path, or a list of one or more (an empty list would turn a check off unseen)
local function is_paths(v)
  if is_string(v) then return true end
  if type(v) ~= "table" or #v == 0 then return false end
  local n = 0
  for k, p in pairs(v) do
    if math.type(k) ~= "integer" or not is_string(p) then return false end
    n = n + 1
  end
  return n == #v
end

--- The keys of `http`: passed as they are to every fotahost.http call the
-- device makes (a key without a default: fotahost.http's own). `timeout`
-- and the rate bound a firmware download as a whole; an MCS API call
-- takes `timeout` for each try and ignores the rate.
M.HTTP_SPEC = {
  timeout = { is_pos, "the seconds a firmware download may take in all, retries included", 600 },
  min_rate = { is_nonneg, "the lowest average rate a download may keep, in bytes/s (0: no check)", 256 },
  min_rate_after = { is_pos, "the seconds a download runs before min_rate is checked", 60 },
  connect_timeout = { is_pos, "the seconds a connection may take (default 10)" },
  low_speed_time = { is_nonneg, "the seconds under low_speed_limit that stop a try (default 30; 0: never)" },
  low_speed_limit = { is_nonneg, "the bytes/s below which a try is stalled (default 1)" },
  retries = { is_nonneg_int, "the further tries after a failure (an integer; downloads: default 3)" },
  retry_delay = { is_pos, "the seconds before the first retry (default 1, doubling)" },
  retry_max_delay = { is_pos, "the longest pause between tries, in seconds (default 30)" },
  max_redirects = { is_nonneg_int, "the most redirects a download follows (an integer, default 5)" },
  cainfo = { is_string, "the path of a PEM file of CA certificates" },
  capath = { is_string, "a directory of CA certificates" },
  insecure = { is_bool, "true turns TLS verification off (logged)" },
  user_agent = { is_string, "the User-Agent header" },
}

local function is_mqtt_url(v) return is_string(v) and v:match("^mqtts?://[^%s/?#@]+/?$") ~= nil end

--- The keys of `mqtt`, the MQTT transport's (transport = "mqtt"): the
-- broker, and how the device proves who it is and checks who the broker is.
M.MQTT_SPEC = {
  url = { is_mqtt_url, "the broker: mqtt://HOST[:PORT] (1883) or mqtts://HOST[:PORT] (TLS, 8883), "
    .. "no user:password (username and password are keys of their own)" },
  client_id = { is_id, "the MQTT client id, stable across starts (default fotahost-<device_id>)" },
  username = { is_string, "the user name the broker knows the device by" },
  password = { is_string, "its password (never logged)" },
  cafile = { is_string, "the path of a PEM file of the CA certificates the broker's certificate is checked against" },
  capath = { is_string, "a directory of CA certificates" },
  insecure = { is_bool, "true turns TLS verification off (logged)" },
  keepalive = { is_pos_int, "the seconds between MQTT keepalive pings (an integer, default 60)" },
}

--- Each key: { check, what it must be, default (nil: required or none) }.
M.SPEC = {
  device_id = { is_id, "the MCS device id (a string without commas or spaces)" },
  device_key = { is_key, "the MCS device key (4 or more characters, no commas or spaces)" },
  api = { is_url, "an http:// or https:// base URL", "https://api.mediatek.com" },
  board = { function(v) return v == "sim" or is_string(v) end,
            "\"linkit-smart-7688-duo\", \"arduino-yun\" or \"sim\"", "linkit-smart-7688-duo" },
  sim_dir = { is_string, "the simulated chip's directory (needed when board = \"sim\")" },
  state_dir = { is_string, "a directory for the journal and images (default: see above)" },
  volatile_state_ok = { is_bool, "true or false (true: state_dir may be a RAM disk, lost at power-off)", false },
  status_channel = { function(v) return type(v) == "string" and v:match("^[%w_%-]+$") ~= nil end,
                     "a data channel id (letters, digits, _ and -)", "fota_status" },
  backend = { function(v) return v == "gpiod" or v == "sysfs" or v == "mmio" end,
              "\"gpiod\", \"sysfs\" or \"mmio\" (the GPIO access on a real board)", "gpiod" },
  part = { is_string, "an AVR part id such as \"m32u4\" (default: the board's)" },
  lock = { is_byte_or_false, "the lock byte written after a flash (0..255), or false for none", 0x0F },
  bootloader = { is_string, "the path of a HEX bootloader merged into every image (e.g. Caterina)" },
  trusted_keys = { is_paths, "the path of a minisign public key (.pub), or a list of them: firmware must then "
    .. "be signed by one of them (see the README: Signed firmware)" },
  allow_bootloader_update = { is_bool, "true or false (true: an image that carries a bootloader other than "
    .. "the configured one is written whole, bootloader and all)", false },
  max_download = { is_pos, "the largest download accepted, in bytes (default: 6x the flash size)" },
  heartbeat = { is_pos, "seconds between heartbeats", 50 },
  backoff_cap = { is_pos, "the longest reconnect (and commit retry) delay, in seconds", 60 },
  http = { is_table, "a table of options for HTTP (timeout, min_rate, cainfo...: see M.HTTP_SPEC)", {} },
  transport = { function(v) return v == "tcp" or v == "mqtt" end,
                "\"tcp\" (MCS's command channel) or \"mqtt\" (a broker: see mqtt)", "tcp" },
  mqtt = { is_table, "a table for the MQTT transport (url, cafile, username...: see M.MQTT_SPEC)", {} },
  insecure = { is_bool, "true turns TLS verification off (logged)", false },
  serial_port = { is_string, "the MCU's serial port, for hooks and `fotahost doctor`", "/dev/ttyS0" },
  serial_baud = { is_pos_int, "the rate of the sketch's Serial1, in baud (an integer such as 57600)", 57600 },
  before_download = { is_fn, "a function(job)" },
  before_flash = { is_fn, "a function(job)" },
  after_flash = { is_fn, "a function(job)" },
  health_check = { is_fn, "a function(job) returning true, or nil and a reason" },
}

--- The keys whose value is a table of keys of their own (M.HTTP_SPEC,
-- M.MQTT_SPEC): UCI sets them one by one, as http_<key> and mqtt_<key>.
M.TABLES = { "http", "mqtt" }

--- What each check function wants, for the UCI reader (fota/uci_config.lua),
-- whose values are all strings: a key with another check wants a string.
M.KIND = { [is_pos] = "number", [is_pos_int] = "number", [is_nonneg] = "number", [is_nonneg_int] = "number",
  [is_bool] = "bool", [is_byte_or_false] = "lock", [is_fn] = "hook", [is_table] = "table", [is_paths] = "paths" }

-- Where UCI spells a value otherwise than Lua, it says so.
local UCI_WHAT = { lock = "the lock byte written after a flash (0..255, or 0x00..0xFF), or none" }

local function describe(v, key)
  -- the key is a secret: its length says enough to find a stray space
  if (key == "device_key" or key == "password") and type(v) == "string" then
    return ("%d characters (not shown)"):format(#v)
  end
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) == "table" or type(v) == "function" then return "a " .. type(v) end -- not its address
  return tostring(v) .. " (a " .. type(v) .. ")"
end

-- Checks `t` against `spec`, its key names shown after `prefix`, calling
-- bad(key, format, ...) for each problem, the format holding a %s for the
-- key's name; returns a copy with the defaults filled in.
local function check_table(t, spec, prefix, bad, raw)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, k in ipairs(keys) do
    if not spec[k] then
      -- a near miss is most likely a typo
      local hint = ""
      for name in pairs(spec) do
        if name:gsub("_", "") == k:lower():gsub("[_-]", "") then hint = " (did you mean " .. prefix .. name .. "?)" end
      end
      bad(prefix .. k, "unknown key %s" .. hint)
    end
  end
  local c = {}
  local names = {}
  for k in pairs(spec) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local check, what, default = table.unpack(spec[k])
    local v = t[k]
    if v == nil then
      v = default
    elseif not check(v) then
      -- a value read from UCI is shown as it was written there
      local shown = raw[prefix .. k]
      if shown then what = UCI_WHAT[prefix .. k] or what end
      bad(prefix .. k, "%s must be %s, got %s", what, describe(shown or v, k))
    end
    c[k] = v
  end
  return c
end

-- How a problem is named: by `where` and the Lua key, or for a key read
-- from UCI (origin.raw holds the strings it was read from) by the UCI file
-- and the option. origin.only: UCI is the only source, so the keys it
-- lacks are named as options too.
local function namer(where, origin, errors)
  return function(key, fmt, ...)
    local file, name = where, key
    if origin and (origin.raw[key] ~= nil or origin.only) then
      file, name = origin.path, "fotahost.main." .. key:gsub("^(%l+)%.", "%1_")
    end
    errors[#errors + 1] = file .. ": " .. fmt:format(name, ...)
  end
end

--- Checks a configuration table and fills in the defaults. Returns the
-- table, or nil and every problem found, one per line, each naming its key.
-- `origin` (from load): which keys came from the UCI file, to name them so.
function M.check(t, where, origin)
  where = where or "config"
  if type(t) ~= "table" then
    return nil, ("%s: must return a table, got %s"):format(where, type(t))
  end
  local errors = {}
  local bad = namer(where, origin, errors)
  local raw = origin and origin.raw or {}
  local c = check_table(t, M.SPEC, "", bad, raw)
  -- the tables' keys too, at load: a cainfo that is a number would
  -- otherwise pass here and fail every download, retried for ever
  for _, name in ipairs(M.TABLES) do
    if is_table(c[name]) then c[name] = check_table(c[name], M[name:upper() .. "_SPEC"], name .. ".", bad, raw) end
  end
  if c.transport == "mqtt" and is_table(c.mqtt) and c.mqtt.url == nil then
    bad("mqtt.url", "%s is missing: transport = \"mqtt\" needs the broker's URL")
  end
  if c.state_dir == nil then c.state_dir = M.default_state_dir() end
  if type(c.trusted_keys) == "string" then c.trusted_keys = { c.trusted_keys } end
  if c.device_id == nil then bad("device_id", "%s is missing: %s", M.SPEC.device_id[2]) end
  if c.device_key == nil then bad("device_key", "%s is missing: %s", M.SPEC.device_key[2]) end
  if c.board == "sim" and c.sim_dir == nil then
    bad("sim_dir", "%s is missing: board = \"sim\" needs the simulated chip's directory")
  end
  if #errors == 0 then -- the virtual board ("sim") is an entry like any other
    local boards = require "fotahost.avr.boards"
    local ok, err = boards.get(c.board)
    if not ok then bad("board", "%s: %s", err) end
  end
  if #errors > 0 then return nil, table.concat(errors, "\n") end
  -- One TLS setting for every connection the device makes: the MCS API
  -- and the firmware downloads.
  if c.insecure then c.http.insecure = true end
  return c
end

--- The path in use: $FOTAHOST_CONFIG, or the default.
function M.path()
  local p = os.getenv("FOTAHOST_CONFIG")
  if p and p ~= "" then return p end
  return M.DEFAULT_PATH
end

-- Lua's syntax error, as "path:line: message" without its "near '<text>'":
-- that text is the file's, a device key with its closing quote missing
-- among it, and the error is logged before the key is known to the log.
-- (The path is put back whole: Lua shortens a long one to "...tail".)
local function syntax_error(path, err)
  local line, msg = err:match(":(%d+): (.*)$")
  if not line then return path .. ": cannot be read as Lua" end
  local near = msg:find(" near ", 1, true)
  return ("%s:%s: %s"):format(path, line, near and msg:sub(1, near - 1) or msg)
end

-- Reads the Lua file at `path`: its table (unchecked), nil when there is
-- no such file, or nil and a message.
local function read_lua(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  -- Its own environment: a config file sees the standard library, sets
  -- no globals, and what it returns is all that counts.
  local env = setmetatable({}, { __index = _G })
  local chunk, err = load(text, "@" .. path, "t", env)
  if not chunk then return nil, syntax_error(path, err) end
  local ok, t = pcall(chunk)
  if not ok then return nil, tostring(t) end
  if type(t) ~= "table" then return nil, select(2, M.check(t, path)) end
  return t
end

local function no_file(path)
  return ("%s: no configuration file (set FOTAHOST_CONFIG, or create it: see examples/config.lua)"):format(path)
end

--- Reads the configuration: the UCI file M.UCI_PATH when there is one, and
-- the Lua file at `path` (default M.path()), merged, UCI winning where both
-- set a key; then checks it. A Lua file asked for by name (`path`, or
-- $FOTAHOST_CONFIG) must exist. `set_in` says where each key a file set
-- came from: set_in[key] is M.UCI_PATH or the Lua file's path (a key of
-- `http` set in UCI as "http.<key>"); a key left to its default is absent.
-- @return config, "the files read", set_in | nil, "file: what is wrong"
function M.load(path)
  local named = path ~= nil or (os.getenv("FOTAHOST_CONFIG") or "") ~= ""
  path = path or M.path()
  local t, err = read_lua(path)
  if err then return nil, err end
  if t == nil and named then return nil, no_file(path) end
  local u, origin
  u, err = require("fotahost.fota.uci_config").read(M.UCI_PATH, path)
  if err then return nil, err end
  if not t and not u then
    return nil, ("no configuration: neither %s (UCI: uci set fotahost.main.device_id=...; uci commit fotahost) "
      .. "nor %s (Lua: see examples/config.lua) is there"):format(M.UCI_PATH, path)
  end
  local from, set_in = path, {}
  for k in pairs(t or {}) do set_in[k] = path end
  for k in pairs(u and u.raw or {}) do set_in[k] = M.UCI_PATH end
  if u then
    origin = { path = M.UCI_PATH, raw = u.raw, only = t == nil }
    t = require("fotahost.fota.uci_config").merge(t or {}, u.values, M.UCI_PATH, path)
    from = origin.only and M.UCI_PATH or M.UCI_PATH .. " + " .. path
  end
  local c
  c, err = M.check(t, path, origin)
  -- every problem at once, those of the UCI file's options first
  if u and #u.errors > 0 then return nil, table.concat(u.errors, "\n") .. (err and "\n" .. err or "") end
  if not c then return nil, err end
  -- from now on no log line shows the key, wherever it was read from
  require("fotahost.log").secret(c.device_key)
  if c.mqtt.password and #c.mqtt.password >= 4 then require("fotahost.log").secret(c.mqtt.password) end
  return c, from, set_in
end

return M
