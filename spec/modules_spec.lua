-- Native modules: built in through package.preload, or loaded from .so
-- plugins on the plugin path; none of them sets a global.
local h = require "helper"

describe("native modules", function()
  it("are registered in package.preload, not as globals", function()
    for _, name in ipairs({ "fotahost.poll", "fotahost.sys", "fotahost.host", "cjson", "cjson.safe" }) do
      assert.is_function(package.preload[name], name)
    end
    local r = h.run({ "-e", [[
      local std = {}
      for k in pairs(_G) do std[#std + 1] = k end
      for _, m in ipairs({ "fotahost.poll", "fotahost.sys", "fotahost.host", "cjson",
                           "cjson.safe", "fotahost.sched", "fotahost.log" }) do
        require(m)
      end
      local n = 0
      for k in pairs(_G) do n = n + 1 end
      print(#std == n, rawget(_G, "poll"), rawget(_G, "sys"), rawget(_G, "cjson"))
    ]] })
    assert.are.equal(0, r.status, r.err)
    assert.are.equal("true\tnil\tnil\tnil\n", r.out)
  end)

  -- DEVELOPERS.md, C: plugins/NAME.c is fotahost.NAME; a C module under a
  -- Lua face is the face's core (fotahost.tcp over fotahost.tcp.core).
  it("follow one naming rule: a C core sits under the Lua face of its name", function()
    local lua, c = {}, {}
    for _, dir in ipairs({ "scripts", "dev/scripts" }) do
      for _, f in ipairs(h.find(dir, "*.lua")) do
        local rel = f:sub(#dir + 2, -5)
        if not rel:match("^tools/") then lua[rel:gsub("/", ".")] = f end
      end
    end
    for _, dir in ipairs({ "plugins", "dev/plugins" }) do
      for _, f in ipairs(h.find(dir, "*.c")) do
        local base = f:match("^" .. dir .. "/([%w_.]+)%.c$")
        if base then c["fotahost." .. base] = f end
      end
    end
    local cores, bad = 0, {}
    for name, f in pairs(c) do
      if lua[name] then bad[#bad + 1] = f .. " and " .. lua[name] .. " are both " .. name end
      local face = name:match("^(.+)%.core$")
      if face then
        cores = cores + 1
        local text = lua[face] and h.read(h.top .. "/" .. lua[face]) or ""
        if not text:find(('require "%s"'):format(name), 1, true) then
          bad[#bad + 1] = f .. ": no face " .. face .. " requiring " .. name
        end
      end
    end
    assert.are.same({}, bad)
    assert.are.equal(6, cores)   -- tcp, serial, http, mqtt, avr.isp, vboard
  end)

  it("include Debian's lua-cjson as cjson and cjson.safe", function()
    local cjson = require "cjson"
    assert.are.equal('{"a":[1,2]}', cjson.encode({ a = { 1, 2 } }))
    assert.has_error(function() cjson.decode("{bad") end)
    local v, err = require("cjson.safe").decode("{bad")
    assert.is_nil(v)
    assert.matches("Expected object key string", err)
  end)

  it("tell scripts the version and the paths through fotahost.host", function()
    local host = require "fotahost.host"
    assert.matches("^%d+%.%d+%.%d+$", host.version)
    assert.matches("^Lua 5%.4", host.lua_version)
    assert.are.equal(h.layout.checkout, host.checkout)
    assert.are.equal(h.layout.scripts[1], host.scripts[2])
    assert.are.same(host.tools(), (function()
      local t = {}
      for _, n in ipairs(host.tools()) do t[#t + 1] = n end
      return t
    end)())
    assert.are.equal(h.layout.dev_tools .. "/hello.lua", host.find_tool("hello"))
    local none, err = host.find_tool("nope")
    assert.is_nil(none)
    assert.are.equal("no tool named 'nope'", err)
  end)

  it("exec the host again with the same arguments and PID after the state is closed (host.reexec)", function()
    local dir = h.tmpdir()
    local script = h.write(dir .. "/again.lua", [[
      local sys, mark = require "fotahost.sys", ...
      local seen = {}
      for _, fd in ipairs({ 3, 4, 5, 6, 7, 8, 9 }) do seen[#seen + 1] = sys.lstat("/proc/self/fd/" .. fd) and fd end
      if not sys.exists(mark) then
        Kept = io.open(mark, "w") -- open when the script ends: lua_close must close it
        print("first", sys.getpid(), arg[2])
        require("fotahost.host").reexec()
      else
        -- a SIGHUP before the new app takes it (sys.hangups) does not kill it
        os.execute("kill -HUP " .. sys.getpid())
        print("again", sys.getpid(), arg[2], #seen)
      end
    ]])
    local r = h.run({ script, dir .. "/mark", "word" })
    h.rmdir(dir)
    assert.are.equal(0, r.status, r.err)
    local pid1, pid2 = r.out:match("^first\t(%d+)\tword\nagain\t(%d+)\tword\t0\n$")
    assert(pid1, r.out)
    assert.are.equal(pid1, pid2)
  end)

  it("stop instead of exec'ing again when a SIGTERM came as the script ended (host.reexec)", function()
    local dir = h.tmpdir()
    -- the TERM lands where no Lua code is left to raise it: inside a debug
    -- hook (no hook runs there) that then takes the hooks away
    local script = h.write(dir .. "/again.lua", [[
      local sys, mark = require "fotahost.sys", ...
      if sys.exists(mark) then print("again") return end
      io.open(mark, "w"):close()
      require("fotahost.host").reexec()
      debug.sethook(function()
        os.execute("kill -TERM " .. sys.getpid())
        debug.sethook()
      end, "", 1)
      local _ = 1
    ]])
    local r = h.run({ script, dir .. "/mark" })
    h.rmdir(dir)
    assert.are.same({ 143, "" }, { r.status, r.out }, r.err)
  end)

  it("exec the host again from /proc/self/exe when its file is gone (host.reexec)", function()
    local dir = h.tmpdir()
    local bin = dir .. "/fotahost"
    h.must("cp " .. h.q(h.bin) .. " " .. h.q(bin))
    local script = h.write(dir .. "/again.lua", [[
      local sys, bin = require "fotahost.sys", ...
      if not sys.exists(bin) then print("again", sys.getpid()) return end
      os.remove(bin) -- a package removed meanwhile
      print("first", sys.getpid())
      require("fotahost.host").reexec()
    ]])
    local out = h.must(h.q(bin) .. " " .. h.q(script) .. " " .. h.q(bin) .. " 2>&1")
    h.rmdir(dir)
    local pid1, pid2 = out:match("^first\t(%d+)\n.*reload: exec .*; trying /proc/self/exe\nagain\t(%d+)\n$")
    assert(pid1, out)
    assert.are.equal(pid1, pid2)
  end)

  describe(".so plugins", function()
    it("load with require from the plugin path (the example plugin)", function()
      local r = h.run({ "-e", [[
        local s = require "sysinfo"
        local up = s.uptime()
        local free, total = s.memory()
        print(math.type(up), up >= 0, total > 0, free <= total, select("#", s.loadavg()))
        print(package.searchpath("sysinfo", package.cpath))
      ]] })
      assert.are.equal(0, r.status, r.err)
      assert.matches("^integer\ttrue\ttrue\ttrue\t3\n", r.out)
      assert.matches("\n" .. h.literal(h.layout.plugins) .. "/sysinfo%.so\n$", r.out)
    end)

    it("load from the override plugin directory first", function()
      local dir = h.tmpdir()
      local so = h.build .. "/plugins/sysinfo.so"
      os.execute(("cp %s %s/sysinfo.so"):format(h.q(so), h.q(dir)))
      local r = h.run({ "-e", "require 'sysinfo' print(package.searchpath('sysinfo', package.cpath))" },
        { env = { FOTAHOST_PLUGINS_DIR = dir } })
      h.rmdir(dir)
      assert.are.equal(0, r.status, r.err)
      assert.are.equal(dir .. "/sysinfo.so\n", r.out)
    end)

    it("report a missing plugin with the places searched", function()
      local r = h.run({ "-e", "require 'no_such_plugin'" })
      assert.are.equal(1, r.status)
      assert.matches("module 'no_such_plugin' not found", r.err)
      assert.matches("no file '[^']*/plugins/no_such_plugin%.so'", r.err)
    end)
  end)
end)
