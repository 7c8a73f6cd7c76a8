-- GPIO backends, each on something that stands in for the hardware:
-- sysfs on a fake /sys/class/gpio tree, mmio on a regular file mapped in
-- place of /dev/mem, gpiod on this machine (which has no GPIO chip).
local gpio = require "fotahost.gpio"
local stream = require "fotahost.stream"
local sys = require "fotahost.sys"
local h = require "helper"

local function sh(cmd) assert(os.execute(cmd), cmd) end

describe("fotahost.gpio", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  local ISP = { lines = { 3, 15, 16, 17 }, outputs = { true, true, true, false } }

  local function with(t)
    local o = { lines = ISP.lines, outputs = ISP.outputs }
    for k, v in pairs(t) do o[k] = v end
    return o
  end

  describe("sysfs", function()
    -- A tree with gpio<N>/{direction,value} already there (as after an
    -- earlier export) and an optional chip with a base.
    local function fake_tree(base, nums)
      sh(("mkdir -p %s && touch %s/export %s/unexport"):format(h.q(dir), h.q(dir), h.q(dir)))
      if base then
        sh(("mkdir -p %s/gpiochip%d && echo %d > %s/gpiochip%d/base"):format(h.q(dir), base, base, h.q(dir), base))
      end
      for _, n in ipairs(nums) do
        sh(("mkdir -p %s/gpio%d && echo in > %s/gpio%d/direction && echo 0 > %s/gpio%d/value")
          :format(h.q(dir), n, h.q(dir), n, h.q(dir), n))
      end
    end
    local function attr(n, name) return (h.read(("%s/gpio%d/%s"):format(dir, n, name)) or ""):gsub("\n", "") end

    it("adds the chip base, sets direction and level in one write, and releases to input", function()
      fake_tree(512, { 515, 527, 528, 529 })
      local lines = assert(gpio.open(with{ backend = "sysfs", chip = "gpiochip0", sysfs_root = dir,
        initial = { 0, 0, 1 } }))
      assert.are.equal("low", attr(515, "direction"))   -- RESET asserted at once, no glitch
      assert.are.equal("high", attr(528, "direction"))
      assert.are.equal("in", attr(529, "direction"))
      assert(lines:set(2, 1))
      assert.are.equal("1", attr(527, "value"))
      h.write(dir .. "/gpio529/value", "1\n")
      assert.are.equal(1, lines:get(4))
      local st = lines:stats()
      assert.are.same({ set_calls = 1, get_calls = 1 }, { set_calls = st.set_calls, get_calls = st.get_calls })
      lines:close()
      for _, n in ipairs({ 515, 527, 528, 529 }) do assert.are.equal("in", attr(n, "direction")) end
      assert.matches("closed", tostring(lines))
      assert.has_error(function() lines:set(1, 0) end, "attempt to use closed GPIO lines")
    end)

    it("uses the numbers as given when the tree shows no chip", function()
      fake_tree(nil, { 3, 15, 16, 17 })
      local lines = assert(gpio.open(with{ backend = "sysfs", chip = "gpiochip0", sysfs_root = dir }))
      assert.are.equal("low", attr(3, "direction"))
      lines:close()
    end)

    -- Starts spec/support/fake_udev.lua on the tree: `export` becomes a
    -- FIFO, and each gpioN of `nums` appears only after N was written to
    -- it. Returns a function that waits for the helper to end (killing it,
    -- by its pid, if it has not within 5 s) and returns its log.
    local function fake_udev(nums)
      os.remove(dir .. "/export")
      sh("mkfifo " .. h.q(dir .. "/export"))
      local args = {}
      for i, n in ipairs(nums) do
        local d = h.q(("%s/.udev/gpio%d"):format(dir, n))
        sh(("mkdir -p %s && echo in > %s/direction && echo 0 > %s/value"):format(d, d, d))
        args[i] = tostring(n)
      end
      sh(("%s %s %s %s > %s 2>&1 & echo $! > %s"):format(h.q(h.bin),
        h.q(h.top .. "/spec/support/fake_udev.lua"), h.q(dir), table.concat(args, " "),
        h.q(dir .. "/udev.err"), h.q(dir .. "/udev.pid")))
      -- Open for reading and writing, which never blocks on a FIFO: the
      -- helper's open returns at once, an export written before the helper
      -- reads waits in the FIFO, and once this closes the helper sees the
      -- end of it.
      local hold = assert(io.open(dir .. "/export", "r+b"))
      local pid = assert(math.tointeger(tonumber(h.read(dir .. "/udev.pid"):match("%d+"))))
      return function()
        hold:close()
        local deadline = sys.now() + 5
        while true do
          local stat = h.read("/proc/" .. pid .. "/stat")
          local state = stat and stat:match("%) (%a)")
          if not state or state == "Z" or state == "X" then break end
          if sys.now() > deadline then
            os.execute("kill -TERM " .. pid)
            break
          end
          stream.pause(nil, 0.01)
        end
        return (h.read(dir .. "/exported") or "") .. (h.read(dir .. "/udev.err") or "")
      end
    end

    it("exports, waits until udev has made the files, and unexports what it exported, RESET last", function()
      fake_tree(nil, {})
      local udev_done = fake_udev({ 3, 15, 16, 17 })
      local lines, err = gpio.open(with{ backend = "sysfs", chip = "x", sysfs_root = dir })
      local log = udev_done()
      assert.truthy(lines, err)
      -- each line exported once, each waited for: no gpioN existed before its export
      assert.are.equal("3\n15\n16\n17\n", log)
      assert.are.equal("low", attr(3, "direction"))    -- RESET asserted
      assert.are.equal("in", attr(17, "direction"))
      lines:close()
      for _, n in ipairs({ 3, 15, 16, 17 }) do assert.are.equal("in", attr(n, "direction")) end
      -- RESET is let go last, after the lines the MCU would see while starting
      assert.are.equal("3", (h.read(dir .. "/unexport"):gsub("%s", "")))
    end)

    it("drives an inverted line (the Yun's RESET) at the opposite level, from the moment it opens", function()
      fake_tree(nil, { 3, 15, 16, 17 })
      local lines = assert(gpio.open(with{ backend = "sysfs", chip = "x", sysfs_root = dir,
        invert = { true, false, false, true }, initial = { 0, 0, 0 } }))
      assert.are.equal("high", attr(3, "direction"))   -- RESET asserted through the inverter, no glitch
      assert.are.equal("low", attr(15, "direction"))
      assert(lines:set(1, 1))                          -- released: the inverter's input goes low
      assert.are.equal("0", attr(3, "value"))
      assert(lines:set(1, 0))
      assert.are.equal("1", attr(3, "value"))
      h.write(dir .. "/gpio17/value", "1\n")
      assert.are.equal(0, lines:get(4))                -- an inverted input reads inverted
      lines:close()
    end)

    it("names the file and the cause when a line cannot be opened", function()
      fake_tree(nil, {})
      os.remove(dir .. "/export")
      local lines, err = gpio.open(with{ backend = "sysfs", chip = "x", sysfs_root = dir })
      assert.is_nil(lines)
      assert.are.equal(dir .. "/export: export of GPIO 3 failed: " .. h.strerror.ENOENT, err)
    end)

    it("counts one system call per changed line written and one per read", function()
      fake_tree(nil, { 3, 15, 16, 17 })
      local lines = assert(gpio.open(with{ backend = "sysfs", chip = "x", sysfs_root = dir }))
      local before = lines:stats().syscalls
      lines:set(2, 1)   -- 1 pwrite
      lines:set(2, 1)   -- unchanged: nothing
      lines:get(4)      -- 1 pread
      assert.are.equal(2, lines:stats().syscalls - before)
      lines:close()
    end)
  end)

  describe("mmio", function()
    local MEM_SIZE = 0x10001000
    local function reg(path, off)
      local f = assert(io.open(path, "rb"))
      f:seek("set", 0x10000000 + off)
      local v = string.unpack("<I4", f:read(4))
      f:close()
      return v
    end
    local function poke(path, off, v)
      local f = assert(io.open(path, "r+b"))
      f:seek("set", 0x10000000 + off)
      f:write(string.pack("<I4", v))
      f:close()
    end

    it("switches the SPI-slave pins to GPIO, drives DSET/DCLR, reads DATA, and restores", function()
      local mem = dir .. "/mem"
      sh(("truncate -s %d %s"):format(MEM_SIZE, h.q(mem)))   -- sparse: costs no disk
      poke(mem, 0x060, 0x00000000)                           -- spi_s in SPI-slave mode
      local lines = assert(gpio.open(with{ backend = "mmio", chip = "mt7688", mem_path = mem,
        initial = { 0, 0, 1 } }))
      assert.are.equal(0x4, reg(mem, 0x060) & 0xC)           -- GPIO1_MODE bits 3:2 = 01
      assert.are.equal((1 << 3) | (1 << 15) | (1 << 16), reg(mem, 0x600)) -- outputs
      assert.are.equal(1 << 16, reg(mem, 0x630))             -- MOSI set high at open
      assert(lines:set(2, 1))
      assert.are.equal(1 << 15, reg(mem, 0x630))             -- SCK high: one DSET store
      assert(lines:set(3, 0))
      assert.are.equal(1 << 16, reg(mem, 0x640))             -- MOSI low: one DCLR store
      poke(mem, 0x620, 1 << 17)
      assert.are.equal(1, lines:get(4))
      poke(mem, 0x620, 0)
      assert.are.equal(0, lines:get(4))
      assert.are.equal(0, lines:stats().syscalls)
      lines:close()
      assert.are.equal(0, reg(mem, 0x600))                   -- all inputs again
      assert.are.equal(0, reg(mem, 0x060))                   -- pinmux restored
    end)

    it("switches only the pinmux for the sysfs and gpiod backends", function()
      local mem = dir .. "/mem"
      sh(("truncate -s %d %s"):format(MEM_SIZE, h.q(mem)))
      poke(mem, 0x060, 0x00000003)
      assert.are.equal("changed", gpio.mt7688_pinmux(mem))
      assert.are.equal(0x7, reg(mem, 0x060))                 -- bits 3:2 = 01, the rest kept
      assert.are.equal("already", gpio.mt7688_pinmux(mem))
    end)

    it("refuses to touch /dev/mem on a machine that is not an MT7688", function()
      local f = io.open("/proc/cpuinfo")
      local cpu = f and f:read("a") or ""
      if f then f:close() end
      assert.is_nil(cpu:find("MT7688", 1, true), "this spec runs off the board")
      local lines, err = gpio.open(with{ backend = "mmio", chip = "x" })
      assert.is_nil(lines)
      assert.matches("^mmio: /proc/cpuinfo names no MT7688/MT7628; refusing", err)
      assert.matches("refusing", select(2, gpio.mt7688_pinmux()))
    end)

    it("refuses lines the MT7688 does not have, and names /dev/mem problems", function()
      local mem = dir .. "/mem"
      sh(("truncate -s %d %s"):format(MEM_SIZE, h.q(mem)))
      local lines, err = gpio.open{ backend = "mmio", chip = "x", mem_path = mem, lines = { 96 },
        outputs = { true } }
      assert.is_nil(lines)
      assert.are.equal("mmio: GPIO 96 does not exist on the MT7688 (0..95)", err)
      lines, err = gpio.open(with{ backend = "mmio", chip = "x", mem_path = dir .. "/nomem" })
      assert.is_nil(lines)
      assert.are.equal(dir .. "/nomem: " .. h.strerror.ENOENT, err)
    end)
  end)

  describe("gpiod", function()
    it("names the chip and the cause when it cannot be opened", function()
      local lines, err = gpio.open(with{ backend = "gpiod", chip = "gpiochip-none" })
      assert.is_nil(lines)
      assert.matches("^gpiochip%-none: ", err)
    end)
  end)

  it("rejects bad arguments with errors that say what is wrong", function()
    assert.has_error(function() gpio.open{ chip = "x", lines = { 1 } } end,
      "gpio.open: 'backend' is required (gpiod, sysfs, mmio or sim)")
    assert.has_error(function() gpio.open{ backend = "usb", chip = "x", lines = { 1 } } end,
      "gpio.open: unknown backend 'usb' (gpiod, sysfs, mmio or sim)")
    assert.has_error(function() gpio.open{ backend = "sysfs", chip = "x", lines = { -1 } } end,
      "gpio.open: lines[1] is not a line number")
    assert.has_error(function() gpio.open{ backend = "sysfs", chip = 12345, lines = { 1 } } end,
      "gpio.open: 'chip' must be a string, not a number")
    -- a count is checked whole: 2^32 + 1 lines is not 1 line as a C int
    local huge = setmetatable({ 1 }, { __len = function() return (1 << 32) + 1 end })
    assert.has_error(function() gpio.open{ backend = "sysfs", chip = "x", lines = huge } end,
      "gpio.open: between 1 and 8 lines")
    local lines, err = gpio.open{ backend = "sysfs", chip = "x", lines = { 4, 4 }, outputs = {} }
    assert.is_nil(lines)
    assert.are.equal("x: line 4 is given twice", err)
  end)

  describe("sim", function()
    it("keeps an existing simulated chip's part, whatever part is asked for", function()
      local parts = require "fotahost.avr.parts"
      local lines = assert(gpio.open(with{ backend = "sim", chip = dir, part = parts.m32u4 }))
      lines:close()
      -- a real chip is what it is: the ISP's signature check tells
      lines = assert(gpio.open(with{ backend = "sim", chip = dir, part = parts.m328p }))
      lines:close()
      assert.matches("^part=m32u4\n", h.read(dir .. "/fuses.txt"))
      assert.are.equal(parts.m32u4.flash_size, #h.read(dir .. "/flash.bin"))
    end)

    it("takes the part of a new chip by id", function()
      local lines = assert(gpio.open(with{ backend = "sim", chip = dir, part = "m328p" }))
      lines:close()
      assert.matches("^part=m328p\n", h.read(dir .. "/fuses.txt"))
      local ok, err = pcall(gpio.open, with{ backend = "sim", chip = dir, part = "m999" })
      assert.is_false(ok)
      assert.matches("^gpio.open: sim: unknown part 'm999'", err)
    end)
  end)

  describe("backends", function()
    -- In a process of its own: the backends registered in this one depend
    -- on what the specs before ran.
    local function lua(code, env)
      local r = h.run({ "-e", "local gpio = require 'fotahost.gpio'\n" .. code }, { env = env })
      assert.are.equal(0, r.status, r.err)
      return r.out
    end
    local SIM = "gpio.open{ backend = 'sim', chip = %q, lines = { 3 }, outputs = { true },"
      .. " part = require('fotahost.avr.parts').m32u4 }"

    it("registers the built-in ones, and sim from its plugin the first time it is asked for", function()
      local out = lua("print(table.concat(gpio.backends(), ' '))\n"
        .. "local lines = assert(" .. SIM:format(dir) .. ")\n"
        .. "print(lines, table.concat(gpio.backends(), ' '))")
      assert.are.equal("gpiod sysfs mmio\ngpio lines sim:" .. dir .. " [3]\tgpiod sysfs mmio sim\n", out)
    end)

    it("says the sim backend is the development wing's when its plugin is not installed", function()
      local out = lua("print(" .. SIM:format(dir) .. ")", { FOTAHOST_CPATH = dir .. "/?.so" })
      assert.are.equal("nil\tthe sim backend is part of the development wing: make install-dev\n", out)
    end)

    it("loads a backend plugin by name, never by path, and passes on its errors", function()
      local etc = dir .. "/etc"
      assert(os.execute("mkdir -p " .. h.q(etc .. "/fotahost/gpio_x")))
      h.write(etc .. "/fotahost/gpio_none.lua", "return {}")
      h.write(etc .. "/fotahost/gpio_boom.lua", "error('boom', 0)")
      h.write(etc .. "/fotahost/gpio_x/y.lua", "error('loaded a path', 0)")
      local function try(name)
        return "print(select(2, pcall(gpio.open, { backend = '" .. name .. "', chip = 'c', lines = { 1 } })))\n"
      end
      local out = lua(try("none") .. try("boom") .. try("x/y") .. try("x.y"), { FOTAHOST_SCRIPTS_DIR = etc })
      assert.are.equal("gpio.open: fotahost.gpio_none registered no backend 'none'\nboom\n"
        .. "gpio.open: unknown backend 'x/y' (gpiod, sysfs, mmio or sim)\n"
        .. "gpio.open: unknown backend 'x.y' (gpiod, sysfs, mmio or sim)\n", out)
    end)
  end)
end)
