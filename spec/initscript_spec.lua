-- The procd service (/etc/init.d/fotahost, dist/openwrt/fotahost/files)
-- as OpenWrt runs it: through rc.common and procd.sh (their stand-ins in
-- tests/openwrt/), in a scratch root, with `ubus` recording what the
-- script declares to procd. Under dash and busybox ash, as on the board.
local h = require "helper"
local openwrt = require "support.openwrt"

local INIT = openwrt.FILES .. "/fotahost.init"
local TRIGGER = { "config.change", { "if", { "eq", "package", "fotahost" },
  { "run_script", "/etc/init.d/fotahost", "reload" } }, 1000 }

-- the shells an OpenWrt script must run under: busybox ash is the board's
local SHELLS = { "sh", "dash", "busybox sh" }

local function has(cmd)
  return os.execute("command -v " .. cmd:match("^%S+") .. " >/dev/null 2>&1") == true
end

describe("the fotahost init script", function()
  local root
  before_each(function() root = openwrt.root() end)
  after_each(function() root:remove() end)

  it("is POSIX sh: it parses under sh, dash and busybox ash (.ci/install-deps installs busybox)", function()
    for _, shell in ipairs(SHELLS) do
      assert(has(shell), shell .. " is missing: install busybox (a Debian package; .ci/install-deps has it)")
      local ok = os.execute(("%s -n %s 2>/dev/null"):format(shell, h.q(INIT)))
      assert(ok, shell .. " -n " .. INIT .. " failed")
    end
    assert.are.equal("#!/bin/sh /etc/rc.common\n", h.read(INIT):match("^[^\n]*\n"))
  end)

  for _, shell in ipairs(SHELLS) do
    it("with enabled=1, start declares the app to procd: command, respawn, logs, trigger (" .. shell .. ")",
      function()
        root:set("enabled", "1")
        local r = root:service("start", shell)
        assert.are.equal(0, r.status, r.err)
        assert.are.equal("", r.err)
        local calls = root:calls()
        assert.are.equal(1, #calls)
        assert.are.equal("set", calls[1].method)
        local msg = calls[1].msg
        assert.are.equal("fotahost", msg.name)
        assert.are.same({ instance1 = {
          command = { "/usr/bin/fotahost", "app" },
          respawn = { "300", "10", "5" },
          stdout = true, stderr = true,
          -- no `file`: a changed config must not make procd restart the app (reload: SIGHUP)
          term_timeout = 30,
        } }, msg.instances)
        assert.are.same({ TRIGGER }, msg.triggers)
        -- procd runs it; the service says so
        assert.are.equal(0, root:service("running", shell).status)
        assert.are.equal("running\n", root:service("status", shell).out)
      end)
  end

  it("as shipped (enabled 0) starts nothing, says the uci commands, and keeps the reload trigger", function()
    local r = root:service("start")
    assert.are.equal(0, r.status)
    assert.are.equal("fotahost: not started: fotahost.main.enabled is off (uci set fotahost.main.enabled=1; "
      .. "uci commit fotahost; /etc/init.d/fotahost start)\n", r.err)
    local msg = root:last_set()
    assert.are.same({}, msg.instances)
    -- reload_config after the commit still reaches the service
    assert.are.same({ TRIGGER }, msg.triggers)
    assert.are_not.equal(0, root:service("running").status)
    -- any of UCI's words for false keeps it off; for true turns it on
    for _, word in ipairs({ "off", "no", "false", "disabled", "0" }) do
      root:set("enabled", word)
      root:service("start")
      assert.are.same({}, root:last_set().instances, word)
    end
    for _, word in ipairs({ "on", "yes", "true", "enabled", "1" }) do
      root:set("enabled", word)
      root:service("start")
      assert.is_table(root:last_set().instances.instance1, word)
    end
  end)

  it("enable links S95 (after the network's S20) and K10 into /etc/rc.d; disable removes them", function()
    local d = root.dir
    assert.are_not.equal(0, root:service("enabled").status)
    local r = root:service("enable")
    assert.are.equal(0, r.status, r.err)
    local p = io.popen(("cd %s/etc/rc.d && for f in *; do echo \"$f $(readlink $f)\"; done"):format(h.q(d)))
    local links = p:read("a")
    p:close()
    assert.are.equal("K10fotahost ../init.d/fotahost\nS95fotahost ../init.d/fotahost\n", links)
    assert.are.equal(0, root:service("enabled").status)
    r = root:service("disable")
    assert.are.equal(0, r.status, r.err)
    assert.is_nil(h.read(d .. "/etc/rc.d/S95fotahost"))
    assert.is_nil(h.read(d .. "/etc/rc.d/K10fotahost"))
    assert.are_not.equal(0, root:service("enabled").status)
  end)

  it("is enabled by the package's postinst, as OpenWrt packages write it, when installed into a root", function()
    local d = root.dir
    os.execute("mkdir -p " .. h.q(d .. "/usr/lib/opkg/info"))
    h.write(d .. "/usr/lib/opkg/info/fotahost.list", "/usr/bin/fotahost\n/etc/init.d/fotahost\n/etc/config/fotahost\n")
    local postinst = h.write(d .. "/usr/lib/opkg/info/fotahost.postinst",
      "#!/bin/sh\n[ \"${IPKG_NO_SCRIPT}\" = \"1\" ] && exit 0\n[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n"
      .. ". ${IPKG_INSTROOT}/lib/functions.sh\ndefault_postinst $0 $@\n")
    local ok = os.execute(("env IPKG_INSTROOT=%s busybox sh %s"):format(h.q(d), h.q(postinst)))
    assert.is_true(ok)
    assert.are.equal(0, root:service("enabled").status)
    assert.is_string(h.read(d .. "/etc/rc.d/K10fotahost"))
    -- an image being built: nothing was started
    assert.are.same({}, root:calls())
  end)

  for _, shell in ipairs(SHELLS) do
    it("reload has procd send the running app SIGHUP; off, it stops the app; not running, it starts it (" .. shell
      .. ")", function()
      -- what procd was asked to do (its list calls are questions)
      local function changes()
        local t = {}
        for _, c in ipairs(root:calls()) do if c.method ~= "list" then t[#t + 1] = c end end
        return t
      end
      local function methods(calls)
        local t = {}
        for i, c in ipairs(calls) do t[i] = c.method end
        return t
      end
      root:set("enabled", "1")
      root:service("start", shell)
      local first = root:last_set()
      local r = root:service("reload", shell)
      assert.are.equal(0, r.status, r.err)
      -- the instance is left as it is (procd would restart a changed one): only the signal
      local calls = changes()
      assert.are.same({ "set", "signal" }, methods(calls))
      assert.are.same({ name = "fotahost", signal = 1 }, calls[2].msg)
      -- uci set fotahost.main.enabled=0; uci commit; reload: procd is sent no instance, and stops it
      root:set("enabled", "0")
      root:service("reload", shell)
      assert.are.same({}, root:last_set().instances)
      assert.are_not.equal(0, root:service("running", shell).status)
      -- on again: reload starts it, with no signal to an app that is only starting
      root:set("enabled", "1")
      local n = #changes()
      root:service("reload", shell)
      calls = changes()
      assert.are.same({ "set" }, methods({ table.unpack(calls, n + 1) }))
      assert.are.same(first, calls[#calls].msg)
      assert.are.equal(0, root:service("running", shell).status)
    end)
  end

  it("stop asks procd to delete the service (SIGTERM, then SIGKILL after term_timeout)", function()
    root:set("enabled", "1")
    root:service("start")
    local r = root:service("stop")
    assert.are.equal(0, r.status, r.err)
    local calls = root:calls()
    assert.are.equal("delete", calls[#calls].method)
    assert.are.same({ name = "fotahost" }, calls[#calls].msg)
    assert.are.same({}, root:procd())
    r = root:service("status")
    assert.are.equal(3, r.status)
    assert.are.equal("inactive\n", r.out)
  end)
end)

describe("the procd.sh stand-in", function()
  it("keeps each argument one argv element, escaped for JSON", function()
    local root = openwrt.root()
    h.write(root.dir .. "/etc/init.d/fotahost", "#!/bin/sh /etc/rc.common\nUSE_PROCD=1\nstart_service() {\n"
      .. "\tprocd_open_instance\n"
      .. "\tprocd_set_param command /bin/x 'a b' 'q\"uote' 'back\\slash' \"$(printf 'tab\\tx')\"\n"
      .. "\tprocd_append_param command last\n\tprocd_set_param env A=1 'B=two words'\n"
      .. "\tprocd_set_param respawn\n\tprocd_close_instance\n}\n")
    local r = root:service("start", "busybox sh")
    assert.are.equal(0, r.status, r.err)
    local inst = root:last_set().instances.instance1
    root:remove()
    assert.are.same({ "/bin/x", "a b", 'q"uote', "back\\slash", "tab\tx", "last" }, inst.command)
    assert.are.same({ A = "1", B = "two words" }, inst.env)
    -- respawn with no numbers: procd's defaults
    assert.are.same({ "3600", "5", "5" }, inst.respawn)
  end)
end)
