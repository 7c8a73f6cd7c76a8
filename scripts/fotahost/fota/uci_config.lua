--- fotahost.fota.uci_config: the configuration's UCI side, for OpenWrt:
-- section `config fotahost 'main'` of /etc/config/fotahost (the path is
-- config.UCI_PATH). Each option is named as the Lua key it sets (heartbeat,
-- device_id...), a key of `http` as http_<key> (http_timeout), of `mqtt`
-- as mqtt_<key> (mqtt_url); `enabled`
-- is the init script's. UCI values are strings: read here by the key's kind
-- (fota/config.lua's M.KIND), and checked by config.check as a Lua value is,
-- a problem named by the file and the option. Hooks are Lua code: they stay
-- in the Lua file. A key taking several paths (trusted_keys) is a UCI list,
-- or one option.
local config = require "fotahost.fota.config"
local uci = require "fotahost.uci"
local log = require("fotahost.log").get("config")

local M = {}

--- The words OpenWrt takes for a boolean (uci_get_bool, procd's config_get_bool).
M.BOOL = { ["1"] = true, yes = true, on = true, ["true"] = true, enabled = true,
  ["0"] = false, no = false, off = false, ["false"] = false, disabled = false }
local BOOL = M.BOOL

-- A string as the kind of value its key wants; the string itself when it
-- cannot be read so (the check then refuses it, showing it as written).
-- Numbers are decimal digits with an optional fraction, as a user means
-- them: tonumber would take ' 5', '0x10' and '1e999' (infinity); none of
-- these keys is negative. A lock byte has at most 3 digits or 2 hex ones,
-- so no longer number wraps around into a byte ('0x1000000000000000F').
local READ = {
  number = function(s)
    if s:match("^%d+$") or s:match("^%d+%.%d+$") then return tonumber(s) end
    return s
  end,
  bool = function(s) if BOOL[s] == nil then return s end return BOOL[s] end,
  lock = function(s)
    if s == "none" then return false end
    if s:match("^%d%d?%d?$") or s:match("^0[xX]%x%x?$") then return math.tointeger(tonumber(s)) end
    return s
  end,
  string = function(s) return s end,
}

-- Every option name, with the Lua key it sets and that key's spec.
local function options()
  local o = {}
  for k, spec in pairs(config.SPEC) do o[k] = { key = k, spec = spec } end
  for _, t in ipairs(config.TABLES) do
    for k, spec in pairs(config[t:upper() .. "_SPEC"]) do
      o[t .. "_" .. k] = { key = t .. "." .. k, table = t, sub = k, spec = spec }
    end
  end
  return o
end

local function near_miss(name, known)
  for k in pairs(known) do
    if k:gsub("_", "") == name:lower():gsub("[_-]", "") then return " (did you mean fotahost.main." .. k .. "?)" end
  end
  return ""
end

-- Reads the options of section `s`: values (a table shaped as the Lua
-- file's), raw (the strings, by Lua key) and errors (the options that set
-- no key, each a line; config.check finds the wrong values).
local function read_section(s, path, lua_path)
  local known, values, raw, errors = options(), {}, {}, {}
  local function bad(name, fmt, ...)
    errors[#errors + 1] = ("%s: fotahost.main.%s " .. fmt):format(path, name, ...)
  end
  local names = {}
  for name in pairs(s.options) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local v, o = s.options[name], known[name]
    local kind = o and (config.KIND[o.spec[1]] or "string")
    if type(v) == "table" and kind ~= "paths" then
      bad(name, "must be a single value (option, not list), got a list of %d", #v)
    elseif kind == "paths" then -- a list, or one option: the same
      v = type(v) == "table" and v or { v }
      raw[o.key], values[name] = table.concat(v, " "), v
    elseif name == "enabled" then -- the init script's; a typo there is still one
      if BOOL[v] == nil then bad(name, "must be 1 or 0 (or yes/no, on/off, true/false), got %q", v) end
    elseif not o then
      bad(name, "is not an option of fotahost%s", near_miss(name, known))
    elseif kind == "hook" then
      bad(name, "is a hook, Lua code: it belongs in the Lua file (%s)", lua_path)
    elseif kind == "table" then
      bad(name, "cannot be set in UCI: set each of its keys as %s_<key> (%s_%s...)", name, name,
        name == "http" and "timeout, http_cainfo" or "url, mqtt_cafile")
    else
      raw[o.key] = v
      if o.table then
        values[o.table] = values[o.table] or {}
        values[o.table][o.sub] = READ[kind](v)
      else
        values[name] = READ[kind](v)
      end
    end
  end
  return { values = values, raw = raw, errors = errors }
end

--- Reads the UCI file at `path`: { values =, raw =, errors = }, nil when
-- there is no such file (or path is ""), or nil and a message. `lua_path`:
-- the Lua file, where a hook set here belongs.
function M.read(path, lua_path)
  if path == "" then return nil end
  local sections, err, missing = uci.read(path)
  if not sections then
    if missing then return nil end
    return nil, err
  end
  for _, s in ipairs(sections) do
    if s.name == "main" and s.type == "fotahost" then return read_section(s, path, lua_path) end
  end
  return nil, path .. ": no section config fotahost 'main' (the options are read from it)"
end

--- `lua` (the Lua file's table) with the UCI values over it: a user's
-- `uci set` and `uci commit` must take effect. A key set in both is said
-- once, in one line.
function M.merge(lua, values, uci_path, lua_path)
  local t, both = {}, {}
  for k, v in pairs(lua) do t[k] = v end
  local tables = {}
  for _, name in ipairs(config.TABLES) do tables[name] = true end
  for k, v in pairs(values) do
    if tables[k] and type(lua[k]) == "table" then
      t[k] = {}
      for hk, hv in pairs(lua[k]) do t[k][hk] = hv end
      for hk, hv in pairs(v) do
        if lua[k][hk] ~= nil then both[#both + 1] = k .. "." .. hk end
        t[k][hk] = hv
      end
    elseif tables[k] and lua[k] ~= nil then -- luacheck: ignore 542
      -- not a table: left as it is, for the check to name in the Lua file
    else
      if lua[k] ~= nil then both[#both + 1] = k end
      t[k] = v
    end
  end
  if #both > 0 then
    table.sort(both)
    -- the keys last: log.redact takes a word after "device_key " for its value
    log.warn("set in both, %s's value used and %s's ignored: %s", uci_path, lua_path, table.concat(both, ", "))
  end
  return t
end

return M
