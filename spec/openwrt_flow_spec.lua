-- The whole OpenWrt flow, under make board-test: a fresh root laid out as
-- opkg installs the two packages (make board-package) over a base system
-- (musl, libcurl, mbedTLS, libsodium: the board's own packages), their postinst run
-- as opkg runs it, the UCI config written with the README's uci commands,
-- the service started as procd starts it (the command the init script
-- declares, run under qemu against the root), and a push from the local
-- cloud flashed onto the simulated chip, with the cloud told the truth.
--
-- OpenWrt's userland (rc.common, procd.sh, functions.sh, ubus, uci) is the
-- stand-ins of tests/openwrt/; the cloud runs natively.
local h = require "helper"
local openwrt = require "support.openwrt"

local arch = os.getenv("FOTAHOST_BOARD_ARCH") or "mipsel_24kc"
local qemu = os.getenv("FOTAHOST_BOARD_QEMU")
local WAIT = 120 -- seconds: the app runs emulated on a loaded 2-core machine

if not (h.board and qemu) then
  describe("the OpenWrt flow", function()
    pending("runs under make board-test, on the packages make board-package writes")
  end)
  return
end

local q = h.q

local must = h.must

-- The package make board-package wrote for `name`.
local function ipk(name)
  local path = must(("ls %s/build/board/%s_*_%s.ipk"):format(q(h.top), name, arch)):match("[^\n]+")
  return assert(path, "no " .. name .. " package: make board-package")
end

-- Installs package `name` into `root` as opkg does: its data unpacked at
-- /, its control files under /usr/lib/opkg/info, then its postinst with
-- IPKG_INSTROOT set (as when opkg installs into an image).
local function opkg_install(root, name)
  local tmp = h.tmpdir()
  must(("cd %s && tar -xzf %s && tar -xzf data.tar.gz -C %s && mkdir control && tar -xzf control.tar.gz -C control")
    :format(q(tmp), q(ipk(name)), q(root)))
  local info = root .. "/usr/lib/opkg/info/"
  must(("mkdir -p %s && tar -tzf %s/data.tar.gz | sed 's,^\\.,,; /\\/$/d' > %s"):format(
    q(info), q(tmp), q(info .. name .. ".list")))
  for _, f in ipairs({ "postinst", "prerm", "conffiles", "control" }) do
    must(("[ ! -e %s/control/%s ] || cp -p %s/control/%s %s"):format(q(tmp), f, q(tmp), f, q(info .. name .. "." .. f)))
  end
  h.rmdir(tmp)
  if h.read(info .. name .. ".postinst") then
    must(("cd %s && env IPKG_INSTROOT=%s sh %s configure"):format(q(root), q(root), q(info .. name .. ".postinst")))
  end
end

describe("the OpenWrt flow (" .. arch .. ")", function()
  local root, chip, fwdir, cloud, app
  local sys_root -- the stand-in root object (support.openwrt) over `root`

  local function uci(...)
    local r = h.run({ h.top .. "/tests/openwrt/uci.lua", "-c", root .. "/etc/config", "-t", root .. "/tmp/.uci", ... })
    assert(r.status == 0, table.concat({ ... }, " ") .. ": " .. (r.err or ""))
    return r.out
  end

  setup(function()
    root = h.tmpdir()
    -- the base system the packages' Depends name: musl, libcurl, mbedTLS, libsodium
    must(("cp -RP %s/lib %s/ && mkdir -p %s/usr/lib %s/tmp %s/etc && cp -P %s/usr/lib/*.so.* %s/usr/lib/")
      :format(q(h.board.root), q(root), q(root), q(root), q(root), q(h.board.root), q(root)))
    h.write(root .. "/etc/openwrt_release", "DISTRIB_ID='OpenWrt'\n")
    -- OpenWrt's scripts where OpenWrt keeps them (the stand-ins)
    must(("mkdir -p %s/lib/functions && cp %s/rc.common %s/etc/rc.common && cp %s/functions.sh %s/lib/functions.sh"
      .. " && cp %s/procd.sh %s/lib/functions/procd.sh"):format(q(root), q(openwrt.STANDINS), q(root),
      q(openwrt.STANDINS), q(root), q(openwrt.STANDINS), q(root)))
    sys_root = setmetatable({ dir = root }, { __index = openwrt })
    opkg_install(root, "fotahost")
    opkg_install(root, "fotahost-dev")  -- the simulated chip's plugin
    chip = h.tmpdir()
    local r = h.run({ "flash", "-c", "sim", "-P", chip, "-e", "-U", "flash:w:" .. h.firmware("blink-1000.hex") })
    assert(r.status == 0, r.err)
    fwdir = h.tmpdir()
    cloud = h.start_cloud(fwdir, 0, { "--firmware", "blink-250=" .. h.firmware("blink-250.hex") })
    h.cloud_admin(cloud.url, "POST", "/devices", { id = "owrt1", key = "owrtkey0001" })
  end)

  teardown(function()
    if app then h.stop_app(app) end
    if cloud then cloud.stop() end
    for _, d in ipairs({ root, chip, fwdir }) do if d then h.rmdir(d) end end
  end)

  it("installs, is configured with uci, starts as procd starts it, and flashes a push", function()
    -- opkg's postinst enabled the service, as OpenWrt packages do
    assert.is_truthy(h.read(root .. "/etc/rc.d/S95fotahost"), "postinst did not enable the service")

    -- the README's commands
    uci("set", "fotahost.main.device_id=owrt1")
    uci("set", "fotahost.main.device_key=owrtkey0001")
    uci("set", "fotahost.main.api=" .. cloud.url)
    uci("set", "fotahost.main.board=sim")
    uci("set", "fotahost.main.sim_dir=" .. chip)
    uci("set", "fotahost.main.state_dir=" .. root .. "/etc/fotahost/state")
    uci("set", "fotahost.main.volatile_state_ok=1") -- /tmp may be a tmpfs here
    uci("set", "fotahost.main.heartbeat=2")
    uci("set", "fotahost.main.enabled=1")
    uci("commit", "fotahost")
    -- it holds the device key: uci's commit kept the package's mode
    assert.are.equal("600", must("stat -c %a " .. q(root .. "/etc/config/fotahost")):match("%d+"))

    -- /etc/init.d/fotahost start: the instance procd is asked to run
    local s = sys_root:service("start")
    assert.are.equal(0, s.status, s.err)
    local set = assert(sys_root:last_set(), "start_service declared nothing")
    local _, inst = next(set.instances)
    assert.are.same({ "/usr/bin/fotahost", "app" }, inst.command)

    -- procd runs that command: here the root's binary under the emulator,
    -- with the root's /etc in the paths a board has at /etc
    local argv = { qemu, "-L", q(root), q(root .. inst.command[1]) }
    for i = 2, #inst.command do argv[#argv + 1] = q(inst.command[i]) end
    local env = ("env -u FOTAHOST_PATH -u FOTAHOST_CPATH FOTAHOST_UCI_CONFIG=%s FOTAHOST_SCRIPTS_DIR=%s "
      .. "FOTAHOST_PLUGINS_DIR=%s FOTAHOST_OPENWRT_RELEASE=%s "):format(q(root .. "/etc/config/fotahost"),
      q(root .. "/etc/fotahost/scripts"), q(root .. "/etc/fotahost/plugins"), q(root .. "/etc/openwrt_release"))
    local logdir = h.tmpdir()
    -- a Lua file named by FOTAHOST_CONFIG must exist; an empty one in the
    -- root, so the app never reads this machine's /etc/fotahost/config.lua
    -- and its settings are all the uci commands'
    must("mkdir -p " .. q(root .. "/etc/fotahost"))
    local lua_config = h.write(root .. "/etc/fotahost/config.lua", "return {}\n")
    app = h.start_app(logdir, lua_config, env, table.concat(argv, " "))
    local function device() return h.cloud_admin(cloud.url, "GET", "/devices/owrt1") end
    local function log() return h.read(logdir .. "/app.log") or "" end
    local ok, err = pcall(h.until_true, "the app to connect", WAIT, function()
      assert(h.alive(app.pid), "the app exited")
      return device().connected
    end)
    assert(ok, tostring(err) .. "; its log:\n" .. log())

    -- the tutorial's push
    h.cloud_admin(cloud.url, "POST", "/devices/owrt1/fota", { version = "blink-250" })
    local final
    h.until_true("the push's final status", WAIT, function()
      local d = h.cloud_admin(cloud.url, "GET", "/devices/owrt1/datapoints?channel=fota_status")
      for _, p in ipairs(d.datapoints) do
        local v = p.values.value
        if v == "done" or v:find("^failed: ") then final = v return true end
      end
    end)
    assert.are.equal("done", final, log())
    local ihex = require "fotahost.ihex"
    h.assert_flash_holds(chip, assert(ihex.load(h.firmware("blink-250.hex"))):bytes(0, 32767), "blink-250")
    h.until_true("the version report", WAIT, function() return device().version == "blink-250" end)
    -- the update state is where keep.d keeps it across a sysupgrade
    assert.are_not.equal("", must("ls -A " .. q(root .. "/etc/fotahost/state")))
    assert.is_falsy(log():find("owrtkey0001", 1, true), "the device key reached the log")

    -- /etc/init.d/fotahost stop: procd deletes the instance and TERMs it
    s = sys_root:service("stop")
    assert.are.equal(0, s.status, s.err)
    h.stop_app(app)
    app = nil
    assert.are.equal("143", h.until_true("the app's exit status", 10, function()
      return (h.read(logdir .. "/app.rc") or ""):match("%d+")
    end))
    h.rmdir(logdir)
  end)
end)
