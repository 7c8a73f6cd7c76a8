-- The virtual LinkIt Smart 7688 Duo: its ATmega32U4 runs the firmware that
-- `fotahost flash -c sim` wrote, and what it does with D13 and Serial1 is
-- timed in simulated time, from the MCU's own cycle counter.
local h = require "helper"
local vb = require "fotahost.vboard"
local ihex = require "fotahost.ihex"

local HZ = 8000000
-- An erased 4 KB boot section (BOOTRST programmed, BOOTSZ = 00, the board's
-- factory fuses): 2048 words of 0xFFFF, one cycle each, before the sketch.
local SLIDE = 2048 / HZ

local available, why = vb.available()
local function firmware(name)
  assert(available, why)
  return h.firmware(name)
end

-- A test firmware of spec/firmware, built with avr-gcc into `dir`.
local function spec_firmware(dir, name)
  assert(available, why)
  local src = h.top .. "/spec/firmware/" .. name .. ".c"
  local elf, hex = dir .. "/" .. name .. ".elf", dir .. "/" .. name .. ".hex"
  local ok = os.execute(("avr-gcc -mmcu=atmega32u4 -DF_CPU=8000000UL -std=gnu11 -Os -Wall -Werror -o %s %s "
    .. ">%s/avr-gcc.log 2>&1 && avr-objcopy -O ihex -R .eeprom %s %s"):format(
    h.q(elf), h.q(src), h.q(dir), h.q(elf), h.q(hex)))
  assert(ok, "building " .. src .. " failed (it needs gcc-avr and avr-libc):\n"
    .. (h.read(dir .. "/avr-gcc.log") or ""))
  return hex
end

local function is_link(path)
  return os.execute("test -L " .. h.q(path)) == true
end

local function flash_cmd(chip, hex)
  return { "flash", "-q", "-c", "sim", "-P", chip, "-U", "flash:w:" .. hex }
end

local function flash(chip, hex)
  local r = h.run(flash_cmd(chip, hex))
  assert.are.equal(0, r.status, r.err)
end

