-- `fotahost flash`, the avrdude-compatible front end, driven as a user
-- drives it, on the simulated chip.
local h = require "helper"
local ihex = require "fotahost.ihex"
local sys = require "fotahost.sys"

local function pattern(n, seed)
  local t = {}
  for i = 1, n do t[i] = string.char((i * seed) % 251) end
  return table.concat(t)
end

describe("fotahost flash", function()
  local dir, chip
  before_each(function()
    dir = h.tmpdir()
    chip = dir .. "/chip"
    os.execute("mkdir " .. h.q(chip))
  end)
  after_each(function() h.rmdir(dir) end)

  local function flash(args, env)
    local a = { "flash" }
    for _, v in ipairs(args) do a[#a + 1] = v end
    return h.run(a, { cwd = dir, env = env })
  end

  -- Puts `data` at `addr` into a HEX file; returns its path.
  local function hexfile(name, data, addr)
    local path = dir .. "/" .. name
    assert(ihex.from_binary(data, addr or 0):write(path))
    return path
  end

  -- A chip with known firmware, to show that failures leave it alone.
  local function preload_chip()
    local r = flash({ "-q", "-c", "sim", "-P", chip, "-U", "flash:w:" .. hexfile("old.hex", "old firmware") })
    assert.are.equal(0, r.status, r.err)
    return h.read(chip .. "/flash.bin")
  end

  it("runs the tutorial's command: flash equals the HEX, 0xFF elsewhere, lock reads 0xCF", function()
    local boot = pattern(4086, 13)
    hexfile("Caterina.hex", boot, 0x7000)
    local r = flash({ "-p", "m32u4", "-c", "sim", "-P", chip, "-v", "-e",
      "-U", "flash:w:Caterina.hex", "-U", "lock:w:0x0f:m" })
    assert.are.equal(0, r.status, r.err)
    assert.matches("device signature = 0x1e9587", r.err)
    assert.matches("4086 bytes of flash written", r.err)
    assert.matches("4086 bytes of flash verified", r.err)
    assert.matches("1 byte of lock written %(0x0f, reads 0xcf", r.err)
    local fb = h.read(chip .. "/flash.bin")
    assert.are.equal(("\255"):rep(0x7000) .. boot .. ("\255"):rep(32768 - 0x7000 - #boot), fb)
    assert.matches("lock=0xCF", h.read(chip .. "/fuses.txt"))
    assert.is_nil(h.read(chip .. "/violations.log"))
  end)

  it("refuses a bad HEX file before touching the MCU", function()
    local before = preload_chip()
    h.write(dir .. "/bad.hex", ":0400000001020304F1\n:00000001FF\n")
    local r = flash({ "-c", "sim", "-P", chip, "-e", "-U", "flash:w:bad.hex" })
    assert.are.equal(1, r.status)
    assert.matches("bad%.hex:1: .*checksum", r.err)
    assert.falsy(r.err:find("initialized", 1, true))   -- never connected
    -- a file of blank lines: named, with no line number to give
    h.write(dir .. "/blank.hex", "\n\n")
    r = flash({ "-c", "sim", "-P", chip, "-e", "-U", "flash:w:blank.hex:i" })
    assert.are.equal(1, r.status)
    assert.are.equal("fotahost flash: blank.hex: no records (missing end-of-file record)\n", r.err)
    assert.are.equal(before, h.read(chip .. "/flash.bin"))
  end)

  it("refuses an image that does not fit, and a missing file, before touching the MCU", function()
    local before = preload_chip()
    hexfile("big.hex", "x", 0x8000)
    local r = flash({ "-c", "sim", "-P", chip, "-U", "flash:w:big.hex" })
    assert.are.equal(1, r.status)
    assert.matches("big%.hex: data up to 0x8000 does not fit the flash of ATmega32U4 %(32768 bytes%)", r.err)
    r = flash({ "-c", "sim", "-P", chip, "-U", "flash:w:nothere.hex" })
    assert.are.equal(1, r.status)
    assert.matches("nothere%.hex", r.err)
    assert.are.equal(before, h.read(chip .. "/flash.bin"))
  end)

  it("refuses a chip of another part unless forced", function()
    local before = preload_chip()
    hexfile("fw.hex", "new firmware")
    local r = flash({ "-p", "m328p", "-c", "sim", "-P", chip, "-U", "flash:w:fw.hex" })
    assert.are.equal(1, r.status)
    assert.matches("signature 1E 95 87 is not ATmega328P's %(1E 95 0F%): wrong part or wrong chip", r.err)
    assert.are.equal(before, h.read(chip .. "/flash.bin"))
    r = flash({ "-p", "m328p", "-c", "sim", "-P", chip, "-F", "-U", "flash:w:fw.hex" })
    assert.are.equal(0, r.status, r.err)
    assert.are.equal("new firmware", h.read(chip .. "/flash.bin"):sub(1, 12))
  end)

  it("never flashes a file it cannot recognise (an error page saved as sketch.hex)", function()
    local before = preload_chip()
    local page = "<html><body>404 Not Found</body></html>\n"
    h.write(dir .. "/sketch.hex", page)
    local r = flash({ "-c", "sim", "-P", chip, "-U", "flash:w:sketch.hex" })
    assert.are.equal(1, r.status)
    assert.matches("sketch%.hex:1: ", r.err)
    h.write(dir .. "/sketch", page)
    r = flash({ "-c", "sim", "-P", chip, "-U", "flash:w:sketch" })
    assert.are.equal(1, r.status)
    assert.matches("sketch: text in no format fotahost knows %(not Intel HEX%); add :i or :r", r.err)
    h.write(dir .. "/prog.elf", "\127ELF\2\1\1")
    r = flash({ "-c", "sim", "-P", chip, "-U", "flash:w:prog.elf" })
    assert.matches("prog%.elf: an ELF file", r.err)
    assert.are.equal(before, h.read(chip .. "/flash.bin"))
    -- but binary data is raw, and a HEX file with a byte-order mark is HEX
    h.write(dir .. "/fw.bin", "\0\1\2\255\254")
    assert.are.equal(0, flash({ "-q", "-c", "sim", "-P", chip, "-U", "flash:w:fw.bin" }).status)
    assert.are.equal("\0\1\2\255\254", h.read(chip .. "/flash.bin"):sub(1, 5))
    local hex = ihex.from_binary("BOM", 0):to_hex()
    h.write(dir .. "/bom.hex", "\239\187\191" .. hex)
    assert.are.equal(0, flash({ "-q", "-c", "sim", "-P", chip, "-U", "flash:w:bom.hex" }).status)
    assert.are.equal("BOM", h.read(chip .. "/flash.bin"):sub(1, 3))
  end)

  it("reads a backup listed before a write from the chip as it was, then erases", function()
    local before = preload_chip()
    hexfile("new.hex", "new firmware")
    local r = flash({ "-c", "sim", "-P", chip, "-U", "flash:r:backup.bin:r", "-U", "flash:w:new.hex" })
    assert.are.equal(0, r.status, r.err)
    assert.are.equal(before:gsub("\255+$", ""), h.read(dir .. "/backup.bin"))
    assert.matches("read to backup%.bin.*erasing chip", r.err:gsub("\n", " "))
    -- an output that cannot be written stops everything before the MCU
    r = flash({ "-c", "sim", "-P", chip, "-U", "flash:r:/no/such/dir/b.bin:r", "-U", "flash:w:new.hex" })
    assert.are.equal(1, r.status)
    assert.matches("/no/such/dir/b%.bin%.tmp: " .. h.literal(h.strerror.ENOENT), r.err)
  end)

  it("writes a read into a character device or FIFO, never replacing it", function()
    local before = preload_chip()
    local data = before:gsub("\255+$", "")
    -- a character device stays the device it is (as root, a rename would
    -- make it a file). The spec's own null device where it can make one
    -- (root, as in CI), so code that broke this never touches /dev/null;
    -- otherwise /dev/null, which only root could replace.
    local null = dir .. "/null"
    if not os.execute("mknod " .. h.q(null) .. " c 1 3 2>/dev/null") then null = "/dev/null" end
    local r = flash({ "-c", "sim", "-P", chip, "-U", "flash:r:" .. null .. ":r" })
    assert.are.equal(0, r.status, r.err)
    assert.matches("bytes of flash read to " .. null:gsub("%p", "%%%0"), r.err)
    assert.are.equal("char", sys.lstat(null).type)
    assert.is_nil(sys.lstat(null .. ".tmp"))
    assert.are.equal("char", sys.lstat("/dev/null").type)
    -- a FIFO a process reads gets the bytes, and stays a FIFO
    local fifo = dir .. "/fifo"
    assert(os.execute("mkfifo " .. h.q(fifo)))
    local reader = io.popen("cat " .. h.q(fifo))
    local hold = assert(io.open(fifo, "w"))   -- returns once cat has the FIFO open
    r = flash({ "-c", "sim", "-P", chip, "-U", "flash:r:" .. fifo .. ":r" })
    hold:close()
    local got = reader:read("a")
    reader:close()
    assert.are.equal(0, r.status, r.err)
    assert.are.equal(data, got)
    assert.are.equal("fifo", sys.lstat(fifo).type)
    -- a FIFO nobody reads is an error, not a wait
    r = flash({ "-c", "sim", "-P", chip, "-U", "flash:r:" .. fifo .. ":r" })
    assert.are.equal(1, r.status)
    assert.matches("fifo: a FIFO no process reads", r.err)
    assert.are.equal("fifo", sys.lstat(fifo).type)
  end)

  it("refuses to read into a symbolic link or a directory, before touching the MCU", function()
    local before = preload_chip()
    hexfile("new.hex", "new firmware")
    h.write(dir .. "/precious.txt", "keep me")
    assert(os.execute("ln -s precious.txt " .. h.q(dir .. "/backup.bin")))
    local r = flash({ "-c", "sim", "-P", chip, "-U", "flash:r:backup.bin:r", "-U", "flash:w:new.hex" })
    assert.are.equal(1, r.status)
    assert.matches("backup%.bin: a symbolic link: refused %(name the file it points to%)", r.err)
    assert.falsy(r.err:find("initialized", 1, true))   -- never connected
    assert.are.equal("link", sys.lstat(dir .. "/backup.bin").type)
    assert.are.equal("keep me", h.read(dir .. "/precious.txt"))
    assert.are.equal(before, h.read(chip .. "/flash.bin"))
    os.execute("mkdir " .. h.q(dir .. "/adir"))
    r = flash({ "-c", "sim", "-P", chip, "-U", "flash:r:adir:r" })
    assert.are.equal(1, r.status)
    assert.matches("adir: a directory: refused", r.err)
    -- a link planted where the writability probe goes is replaced, not followed
    assert(os.execute("ln -s precious.txt " .. h.q(dir .. "/b2.bin.tmp")))
    r = flash({ "-c", "sim", "-P", chip, "-U", "flash:r:b2.bin:r" })
    assert.are.equal(0, r.status, r.err)
    assert.are.equal("keep me", h.read(dir .. "/precious.txt"))
    assert.are.equal(before:gsub("\255+$", ""), h.read(dir .. "/b2.bin"))
  end)

  it("refuses devices, FIFOs and files larger than the part as input, without reading them", function()
    local before = preload_chip()
    local r = flash({ "-c", "sim", "-P", chip, "-U", "flash:w:/dev/zero" })
    assert.are.equal(1, r.status)
    assert.matches("/dev/zero: a character device, not a regular file: refused", r.err)
    r = flash({ "-c", "sim", "-P", chip, "-U", "eeprom:w:/dev/zero:r" })
    assert.matches("/dev/zero: a character device, not a regular file: refused", r.err)
    assert(os.execute("mkfifo " .. h.q(dir .. "/in.fifo")))   -- no writer: must not hang
    r = flash({ "-c", "sim", "-P", chip, "-U", "flash:w:in.fifo:i" })
    assert.are.equal(1, r.status)
    assert.matches("in%.fifo: a FIFO, not a regular file: refused", r.err)
    -- the ATmega32U4's 32 KiB as HEX, with room to spare, is the limit: a
    -- larger file is refused from its size, not read
    assert(os.execute("truncate -s 2G " .. h.q(dir .. "/huge.hex")))
    r = flash({ "-c", "sim", "-P", chip, "-U", "flash:w:huge.hex" })
    assert.are.equal(1, r.status)
    assert.matches("huge%.hex: file too large %(2147483648 bytes, limit 589824 bytes%)", r.err)
    r = flash({ "-c", "sim", "-P", chip, "-U", "lfuse:w:huge.hex:h" })
    assert.matches("huge%.hex: file too large %(2147483648 bytes, limit 65552 bytes%)", r.err)
    assert.falsy(r.err:find("initialized", 1, true))
    assert.are.equal(before, h.read(chip .. "/flash.bin"))
  end)

  it("releases RESET and saves the chip when a step after connect fails", function()
    preload_chip()
    h.write(dir .. "/new.bin", "new")
    local r = flash({ "-c", "sim", "-P", chip, "-D", "-U", "flash:w:new.bin:r" })  -- no erase: verify fails
    assert.are.equal(1, r.status)
    -- "old firmware" under "new": 'o' & 'n' is 'n', but 'l' & 'e' (0x6C & 0x65) is 0x64
    assert.matches("verification error at 0x0001: file 0x65, MCU 0x64", r.err, 1, true)
    assert.are.equal("1\n", h.read(chip .. "/reset"))
  end)

  it("reads immediate values as C does, and verifies the signature", function()
    assert.are.equal(0, flash({ "-q", "-c", "sim", "-P", chip, "-U", "lock:w:0x0f:m" }).status)
    local r = flash({ "-c", "sim", "-P", chip, "-U", "lock:v:017:m", "-U", "signature:v:0x1e,0x95,0x87:m" })
    assert.are.equal(0, r.status, r.err)                    -- 017 is octal 0x0F
    assert.matches("3 bytes of signature verified", r.err)
    r = flash({ "-c", "sim", "-P", chip, "-U", "signature:v:0x1e,0x95,0x0f:m" })
    assert.are.equal(1, r.status)
    assert.matches("signature verification error: file 1E 95 0F, MCU 1E 95 87", r.err)
    r = flash({ "-c", "sim", "-P", chip, "-U", "lock:w:09:m" })
    assert.matches("'09' is not a byte value", r.err)
  end)

  it("slows SCK with -B or -i for an MCU on a slow clock, and rejects a bad value", function()
    -- A new ATmega32U4 runs at 1 MHz (its CKDIV8 fuse): an SCK phase must
    -- last 2 us (2 clocks), eight times what the 8 MHz default gives.
    h.write(chip .. "/faults", "clock 1000000\n")
    hexfile("fw.hex", "slow")
    flash({ "-q", "-c", "sim", "-P", chip, "-U", "flash:w:fw.hex" })
    assert.matches("SCK half%-period %d+ ns < 2000 ns", h.read(chip .. "/violations.log") or "(no violations)")
    local r
    for _, opts in ipairs({ { "-B", "4" }, { "-B4" }, { "-i", "2" } }) do
      os.remove(chip .. "/violations.log")
      local args = { "-c", "sim", "-P", chip }
      table.move(opts, 1, #opts, #args + 1, args)
      table.move({ "-U", "flash:w:fw.hex" }, 1, 2, #args + 1, args)
      r = flash(args)
      assert.are.equal(0, r.status, r.err)
      assert.is_nil(h.read(chip .. "/violations.log"), table.concat(opts, " "))
    end
    assert.are.equal("slow", h.read(chip .. "/flash.bin"):sub(1, 4))
    r = flash({ "-c", "sim", "-P", chip, "-B", "fast" })
    assert.matches("%-B fast: a time in microseconds expected", r.err)
  end)

  it("never drives SCK faster than the part allows, with a warning", function()
    hexfile("fw.hex", "quick")
    for _, c in ipairs({ { "-B", "0.00001", "0.5" }, { "-i", "0.1", "0.25" } }) do
      os.remove(chip .. "/violations.log")
      local r = flash({ "-q", "-c", "sim", "-P", chip, c[1], c[2], "-U", "flash:w:fw.hex" })
      assert.are.equal(0, r.status, r.err)
      assert.are.equal(("fotahost flash: %s %s is faster than the ATmega32U4 allows at 8 MHz; using %s us\n")
        :format(c[1], c[2], c[3]), r.err)
      assert.is_nil(h.read(chip .. "/violations.log"), c[1])
      assert.are.equal("quick", h.read(chip .. "/flash.bin"):sub(1, 5))
    end
    -- the limit itself is legal: no warning
    local r = flash({ "-q", "-c", "sim", "-P", chip, "-B", "0.5", "-U", "flash:w:fw.hex" })
    assert.are.equal(0, r.status, r.err)
    assert.are.equal("", r.err)
  end)

  it("fails when a lock byte does not take (lock bits stay programmed until an erase)", function()
    assert.are.equal(0, flash({ "-q", "-c", "sim", "-P", chip, "-U", "lock:w:0x0f:m" }).status)
    local r = flash({ "-c", "sim", "-P", chip, "-U", "lock:w:0x3f:m" })
    assert.are.equal(1, r.status)
    assert.matches("lock: wrote 0x3F, read back 0xCF (bits compared: 0x3F)", r.err, 1, true)
    -- with -e the erase clears the lock bits first
    r = flash({ "-c", "sim", "-P", chip, "-e", "-U", "lock:w:0x3f:m" })
    assert.are.equal(0, r.status, r.err)
    assert.matches("lock=0xFF", h.read(chip .. "/fuses.txt"))
  end)

  it("changes nothing in a dry run", function()
    local before = preload_chip()
    hexfile("fw.hex", "new firmware")
    local r = flash({ "-n", "-c", "sim", "-P", chip, "-e", "-U", "flash:w:fw.hex", "-U", "lock:w:0x0f:m" })
    assert.are.equal(0, r.status, r.err)
    assert.matches("dry run: the chip would be erased now", r.err)
    assert.matches("dry run: flash would be written from fw.hex", r.err)
    assert.are.equal(before, h.read(chip .. "/flash.bin"))
  end)

  it("reads memories back to files in each format, and verifies", function()
    local fw = pattern(300, 7)
    hexfile("fw.hex", fw)
    local w = flash({ "-q", "-c", "sim", "-P", chip, "-U", "flash:w:fw.hex",
      "-U", "hfuse:w:0xd9:m", "-U", "eeprom:w:0x01,0x02,0x03:m" })
    assert.are.equal(0, w.status, w.err)
    local r = flash({ "-c", "sim", "-P", chip, "-U", "flash:r:back.hex:i", "-U", "flash:r:back.bin:r",
      "-U", "hfuse:r:-:h", "-U", "signature:r:sig.txt:h", "-U", "eeprom:r:ee.bin:r",
      "-U", "flash:v:fw.hex:i", "-U", "hfuse:v:0xd9:m", "-U", "eeprom:v:0x01,0x02,0x03:m" })
    assert.are.equal(0, r.status, r.err)
    assert.are.equal(fw, h.read(dir .. "/back.bin"))        -- trailing 0xFF cut, as avrdude does
    assert.are.equal(fw, ihex.load(dir .. "/back.hex"):bytes(0, #fw - 1))
    assert.are.equal("0xd9\n", r.out)
    assert.are.equal("0x1e,0x95,0x87\n", h.read(dir .. "/sig.txt"))
    assert.are.equal("\1\2\3", h.read(dir .. "/ee.bin"):sub(1, 3))
    r = flash({ "-c", "sim", "-P", chip, "-U", "hfuse:v:0xd8:m" })
    assert.are.equal(1, r.status)
    assert.matches("hfuse verification error: file 0xd8, MCU 0xd9", r.err)
  end)

  it("reads programmer entries from -C +file, with ~ for inverted pins", function()
    -- A fake sysfs tree stands in for the board; nothing answers on it, so
    -- the run fails at the MCU, after using the entry's pins.
    local sysfs = dir .. "/sysfs"
    for _, n in ipairs({ 11, 18, 27, 8 }) do
      os.execute(("mkdir -p %s/gpio%d && echo in > %s/gpio%d/direction && echo 0 > %s/gpio%d/value")
        :format(h.q(sysfs), n, h.q(sysfs), n, h.q(sysfs), n))
    end
    h.write(dir .. "/extra.conf", [[
# as a board's uci-defaults script appends it
programmer
  id    = "yun-gpio";
  desc  = "Arduino Yun GPIO ISP";
  type  = "linuxgpio";
  reset = ~18;
  sck   = 11;
  sdo   = 27;
  sdi   = 8;
;
]])
    hexfile("fw.hex", "x")
    local r = flash({ "-v", "-c", "yun-gpio", "-C", "+" .. dir .. "/extra.conf", "-U", "flash:w:fw.hex" },
      { FOTAHOST_SYSFS_ROOT = sysfs })
    assert.are.equal(1, r.status)
    assert.matches("using 'yun%-gpio' from the configuration on sysfs, pins reset=18 sck=11 mosi=27 miso=8", r.err)
    assert.matches("no answer from the MCU", r.err)
    -- released afterwards: RESET let go through its inverter (driven low), then an input
    assert.are.equal("0", (h.read(sysfs .. "/gpio18/value"):gsub("%s", "")))
    assert.are.equal("in", (h.read(sysfs .. "/gpio18/direction"):gsub("%s", "")))
  end)

  it("uses configuration pin numbers as global sysfs numbers, without swapping", function()
    -- A kernel-6 style tree: the first chip's base is 512, and the
    -- configuration already says 515 for GPIO3.
    local sysfs = dir .. "/sysfs"
    os.execute(("mkdir -p %s/gpiochip512 && echo 512 > %s/gpiochip512/base"):format(h.q(sysfs), h.q(sysfs)))
    for _, n in ipairs({ 515, 527, 528, 529 }) do
      os.execute(("mkdir -p %s/gpio%d && echo in > %s/gpio%d/direction && echo 0 > %s/gpio%d/value")
        :format(h.q(sysfs), n, h.q(sysfs), n, h.q(sysfs), n))
    end
    h.write(dir .. "/k6.conf", 'programmer id = "k6"; type = "linuxgpio"; reset = 515; sck = 527;\n'
      .. '  mosi = 528; miso = 529; ;\n')
    hexfile("fw.hex", "x")
    local r = flash({ "-c", "k6", "-C", dir .. "/k6.conf", "-U", "flash:w:fw.hex" }, { FOTAHOST_SYSFS_ROOT = sysfs })
    assert.are.equal(1, r.status)
    assert.matches("no answer from the MCU %(MISO stays 0%) after 4 attempts", r.err)
    assert.falsy(r.err:find("swapped", 1, true))          -- one attempt, as configured
    assert.falsy(r.err:find("did not appear", 1, true))   -- 515, not 1027
  end)

  it("parses a real avrdude.conf and names what it knows when -c is unknown", function()
    local system = "/etc/avrdude.conf"
    local f = io.open(system)
    assert.truthy(f, "avrdude's configuration is a test dependency (.ci/install-deps installs avrdude)")
    f:close()
    local r = flash({ "-c", "nosuch", "-C", "+" .. dir .. "/empty.conf" }, { FOTAHOST_AVRDUDE_CONF = system })
    assert.are.equal(1, r.status)
    assert.matches("%S+empty%.conf", r.err)                 -- a missing +file is an error
    h.write(dir .. "/empty.conf", "# nothing\n")
    r = flash({ "-c", "nosuch", "-C", "+" .. dir .. "/empty.conf" }, { FOTAHOST_AVRDUDE_CONF = system })
    assert.are.equal(1, r.status)
    assert.matches("unknown programmer 'nosuch' %(linuxgpio, sysfs, gpiod, mmio, sim, "
      .. "or from the configuration: .*avrisp", r.err)
    r = flash({ "-c", "avrisp" }, { FOTAHOST_AVRDUDE_CONF = system })
    assert.matches("programmer 'avrisp' is of type 'stk500'; fotahost flash drives GPIO lines only", r.err)
  end)

  it("reports a broken configuration file with its line", function()
    h.write(dir .. "/broken.conf", 'programmer\n  id = "x";\n  type = "linuxgpio"\n  reset 3;\n;\n')
    local r = flash({ "-c", "x", "-C", dir .. "/broken.conf" })
    assert.are.equal(1, r.status)
    assert.matches("broken%.conf:4: ", r.err)
  end)

  it("explains bad options", function()
    local cases = {
      { {}, "no programmer given: use %-c" },
      { { "-c", "sim" }, "the sim programmer needs %-P DIR" },
      { { "-c", "sim", "-P", "x", "-U", "rom:w:f" }, "unknown memory type 'rom'" },
      { { "-c", "sim", "-P", "x", "-U", "flash:x:f" }, "unknown operation 'x'" },
      { { "-c", "sim", "-P", "x", "-U", "flash:w" }, "expected memtype:op:filename%[:format%]" },
      { { "-c", "sim", "-P", "x", "-U", "signature:w:f" }, "the signature cannot be written" },
      { { "-c", "sim", "-P", "x", "-p", "m9" }, "unknown part 'm9' %(known: m2560, m328p, m32u4%)" },
      { { "-c", "sim", "--board", "uno" }, "unknown board 'uno'" },
      { { "-Z" }, "unknown option '%-Z'" },
    }
    for _, c in ipairs(cases) do
      local r = flash(c[1])
      assert.are.equal(1, r.status, table.concat(c[1], " "))
      assert.matches(c[2], r.err)
    end
    local r = flash({ "--help" })
    assert.are.equal(0, r.status)
    assert.matches("usage: fotahost flash", r.out)
  end)

  it("shows avrdude-style progress bars on a terminal", function()
    hexfile("fw.hex", pattern(2000, 3))
    local p = io.popen(("cd %s && script -qec %s /dev/null < /dev/null 2>&1"):format(h.q(dir),
      h.q(h.q(h.bin) .. " flash -c sim -P chip -U flash:w:fw.hex")))
    local out = p:read("a")
    p:close()
    assert.matches("Writing | #+ | 100%% %d+%.%d%d s", out)
    assert.matches("Reading | #+ | 100%%", out)
  end)
end)
