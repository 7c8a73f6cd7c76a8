-- `fotahost doctor`, as a user runs it: against the local cloud (`fotahost
-- cloud serve`) and the virtual board (`fotahost board --sim`), each a
-- separate process, with configurations right and wrong.
local h = require "helper"

local ID, KEY = "Dbxx9k", "TPJVxxxxBxBv"

describe("fotahost doctor", function()
  local dir, chip, cloud, board

  setup(function()
    dir = h.tmpdir()
    chip = dir .. "/chip"
    os.execute("mkdir " .. h.q(chip))
    local r = h.run({ "flash", "-q", "-c", "sim", "-P", chip, "-U", "flash:w:" .. h.firmware("serial-led.hex") })
    assert.are.equal(0, r.status, r.err)
    cloud = h.start_server({ "cloud", "serve", "--port", "0", "--device", ID .. ":" .. KEY,
      "--firmware-dir", dir .. "/fw", "--watch-stdin" }, { ready = "cloud http://(%S+):(%d+) tcp" })
    -- ready once Serial1's pty is published (the "port" captured is the pty's number)
    board = h.start_server({ "board", "--sim", chip }, { ready = "board (%S+): Serial1 on %S+ %(/dev/pts/(%d+)%)" })
  end)

  teardown(function()
    if board then
      os.execute("kill -TERM " .. board.pid .. " 2>/dev/null")
      board.stop()
    end
    if cloud then cloud.stop() end
    h.rmdir(dir)
  end)

  -- A config file from the defaults and `over` (a value "nil" removes a key,
  -- `raw` is added as Lua text); returns its path.
  local n = 0
  local function config(over, raw)
    local t = { device_id = ID, device_key = KEY, api = cloud.url, board = "sim", sim_dir = chip,
                state_dir = dir .. "/state", volatile_state_ok = true } -- /tmp: a tmpfs on some machines
    for k, v in pairs(over or {}) do
      if v == "nil" then t[k] = nil else t[k] = v end
    end
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = ("  %s = %q,"):format(k, t[k]) end
    if raw then parts[#parts + 1] = "  " .. raw end
    n = n + 1
    return h.write(("%s/config%d.lua"):format(dir, n), "return {\n" .. table.concat(parts, "\n") .. "\n}\n")
  end

  local function doctor(path, env)
    local args = { "doctor" }
    if path then args[2], args[3] = "--config", path end
    local r = h.run(args, { env = env })
    local lines = {}
    for l in (r.out or ""):gmatch("[^\n]+") do lines[#lines + 1] = l end
    r.lines = lines
    assert.are.equal("", r.err)
    assert.is_nil(r.out:find(KEY, 1, true), "the device key was printed:\n" .. r.out)
    return r
  end

  -- The check names, in order, with each line's tag.
  local function tags(r)
    local t = {}
    for i, l in ipairs(r.lines) do t[i] = l:match("^(%u+) +") .. " " .. l:match("^%u+ +([^:]+):") end
    return t
  end

  it("passes every check against a running cloud and virtual board", function()
    -- not the default rate: the line shows the rate the port was set to
    local path = config({ serial_baud = 115200 })
    local r = doctor(path)
    assert.are.equal(0, r.status, r.out)
    assert.are.same({ "OK config", "OK api", "OK command server", "OK serial port", "OK gpio", "OK signature",
      "OK state dir", "WARN signing" },
      tags(r))
    assert.are.equal(("OK   config: %s (device %s, board sim, simulated chip %s)"):format(path, ID, chip), r.lines[1])
    assert.matches("^OK   api: " .. cloud.url:gsub("%p", "%%%0") .. " accepts device " .. ID
      .. " %(command server 127%.0%.0%.1:%d+%)$", r.lines[2])
    assert.matches("^OK   command server: 127%.0%.0%.1:%d+ accepts connections$", r.lines[3])
    assert.are.equal("OK   serial port: " .. chip .. "/ttyS0 opens (115200 baud)", r.lines[4])
    assert.are.equal("OK   signature: 1E 95 87: ATmega32U4", r.lines[6])
    -- the MCU was held in reset only for the check: nothing was written
    assert.is_nil(h.read(chip .. "/violations.log"))
  end)

  it("takes the config from FOTAHOST_CONFIG, and says when there is none", function()
    local r = doctor(nil, { FOTAHOST_CONFIG = dir .. "/missing.lua" })
    assert.are.equal(1, r.status)
    assert.are.equal("FAIL config: " .. dir .. "/missing.lua: no configuration file - create it (a Lua file "
      .. "returning { device_id = ..., device_key = ..., api = ..., board = ... }), or give its path with "
      .. "--config or FOTAHOST_CONFIG", r.lines[1])
    assert.are.same({ "FAIL config", "SKIP api", "SKIP command server", "SKIP serial port", "SKIP gpio",
      "SKIP signature", "SKIP state dir", "SKIP signing" }, tags(r))
    assert.are.equal("SKIP api: not checked: the config is not valid", r.lines[2])

    r = doctor(nil, { FOTAHOST_CONFIG = config() })
    assert.are.equal(0, r.status, r.out)
    -- the default rate, the tutorial sketch's
    assert.are.equal("OK   serial port: " .. chip .. "/ttyS0 opens (57600 baud)", r.lines[4])
  end)

  it("takes the config from the UCI file alone, naming it, and names both files when there is neither", function()
    local uci = h.top .. "/tests/openwrt/uci.lua"
    local confdir = dir .. "/etc-config"
    os.execute("mkdir -p " .. h.q(confdir) .. " && touch " .. h.q(confdir .. "/fotahost"))
    for _, set in ipairs({ "main=fotahost", "main.device_id=" .. ID, "main.device_key=" .. KEY,
                           "main.api=" .. cloud.url, "main.board=sim", "main.sim_dir=" .. chip,
                           "main.state_dir=" .. dir .. "/state", "main.volatile_state_ok=1" }) do
      assert.are.equal(0, h.run({ uci, "-c", confdir, "-t", confdir .. "/.uci", "set", "fotahost." .. set }).status)
    end
    assert.are.equal(0, h.run({ uci, "-c", confdir, "-t", confdir .. "/.uci", "commit", "fotahost" }).status)
    local path = confdir .. "/fotahost"
    local r = doctor(nil, { FOTAHOST_UCI_CONFIG = path, FOTAHOST_CONFIG = "" })
    assert.are.equal(0, r.status, r.out)
    assert.are.equal(("OK   config: %s (device %s, board sim, simulated chip %s)"):format(path, ID, chip), r.lines[1])
    -- no keys: the fix adds one to the UCI list
    assert.are.equal("WARN signing: no trusted_keys: unsigned firmware is accepted from anyone who can reach the "
      .. "command channel - make a key pair with minisign and name its public key: uci add_list "
      .. "fotahost.main.trusted_keys=/etc/fotahost/keys/fotahost.pub; uci commit fotahost (README.md, Signed firmware)",
      r.lines[8])

    -- a fix names the uci commands for a key read from UCI, not a Lua file
    assert.are.equal(0, h.run({ uci, "-c", confdir, "-t", confdir .. "/.uci", "set",
      "fotahost.main.device_key=WrongKey1234" }).status)
    assert.are.equal(0, h.run({ uci, "-c", confdir, "-t", confdir .. "/.uci", "commit", "fotahost" }).status)
    r = doctor(nil, { FOTAHOST_UCI_CONFIG = path, FOTAHOST_CONFIG = "" })
    assert.are.equal(1, r.status)
    assert.are.equal(("FAIL api: 401: %s refused the device key of device %s - uci set fotahost.main.device_key=...; "
      .. "uci commit fotahost (the key the cloud shows for device %s)"):format(cloud.url, ID, ID), r.lines[2])

    r = doctor(nil, { FOTAHOST_UCI_CONFIG = dir .. "/no-uci", FOTAHOST_CONFIG = "" })
    assert.are.equal(1, r.status)
    assert.are.equal(("FAIL config: no configuration: neither %s/no-uci (UCI: uci set fotahost.main.device_id=...; "
      .. "uci commit fotahost) nor /etc/fotahost/config.lua (Lua: see examples/config.lua) is there - set the "
      .. "options in %s/no-uci (uci set fotahost.main.device_id=...; uci commit fotahost), or create "
      .. "/etc/fotahost/config.lua"):format(dir, dir), r.lines[1])
  end)

  it("names a bad key and a bad value of the config", function()
    local path = config({ state_dir = "nil" }, "statedir = '/tmp',")
    local r = doctor(path)
    assert.are.equal(1, r.status)
    assert.are.equal("FAIL config: " .. path .. ": unknown key statedir (did you mean state_dir?) - edit "
      .. path .. " (keys and their meaning: scripts/fotahost/fota/config.lua)", r.lines[1])
    assert.are.equal(8, #r.lines)

    -- a malformed key is named, its value is not shown
    path = config({ device_key = "TPJV xxxx", heartbeat = "nil" }, "heartbeat = 'often',")
    r = doctor(path)
    assert.are.equal(1, r.status)
    assert.matches("device_key must be the MCS device key %(4 or more characters, no commas or spaces%), "
      .. "got 9 characters %(not shown%)", r.lines[1])
    assert.matches("; " .. path:gsub("%p", "%%%0") .. ": heartbeat must be seconds between heartbeats, got \"often\"",
      r.lines[1])
    assert.is_nil(r.out:find("TPJV xxxx", 1, true))

    -- a key too short to mask is a config mistake, not a crash
    r = doctor(config({ device_key = "Kq7" }))
    assert.are.equal(1, r.status)
    assert.matches("^FAIL config: .*device_key must be the MCS device key", r.lines[1])
    assert.is_nil(r.err:find("traceback", 1, true), r.err)
  end)

  it("shows each override script in use: OK with its state, WARN stale, FAIL with its file and line", function()
    local ov = dir .. "/override"
    local env = { FOTAHOST_SCRIPTS_DIR = ov, EDITOR = "sed -i -e 's/^local M = {}$/local M = {} -- mine/'" }
    -- a copy made by fotahost scripts edit, edited; one made by it and left; one of the user's own, broken
    assert.are.equal(0, h.run({ "scripts", "edit", "fotahost.fota" }, { env = env }).status)
    env.EDITOR = "true"
    assert.are.equal(0, h.run({ "scripts", "edit", "fotahost.mcs" }, { env = env }).status)
    h.write(ov .. "/site.lua", "return {\n  a = 1\n  b = 2\n}\n")
    local r = doctor(config(), env)
    assert.are.equal(1, r.status, r.out)
    assert.are.same({ "OK config", "OK scripts", "OK scripts", "FAIL scripts", "OK api" },
      { table.unpack(tags(r), 1, 5) })
    local v = require("fotahost.host").version
    assert.are.equal(("OK   scripts: %s/fotahost/fota.lua (ok: from fotahost %s, edited)"):format(ov, v), r.lines[2])
    assert.are.equal(("OK   scripts: %s/fotahost/mcs.lua (ok: from fotahost %s, not edited)"):format(ov, v), r.lines[3])
    assert.are.equal(("FAIL scripts: %s/site.lua:3: '}' expected (to close '{' at line 1) near 'b' - fix it "
      .. "(fotahost check %s/site.lua after each save)"):format(ov, ov), r.lines[4])

    -- the bundled file moved on since the copy (its hash in the marker is not today's): a warning, no failure
    os.remove(ov .. "/site.lua")
    local f = ov .. "/fotahost/mcs.lua"
    h.write(f, (h.read(f):gsub("sha256 %x+", "sha256 " .. ("0"):rep(64), 1)))
    r = doctor(config(), env)
    assert.are.equal(0, r.status, r.out)
    assert.are.equal(("WARN scripts: %s: stale: the bundled fotahost/mcs.lua changed since this copy was made (from "
      .. "fotahost %s; now %s): see fotahost scripts diff fotahost/mcs.lua - take today's bundled file: move yours "
      .. "aside, fotahost scripts edit fotahost/mcs.lua, and bring your change back"):format(f, v, v), r.lines[3])
  end)

  it("says 401 and the fix for a wrong device key", function()
    local path = config({ device_key = "WrongKey1234" })
    local r = doctor(path)
    assert.are.equal(1, r.status)
    assert.are.equal(("FAIL api: 401: %s refused the device key of device %s - set device_key in %s (the key "
      .. "the cloud shows for device %s)"):format(cloud.url, ID, path, ID), r.lines[2])
    assert.are.equal("SKIP command server: not checked: the api check failed", r.lines[3])
    assert.are.same({ "OK config", "FAIL api", "SKIP command server", "OK serial port", "OK gpio", "OK signature",
      "OK state dir", "WARN signing" },
      tags(r))
    assert.is_nil(r.out:find("WrongKey1234", 1, true))
  end)

  it("says 404 for a device the cloud does not know", function()
    local path = config({ device_id = "nobody" })
    local r = doctor(path)
    assert.are.equal(1, r.status)
    assert.are.equal(("FAIL api: 404: %s does not know device nobody - check device_id: set device_id in %s "
      .. "(and that api is the cloud the device is registered with)"):format(cloud.url, path), r.lines[2])
  end)

  it("says unreachable when the cloud is down, and TLS when it does not speak TLS", function()
    local other = h.start_server({ "cloud", "serve", "--port", "0", "--device", ID .. ":" .. KEY, "--watch-stdin" },
      { ready = "cloud http://(%S+):(%d+) tcp" })
    local url = other.url
    assert.are.equal("exited", (other.stop()))
    local path = config({ api = url })
    local r = doctor(path)
    assert.are.equal(1, r.status)
    assert.matches("^FAIL api: unreachable: " .. url:gsub("%p", "%%%0") .. ": .*[Cc]onnect.* %- check the network "
      .. "and the api URL: set api in " .. path:gsub("%p", "%%%0") .. " %(for the local cloud: is `fotahost cloud "
      .. "serve` running on that port%?%)$", r.lines[2])
    assert.are.same({ "OK config", "FAIL api", "SKIP command server", "OK serial port", "OK gpio", "OK signature",
      "OK state dir", "WARN signing" },
      tags(r))

    r = doctor(config({ api = (cloud.url:gsub("^http:", "https:")) }))
    assert.are.equal(1, r.status)
    assert.matches("^FAIL api: TLS problem with https://127%.0%.0%.1:%d+: .* %- check the clock", r.lines[2])
  end)

  it("fails the serial port, GPIO and signature checks without a simulated chip", function()
    local nochip = dir .. "/nochip"
    local path = config({ sim_dir = nochip })
    local r = doctor(path)
    assert.are.equal(1, r.status)
    assert.are.same({ "OK config", "OK api", "OK command server", "FAIL serial port", "FAIL gpio", "SKIP signature",
      "OK state dir", "WARN signing" },
      tags(r))
    assert.are.equal(("FAIL serial port: %s/ttyS0: no virtual board is running on %s - start the virtual board: "
      .. "fotahost board --sim %s (%s/ttyS0 exists only while it runs)"):format(nochip, nochip, nochip, nochip),
      r.lines[4])
    assert.are.equal(("FAIL gpio: %s: no such directory (the simulated chip's lines live there) - create the "
      .. "simulated chip: mkdir -p '%s' && fotahost flash -c sim -P '%s' -U flash:w:FIRMWARE.hex")
      :format(nochip, nochip, nochip), r.lines[5])
    assert.are.equal("SKIP signature: not checked: the gpio check failed", r.lines[6])
    assert.is_nil(h.read(nochip .. "/flash.bin")) -- the doctor made no chip

    -- a directory with no chip in it yet: the signature check says how to make one
    os.execute("mkdir " .. h.q(nochip))
    r = doctor(path)
    assert.are.equal(("FAIL signature: %s: no simulated chip there yet - create one by flashing it: fotahost "
      .. "flash -c sim -P '%s' -U flash:w:FIRMWARE.hex"):format(nochip, nochip), r.lines[6])
    assert.is_nil(h.read(nochip .. "/flash.bin"))
  end)

  -- state_dir on a real tmpfs (h.tmpfs): a RAM disk fails the check unless
  -- volatile_state_ok says it is meant; a small one fails for its room.
  it("says whether state_dir survives a power cut, and whether it has room for an update", function()
    local state = dir .. "/ramstate"
    local function check(kib, over)
      over.state_dir = state
      local path = config(over)
      local fs = h.tmpfs(state, kib)
      local ok, r = pcall(h.run, { "doctor", "--config", path }, { shell_prefix = fs.wrap })
      fs.umount()
      assert(ok, r)
      return r.out:match("\n(%u+ +state dir: [^\n]*)"), r.status, path
    end
    local line, status, path = check(1024, { volatile_state_ok = false })
    assert.are.equal(1, status)
    assert.are.equal("FAIL state dir: " .. state .. ": tmpfs, lost at power-off (a RAM disk): updates are refused - "
      .. "set state_dir in " .. path .. " (a directory on persistent storage: on OpenWrt /etc/fotahost/state), "
      .. "or volatile_state_ok = true if a RAM disk is meant", line)
    line, status = check(1024, {})
    assert.are.equal(0, status, line)
    assert.are.equal("OK   state dir: " .. state .. ": tmpfs (lost at power-off, allowed by volatile_state_ok), "
      .. "1024 KiB free", line)
    line, status = check(64, {})
    assert.are.equal(1, status)
    assert.matches("^FAIL state dir: " .. state:gsub("%p", "%%%0") .. ": tmpfs %(lost at power%-off, allowed by "
      .. "volatile_state_ok%), 64 KiB free; an update of the whole application section needs %d+ KiB %- free "
      .. "space there, or move state_dir$", line)
  end)

  -- Signing: keys made with the real minisign, read as the app reads them;
  -- the anti-rollback counter in a state_dir of its own.
  describe("signing", function()
    local keydir, ids = nil, {}
    setup(function()
      keydir = dir .. "/keys"
      os.execute("mkdir " .. h.q(keydir))
      for i, name in ipairs({ "old", "new" }) do
        local pub = ("%s/%s.pub"):format(keydir, name)
        h.must(("minisign -G -W -p %s -s %s"):format(h.q(pub), h.q(keydir .. "/" .. name .. ".key")))
        ids[i] = h.read(pub):match("minisign public key (%x+)")
      end
      h.write(keydir .. "/bad.pub", "untrusted comment: minisign public key\nRWQnot-a-key\n")
    end)

    local function signing_line(r)
      for _, l in ipairs(r.lines) do
        if l:match("^%u+ +signing: ") then return l end
      end
    end
    local function keys(...)
      local quoted = {}
      for i, name in ipairs({ ... }) do quoted[i] = ("%q"):format(keydir .. "/" .. name .. ".pub") end
      return "trusted_keys = { " .. table.concat(quoted, ", ") .. " },"
    end

    it("warns loudly without trusted_keys, naming the fix for the Lua file, and fails nothing", function()
      local path = config()
      local r = doctor(path)
      assert.are.equal(0, r.status, r.out)
      assert.are.equal("WARN signing: no trusted_keys: unsigned firmware is accepted from anyone who can reach the "
        .. "command channel - make a key pair with minisign and name its public key: set trusted_keys = { "
        .. "\"/etc/fotahost/keys/fotahost.pub\" } in " .. path .. " (README.md, Signed firmware)", signing_line(r))
    end)

    it("names the ids of the trusted keys, and fails a key the app could not read", function()
      local r = doctor(config(nil, keys("old", "new")))
      assert.are.equal(0, r.status, r.out)
      assert.are.equal(("OK   signing: 2 trusted keys: %s, %s; unsigned firmware is refused"):format(ids[1], ids[2]),
        signing_line(r))

      local path = config(nil, keys("old", "missing"))
      r = doctor(path)
      assert.are.equal(1, r.status)
      assert.are.equal("FAIL signing: trusted key " .. keydir .. "/missing.pub: No such file or directory (the app "
        .. "would not start) - put the minisign public key there (the .pub file minisign -G writes), or name the "
        .. "right file: set trusted_keys = { \"/etc/fotahost/keys/fotahost.pub\" } in " .. path, signing_line(r))

      r = doctor(config(nil, keys("new", "bad")))
      assert.are.equal(1, r.status)
      assert.matches("^FAIL signing: trusted key " .. h.literal(keydir)
        .. "/bad%.pub: .+ %(the app would not start%) %- ", signing_line(r))
    end)

    it("says the highest counter accepted, and fails an unreadable counter.json with the way out", function()
      local state = dir .. "/signed-state"
      os.execute("mkdir " .. h.q(state))
      local path = config({ state_dir = state }, keys("new"))
      local r = doctor(path)
      assert.are.equal(0, r.status, r.out)
      assert.are.equal("OK signing", tags(r)[#r.lines]) -- no counter yet: no line for it

      h.write(state .. "/counter.json", '{"counter": 17, "version": "2.0", "key_id": "' .. ids[2] .. '", "at": 1}\n')
      r = doctor(path)
      assert.are.equal(0, r.status, r.out)
      assert.are.equal("OK   counter: " .. state .. "/counter.json: 17 is the highest counter accepted (version 2.0): "
        .. "an image signed with a lower one is refused", r.lines[#r.lines])

      h.write(state .. "/counter.json", '{"counter": 17, "vers')
      r = doctor(path)
      assert.are.equal(1, r.status)
      assert.are.equal("FAIL counter: " .. state .. "/counter.json cannot be read (not valid JSON): signed updates are "
        .. "refused - on the board, install the image that should run: fotahost fota --allow-downgrade --url URL "
        .. "--version V --config '" .. path .. "' (it writes the counter again)", r.lines[#r.lines])
    end)
  end)

  -- On OpenWrt (its release file exists): the service checks, against a
  -- scratch root (spec/support/openwrt.lua) where the package's init script
  -- is run through rc.common and procd.sh, and procd answers through ubus.
  describe("on OpenWrt", function()
    local openwrt = require "support.openwrt"
    local root
    before_each(function()
      root = openwrt.root()
      h.write(root.dir .. "/etc/openwrt_release", "DISTRIB_ID='OpenWrt'\n")
      os.execute("mkdir -p " .. h.q(root.dir .. "/lib/upgrade/keep.d"))
      h.write(root.dir .. "/lib/upgrade/keep.d/fotahost", h.read(openwrt.FILES .. "/fotahost.keep"))
    end)
    after_each(function() root:remove() end)

    local function doctor_on(path)
      local env = root:env()
      env.FOTAHOST_SYSROOT = root.dir
      env.FOTAHOST_OPENWRT_RELEASE = root.dir .. "/etc/openwrt_release"
      env.PATH = openwrt.STANDINS .. ":" .. os.getenv("PATH")
      return doctor(path, env)
    end
    local function last(r, k) return r.lines[#r.lines - k + 1] end
    local SERVICE = "/etc/init.d/fotahost"

    it("passes the service checks once installed, enabled (uci and init.d) and started", function()
      local f = assert(io.open(root.dir .. "/lib/upgrade/keep.d/fotahost", "a"))
      f:write(dir .. "/state/\n")
      f:close()
      root:set("enabled", "1")
      assert.are.equal(0, root:service("enable").status)
      assert.are.equal(0, root:service("start").status)
      local r = doctor_on(config())
      assert.are.equal(0, r.status, r.out)
      assert.are.same({ "OK config", "OK api", "OK command server", "OK serial port", "OK gpio", "OK signature",
        "OK state dir", "WARN signing", "OK service", "OK enabled", "OK running", "OK respawn" }, tags(r))
      assert.matches("^OK   state dir: " .. h.literal(dir) .. "/state %(not made yet%): %w+ %(kept at power%-off, "
        .. "kept across sysupgrade by /lib/upgrade/keep%.d/fotahost%), %d+ KiB free$", r.lines[7])
      assert.are.equal("OK   service: " .. SERVICE .. ", started at boot (/etc/rc.d/S95fotahost)", last(r, 4))
      assert.are.equal("OK   enabled: fotahost.main.enabled is on", last(r, 3))
      assert.are.equal("OK   running: procd runs /usr/bin/fotahost app", last(r, 2))
      assert.are.equal("OK   respawn: a crash is restarted after 10 s; an exit within 300 s counts as one; procd "
        .. "gives up after 5 in a row", last(r, 1))
    end)

    it("keeps OpenWrt's default state_dir across sysupgrade by the package's keep.d list", function()
      local r = doctor_on(config({ state_dir = "nil" }))
      assert.matches("^OK   state dir: /etc/fotahost/state %(not made yet%): %S+ %(.*, kept across sysupgrade by "
        .. "/lib/upgrade/keep%.d/fotahost%), %d+ KiB free$", r.lines[7])
    end)

    it("keeps state_dir across sysupgrade by a glob of /etc/sysupgrade.conf, as sysupgrade expands it", function()
      local path = config()
      local parent = dir:match("^(.*)/[^/]+$")
      local function state_line(conf)
        h.write(root.dir .. "/etc/sysupgrade.conf", conf)
        return doctor_on(path).lines[7]
      end
      -- globs that match neither state_dir nor a directory above it
      assert.matches("^FAIL state dir: .*: lost at a sysupgrade", state_line(dir .. "/st*x\n" .. dir .. "/stat?/x\n"
        .. parent .. "/*/state/x\n"))
      for _, glob in ipairs({ dir .. "/st?te", dir .. "/*", parent .. "/fotahost-spec-*", parent .. "/*/state" }) do
        assert.matches("^OK   state dir: .*, kept across sysupgrade by /etc/sysupgrade%.conf%), %d+ KiB free$",
          state_line("# kept\n" .. glob .. "\n"), glob)
      end
    end)

    it("says FAIL with the fix for each service item as the package leaves it (not enabled, enabled off)", function()
      local path = config()
      -- a path beside state_dir, not above it, does not keep it
      h.write(root.dir .. "/etc/sysupgrade.conf", "# kept\n" .. dir .. "/stat\n")
      local r = doctor_on(path)
      assert.are.equal(1, r.status)
      assert.are.same({ "FAIL state dir", "WARN signing", "FAIL service", "FAIL enabled", "FAIL running",
        "SKIP respawn" }, { table.unpack(tags(r), 7) })
      assert.are.equal(("FAIL state dir: %s/state (not made yet): %s (kept at power-off): lost at a sysupgrade (not "
        .. "in /lib/upgrade/keep.d/fotahost nor /etc/sysupgrade.conf) - echo %s/state >> /etc/sysupgrade.conf (or "
        .. "set state_dir = \"/etc/fotahost/state\" in %s)"):format(dir, r.lines[7]:match(": (%w+) %(kept"), dir, path),
        r.lines[7])
      assert.are.equal("FAIL service: " .. SERVICE .. " is not started at boot (no /etc/rc.d/S95fotahost) - "
        .. SERVICE .. " enable", last(r, 4))
      assert.are.equal("FAIL enabled: fotahost.main.enabled is '0': the service starts nothing - uci set "
        .. "fotahost.main.enabled=1; uci commit fotahost; " .. SERVICE .. " start", last(r, 3))
      assert.are.equal("FAIL running: procd knows no fotahost service (not started, or stopped) - " .. SERVICE
        .. " start; logread -e fotahost", last(r, 2))
      assert.are.equal("SKIP respawn: not checked: procd has no instance of fotahost", last(r, 1))

      -- started while enabled is off: procd has the service, with no instance
      root:service("enable")
      root:service("start")
      r = doctor_on(path)
      assert.are.same({ "OK service", "FAIL enabled", "FAIL running", "SKIP respawn" }, { table.unpack(tags(r), 9) })
      assert.are.equal("FAIL running: procd has the fotahost service but no instance of it (enabled off when it "
        .. "started) - uci set fotahost.main.enabled=1; uci commit fotahost; " .. SERVICE .. " start", last(r, 2))

      -- no init script at all
      os.remove(root.dir .. SERVICE)
      r = doctor_on(path)
      assert.are.equal("FAIL service: no " .. SERVICE .. " (the service is not installed) - reinstall the package: "
        .. "opkg install --force-reinstall fotahost", last(r, 4))
    end)

    it("says FAIL when procd gave up on a crashing app, or would not restart it", function()
      root:set("enabled", "1")
      root:service("enable")
      root:service("start")
      -- procd's answer after a crash loop: the instance stays, not running,
      -- and without respawn (procd clears it when it gives up)
      local state = root:procd()
      local inst = state.fotahost.instances.instance1
      inst.running, inst.exit_code, inst.respawn = false, 1, nil
      root:procd(state)
      local r = doctor_on(config())
      assert.are.equal(1, r.status)
      assert.are.equal("FAIL running: procd's instance instance1 is not running (exit code 1; after a crash loop "
        .. "procd stops respawning) - logread -e fotahost (why it exits), then " .. SERVICE .. " restart", last(r, 2))
      -- not a respawn to reinstall: the init script's is fine
      assert.are.equal("SKIP respawn: not checked: procd gave up: see running", last(r, 1))
      -- an init script without respawn: procd reports none
      inst.running, inst.exit_code, inst.respawn = true, nil, nil
      root:procd(state)
      r = doctor_on(config())
      assert.are.equal("OK running", tags(r)[#r.lines - 1])
      assert.are.equal("FAIL respawn: procd will not restart the app after a crash - reinstall " .. SERVICE
        .. " (it sets respawn): opkg install --force-reinstall fotahost", last(r, 1))
    end)
  end)

  it("has --help, and refuses unknown arguments", function()
    local r = h.run({ "doctor", "--help" })
    assert.are.equal(0, r.status)
    assert.matches("usage: fotahost doctor %[%-%-config PATH%]", r.out)
    r = h.run({ "doctor", "--frobnicate" })
    assert.are.equal(2, r.status)
    assert.matches("fotahost doctor: unknown argument '%-%-frobnicate'", r.err)
  end)
end)