-- Steps `board` (unpaced) until `t` simulated seconds; returns the D13
-- transitions seen on the way.
local function run_until(board, t, events)
  events = events or {}
  while board:time() < t do
    board:step(0.05, t)
    for _, e in ipairs(board:led_events()) do events[#events + 1] = e end
  end
  return events
end

-- Asserts `events` alternate on/off, `half` seconds apart within 0.5%,
-- and returns how many intervals were checked.
local function assert_period(events, half)
  assert.is_true(#events >= 4, ("only %d D13 transitions"):format(#events))
  for i = 2, #events do
    local d = events[i].t - events[i - 1].t
    assert.is_true(math.abs(d - half) <= half * 0.005,
      ("transition %d: %.6f s after the previous one, expected %.3f s +- 0.5%%"):format(i, d, half))
    assert.are_not.equal(events[i].on, events[i - 1].on)
  end
  return #events - 1
end

-- The "dark" check: no transition at all.
local function assert_dark(events)
  assert.are.equal(0, #events, ("D13 changed %d time(s), first at %.6f s"):format(
    #events, events[1] and events[1].t or 0))
end

describe("the virtual board", function()
  local dir, chip
  before_each(function()
    assert(available, "the virtual board needs the fotahost.vboard.core plugin, built only where "
      .. "simavr is installed (apt-get install libsimavr-dev, then make): " .. tostring(why))
    dir = h.tmpdir()
    chip = dir .. "/chip"
    os.execute("mkdir " .. h.q(chip))
  end)
  after_each(function() h.rmdir(dir) end)

  it("runs blink-1000 at exactly 1 s, and blink-250 after flashing it over ISP while it runs", function()
    flash(chip, firmware("blink-1000.hex"))
    local board <close> = assert(vb.open(chip, { pace = false }))
    local before = run_until(board, 5.5)
    assert.are.equal(5, assert_period(before, 1.0) + 1)
    assert.is_true(before[1].on)
    assert.is_true(math.abs(before[1].t - 1.0) < 0.001)
    local restarts = board:stats().restarts

    -- Flash blink-250 from a child process while this one runs the board.
    local status = dir .. "/flash.status"
    local argv = {}
    for i, a in ipairs(flash_cmd(chip, firmware("blink-250.hex"))) do argv[i] = h.q(a) end
    os.execute(("(%s %s >%s/flash.out 2>&1; echo $? >%s.tmp; mv %s.tmp %s) &"):format(
      h.q(h.bin), table.concat(argv, " "), h.q(dir), h.q(status), h.q(status), h.q(status)))
    local during, resets = {}, {}
    local limit = os.time() + 60
    while not h.read(status) do
      assert(os.time() < limit, "fotahost flash did not finish in 60 s")
      board:step(0.01)
      for _, e in ipairs(board:led_events()) do during[#during + 1] = e end
      for _, e in ipairs(board:reset_events()) do resets[#resets + 1] = e end
    end
    assert.are.equal("0\n", h.read(status), h.read(dir .. "/flash.out"))
    -- Let the board see RESET released, then run on.
    while board:stats().halted or #resets < 2 do
      assert(os.time() < limit, "the board never left reset")
      board:step(0.01)
      for _, e in ipairs(board:led_events()) do during[#during + 1] = e end
      for _, e in ipairs(board:reset_events()) do resets[#resets + 1] = e end
    end
    assert.are.equal(2, #resets)
    local halted_at, restarted_at = resets[1].t, resets[2].t
    assert.is_true(resets[1].halted)
    assert.is_false(resets[2].halted)
    assert.is_true(restarted_at > halted_at)
    assert.are.equal(restarts + 1, board:stats().restarts)
    -- Nothing happens on D13 while RESET is held (at most the LED going
    -- dark at the very moment the MCU halts).
    for _, e in ipairs(during) do
      local inside = e.t > halted_at and e.t < restarted_at
      assert.is_false(inside, ("D13 %s at %.6f s while the MCU was held in reset (%.6f..%.6f)"):format(
        e.on and "on" or "off", e.t, halted_at, restarted_at))
      if e.t == halted_at then assert.is_false(e.on) end
    end

    -- The board ran on (unpaced) until the child had exited: look at the
    -- first 2.1 s after the restart.
    run_until(board, restarted_at + 2.1, during)
    local after = {}
    for _, e in ipairs(during) do
      if e.t >= restarted_at and e.t <= restarted_at + 2.1 then after[#after + 1] = e end
    end
    assert.are.equal(8, assert_period(after, 0.25) + 1)
    assert.is_true(math.abs(after[1].t - restarted_at - 0.25) < 0.001)
  end)

  it("sees no D13 transition from dark, and the same check catches a blinking firmware", function()
    flash(chip, firmware("dark.hex"))
    local board <close> = assert(vb.open(chip, { pace = false }))
    assert_dark(run_until(board, 5))
    assert.is_false(board:led())
    board:close()

    flash(chip, firmware("blink-250.hex"))
    local blinking <close> = assert(vb.open(chip, { pace = false }))
    local events = run_until(blinking, 5)
    assert.has_error(function() assert_dark(events) end)
  end)

  it("switches D13 with '1' and '0' on Serial1, within 1 ms of the byte's stop bit", function()
    flash(chip, firmware("serial-led.hex"))
    local board <close> = assert(vb.open(chip, { pace = false }))
    local link, pts = board:tty()
    assert.are.equal(chip .. "/ttyS0", link)
    assert.matches("^/dev/pts/%d+$", pts)
    run_until(board, 0.01)
    local tty = assert(io.open(link, "r+b"))
    local leds, serial = {}, {}
    local function collect()
      for _, e in ipairs(board:led_events()) do leds[#leds + 1] = e end
      for _, e in ipairs(board:serial_events()) do serial[#serial + 1] = e end
    end
    -- One byte at a time, each followed by 5 ms of simulated time.
    for _, c in ipairs({ "1", "x", "0", "1" }) do
      tty:write(c)
      tty:flush()
      local t = board:time() + 0.005
      local rx, limit = 0, os.time() + 10
      while board:time() < t or rx == 0 do
        assert(os.time() < limit, ("'%s' did not reach the MCU in 10 s (stopped: %s)")
          :format(c, tostring(board:stats().stopped)))
        board:step(0.01, t)
        collect()
        rx = 0
        for _, e in ipairs(serial) do if e.dir == "rx" then rx = rx + 1 end end
      end
    end
    tty:close()
    collect()

    local sent, rx = {}, {}
    for _, e in ipairs(serial) do
      if e.dir == "tx" then sent[#sent + 1] = string.char(e.byte) else rx[#rx + 1] = e end
    end
    assert.are.equal("ready\r\n", table.concat(sent))
    assert.are.equal(4, #rx)
    assert.are.same({ "1", "x", "0", "1" },
      { string.char(rx[1].byte), string.char(rx[2].byte), string.char(rx[3].byte), string.char(rx[4].byte) })
    assert.are.equal(3, #leds) -- on, off, on: 'x' changes nothing
    for i, k in ipairs({ 1, 3, 4 }) do
      local d = leds[i].t - rx[k].t
      assert.is_true(d >= 0 and d <= 0.001,
        ("D13 changed %.6f s after the end of the stop bit of '%s'"):format(d, string.char(rx[k].byte)))
      assert.are.equal(rx[k].byte == 49, leds[i].on)
    end
    assert.is_true(board:led())
  end)

  it("fotahost board prints D13's transitions as they happen", function()
    flash(chip, firmware("blink-250.hex"))
    local r = h.run({ "board", "--sim", chip, "--for", "1.1", "--unpaced", "--log", dir .. "/led.log" })
    assert.are.equal(0, r.status, r.err)
    assert.matches("Serial1 on " .. chip:gsub("%p", "%%%0") .. "/ttyS0", r.out)
    local lines = {}
    for l in r.out:gmatch("D13[^\n]*") do lines[#lines + 1] = l end
    assert.are.same({ "D13 on  at 0.250 s", "D13 off at 0.500 s", "D13 on  at 0.750 s",
      "D13 off at 1.000 s" }, lines)
    assert.matches("^t=0%.250%d+ D13 on\nt=0%.500%d+ D13 off\n", h.read(dir .. "/led.log"))
    -- the tty link goes with the board, and its pid file
    assert.is_false(is_link(chip .. "/ttyS0"))
    assert.is_nil(h.read(chip .. "/ttyS0.pid"))

    -- Paced: in step with real time, for a short while.
    r = h.run({ "board", "--sim", chip, "--for", "0.3" })
    assert.are.equal(0, r.status, r.err)
    assert.matches("D13 on  at 0%.250 s\n", r.out)

    r = h.run({ "board", "--help" })
    assert.are.equal(0, r.status)
    assert.matches("usage: fotahost board %-%-sim DIR", r.out)
    r = h.run({ "board", "--sim", dir .. "/nothere" })
    assert.are.equal(1, r.status)
    assert.matches("nothere/flash%.bin: " .. h.literal(h.strerror.ENOENT), r.err)
  end)

  it("sees D13 follow DDRC7 when PORTC7 is set first, at the time of each write", function()
    flash(chip, spec_firmware(dir, "ddr-toggle"))
    local board <close> = assert(vb.open(chip, { pace = false }))
    local events = run_until(board, 0.025)
    assert.are.equal(2, #events)
    assert.is_true(board:led() == false)
    run_until(board, 0.05, events)
    assert.are.equal(3, #events)
    -- the factory fuses start the MCU in the erased boot section: it slides
    -- to the end of flash and wraps to 0x0000 first
    for i, want in ipairs({ { 0.010 + SLIDE, true }, { 0.020 + SLIDE, false }, { 0.030 + SLIDE, true } }) do
      assert.are.equal(want[2], events[i].on)
      assert.is_true(math.abs(events[i].t - want[1]) < 0.0002,
        ("transition %d at %.6f s, expected %.3f s"):format(i, events[i].t, want[1]))
    end
    assert.is_true(board:led())
  end)

  it("publishes its pid beside the tty link, and replaces a link left by a dead board", function()
    flash(chip, firmware("dark.hex"))
    -- What a board killed with -9 leaves: a link and the pid of a process gone.
    local p = io.popen("sh -c 'echo $$'")
    local dead = p:read("l")
    p:close()
    os.execute("ln -s /dev/pts/999999 " .. h.q(chip .. "/ttyS0"))
    h.write(chip .. "/ttyS0.pid", dead .. "\n")
    local board <close> = assert(vb.open(chip, { pace = false }))
    local link, pts = board:tty()
    local p2 = io.popen("readlink " .. h.q(link))
    assert.are.equal(pts, p2:read("l"))
    p2:close()
    local pid = assert(h.read(chip .. "/ttyS0.pid")):match("^(%d+)\n$")
    assert.is_truthy(pid)
    assert.are_not.equal(dead, pid)
    assert.is_true(os.execute("kill -0 " .. pid) == true)
    board:close()
    assert.is_false(is_link(chip .. "/ttyS0"))
    assert.is_nil(h.read(chip .. "/ttyS0.pid"))
  end)

  it("checks its options", function()
    flash(chip, firmware("dark.hex"))
    assert.has_error(function() vb.open(chip, { paced = false }) end, "vboard.open: unknown option 'paced'")
    assert.has_error(function() vb.open(chip, { pace = "false" }) end, "vboard.open: 'pace' must be a boolean")
    assert.has_error(function() vb.open(chip, { led_log = 1 }) end,
      "vboard.open: 'led_log' must be a string (a file name)")
    local b, err = vb.open(chip, { led_log = dir .. "/no/such/led.log" })
    assert.is_nil(b)
    assert.matches("no/such/led%.log", err)
    assert.is_false(is_link(chip .. "/ttyS0"))
  end)

  it("drops what the MCU sends while nobody has the tty open, and what is written while it is halted", function()
    flash(chip, firmware("serial-led.hex"))
    local board <close> = assert(vb.open(chip, { pace = false }))
    local link = board:tty()
    run_until(board, 0.02)
    for _ = 1, 2 do -- each restart prints "ready\r\n" to nobody
      flash(chip, firmware("serial-led.hex"))
      run_until(board, board:time() + 0.02)
    end
    assert.are.equal(3, board:stats().restarts + 1)
    assert.is_true(board:stats().tx_dropped >= 21)

    -- A reader now: no stale "ready" lines; then one fresh boot's.
    local out, done = dir .. "/tty.out", dir .. "/tty.done"
    os.execute(("(timeout 2 cat %s >%s; touch %s) &"):format(h.q(link), h.q(out), h.q(done)))
    for _ = 1, 25 do
      board:step(0.005, board:time() + 0.005)
      os.execute("sleep 0.02")
    end
    flash(chip, firmware("serial-led.hex"))
    local limit = os.time() + 10
    while not h.read(done) do
      assert(os.time() < limit, "the reader did not finish")
      board:step(0.005, board:time() + 0.005)
      os.execute("sleep 0.01")
    end
    assert.are.equal("ready\r\n", h.read(out))

    -- Written while RESET is held: lost, not kept for the next firmware.
    h.write(chip .. "/reset", "0\n")
    run_until(board, board:time() + 0.01)
    assert.is_true(board:stats().halted)
    board:serial_events()
    local tty = assert(io.open(link, "r+b"))
    tty:write("1")
    tty:flush()
    run_until(board, board:time() + 0.01)
    h.write(chip .. "/reset", "1\n")
    run_until(board, board:time() + 0.02)
    tty:close()
    assert.is_false(board:stats().halted)
    local rx = {}
    for _, e in ipairs(board:serial_events()) do
      if e.dir == "rx" then rx[#rx + 1] = e end
    end
    assert.are.equal(1, #rx)
    assert.are.equal(49, rx[1].byte)
    assert.is_true(rx[1].lost)
    assert.is_false(board:led())
  end)
  ---------------------------------------------------------------- the boot path

  -- Writes the high fuse of the chip (BOOTRST is bit 0, BOOTSZ bits 2:1).
  local function set_hfuse(value)
    local r = h.run({ "flash", "-q", "-c", "sim", "-P", chip, "-U", ("hfuse:w:0x%02X:m"):format(value) })
    assert.are.equal(0, r.status, r.err)
  end

  -- The time of the first D13 transition in the first `t` seconds, or nil.
  local function first_blink(t)
    local board <close> = assert(vb.open(chip, { pace = false }))
    local events = run_until(board, t)
    return events[1] and events[1].t, board:stats()
  end

  it("starts at the boot section when BOOTRST is programmed: a hanging bootloader keeps the sketch dark", function()
    -- blink-250 with an endless loop (rjmp .-2) where Caterina would be
    local image = assert(ihex.load(firmware("blink-250.hex")))
    image = assert(image:merge(ihex.from_binary("\xFF\xCF", 0x7000)))
    local hex = assert(image:write(dir .. "/hang.hex")) and dir .. "/hang.hex"
    flash(chip, hex)
    assert.matches("hfuse=0xD8\n", h.read(chip .. "/fuses.txt")) -- the board's factory fuses
    local board <close> = assert(vb.open(chip, { pace = false }))
    assert.are.equal(0x7000, board:stats().boot_pc)
    assert_dark(run_until(board, 2))
    assert.is_false(board:stats().stopped)
    board:close()

    -- BOOTRST unprogrammed: reset starts at 0x0000, and the same flash blinks
    set_hfuse(0xD9)
    local t, st = first_blink(0.3)
    assert.are.equal(0, st.boot_pc)
    assert.is_true(t and math.abs(t - 0.250) < 1e-4, ("first transition at %s s"):format(tostring(t)))
  end)

  it("slides through an erased boot section to the end of flash and wraps to 0x0000", function()
    flash(chip, firmware("blink-250.hex")) -- the chip erase wiped the boot section
    local board <close> = assert(vb.open(chip, { pace = false }))
    local events = run_until(board, 1.1)
    assert.are.equal(4, assert_period(events, 0.25) + 1)
    assert.are.equal(1, board:stats().wraps)
    assert.is_nil(board:stats().last_error)
    board:close()
    -- the slide is what BOOTRST costs: 2048 one-cycle words before the sketch
    set_hfuse(0xD9)
    local from_zero = first_blink(0.3)
    assert.is_true(math.abs(events[1].t - from_zero - SLIDE) < 1e-6,
      ("first transition %.6f s after the one from 0x0000, expected the slide, %.6f s")
        :format(events[1].t - from_zero, SLIDE))
  end)

  it("boots through the stand-in bootloader, which hands over to the sketch 0.5 s after reset", function()
    flash(chip, firmware("blink-250.with_bootloader.hex"))
    local board <close> = assert(vb.open(chip, { pace = false }))
    local events = run_until(board, 1.6)
    assert.are.equal(4, assert_period(events, 0.25) + 1)
    assert.is_true(math.abs(events[1].t - 0.750) < 1e-4, ("first transition at %.6f s"):format(events[1].t))
    assert.are.equal(0, board:stats().wraps)
    board:close()

    -- BOOTSZ as the datasheet says: a smaller boot section starts above the
    -- bootloader, in erased flash, and slides past it to the sketch
    set_hfuse(0xD9)
    local from_zero = first_blink(0.3)
    for _, c in ipairs({ { 0xDE, 0x7E00 }, { 0xDC, 0x7C00 }, { 0xDA, 0x7800 } }) do
      set_hfuse(c[1])
      local t, st = first_blink(0.3)
      assert.are.equal(c[2], st.boot_pc)
      local slide = (0x8000 - c[2]) / 2 / HZ
      assert.is_true(t and math.abs(t - from_zero - slide) < 1e-6,
        ("hfuse 0x%02X: first transition at %s s"):format(c[1], tostring(t)))
    end
  end)
  it("after a FOTA with the stand-in bootloader configured, boots through it into the new sketch", function()
    local www = dir .. "/www"
    os.execute("mkdir " .. h.q(www))
    for _, f in ipairs({ "blink-1000.hex", "blink-250.with_bootloader.hex" }) do
      assert(os.execute(("cp %s %s/"):format(h.q(firmware(f)), h.q(www))))
    end
    local srv = h.start_server({ "spec/support/http_test_server.lua", "--root", www })
    local cfg = h.write(dir .. "/config.lua", ([[
return { device_id = "Dev1", device_key = "Key12345", board = "sim", sim_dir = %q, state_dir = %q,
         volatile_state_ok = true, http = { retries = 0 }, bootloader = %q }
]]):format(chip, dir .. "/state", firmware("bootloader.hex")))
    local function fota(file)
      local r = h.run({ "fota", "--config", cfg, "--url", srv.url .. "/files/" .. file })
      assert.are.equal(0, r.status, r.err)
      return r.out
    end
    local function boot(t)
      local board <close> = assert(vb.open(chip, { pace = false }))
      return run_until(board, t)
    end
    local ok, err = pcall(function()
      -- a plain sketch: the configured bootloader merged in, as for any image
      assert.are.equal("downloading\nverifying\n" .. h.UNSIGNED .. "\nflashing\ndone\n", fota("blink-1000.hex"))
      local events = boot(4.6)
      assert.are.equal(4, assert_period(events, 1.0) + 1)
      assert.is_true(math.abs(events[1].t - 1.5) < 1e-4, ("first transition at %.6f s"):format(events[1].t))
      -- the IDE's with_bootloader export of the next version: its application part
      assert.matches("^downloading\nverifying\nverifying: the image carries the configured bootloader "
        .. "%(0x7000%.%.0x%x+%): its application part is flashed\n" .. h.UNSIGNED:gsub("%p", "%%%0")
        .. "\nflashing\ndone\n$",
        fota("blink-250.with_bootloader.hex"))
      events = boot(1.6)
      assert.are.equal(4, assert_period(events, 0.25) + 1)
      assert.is_true(math.abs(events[1].t - 0.75) < 1e-4, ("first transition at %.6f s"):format(events[1].t))
      -- the flash path leaves the fuses as the board shipped them (BOOTRST
      -- programmed) and writes the lock bits (0x0F, read back as 0xCF)
      local fuses = h.read(chip .. "/fuses.txt")
      assert.matches("hfuse=0xD8\n", fuses)
      assert.matches("lock=0xCF\n", fuses)
    end)
    srv.stop()
    assert(ok, err)
  end)
end)
