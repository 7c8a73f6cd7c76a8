-- fotahost doctor: the tutorial's checks as one command. Each check prints
-- one line, OK with what it found, or FAIL with what is wrong and the fix;
-- a check that needs an earlier one that failed says SKIP and why. WARN,
-- with the fix, is what works but is not safe (no trusted_keys: unsigned
-- firmware accepted): it fails nothing.
--
--   fotahost doctor [--config PATH]
--
-- The checks, in order: the configuration; each override script (one
-- "scripts" line each: fotahost/doctor/scripts.lua); the MCS API (the tutorial's
-- ping: connections.csv with the device key); the command server it names;
-- the MCU's serial port; the GPIO lines of the ISP wiring; the MCU's
-- signature over ISP; state_dir (its filesystem: a RAM disk loses the
-- journal in a power cut; its free space; on OpenWrt, kept across a
-- sysupgrade); signing (trusted_keys, each key read as the app reads it;
-- the highest anti-rollback counter accepted, once there is one). Nothing
-- is written to the MCU: the signature check holds it in reset for a
-- moment and releases it. On OpenWrt (its release file
-- exists, fotahost.fota.config's OPENWRT_RELEASE) the procd service too:
-- the init script and its boot link, the UCI option enabled, the instance
-- procd runs (`ubus call service list`) and its respawn.
--
-- Tests: $FOTAHOST_SYSROOT is put before the system paths of the service
-- checks (/etc/init.d, /etc/rc.d, /etc/config, /lib/upgrade/keep.d,
-- /etc/sysupgrade.conf); `ubus` is the first in PATH.
--
-- The device key is never printed (it is registered with fotahost.log as a
-- secret, and masked in every line this tool writes).

local cfgmod = require "fotahost.fota.config"
local logmod = require "fotahost.log"
local boards = require "fotahost.avr.boards"

local USAGE = [[
usage: fotahost doctor [--config PATH]
  --config PATH   the Lua configuration to check (default $FOTAHOST_CONFIG, else
                  /etc/fotahost/config.lua), with the UCI file /etc/config/fotahost
                  ($FOTAHOST_UCI_CONFIG) when there is one: its options win
  -h, --help      this help
Checks, in order: config, scripts (one line per override script: it compiles,
and whether the bundled file changed since the copy), api (MCS reachable,
device id and key accepted), command server, serial port, gpio, signature (the MCU answers over ISP),
state dir (kept at power-off, room for an update; on OpenWrt kept across
sysupgrade), signing (trusted_keys; then counter, the highest accepted, once
a signed update was), and on OpenWrt the service: service (/etc/init.d/fotahost,
started at boot), enabled (fotahost.main.enabled), running (procd's
instance), respawn.
Prints one line per check, "OK", "FAIL ... - fix", "WARN ... - fix" (works,
but unsafe: unsigned firmware accepted) or "SKIP"; exit status 0 only when
no check failed.
]]

local cli = require("fotahost.cli").new("doctor", USAGE)

local opts = {}
for a, value in cli:each(arg) do
  if a == "--config" then opts.config = value()
  elseif a:match("^%-%-config=") then opts.config = a:sub(10)
  else cli:fail("unknown argument '%s'", a) end
end

io.stdout:setvbuf("line")

---------------------------------------------------------------- output

local secrets = {}
local failed = false

-- Every line goes through here: whatever the key, it never reaches stdout.
local function mask(s)
  for _, k in ipairs(secrets) do
    local from = 1
    while true do
      local a, b = s:find(k, from, true)
      if not a then break end
      s = s:sub(1, a - 1) .. "****" .. s:sub(b + 1)
      from = a + 4
    end
  end
  return s
end

local function line(tag, name, text)
  io.stdout:write(mask(("%-4s %s: %s\n"):format(tag, name, text)))
end
local function ok(name, fmt, ...) line("OK", name, fmt:format(...)) end
local function fail(name, what, fix)
  failed = true
  line("FAIL", name, what .. (fix and (" - " .. fix) or ""))
end
local function skip(name, why) line("SKIP", name, "not checked: " .. why) end

local function is_dir(path)
  return os.execute("test -d '" .. path:gsub("'", "'\\''") .. "'") == true
end

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

---------------------------------------------------------------- 1. config

local path = opts.config or cfgmod.path()
-- (opts.config, not path: the default Lua file may be absent when the UCI file is there)
local config, found, set_in = cfgmod.load(opts.config)  -- the files read, or what is wrong
local from, cerr = config and found, not config and found
local results = {}

-- The file a fix for `key` names: the one it was read from, or for a key
-- left to its default the UCI file when UCI was the only file, else the
-- Lua file.
local function key_file(key)
  return set_in and set_in[key] or (from == cfgmod.UCI_PATH and from) or path
end

-- The fix that sets `key` (to `value`, else to what the user picks), said
-- for that file: uci's commands for the UCI file, else the Lua file.
local function set_key(key, value)
  if key_file(key) == cfgmod.UCI_PATH then
    return ("uci set fotahost.main.%s=%s; uci commit fotahost"):format(key:gsub("^(%l+)%.", "%1_"),
      value and quote(value) or "...")
  end
  return value and ("set %s = %q in %s"):format(key, value, path) or ("set %s in %s"):format(key, path)
end

-- The board, and what its entry says: the ISP options, and for the virtual
-- board the directory that stands for its chip and the dev module that
-- knows what that directory holds.
local isp_opts, board, chip_dir, vdev
if config then
  isp_opts = assert(boards.isp_options(config)) -- config.load checked the name
  board = isp_opts.board
  chip_dir = board.chip_dir and config[board.chip_dir]
  vdev = chip_dir and boards.dev(board)
end

if config then
  secrets[1] = config.device_key
  logmod.secret(config.device_key)
  ok("config", "%s (device %s, board %s%s)", from, config.device_id, config.board,
    chip_dir and (", simulated chip " .. chip_dir) or "")
  results.config = true
else
  -- (a malformed device_key is not shown: config gives its length only)
  local fix
  if cerr:find("no configuration file", 1, true) then
    fix = ("create it (a Lua file returning { device_id = ..., device_key = ..., api = ..., board = ... }), "
      .. "or give its path with --config or FOTAHOST_CONFIG")
    cerr = path .. ": no configuration file"
  elseif cerr:find("^no configuration:") then
    fix = ("set the options in %s (uci set fotahost.main.device_id=...; uci commit fotahost), or create %s")
      :format(cfgmod.UCI_PATH, path)
  elseif cerr:sub(1, #cfgmod.UCI_PATH + 1) == cfgmod.UCI_PATH .. ":" then
    fix = "set the option: uci set fotahost.main.OPTION=VALUE; uci commit fotahost (options: README.md, "
      .. "On OpenWrt: UCI)"
  else
    fix = "edit " .. path .. " (keys and their meaning: scripts/fotahost/fota/config.lua)"
  end
  -- several problems: one line, each separated by "; "
  fail("config", (cerr:gsub("\n", "; ")), fix)
end

-- The overrides in use, each compiled as `fotahost check` does: one line
-- each (none without overrides). Not a step the others need.
require("fotahost.doctor.scripts").lines(function(tag, what, fix)
  if tag == "FAIL" then return fail("scripts", what, fix) end
  line(tag, "scripts", what .. (fix and (" - " .. fix) or ""))
end)

---------------------------------------------------------------- 2. api

local api_ip, api_port
if not results.config then
  skip("api", "the config is not valid")
else
  local http = require "fotahost.http"
  local base = config.api:gsub("/+$", "")
  local url = ("%s/mcs/v2/devices/%s/connections.csv"):format(base, config.device_id)
  local o = {}
  for k, v in pairs(config.http or {}) do o[k] = v end
  o.headers = { deviceKey = config.device_key }
  o.connect_timeout = math.min(o.connect_timeout or 5, 5)
  o.timeout = math.min(o.timeout or 10, 10)
  o.retries = 0
  local res, err, code = http.get(url, o)
  if not res then
    -- the cause alone: the URL is said once, below
    err = tostring(err)
    local url_shown = http.redact_url(url) .. ": "
    if err:sub(1, #url_shown) == url_shown then err = err:sub(#url_shown + 1) end
    if code == "tls" then
      fail("api", "TLS problem with " .. base .. ": " .. err,
        "check the clock (date), the CA certificates (http = { cainfo = ... } in the config) "
        .. "and that the api URL is the service's")
    elseif code == "timeout" or code == "connect" or code == "resolve" then
      fail("api", "unreachable: " .. base .. ": " .. err,
        "check the network and the api URL: " .. set_key("api")
        .. " (for the local cloud: is `fotahost cloud serve` running on that port?)")
    else
      fail("api", "request to " .. base .. " failed: " .. err,
        "check the api URL: " .. set_key("api"))
    end
  elseif res.status == 401 then
    fail("api", ("401: %s refused the device key of device %s"):format(base, config.device_id),
      set_key("device_key") .. " (the key the cloud shows for device " .. config.device_id .. ")")
  elseif res.status == 404 then
    fail("api", ("404: %s does not know device %s"):format(base, config.device_id),
      "check device_id: " .. set_key("device_id") .. " (and that api is the cloud the device is registered with)")
  elseif res.status ~= 200 then
    fail("api", ("HTTP %d from %s"):format(res.status, url), "check the api URL: " .. set_key("api"))
  else
    local ip, port = res.body:match("^%s*([^,%s]+)%s*,%s*(%d+)%s*$")
    port = port and math.tointeger(tonumber(port))
    if not ip or not port or port < 1 or port > 65535 then
      fail("api", ("%s answered %q, not \"ip,port\""):format(url, res.body:sub(1, 60)),
        "check the api URL: " .. set_key("api") .. " (it must be an MCS service)")
    else
      api_ip, api_port = ip, port
      results.api = true
      ok("api", "%s accepts device %s (command server %s:%d)", base, config.device_id, ip, port)
    end
  end
end

---------------------------------------------------------------- 3. command server

-- Over MQTT (transport = "mqtt") the command server is the broker: the
-- device connects with its credentials and subscribes to its topics, as
-- the app does (another client id: the app's session stays its own).
local function check_broker()
  local m = config.mqtt
  local mqtt = require "fotahost.mqtt"
  local c, err = mqtt.connect { url = m.url, client_id = "fotahost-doctor-" .. config.device_id, clean_session = true,
    username = m.username, password = m.password, cafile = m.cafile, capath = m.capath, insecure = m.insecure,
    connect_timeout = 5 }
  if c then
    local topic = ("mcs/%s/%s/+"):format(config.device_id, config.device_key)
    local granted
    granted, err = c:subscribe(topic, 1)
    c:close()
    if granted then
      results.command = true
      return ok("command server", "the broker %s accepts device %s and its subscription", m.url, config.device_id)
    end
  end
  -- (connect's error names the broker already)
  fail("command server", c and ("the broker %s: %s"):format(m.url, tostring(err)) or "the broker " .. tostring(err),
    "check " .. set_key("mqtt.url") .. ", the credentials (mqtt.username, mqtt.password) and, for mqtts://, "
    .. "mqtt.cafile")
end

if results.config and config.transport == "mqtt" then
  check_broker()
elseif not results.api then
  skip("command server", "the api check failed")
else
  local tcp = require "fotahost.tcp"
  local sock, err = tcp.connect(api_ip, api_port, 5)
  if sock then
    sock:close()
    results.command = true
    ok("command server", "%s:%d accepts connections", api_ip, api_port)
  else
    fail("command server", ("cannot connect to %s:%d: %s"):format(api_ip, api_port, tostring(err)),
      "check that a firewall lets TCP to that port through (the cloud hands out this address; "
      .. "for the local cloud on another machine: --host 0.0.0.0 and --public-url)")
  end
end

---------------------------------------------------------------- 4. serial port

local sim = vdev ~= nil
if not results.config then
  skip("serial port", "the config is not valid")
else
  local port_path = config.serial_port
  if sim and port_path == cfgmod.SPEC.serial_port[3] then port_path = vdev.serial_port(chip_dir) end
  local board_fix = ("start the virtual board: fotahost board --sim %s (%s exists only while it runs)")
    :format(chip_dir or "", port_path)
  if sim and not vdev.running(chip_dir) then
    fail("serial port", ("%s: no virtual board is running on %s"):format(port_path, chip_dir), board_fix)
  else
    local serial = require "fotahost.serial"
    local port, err = serial.open(port_path, { baud = config.serial_baud })
    if port then
      -- the rate the driver took, read back, not the one asked for
      local set = port:settings() or {}
      port:close()
      results.serial = true
      ok("serial port", "%s opens (%s baud)", port_path, tostring(set.baud or "unknown"))
    else
      err = tostring(err)
      local fix
      if sim then fix = board_fix
      elseif err:find("No such file", 1, true) then
        fix = set_key("serial_port") .. " (the 7688 Duo's MCU is on /dev/ttyS0)"
      elseif err:find("ermission denied", 1, true) then
        fix = "run as root, or give this user access to " .. port_path .. " (group dialout)"
      elseif err:find("busy", 1, true) then
        fix = "stop the program holding " .. port_path .. " (fuser " .. port_path .. " names it)"
      else
        fix = "check serial_port: " .. set_key("serial_port")
      end
      fail("serial port", err, fix)
    end
  end
end

---------------------------------------------------------------- 5. gpio

if not results.config then
  skip("gpio", "the config is not valid")
elseif sim then
  local dir = chip_dir
  local probe = dir .. "/.doctor-probe"
  if not is_dir(dir) then
    fail("gpio", dir .. ": no such directory (the simulated chip's lines live there)",
      ("create the simulated chip: mkdir -p %s && fotahost flash -c sim -P %s -U flash:w:FIRMWARE.hex")
        :format(quote(dir), quote(dir)))
  else
    local f, err = io.open(probe, "w")
    if f then
      f:close()
      os.remove(probe)
      results.gpio = true
      ok("gpio", "%s is a writable simulated chip directory", dir)
    else
      fail("gpio", tostring(err), "make " .. dir .. " writable for this user")
    end
  end
else
  local gpio = require "fotahost.gpio"
  local p, chip, backend = isp_opts.pins, isp_opts.chip, isp_opts.backend
  local nums = { p.reset, p.sck, p.mosi, p.miso }
  -- Opened as inputs and closed at once: nothing is driven.
  local lines, err = gpio.open{ backend = backend, chip = chip, lines = nums }
  if lines then
    lines:close()
    results.gpio = true
    ok("gpio", "%s lines %d (RESET), %d (SCK), %d (MOSI), %d (MISO) on %s open", backend,
      p.reset, p.sck, p.mosi, p.miso, chip)
  else
    err = tostring(err)
    local fix
    if err:find("ermission denied", 1, true) then
      fix = "run as root (GPIO access needs it on the board)"
    elseif backend == "gpiod" then
      fix = "check that /dev/" .. chip .. " exists (a kernel with the GPIO character device), "
        .. "or " .. set_key("backend", "sysfs") .. " (the factory 3.18 kernel)"
    elseif backend == "sysfs" then
      fix = "check /sys/class/gpio and that no other program exported these lines, "
        .. "or " .. set_key("backend", "gpiod")
    else
      fix = "the mmio backend needs /dev/mem and an MT7688: run as root on the board"
    end
    fail("gpio", err, fix)
  end
end

---------------------------------------------------------------- 6. signature

if not results.gpio then
  skip("signature", results.config and "the gpio check failed" or "the config is not valid")
elseif sim and not vdev.made(chip_dir) then
  fail("signature", chip_dir .. ": no simulated chip there yet",
    ("create one by flashing it: fotahost flash -c sim -P %s -U flash:w:FIRMWARE.hex"):format(quote(chip_dir)))
else
  local isp = require "fotahost.avr.isp"
  local s, err = isp.open(isp_opts)
  local sig
  if s then
    sig, err = s:connect()
    s:close() -- releases RESET: the MCU runs again
  end
  if sig then
    results.signature = true
    ok("signature", "%s: %s%s", sig, s.part.desc,
      s.revision and (", board revision " .. s.revision) or "")
  else
    local fix
    if sim then
      fix = "check the simulated chip in " .. chip_dir .. " (its faults file, its fuses.txt)"
    else
      fix = "check the MCU's power and the ISP wiring; on the 7688 Duo run "
        .. "`mt7688_pinmux set spi_s gpio` (or use backend = \"mmio\"); " .. set_key("part")
        .. " if the MCU is not the board's"
    end
    fail("signature", tostring(err), fix)
  end
end

---------------------------------------------------------------- 7. state dir

-- OpenWrt's system files, under $FOTAHOST_SYSROOT in tests.
local openwrt = io.open(cfgmod.OPENWRT_RELEASE, "r")
if openwrt then openwrt:close() end
local SYSROOT = os.getenv("FOTAHOST_SYSROOT") or ""
local INIT = "/etc/init.d/fotahost"
local KEEP_D = "/lib/upgrade/keep.d/fotahost"
local SYSUPGRADE_CONF = "/etc/sysupgrade.conf"

local function lines_of(p)
  local t = {}
  local f = io.open(SYSROOT .. p, "r")
  if not f then return t end
  for l in f:lines() do t[#t + 1] = l end
  f:close()
  return t
end

-- A line of a sysupgrade list as a Lua pattern for a whole path:
-- sysupgrade lets the shell expand the lines, so `*` and `?` are globs
-- within one path component. ([...] classes are not read: taken as text.)
local function glob_pattern(entry)
  local p = entry:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", "[^/]*"):gsub("%?", "[^/]")
  return "^" .. p .. "$"
end

-- The list that keeps `dir` across a sysupgrade (a line naming it or a
-- directory above it, or a glob matching one of them), or nil.
local function kept_across_sysupgrade(dir)
  dir = dir:gsub("/+$", "")
  for _, list in ipairs({ KEEP_D, SYSUPGRADE_CONF }) do
    for _, l in ipairs(lines_of(list)) do
      l = l:gsub("^%s+", ""):gsub("%s+$", ""):gsub("/+$", "")
      if l ~= "" and l:sub(1, 1) ~= "#" then
        local pattern, d = glob_pattern(l), dir
        while d ~= "" do
          if d:match(pattern) then return list end
          d = d:gsub("/[^/]*$", "")
        end
      end
    end
  end
end

-- The filesystem state_dir is on (or will be: the app makes it at start,
-- so the nearest directory above it that exists): a RAM disk loses the
-- journal and the last-known-good image in a power cut, and an update
-- needs room for the download, new.hex and the state files.
local function state_dir_check()
  local fota = require "fotahost.fota"
  local parts = require "fotahost.avr.parts"
  local dir, probe = config.state_dir, config.state_dir
  local st, volatile = fota.state_fs(probe)
  while not st and probe:find("/[^/]*$") do
    probe = probe:gsub("/[^/]*$", "")
    if probe == "" then probe = "/" end
    st, volatile = fota.state_fs(probe)
    if probe == "/" then break end
  end
  if not st then
    return fail("state dir", dir .. ": " .. tostring(volatile), "check state_dir: " .. set_key("state_dir"))
  end
  local part = parts.get(config.part or board.part)
  local app = board.app_size or (part and part.flash_size) or 32768
  -- an image filling the application section, as HEX text (16 bytes a line)
  local hex = (app + 15) // 16 * 44 + 11
  local need = hex + fota.room_needed(hex, st.bsize)
  local where = ("%s%s: %s"):format(dir, probe ~= dir and " (not made yet)" or "", st.type)
  if volatile and not config.volatile_state_ok then
    return fail("state dir", where .. ", lost at power-off (a RAM disk): updates are refused",
      set_key("state_dir") .. " (a directory on persistent storage: on OpenWrt /etc/fotahost/state), "
      .. "or volatile_state_ok = true if a RAM disk is meant")
  end
  local kind = volatile and "lost at power-off, allowed by volatile_state_ok" or "kept at power-off"
  if st.free < need then
    return fail("state dir", ("%s (%s), %d KiB free; an update of the whole application section needs %d KiB")
      :format(where, kind, st.free // 1024, (need + 1023) // 1024), "free space there, or move state_dir")
  end
  local kept = ""
  if openwrt then
    local list = kept_across_sysupgrade(dir)
    if not list then
      return fail("state dir", ("%s (%s): lost at a sysupgrade (not in %s nor %s)")
        :format(where, kind, KEEP_D, SYSUPGRADE_CONF),
        ("echo %s >> %s (or %s)"):format(dir, SYSUPGRADE_CONF, set_key("state_dir", "/etc/fotahost/state")))
    end
    kept = ", kept across sysupgrade by " .. list
  end
  results.state = true
  ok("state dir", "%s (%s%s), %d KiB free", where, kind, kept, st.free // 1024)
end

if not results.config then
  skip("state dir", "the config is not valid")
else
  state_dir_check()
end

---------------------------------------------------------------- 8. signing

-- trusted_keys (WARN without them) and the anti-rollback counter, once
-- there is one: fotahost/doctor/signing.lua.
local function say(name, tag, what, fix)
  if tag == "FAIL" then return fail(name, what, fix) end
  line(tag, name, what .. (fix and (" - " .. fix) or ""))
end

if not results.config then
  skip("signing", "the config is not valid")
else
  local signing = require "fotahost.doctor.signing"
  local name_keys = key_file("trusted_keys") == cfgmod.UCI_PATH
    and "uci add_list fotahost.main.trusted_keys=/etc/fotahost/keys/fotahost.pub; uci commit fotahost"
    or ('set trusted_keys = { "/etc/fotahost/keys/fotahost.pub" } in %s'):format(path)
  say("signing", signing.keys(config.trusted_keys, name_keys))
  local tag, what, fix = signing.counter(config.state_dir, opts.config)
  if tag then say("counter", tag, what, fix) end
end

---------------------------------------------------------------- 9. the service (OpenWrt)

local sys = require "fotahost.sys"

-- OPTION of section `main` in the UCI file /etc/config/fotahost, read as
-- the init script's config_load reads it, or nil.
local function uci_main_option(option)
  for _, s in ipairs(require("fotahost.uci").read(SYSROOT .. "/etc/config/fotahost") or {}) do
    if s.name == "main" then return s.options[option] end
  end
end

local TRUTH = require("fotahost.fota.uci_config").BOOL

-- A number of procd's answer as it says it (JSON numbers decode as floats).
local function num(v)
  return tostring(math.tointeger(v) or v)
end

-- The init script's line and whether it is linked to start at boot.
local function check_initscript()
  local text = table.concat(lines_of(INIT), "\n")
  if text == "" then
    return fail("service", "no " .. INIT .. " (the service is not installed)",
      "reinstall the package: opkg install --force-reinstall fotahost")
  end
  -- rc.common's `enabled`: the link S<START>fotahost
  local start = text:match("\nSTART=(%d+)")
  local link = "/etc/rc.d/S" .. (start or "??") .. "fotahost"
  if not (start and sys.lstat(SYSROOT .. link)) then
    return fail("service", ("%s is not started at boot (no %s)"):format(INIT, link), INIT .. " enable")
  end
  ok("service", "%s, started at boot (%s)", INIT, link)
end

local function check_enabled_option()
  local v = uci_main_option("enabled")
  if type(v) == "table" then v = table.concat(v, " ") end -- a list, written by mistake
  if TRUTH[v or "0"] then return ok("enabled", "fotahost.main.enabled is on") end
  fail("enabled", ("fotahost.main.enabled is %s: the service starts nothing")
    :format(v and ("'" .. v .. "'") or "not set"),
    "uci set fotahost.main.enabled=1; uci commit fotahost; " .. INIT .. " start")
end

-- procd's answer to `ubus call service list` for fotahost: its
-- instances (a table, maybe empty), or nil and why.
local function procd_instances()
  local p = io.popen("ubus call service list '{\"name\":\"fotahost\"}' 2>&1")
  local out = p:read("a")
  local okc, _, code = p:close()
  if not okc then return nil, ("ubus call service list failed (status %s): %s"):format(code, out:gsub("%s+$", "")) end
  if out:match("^%s*$") then return nil, "procd knows no fotahost service (not started, or stopped)" end
  local v = require("cjson.safe").decode(out)
  if type(v) ~= "table" then return nil, "ubus answered what is not JSON: " .. out:sub(1, 60) end
  if type(v.fotahost) ~= "table" then return nil, "procd knows no fotahost service (not started, or stopped)" end
  return type(v.fotahost.instances) == "table" and v.fotahost.instances or {}
end

local function check_running()
  local instances, why = procd_instances()
  local names = {}
  for name in pairs(instances or {}) do names[#names + 1] = name end
  table.sort(names)
  if not instances then
    fail("running", why, INIT .. " start; logread -e fotahost")
  elseif #names == 0 then
    fail("running", "procd has the fotahost service but no instance of it (enabled off when it started)",
      "uci set fotahost.main.enabled=1; uci commit fotahost; " .. INIT .. " start")
  else
    local inst = instances[names[1]]
    if inst.running == true then
      ok("running", "procd runs %s%s", table.concat(type(inst.command) == "table" and inst.command or {}, " "),
        inst.pid and (" (pid " .. num(inst.pid) .. ")") or "")
    else
      fail("running", ("procd's instance %s is not running (exit code %s; after a crash loop procd stops "
        .. "respawning)"):format(names[1], num(inst.exit_code)),
        "logread -e fotahost (why it exits), then " .. INIT .. " restart")
    end
    return inst
  end
end

local function check_respawn(inst)
  if not inst then return skip("respawn", "procd has no instance of fotahost") end
  -- procd clears respawn on an instance it gave up on (a crash loop), so
  -- its absence there says nothing of the init script
  if inst.running ~= true then return skip("respawn", "procd gave up: see running") end
  local r = inst.respawn
  if type(r) ~= "table" then
    return fail("respawn", "procd will not restart the app after a crash",
      "reinstall " .. INIT .. " (it sets respawn): opkg install --force-reinstall fotahost")
  end
  ok("respawn", "a crash is restarted after %s s; an exit within %s s counts as one; %s", num(r.timeout),
    num(r.threshold), r.retry == 0 and "retried forever" or ("procd gives up after " .. num(r.retry) .. " in a row"))
end

if openwrt then
  check_initscript()
  check_enabled_option()
  check_respawn(check_running())
end

os.exit(failed and 1 or 0)
