-- fotahost.fota.config: every key checked, each problem named with its key,
-- the defaults filled in, and the file read in an environment of its own.
local h = require "helper"
local config = require "fotahost.fota.config"

describe("fotahost.fota.config", function()
  local BASE = { device_id = "Dev1", device_key = "Key12345", board = "sim", sim_dir = "/tmp/chip" }

  local function with(over, drop)
    local t = {}
    for k, v in pairs(BASE) do t[k] = v end
    for k, v in pairs(over or {}) do t[k] = v end
    if drop then t[drop] = nil end
    return t
  end

  -- the one problem config.check finds in BASE changed by `over`
  local function refused(over, drop)
    local c, err = config.check(with(over, drop), "cfg.lua")
    assert.is_nil(c)
    assert.is_string(err)
    assert.is_nil(err:find("\n"), "more than one problem: " .. err)
    return err
  end

  it("fills in the defaults", function()
    local probe = config.OPENWRT_RELEASE
    config.OPENWRT_RELEASE = "/nonexistent/openwrt_release"
    local c = assert(config.check(with()))
    config.OPENWRT_RELEASE = probe
    assert.are.equal("https://api.mediatek.com", c.api)
    assert.are.equal("/var/lib/fotahost", c.state_dir)
    assert.is_false(c.volatile_state_ok)
    assert.are.equal("fota_status", c.status_channel)
    assert.are.equal(0x0F, c.lock)
    assert.are.equal(50, c.heartbeat)
    assert.are.equal(57600, c.serial_baud)
    assert.is_false(c.insecure)
    assert.is_nil(c.max_download)
    -- a download has a deadline and a rate to keep, unless the config says otherwise
    assert.are.same({ timeout = 600, min_rate = 256, min_rate_after = 60 }, c.http)
  end)

  -- On OpenWrt /var is a link to /tmp, a RAM disk: state_dir defaults to
  -- the overlay there. The probe file is $FOTAHOST_OPENWRT_RELEASE here,
  -- as a user would simulate it, and a given state_dir always wins.
  it("defaults state_dir to persistent storage: /etc/fotahost/state on OpenWrt, /var/lib/fotahost elsewhere", function()
    local dir = h.tmpdir()
    local release = h.write(dir .. "/openwrt_release", "DISTRIB_ID='OpenWrt'\nDISTRIB_RELEASE='24.10.0'\n")
    local show = "io.write(assert(require('fotahost.fota.config').check({ device_id = 'D1', device_key = 'Key1', "
      .. "board = 'sim', sim_dir = '/tmp/chip'%s })).state_dir)"
    local r = h.run({ "-e", show:format("") }, { env = { FOTAHOST_OPENWRT_RELEASE = release } })
    assert.are.same({ 0, "/etc/fotahost/state" }, { r.status, r.out }, r.err)
    r = h.run({ "-e", show:format("") }, { env = { FOTAHOST_OPENWRT_RELEASE = dir .. "/none" } })
    assert.are.same({ 0, "/var/lib/fotahost" }, { r.status, r.out }, r.err)
    r = h.run({ "-e", show:format(", state_dir = '/srv/fota'") }, { env = { FOTAHOST_OPENWRT_RELEASE = release } })
    assert.are.same({ 0, "/srv/fota" }, { r.status, r.out }, r.err)
    h.rmdir(dir)
  end)

  it("takes volatile_state_ok as a boolean only", function()
    assert.is_true(assert(config.check(with({ volatile_state_ok = true }))).volatile_state_ok)
    assert.are.equal('cfg.lua: volatile_state_ok must be true or false (true: state_dir may be a RAM disk, lost at '
      .. 'power-off), got "yes"', refused({ volatile_state_ok = "yes" }))
  end)

  it("needs sim_dir when the board is the simulated one", function()
    assert.are.equal('cfg.lua: sim_dir is missing: board = "sim" needs the simulated chip\'s directory',
      refused(nil, "sim_dir"))
  end)

  it("needs the device id and key", function()
    assert.are.equal("cfg.lua: device_id is missing: the MCS device id (a string without commas or spaces)",
      refused(nil, "device_id"))
    assert.are.equal("cfg.lua: device_key must be the MCS device key (4 or more characters, no commas or spaces), "
      .. "got 9 characters (not shown)", refused({ device_key = "Key 12345" }))
    assert.matches("device_key must be the MCS device key", refused({ device_key = "Key" }))
  end)

  it("takes a lock byte from 0 to 255, or false", function()
    for _, v in ipairs({ 0, 0xCF, 255 }) do assert.are.equal(v, assert(config.check(with({ lock = v }))).lock) end
    assert.is_false(assert(config.check(with({ lock = false }))).lock)
    for _, v in ipairs({ 256, -1 }) do
      assert.are.equal(("cfg.lua: lock must be the lock byte written after a flash (0..255), or false for none, "
        .. "got %d (a number)"):format(v), refused({ lock = v }))
    end
    assert.matches("^cfg%.lua: lock must be .* got 15%.0 %(a number%)$", refused({ lock = 15.0 }))
  end)

  it("takes only an http:// or https:// api", function()
    assert.are.equal('cfg.lua: api must be an http:// or https:// base URL, got "api.mediatek.com"',
      refused({ api = "api.mediatek.com" }))
    assert.are.equal('cfg.lua: api must be an http:// or https:// base URL, got "ftp://api.mediatek.com"',
      refused({ api = "ftp://api.mediatek.com" }))
    assert.are.equal("http://127.0.0.1:8080", assert(config.check(with({ api = "http://127.0.0.1:8080" }))).api)
  end)

  it("takes only a positive number as max_download, and an integer rate as serial_baud", function()
    assert.are.equal('cfg.lua: max_download must be the largest download accepted, in bytes (default: 6x the '
      .. 'flash size), got "1M"', refused({ max_download = "1M" }))
    assert.matches("^cfg%.lua: max_download must be .* got 0 %(a number%)$", refused({ max_download = 0 }))
    -- infinity and NaN are numbers Lua compares, but bound nothing
    assert.matches("^cfg%.lua: max_download must be .* got inf %(a number%)$", refused({ max_download = 1 / 0 }))
    assert.matches("^cfg%.lua: http%.min_rate must be .* got %-?nan %(a number%)$",
      refused({ http = { min_rate = 0 / 0 } }))
    assert.matches("^cfg%.lua: http%.low_speed_time must be .* got inf %(a number%)$",
      refused({ http = { low_speed_time = math.huge } }))
    assert.are.equal(1048576, assert(config.check(with({ max_download = 1048576 }))).max_download)
    assert.matches("^cfg%.lua: serial_baud must be .* got 57600%.5 %(a number%)$", refused({ serial_baud = 57600.5 }))
    assert.matches('^cfg%.lua: serial_baud must be .* got "fast"$', refused({ serial_baud = "fast" }))
  end)

  it("takes trusted_keys as one path or a list of one or more, never an empty list", function()
    assert.are.same({ "/k/a.pub" }, assert(config.check(with({ trusted_keys = "/k/a.pub" }))).trusted_keys)
    assert.are.same({ "/k/a.pub", "/k/b.pub" },
      assert(config.check(with({ trusted_keys = { "/k/a.pub", "/k/b.pub" } }))).trusted_keys)
    assert.is_nil(assert(config.check(with({}))).trusted_keys)
    -- an empty list would turn the signature check off unseen
    for _, bad in ipairs({ {}, { "/k/a.pub", 5 }, { "" }, { a = "/k/a.pub" }, 42 }) do
      assert.matches("^cfg%.lua: trusted_keys must be the path of a minisign public key",
        refused({ trusted_keys = bad }))
    end
  end)

  it("needs the broker's URL for MQTT, without credentials in it, and never shows the password", function()
    assert.are.equal("tcp", assert(config.check(with({}))).transport)
    assert.are.equal('cfg.lua: mqtt.url is missing: transport = "mqtt" needs the broker\'s URL',
      refused({ transport = "mqtt" }))
    local c = assert(config.check(with({ transport = "mqtt", mqtt = { url = "mqtts://broker.lan:8883" } })))
    assert.are.equal("mqtts://broker.lan:8883", c.mqtt.url)
    assert.matches("^cfg%.lua: mqtt%.url must be the broker: .* got \"mqtt://u:pw@broker\"$",
      refused({ transport = "mqtt", mqtt = { url = "mqtt://u:pw@broker" } }))
    assert.matches('^cfg%.lua: transport must be "tcp" .* got "amqp"$', refused({ transport = "amqp" }))
    local err = refused({ mqtt = { url = "mqtt://b", password = { "s3cret-pass" } } })
    assert.matches("mqtt%.password must be its password %(never logged%), got a table$", err)
    err = refused({ mqtt = { url = "mqtt://b", password = "s3cret-pass", keepalive = "x" } })
    assert.is_nil(err:find("s3cret", 1, true), err)
  end)

  it("takes a status channel of letters, digits, _ and -", function()
    assert.matches('^cfg%.lua: status_channel must be a data channel id %(letters, digits, _ and %-%), '
      .. 'got "fota status"$', refused({ status_channel = "fota status" }))
  end)

  it("names an unknown key, and the key it most likely meant", function()
    assert.are.equal("cfg.lua: unknown key statedir (did you mean state_dir?)", refused({ statedir = "/tmp" }))
    assert.are.equal("cfg.lua: unknown key colour", refused({ colour = "blue" }))
  end)

  it("lists every problem, one per line", function()
    local c, err = config.check(with({ lock = 300, heartbeat = "often" }, "device_id"), "cfg.lua")
    assert.is_nil(c)
    local lines = {}
    for l in err:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(3, #lines, err)
  end)

  it("folds insecure into the HTTP options, leaving the others", function()
    local c = assert(config.check(with({ insecure = true, http = { retries = 1 } })))
    assert.are.same({ retries = 1, insecure = true, timeout = 600, min_rate = 256, min_rate_after = 60 }, c.http)
  end)

  it("checks every key of http, naming it, as it checks the others", function()
    assert.are.equal("cfg.lua: http.cainfo must be the path of a PEM file of CA certificates, got 5 (a number)",
      refused({ http = { cainfo = 5 } }))
    assert.are.equal("cfg.lua: http.capath must be a directory of CA certificates, got a table",
      refused({ http = { capath = {} } }))
    assert.matches('^cfg%.lua: http%.timeout must be the seconds a firmware download may take in all, '
      .. 'retries included, got "10"$', refused({ http = { timeout = "10" } }))
    assert.matches("^cfg%.lua: http%.timeout must be .* got 0 %(a number%)$", refused({ http = { timeout = 0 } }))
    assert.matches("^cfg%.lua: http%.min_rate must be .* got %-1 %(a number%)$", refused({ http = { min_rate = -1 } }))
    assert.matches("^cfg%.lua: http%.retries must be .* got 1%.5 %(a number%)$", refused({ http = { retries = 1.5 } }))
    assert.matches('^cfg%.lua: http%.insecure must be .* got "yes"$', refused({ http = { insecure = "yes" } }))
    assert.are.equal("cfg.lua: unknown key http.timout", refused({ http = { timout = 5 } }))
    assert.are.equal("cfg.lua: unknown key http.minrate (did you mean http.min_rate?)",
      refused({ http = { minrate = 5 } }))
    assert.matches("^cfg%.lua: http must be a table of options for HTTP .* got 5 %(a number%)$", refused({ http = 5 }))
    -- what is given is kept, the rest filled in
    local c = assert(config.check(with({ http = { cainfo = "/etc/ca.pem", timeout = 30, min_rate = 0 } })))
    assert.are.same({ cainfo = "/etc/ca.pem", timeout = 30, min_rate = 0, min_rate_after = 60 }, c.http)
  end)

  it("refuses a bad http key when `fotahost fota` starts, before any download", function()
    local dir = h.tmpdir()
    local path = h.write(dir .. "/config.lua", [[
return { device_id = "Dev1", device_key = "Key12345", board = "sim", sim_dir = "/tmp/chip",
         state_dir = "/nonexistent/state", http = { cainfo = 5 } }
]])
    -- a URL nothing listens on: a download would fail otherwise, or be retried
    -- (timeout: with the check broken, the download is retried for minutes)
    local r = h.run({ "fota", "--config", path, "--url", "https://127.0.0.1:9/fw.hex" },
      { shell_prefix = "timeout 20" })
    assert.are.equal(1, r.status)
    assert.are.equal("", r.out)
    assert.are.equal("fotahost fota: " .. path .. ": http.cainfo must be the path of a PEM file of CA "
      .. "certificates, got 5 (a number)\n", r.err)
    h.rmdir(dir)
  end)

  it("refuses a bad option of the UCI file when `fotahost fota` starts, naming the file and the option", function()
    local dir = h.tmpdir()
    local path = h.write(dir .. "/fotahost", "\nconfig fotahost 'main'\n\toption device_id 'Dev1'\n"
      .. "\toption device_key 'Key12345'\n\toption board 'sim'\n\toption sim_dir '/tmp/chip'\n"
      .. "\toption state_dir '/nonexistent/state'\n\toption http_retries 'many'\n")
    local r = h.run({ "fota", "--url", "https://127.0.0.1:9/fw.hex" }, { shell_prefix = "timeout 20",
      env = { FOTAHOST_UCI_CONFIG = path, FOTAHOST_CONFIG = "" } })
    assert.are.equal(1, r.status)
    assert.are.equal("fotahost fota: " .. path .. ": fotahost.main.http_retries must be the further tries after a "
      .. 'failure (an integer; downloads: default 3), got "many"\n', r.err)
    h.rmdir(dir)
  end)

  it("stops the app on a bad config with one line naming the file and the key, no traceback", function()
    local dir = h.tmpdir()
    local path = h.write(dir .. "/config.lua", [[
return { device_id = "Dev1", device_key = "Key12345", board = "sim", sim_dir = "/tmp/chip",
         state_dir = "/nonexistent/state", http = { cainfo = 5 } }
]])
    -- (timeout: with the check broken, the app would run on, retrying the cloud)
    local r = h.run({ "app" }, { shell_prefix = "timeout 20",
      env = { FOTAHOST_CONFIG = path, FOTAHOST_LOG = "stderr" } })
    assert.are.equal(1, r.status)
    assert.matches("^%S+ error +app: " .. path:gsub("%p", "%%%0") .. ": http.cainfo must be the path of a PEM "
      .. "file of CA certificates, got 5 %(a number%)\n$", r.err)
    h.rmdir(dir)
  end)

  -- Lua's own message quotes the text near the mistake: here the key, its
  -- closing quote missing, said by app (before the log knows the key),
  -- fota and doctor.
  it("says where a syntax error is, never the text there (a device key)", function()
    local dir = h.tmpdir()
    local path = h.write(dir .. "/bad.lua", 'return { device_id = "Dev1", device_key = "TPJVsecret1234 }\n')
    local want = path .. ":1: unfinished string"
    local env = { FOTAHOST_UCI_CONFIG = "", FOTAHOST_LOG = "stderr" }
    local r = h.run({ "app", "--config", path }, { shell_prefix = "timeout 20", env = env })
    assert.are.equal(1, r.status)
    assert.matches("^%S+ error +app: " .. h.literal(want) .. "\n$", r.err)
    r = h.run({ "fota", "--config", path, "--url", "https://127.0.0.1:9/fw.hex" }, { env = env })
    assert.are.equal(1, r.status)
    assert.are.equal("fotahost fota: " .. want .. "\n", r.err)
    r = h.run({ "doctor", "--config", path }, { env = env })
    assert.are.equal(1, r.status)
    assert.are.equal("FAIL config: " .. want .. " - edit " .. path .. " (keys and their meaning: "
      .. "scripts/fotahost/fota/config.lua)", r.out:match("^[^\n]*"))
    for _, out in ipairs({ r.out, r.err }) do assert.is_nil(out:find("secret", 1, true), out) end
    h.rmdir(dir)
  end)

  it("reads a file in an environment of its own, naming the file in its errors", function()
    local dir = h.tmpdir()
    local path = h.write(dir .. "/config.lua", [[
leaked_global = true
return { device_id = "Dev1", device_key = "Key12345", board = "sim", sim_dir = "/tmp/chip", lock = 300 }
]])
    local c, err = config.load(path)
    assert.is_nil(c)
    assert.are.equal(path .. ": lock must be the lock byte written after a flash (0..255), or false for none, "
      .. "got 300 (a number)", err)
    assert.is_nil(rawget(_G, "leaked_global"))
    c, err = config.load(dir .. "/missing.lua")
    assert.is_nil(c)
    assert.are.equal(dir .. "/missing.lua: no configuration file (set FOTAHOST_CONFIG, or create it: see "
      .. "examples/config.lua)", err)
    h.rmdir(dir)
  end)
end)
