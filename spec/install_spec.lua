-- `make install` gives a working fotahost that finds its installed scripts
-- and holds the product only; `make install-dev` adds the development
-- wing; building the example firmware leaves the source tree clean.
local h = require "helper"

-- The two wings: `make install` is the product only (no simulator, no
-- development module, tool or plugin), `make install-dev` adds the
-- development wing (dev/) into the same directories. Under make board-test
-- it is the board's build, installed as make board installs it (DESTDIR)
-- and run under the emulator; the virtual board is not in its wing (no
-- simavr for the board).
describe("make install and make install-dev", function()
  local dir, usr, bin
  local DEV_PLUGINS = { "avrsim.so", "gpio_sim.so", not h.board and "vboard/core.so" or nil }

  local function make(target)
    local how = ("BUILD=%s PREFIX=%s"):format(h.q(dir .. "/build"), h.q(usr))
    if h.board then
      how = ("BOARD_CONFIG=%s BUILD=%s DESTDIR=%s"):format(h.q(h.board.config), h.q(h.build), h.q(dir))
    end
    local cmd = ("cd %s && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u BOARD_CONFIG make -s %s %s > %s 2>&1")
      :format(h.q(h.top), how, target, h.q(dir .. "/make.log"))
    assert.is_true(os.execute(cmd), h.read(dir .. "/make.log"))
  end

  local function run(cmd)
    local p = io.popen("cd " .. h.q(dir) .. " && " .. h.q(bin) .. " " .. cmd .. " 2>&1; echo \"status $?\"")
    local out = p:read("a")
    p:close()
    return out
  end

  -- The files of the development wing's scripts (its Lua, the web
  -- console's page), relative to dev/scripts.
  local function dev_scripts()
    local p = io.popen("cd " .. h.q(h.top) .. " && find dev/scripts -type f 2>/dev/null")
    local list = {}
    for line in p:lines() do list[#list + 1] = line:sub(#"dev/scripts/" + 1) end
    p:close()
    return list
  end

  -- Flashes a raw image onto a new simulated chip with the installed binary.
  local function flash_sim()
    local image = ("\x0C\x94\x34\x00"):rep(64)
    h.write(dir .. "/fw.bin", image)
    assert(os.execute("mkdir -p " .. h.q(dir .. "/chip")))
    return run("flash -q -c sim -P chip -U flash:w:fw.bin:r"), image
  end

  lazy_setup(function()
    dir = h.tmpdir()
    usr = dir .. "/usr"
    bin = usr .. "/bin/fotahost"
    -- a fresh build with this PREFIX, as a packager would do it; or the
    -- board's, run by the emulator with the board's libraries
    make("install")
    if h.board then
      bin = h.write(dir .. "/fotahost-qemu", ('#!/bin/sh\nexec %s -L %s -0 "$0" %s "$@"\n')
        :format(h.board.qemu, h.q(h.board.root), h.q(usr .. "/bin/fotahost")))
      assert(os.execute("chmod +x " .. h.q(bin)))
    end
  end)
  lazy_teardown(function() h.rmdir(dir) end)

  it("installs the product: a fotahost that runs its tools from PREFIX, and no simulator", function()
    local paths = run("--paths")
    assert.matches("source checkout: %(none%)", paths)
    assert.matches(usr:gsub("%p", "%%%0") .. "/share/fotahost/scripts\n", paths)
    assert.matches(usr:gsub("%p", "%%%0") .. "/lib/fotahost/plugins\n", paths)
    local header = h.read(usr .. "/include/fotahost/fotahost.h")
    assert.truthy(header and header:find("fh_result_errno", 1, true))
    assert.truthy(h.read(usr .. "/share/doc/fotahost/scheduler.md"))
    -- -c sim says what is missing, from a tool found under PREFIX
    local out = flash_sim()
    assert.matches("the sim backend is part of the development wing: make install%-dev", out)
    assert.matches("status 1\n$", out)
  end)

  -- A packager's staging tree (make install DESTDIR=...; the board's root/):
  -- its binary runs its own scripts, not those of the install at PREFIX;
  -- a binary under another .../bin with no scripts beside it keeps PREFIX's.
  it("runs a tree installed with DESTDIR from where it lies", function()
    if h.board then return end -- the board's install above is that tree
    local stage = dir .. "/stage"
    make("install DESTDIR=" .. h.q(stage))
    local staged = stage .. usr
    local p = io.popen(h.q(staged .. "/bin/fotahost") .. " --paths 2>&1")
    local paths = p:read("a")
    p:close()
    assert.matches("\n +" .. h.literal(staged .. "/share/fotahost/scripts") .. "\n", paths)
    assert.matches("\n +" .. h.literal(staged .. "/lib/fotahost/plugins") .. "\n", paths)
    local bare = dir .. "/bare" .. usr .. "/bin"
    assert(os.execute(("mkdir -p %s && cp %s %s/"):format(h.q(bare), h.q(bin), h.q(bare))))
    p = io.popen(h.q(bare .. "/fotahost") .. " --paths 2>&1")
    paths = p:read("a")
    p:close()
    assert.matches("\n +" .. h.literal(usr .. "/share/fotahost/scripts") .. "\n", paths)
  end)

  it("installs no development plugin, module or tool", function()
    for _, so in ipairs(DEV_PLUGINS) do
      assert.is_nil(h.read(usr .. "/lib/fotahost/plugins/fotahost/" .. so), so)
    end
    assert.truthy(h.read(usr .. "/lib/fotahost/plugins/fotahost/http/core.so"))
    for _, f in ipairs(dev_scripts()) do
      assert.is_nil(h.read(usr .. "/share/fotahost/scripts/" .. f), f)
    end
  end)

  -- The product's own specs: the modules that need no simulator, no local
  -- cloud and no test HTTP server. Run by the installed binary, whose
  -- search path holds the product only, they must pass as they do here.
  local PRODUCT_SPECS = { "ihex", "sched", "log", "sys", "digest", "poll", "serial", "tcp", "fota_config", "boards" }

  -- busted's options for what tests/run leaves out of a board run
  -- (tests/board/native-only)
  local function native_only_options()
    local opts = {}
    for line in (h.board and h.read(h.top .. "/tests/board/native-only") or ""):gmatch("[^\n]+") do
      local kind, pattern = line:match("^(%l+) (.-)  ")
      if kind then
        opts[#opts + 1] = h.q((kind == "file" and "--exclude-pattern=" or "--filter-out=") .. pattern)
      end
    end
    return table.concat(opts, " ")
  end

  it("passes the product's own specs with the product only", function()
    local files = {}
    for i, s in ipairs(PRODUCT_SPECS) do files[i] = "spec/" .. s .. "_spec.lua" end
    local p = io.popen(("cd %s && env FOTAHOST_BIN=%s FOTAHOST_TOP=%s %s /usr/bin/busted --output=TAP %s %s 2>&1")
      :format(h.q(h.top), h.q(bin), h.q(h.top), h.q(bin), native_only_options(), table.concat(files, " ")))
    local out = p:read("a")
    p:close()
    local passed = select(2, out:gsub("\nok ", ""))
    assert.is_nil(out:find("\nnot ok ", 1, true), out:sub(-3000))
    assert.is_true(passed >= 100, passed .. " specs passed:\n" .. out:sub(-3000))
  end)

  it("adds the development wing with make install-dev: -c sim flashes, dev tools run", function()
    make("install-dev")
    for _, so in ipairs(DEV_PLUGINS) do
      assert.truthy(h.read(usr .. "/lib/fotahost/plugins/fotahost/" .. so), so)
    end
    for _, f in ipairs(dev_scripts()) do
      assert.truthy(h.read(usr .. "/share/fotahost/scripts/" .. f), f)
    end
    local out, image = flash_sim()
    assert.are.equal("status 0\n", out)
    assert.are.equal(image, h.read(dir .. "/chip/flash.bin"):sub(1, #image))
    assert.matches("done: the reader got 4 bytes", run("hello 1"))
  end)
end)

describe("build/fotahost", function()
  it("links no simulator code: the simulated chip, its GPIO backend and the virtual board are plugins", function()
    -- the native build's symbols (the board's binary is stripped)
    local p = io.popen("nm " .. h.q(h.peer_bin) .. " 2>&1")
    local syms = p:read("a")
    p:close()
    assert.truthy(syms:find("luaopen_fotahost_gpio", 1, true), syms:sub(1, 200))
    for _, name in ipairs({ "avrsim", "gpio_sim", "vboard" }) do
      assert.is_nil(syms:find(name, 1, true), name)
    end
  end)
end)

describe("make -C examples/firmware", function()
  it("builds the example firmware into build/, leaving the source tree as it was", function()
    -- a copy of the project's layout: examples/firmware and nothing built yet
    local dir = h.tmpdir()
    local src = dir .. "/examples/firmware"
    assert(os.execute(("mkdir -p %s && cp %s/examples/firmware/* %s"):format(h.q(src), h.q(h.top), h.q(src))))
    local function listing(d)
      local p = io.popen("ls -A " .. h.q(d) .. " 2>&1")
      local out = p:read("a")
      p:close()
      return out
    end
    local before = listing(src)
    local ok = os.execute(("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C %s >%s/make.log 2>&1")
      :format(h.q(src), h.q(dir)))
    local log, after, built = h.read(dir .. "/make.log"), listing(src), listing(dir .. "/build/examples/firmware")
    h.rmdir(dir)
    assert.is_true(ok, log)
    assert.are.equal(before, after)
    assert.are.equal("blink-1000.hex\nblink-250.hex\nblink-250.with_bootloader.hex\nbootloader.hex\ndark.hex\n"
      .. "serial-led.hex\n", built)
  end)
end)
