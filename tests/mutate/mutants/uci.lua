-- Mutants of the UCI side of the configuration: the reader of UCI files
-- (scripts/fotahost/uci.lua) and the options it gives the configuration
-- (scripts/fotahost/fota/uci_config.lua, scripts/fotahost/fota/config.lua).
local UCI = "scripts/fotahost/uci.lua"
local UCI_CONFIG = "scripts/fotahost/fota/uci_config.lua"
local CONFIG = "scripts/fotahost/fota/config.lua"
local READER_SPEC = "spec/uci_spec.lua"
local SPEC = "spec/uci_config_spec.lua"
local SHIPPED = "dist/openwrt/fotahost/files/fotahost.config"

return {
  { name = "uci-lua-wins", file = UCI_CONFIG,
    from = "      if lua[k] ~= nil then both[#both + 1] = k end\n      t[k] = v\n",
    to = "      if lua[k] ~= nil then both[#both + 1] = k else t[k] = v end\n",
    specs = { SPEC }, filter = "UCI winning",
    why = "a user's uci set and uci commit is ignored where the Lua file sets the key too" },
  { name = "uci-bool-truthy", file = UCI_CONFIG,
    from = "bool = function(s) if BOOL[s] == nil then return s end return BOOL[s] end",
    to = "bool = function(s) return s ~= \"\" end",
    specs = { SPEC }, filter = "booleans",
    why = "every boolean word is true, as a Lua string is: '0', 'no' and 'off' turn a setting on" },
  { name = "uci-value-unchecked", file = CONFIG,
    from = "    elseif not check(v) then\n",
    to = "    elseif not check(v) and not raw[prefix .. k] then\n",
    specs = { SPEC }, filter = "wrong value",
    why = "a UCI value of the wrong kind (heartbeat 'abc') passes the load and fails later, at run time" },
  { name = "uci-device-key-not-secret", file = CONFIG,
    from = "  require(\"fotahost.log\").secret(c.device_key)\n", to = "\n",
    specs = { SPEC }, filter = "never showing the device key",
    why = "a device key read from a file is printed by any log line that shows it" },
  { name = "uci-quote-backslash-kept", file = UCI,
    from = "      parts[#parts + 1] = line:sub(i + 1, i + 1)\n",
    to = "      parts[#parts + 1] = line:sub(i, i + 1)\n",
    specs = { READER_SPEC },
    why = "uci's 'it'\\''s' reads it\\'s: a value with a quote, as uci writes it, is changed" },
  { name = "uci-quote-single-escapes", file = UCI,
    from = "      local close = line:find(\"'\", i + 1, true)\n",
    to = "      local close = line:find(\"[^\\\\]'\", i) if close then close = close + 1 end\n",
    specs = { READER_SPEC },
    why = "a backslash escapes inside '...', which libuci does not do: 'C:\\' never closes" },
  { name = "uci-double-quote-unterminated-ok", file = UCI,
    from = "        if d == \"\" then return false, 'unterminated \"' end\n        if d == '\"' then break end",
    to = "        if d == \"\" or d == '\"' then break end",
    specs = { READER_SPEC },
    why = "a value whose \" is never closed is taken as it is, the rest of the line with it" },
  { name = "uci-shipped-sets-lock", file = SHIPPED,
    from = "\t# option lock '0x0F'\n", to = "\toption lock '0x0F'\n",
    specs = { SPEC }, filter = "as shipped",
    why = "opkg install overrides the Lua file's lock = false: lock bits are written where the user said none" },
  { name = "uci-shipped-default-drifts", file = SHIPPED,
    from = "\t# option state_dir '/etc/fotahost/state'\n", to = "\t# option state_dir '/var/lib/fotahost'\n",
    specs = { SPEC }, filter = "defaults, commented out",
    why = "the shipped file shows a default the loader does not use: a user copies the wrong value" },
}
