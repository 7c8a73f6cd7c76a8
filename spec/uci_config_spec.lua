-- The configuration from UCI (/etc/config/fotahost, section fotahost.main),
-- set as the README tells a user to (uci set ...; uci commit fotahost),
-- here with tests/openwrt/uci: every option read by its key's kind and
-- checked as the Lua file's keys are, each problem naming the file and the
-- option; with the Lua file too, UCI wins, said once; the device key never
-- in a log line.
local h = require "helper"
local config = require "fotahost.fota.config"

describe("the UCI configuration", function()
  local UCI = h.top .. "/tests/openwrt/uci.lua"
  local DEFAULT = h.read(h.top .. "/dist/openwrt/fotahost/files/fotahost.config")
  local dir

  -- `uci set fotahost.main.<each>` and `uci commit fotahost`, over the
  -- file the package ships; returns the file's path.
  local function configured(settings)
    h.write(dir .. "/fotahost", DEFAULT)
    for _, s in ipairs(settings) do
      local r = h.run({ UCI, "-c", dir, "-t", dir .. "/.uci", "set", "fotahost.main." .. s })
      assert.are.equal(0, r.status, r.err)
    end
    local r = h.run({ UCI, "-c", dir, "-t", dir .. "/.uci", "commit", "fotahost" })
    assert.are.equal(0, r.status, r.err)
    return dir .. "/fotahost"
  end
  local BASE = { "device_id=Dev1", "device_key=Key12345", "board=sim", "sim_dir=/tmp/chip" }
  local function with(...)
    local t = { table.unpack(BASE) }
    for _, s in ipairs({ ... }) do t[#t + 1] = s end
    return t
  end

  -- config.load with the UCI file at `uci_path` and no Lua file (or `lua_path`)
  local function load(uci_path, lua_path)
    local saved = { config.UCI_PATH, config.DEFAULT_PATH }
    config.UCI_PATH, config.DEFAULT_PATH = uci_path, dir .. "/no-config.lua"
    local c, err = config.load(lua_path)
    config.UCI_PATH, config.DEFAULT_PATH = saved[1], saved[2]
    return c, err
  end

  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  -- Every option, its value as a user types it, and what the Lua key gets.
  local OPTIONS = {
    { "device_id", "Dbxx9k", "Dbxx9k" }, { "device_key", "TPJVxxxxBxBv", "TPJVxxxxBxBv" },
    { "api", "http://127.0.0.1:8080", "http://127.0.0.1:8080" }, { "board", "sim", "sim" },
    { "sim_dir", "/tmp/chip", "/tmp/chip" }, { "state_dir", "/srv/fota", "/srv/fota" },
    { "volatile_state_ok", "yes", true }, { "status_channel", "st-1", "st-1" }, { "backend", "sysfs", "sysfs" },
    { "part", "m32u4", "m32u4" }, { "lock", "0xCF", 0xCF }, { "bootloader", "/srv/cat.hex", "/srv/cat.hex" },
    { "allow_bootloader_update", "on", true },
    { "max_download", "1048576", 1048576 }, { "heartbeat", "30.5", 30.5 }, { "backoff_cap", "120", 120 },
    { "insecure", "off", false }, { "serial_port", "/dev/ttyUSB0", "/dev/ttyUSB0" },
    { "serial_baud", "115200", 115200 },
    { "http_timeout", "30", 30 }, { "http_min_rate", "0", 0 }, { "http_min_rate_after", "10", 10 },
    { "http_connect_timeout", "5", 5 }, { "http_low_speed_time", "0", 0 }, { "http_low_speed_limit", "10", 10 },
    { "http_retries", "2", 2 }, { "http_retry_delay", "0.5", 0.5 }, { "http_retry_max_delay", "9", 9 },
    { "http_max_redirects", "0", 0 }, { "http_cainfo", "/etc/ssl/ca.pem", "/etc/ssl/ca.pem" },
    { "http_capath", "/etc/ssl/certs", "/etc/ssl/certs" }, { "http_insecure", "true", true },
    { "http_user_agent", "fotahost/1 (test)", "fotahost/1 (test)" },
    { "trusted_keys", "/etc/fotahost/keys/release.pub", { "/etc/fotahost/keys/release.pub" } },
    { "transport", "mqtt", "mqtt" }, { "mqtt_url", "mqtts://broker.lan:8883", "mqtts://broker.lan:8883" },
    { "mqtt_client_id", "board-7", "board-7" }, { "mqtt_username", "Dbxx9k", "Dbxx9k" },
    { "mqtt_password", "s3cret-pass", "s3cret-pass" }, { "mqtt_cafile", "/etc/ssl/ca.pem", "/etc/ssl/ca.pem" },
    { "mqtt_capath", "/etc/ssl/certs", "/etc/ssl/certs" }, { "mqtt_insecure", "0", false },
    { "mqtt_keepalive", "30", 30 },
  }

  it("maps every option to its key, read by the key's kind", function()
    -- the table covers every key a UCI option can set
    local covered = {}
    for _, o in ipairs(OPTIONS) do covered[o[1]] = true end
    for k, spec in pairs(config.SPEC) do
      local kind = config.KIND[spec[1]]
      if kind ~= "hook" and kind ~= "table" then assert.is_true(covered[k], k) end
    end
    for k in pairs(config.HTTP_SPEC) do assert.is_true(covered["http_" .. k], "http_" .. k) end
    for k in pairs(config.MQTT_SPEC) do assert.is_true(covered["mqtt_" .. k], "mqtt_" .. k) end
    local settings = { "enabled=1" }
    for _, o in ipairs(OPTIONS) do settings[#settings + 1] = o[1] .. "=" .. o[2] end
    local c = assert(load(configured(settings)))
    for _, o in ipairs(OPTIONS) do
      local t, key = o[1]:match("^(%l+)_(.*)$")
      local got = c[o[1]]
      if t == "http" or t == "mqtt" then got = c[t][key] end
      assert.are.same(o[3], got, o[1])
      assert.are.equal(math.type(o[3]), math.type(got), o[1])
    end
  end)

  -- The shipped file sets only `enabled`: any other option in it would win
  -- over a Lua file's value at opkg install, silently (lock bits written
  -- where the user said none, the journal orphaned by a new state_dir).
  it("as shipped, sets nothing but enabled: a Lua file's keys stay as it says, no warning", function()
    local uci_path = h.write(dir .. "/fotahost", DEFAULT)
    local lua_path = h.write(dir .. "/config.lua", [[
return { device_id = "Dev1", device_key = "Key12345", api = "http://127.0.0.1:9", backend = "sysfs",
         lock = false, state_dir = "/srv/fota", status_channel = "st", board = "arduino-yun" }
]])
    local script = [[
local c = assert(require("fotahost.fota.config").load())
print(c.api, c.backend, c.lock, c.state_dir, c.status_channel, c.board)
]]
    local r = h.run({ "-e", script }, { env = { FOTAHOST_UCI_CONFIG = uci_path, FOTAHOST_CONFIG = lua_path,
      FOTAHOST_LOG = "stderr" } })
    assert.are.equal(0, r.status, r.err)
    assert.are.equal("http://127.0.0.1:9\tsysfs\tfalse\t/srv/fota\tst\tarduino-yun\n", r.out)
    assert.are.equal("", r.err)
  end)

  it("shows the loader's defaults, commented out, in the file it ships", function()
    -- the commented options, uncommented, give what no option gives
    local text, n = DEFAULT:gsub("\n\t# (option [^\n]*)", "\n\t%1")
    assert.is_true(n >= 6, DEFAULT)
    local path = h.write(dir .. "/fotahost", text .. "\toption device_id 'Dev1'\n\toption device_key 'Key12345'\n")
    local release = h.write(dir .. "/openwrt_release", "DISTRIB_ID='OpenWrt'\n")
    local saved = config.OPENWRT_RELEASE
    config.OPENWRT_RELEASE = release -- state_dir's default on OpenWrt
    local c = assert(load(path))
    local state_default = config.default_state_dir()
    config.OPENWRT_RELEASE = saved
    for key in DEFAULT:gmatch("\n\t# option ([%w_]+) ") do
      local default = key == "state_dir" and state_default or config.SPEC[key][3]
      assert.is_not_nil(default, key .. " has no default to show")
      assert.are.equal(default, c[key], key)
    end
  end)

  it("is read in the specs only where a spec names it (tests/run: none of this machine's)", function()
    assert.are.equal("", os.getenv("FOTAHOST_UCI_CONFIG"))
    assert.are.equal("", config.UCI_PATH)
  end)

  it("takes a change at `uci commit`, not before", function()
    local path = configured(with("heartbeat=30"))
    local r = h.run({ UCI, "-c", dir, "-t", dir .. "/.uci", "set", "fotahost.main.heartbeat=40" })
    assert.are.equal(0, r.status, r.err)
    assert.are.equal(30, assert(load(path)).heartbeat)
    r = h.run({ UCI, "-c", dir, "-t", dir .. "/.uci", "commit", "fotahost" })
    assert.are.equal(0, r.status, r.err)
    assert.are.equal(40, assert(load(path)).heartbeat)
  end)

  it("takes the booleans OpenWrt takes, and a lock byte in decimal, hex or none", function()
    for word, want in pairs({ ["1"] = true, yes = true, on = true, ["true"] = true, enabled = true,
                              ["0"] = false, no = false, off = false, ["false"] = false, disabled = false }) do
      local c = assert(load(configured(with("volatile_state_ok=" .. word, "enabled=" .. word))))
      assert.are.equal(want, c.volatile_state_ok, word)
    end
    for word, want in pairs({ ["207"] = 207, ["0x0F"] = 15, ["0"] = 0, ["255"] = 255, none = false }) do
      assert.are.equal(want, assert(load(configured(with("lock=" .. word)))).lock, word)
    end
  end)

  it("names the file and the option of a wrong value, shown as written", function()
    local path = configured(with("heartbeat=abc"))
    local c, err = load(path)
    assert.is_nil(c)
    assert.are.equal(path .. ': fotahost.main.heartbeat must be seconds between heartbeats, got "abc"', err)
    local cases = {
      { "volatile_state_ok=maybe", 'fotahost.main.volatile_state_ok must be true or false (true: state_dir may be a '
        .. 'RAM disk, lost at power-off), got "maybe"' },
      { "lock=256", 'fotahost.main.lock must be the lock byte written after a flash (0..255, or 0x00..0xFF), '
        .. 'or none, got "256"' },
      { "lock=false", 'fotahost.main.lock must be the lock byte written after a flash (0..255, or 0x00..0xFF), '
        .. 'or none, got "false"' },
      { "serial_baud=57600.5", 'fotahost.main.serial_baud must be the rate of the sketch\'s Serial1, in baud (an '
        .. 'integer such as 57600), got "57600.5"' },
      { "http_retries=-1", 'fotahost.main.http_retries must be the further tries after a failure (an integer; '
        .. 'downloads: default 3), got "-1"' },
      { "http_timeout=0", 'fotahost.main.http_timeout must be the seconds a firmware download may take in all, '
        .. 'retries included, got "0"' },
      { "api=ftp://x", 'fotahost.main.api must be an http:// or https:// base URL, got "ftp://x"' },
      -- numbers are decimal, with an optional fraction: what tonumber takes besides is refused
      { "max_download=1e999", 'fotahost.main.max_download must be the largest download accepted, in bytes '
        .. '(default: 6x the flash size), got "1e999"' },
      { "heartbeat= 5", 'fotahost.main.heartbeat must be seconds between heartbeats, got " 5"' },
      { "heartbeat=0x10", 'fotahost.main.heartbeat must be seconds between heartbeats, got "0x10"' },
      { "http_min_rate=inf", 'fotahost.main.http_min_rate must be the lowest average rate a download may keep, '
        .. 'in bytes/s (0: no check), got "inf"' },
      { "lock=0x1000000000000000F", 'fotahost.main.lock must be the lock byte written after a flash (0..255, or '
        .. '0x00..0xFF), or none, got "0x1000000000000000F"' },
      { "lock=1000", 'fotahost.main.lock must be the lock byte written after a flash (0..255, or 0x00..0xFF), '
        .. 'or none, got "1000"' },
      { "enabled=2", 'fotahost.main.enabled must be 1 or 0 (or yes/no, on/off, true/false), got "2"' },
      { "device_key=Key 12345", "fotahost.main.device_key must be the MCS device key (4 or more characters, no "
        .. "commas or spaces), got 9 characters (not shown)" },
    }
    for _, case in ipairs(cases) do
      c, err = load(configured(with(case[1])))
      assert.is_nil(c, case[1])
      assert.are.equal(path .. ": " .. case[2], err)
    end
  end)

  it("refuses a typo, a hook, http itself and a list, each on its line", function()
    h.write(dir .. "/fotahost", DEFAULT)
    for _, cmd in ipairs({ { "set", "fotahost.main.device_id=Dev1" }, { "set", "fotahost.main.device_key=Key12345" },
                           { "set", "fotahost.main.statedir=/srv" }, { "set", "fotahost.main.health_check=true" },
                           { "set", "fotahost.main.http=5" }, { "add_list", "fotahost.main.heartbeat=5" },
                           { "add_list", "fotahost.main.heartbeat=6" }, { "commit", "fotahost" } }) do
      local r = h.run({ UCI, "-c", dir, "-t", dir .. "/.uci", table.unpack(cmd) })
      assert.are.equal(0, r.status, r.err)
    end
    local path = dir .. "/fotahost"
    local c, err = load(path)
    assert.is_nil(c)
    assert.are.equal(table.concat({
      path .. ": fotahost.main.health_check is a hook, Lua code: it belongs in the Lua file ("
        .. dir .. "/no-config.lua)",
      path .. ": fotahost.main.heartbeat must be a single value (option, not list), got a list of 2",
      path .. ": fotahost.main.http cannot be set in UCI: set each of its keys as http_<key> (http_timeout, "
        .. "http_cainfo...)",
      path .. ": fotahost.main.statedir is not an option of fotahost (did you mean fotahost.main.state_dir?)",
    }, "\n"), err)
  end)

  it("reads trusted_keys as a list (key rotation: old and new)", function()
    h.write(dir .. "/fotahost", DEFAULT)
    for _, cmd in ipairs({ { "set", "fotahost.main.device_id=Dev1" }, { "set", "fotahost.main.device_key=Key12345" },
                           { "set", "fotahost.main.board=sim" }, { "set", "fotahost.main.sim_dir=/tmp/chip" },
                           { "add_list", "fotahost.main.trusted_keys=/etc/fotahost/keys/2025.pub" },
                           { "add_list", "fotahost.main.trusted_keys=/etc/fotahost/keys/2026.pub" },
                           { "commit", "fotahost" } }) do
      local r = h.run({ UCI, "-c", dir, "-t", dir .. "/.uci", table.unpack(cmd) })
      assert.are.equal(0, r.status, r.err)
    end
    local c = assert(load(dir .. "/fotahost"))
    assert.are.same({ "/etc/fotahost/keys/2025.pub", "/etc/fotahost/keys/2026.pub" }, c.trusted_keys)
  end)

  it("names a missing device id and key as options when UCI is the only file", function()
    local path = configured({})
    local c, err = load(path)
    assert.is_nil(c)
    assert.are.equal(path .. ": fotahost.main.device_id is missing: the MCS device id (a string without commas or "
      .. "spaces)\n" .. path .. ": fotahost.main.device_key is missing: the MCS device key (4 or more characters, "
      .. "no commas or spaces)", err)
  end)

  it("names the file and the line of a syntax error", function()
    local path = configured(BASE)
    h.write(path, h.read(path) .. "\toption heartbeat 'unclosed\n")
    local lines = select(2, h.read(path):gsub("\n", "\n"))
    local c, err = load(path)
    assert.is_nil(c)
    assert.are.equal(("%s:%d: unterminated '"):format(path, lines), err)
  end)

  it("without either file names both; a Lua file asked for by name must be there", function()
    local c, err = load(dir .. "/none")
    assert.is_nil(c)
    assert.are.equal(("no configuration: neither %s/none (UCI: uci set fotahost.main.device_id=...; uci commit "
      .. "fotahost) nor %s/no-config.lua (Lua: see examples/config.lua) is there"):format(dir, dir), err)
    c, err = load(configured(BASE), dir .. "/asked.lua")
    assert.is_nil(c)
    assert.are.equal(dir .. "/asked.lua: no configuration file (set FOTAHOST_CONFIG, or create it: see "
      .. "examples/config.lua)", err)
    -- FOTAHOST_UCI_CONFIG="" reads no UCI file
    assert.is_nil(load(""))
  end)

  -- With both files: the Lua file keeps its hooks and what UCI does not
  -- set; UCI wins the rest, and one warning says which keys. The device
  -- key, set in both, is in no line.
  it("merges both files, UCI winning, said once, never showing the device key", function()
    local uci_path = configured(with("device_key=UciKey2468", "heartbeat=30", "http_timeout=20"))
    local lua_path = h.write(dir .. "/config.lua", [[
return { device_key = "LuaKey1357", heartbeat = 5, backoff_cap = 7, http = { timeout = 9, retries = 1 },
         health_check = function() return true end }
]])
    local script = [[
local config = require "fotahost.fota.config"
local c = assert(config.load())
assert(config.load())
require("fotahost.log").get("test").info("heartbeat %s backoff_cap %s http %s/%s hook %s key %s from %s",
  c.heartbeat, c.backoff_cap, c.http.timeout, c.http.retries, type(c.health_check), c.device_key,
  select(2, config.load()))
]]
    local r = h.run({ "-e", script }, { env = { FOTAHOST_UCI_CONFIG = uci_path, FOTAHOST_CONFIG = lua_path,
      FOTAHOST_LOG = "stderr" } })
    assert.are.equal(0, r.status, r.err)
    local lines = {}
    for l in r.err:gmatch("[^\n]+") do lines[#lines + 1] = l end
    local warn = ("warn +config: set in both, %s's value used and %s's ignored: device_key, heartbeat, "
      .. "http%%.timeout$"):format(h.literal(uci_path), h.literal(lua_path))
    -- three loads, three warnings: one per load
    assert.are.equal(4, #lines, r.err)
    for i = 1, 3 do assert.matches(warn, lines[i]) end
    assert.matches(("info +test: heartbeat 30 backoff_cap 7 http 20/1 hook function key %%*%%*%%*%%* from %s %%+ %s$")
      :format(h.literal(uci_path), h.literal(lua_path)), lines[4])
    assert.is_nil(r.err:find("UciKey2468", 1, true))
    assert.is_nil(r.err:find("LuaKey1357", 1, true))
  end)

  it("stops `fotahost app` with only a UCI file on a bad value: one line, status 1", function()
    local path = configured(with("heartbeat=abc", "state_dir=/nonexistent/state"))
    -- (timeout: with the check broken, the app would run on, retrying the cloud)
    local r = h.run({ "app" }, { shell_prefix = "timeout 20",
      env = { FOTAHOST_UCI_CONFIG = path, FOTAHOST_CONFIG = "", FOTAHOST_LOG = "stderr" } })
    assert.are.equal(1, r.status)
    assert.matches("^%S+ error +app: " .. h.literal(path) .. ": fotahost%.main%.heartbeat must be seconds between "
      .. 'heartbeats, got "abc"\n$', r.err)
  end)

  it("is what `fotahost doctor` checks, naming the files read or the option to fix", function()
    local path = configured(with("serial_baud=fast"))
    local r = h.run({ "doctor" }, { env = { FOTAHOST_UCI_CONFIG = path, FOTAHOST_CONFIG = "" } })
    assert.are.equal(1, r.status)
    assert.matches("^FAIL config: " .. h.literal(path) .. ": fotahost%.main%.serial_baud must be .*, got \"fast\" %- "
      .. "set the option: uci set fotahost%.main%.OPTION=VALUE; uci commit fotahost", r.out)
  end)
end)
