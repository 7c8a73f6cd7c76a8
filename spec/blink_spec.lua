-- `fotahost blink` on the virtual board: the tutorial's board test, end to
-- end. `fotahost flash -c sim` writes serial-led; the board runs it in this
-- process, paced to real time; the real `fotahost blink` CLI talks to its
-- Serial1 pty; D13's transitions are timed in simulated time.
local h = require "helper"
local vb = require "fotahost.vboard"

describe("fotahost blink", function()
  local dir, chip
  before_each(function()
    local ok, why = vb.available()
    assert(ok, "the virtual board plugin is needed (apt-get install libsimavr-dev, then make): " .. tostring(why))
    dir = h.tmpdir()
    chip = dir .. "/chip"
    os.execute("mkdir " .. h.q(chip))
    local r = h.run({ "flash", "-q", "-c", "sim", "-P", chip, "-U", "flash:w:" .. h.firmware("serial-led.hex") })
    assert.are.equal(0, r.status, r.err)
  end)
  after_each(function() h.rmdir(dir) end)

  -- Runs the board and, once its MCU has said "ready" (its receiver is on),
  -- `fotahost blink ARGS` in the background; steps the board until blink
  -- exits and the board has caught up with every byte it sent. With
  -- `interrupt`, SIGINT goes to blink right after D13 is seen to turn on
  -- (so only blink itself can turn it off again); the number of bytes
  -- received by then is returned too, and so is blink's run time (wall
  -- clock, from its start to its exit).
  --
  -- The board runs as a scheduler task (fotahost.vboard.run) that waits on
  -- its tty between steps, so a byte from blink is taken in as soon as it
  -- is written, not after a sleep: the byte times the board records stay
  -- within a few ms of when blink wrote them, load or not.
  local function blink_on_board(args, interrupt)
    local sched = require "fotahost.sched"
    local sys = require "fotahost.sys"
    local board <close> = assert(vb.open(chip, { pace = true }))
    local leds, rx, mcu_ready = {}, {}, false
    local started_at, done_at, signalled
    -- Until blink has exited and the board has caught up with every byte it
    -- sent, plus 50 ms of simulated time for the last transition.
    local function caught_up()
      local last = rx[#rx]
      return board:stats().rx_pending == 0 and (not last or board:time() > last.t + 0.05)
    end
    sched.run(function()
      local t0 = sys.now()
      vb.run(board, { on_step = function(b)
        for _, e in ipairs(b:led_events()) do leds[#leds + 1] = e end
        for _, e in ipairs(b:serial_events()) do
          if e.dir == "rx" then rx[#rx + 1] = e else mcu_ready = true end
        end
        if mcu_ready and not started_at then
          started_at = sys.now()
          os.execute(("(cd %s || exit 1\n%s blink --board sim chip %s > out 2> err & echo $! > pid; wait $!; "
            .. "echo $? > status) &"):format(h.q(dir), h.q(h.bin), args))
        end
        if interrupt and not signalled and #leds >= 1 and leds[#leds].on then
          os.execute("kill -INT $(cat " .. h.q(dir .. "/pid") .. ")")
          signalled = #rx
        end
        if started_at and not done_at and h.read(dir .. "/status") then done_at = sys.now() end
        assert.is_true(sys.now() - t0 < 20, "fotahost blink did not finish")
        return not (done_at and sys.now() - done_at >= 0.05 and caught_up())
      end })
    end)
    return leds, rx, tonumber(h.read(dir .. "/status")), h.read(dir .. "/out"), h.read(dir .. "/err"),
      signalled, done_at - started_at
  end

  it("runs 5 cycles; D13 follows each byte within 1 ms of its stop bit", function()
    local leds, rx, status, out, _, _, ran = blink_on_board("--count 5 --interval 0.1")
    assert.are.equal(0, status)
    assert.matches("1  LED on  %(cycle 1%)", out)
    -- 10 bytes, "1010101010", then the "0" that leaves the LED off
    local bytes = {}
    for i, e in ipairs(rx) do
      bytes[i] = string.char(e.byte)
      assert.is_nil(e.lost, ("byte %d was sent while the MCU's receiver was off"):format(i))
    end
    assert.are.equal("10101010100", table.concat(bytes))
    assert.are.equal(10, #leds)
    for i = 1, 10 do
      local d = leds[i].t - rx[i].t
      assert.is_true(d >= 0 and d <= 0.001, ("transition %d came %.6f s after the stop bit"):format(i, d))
      assert.are.equal(i % 2 == 1, leds[i].on)
      if i > 1 then
        local gap = leds[i].t - leds[i - 1].t
        -- blink's 0.1 s interval, seen on the LED: on for about that long,
        -- then off, not a flash (the board takes each byte in within a
        -- few ms of its writing, so a wide bound holds under load)
        assert.is_true(gap > 0.04 and gap < 0.4, ("%.3f s between transitions %d and %d"):format(gap, i - 1, i))
      end
    end
    -- and it waited its interval after every byte: 10 of them, at least 1 s
    assert.is_true(ran >= 1.0, ("blink ran %.3f s"):format(ran))
  end)

  it("stops on Ctrl-C with the LED off", function()
    -- long interval: after the signal, only blink's own cleanup can send "0"
    local leds, rx, status, _, err, at = blink_on_board("--interval 5 -q", true)
    assert.are.equal(130, status)
    assert.matches("fotahost blink: stopped, LED off", err)
    assert.is_true(#rx > at and rx[#rx].byte == 48, "no '0' was sent after the signal")
    assert.is_false(leds[#leds].on)
  end)

  it("names the port and the cause when it cannot be used", function()
    local r = h.run({ "blink", "--port", dir .. "/nothere" })
    assert.are.equal(1, r.status)
    assert.are.equal("fotahost blink: " .. dir .. "/nothere: " .. h.strerror.ENOENT .. "\n", r.err)
    r = h.run({ "blink", "--port", "/etc/hostname" })
    assert.matches("/etc/hostname: not a serial port", r.err)
    -- busy: another program holds the port
    local serial = require "fotahost.serial"
    local _master <close>, slave = assert(serial.openpty())
    local _holder <close> = assert(serial.open(slave))
    r = h.run({ "blink", "--port", slave, "--count", "1" })
    assert.are.equal(1, r.status)
    assert.are.equal(("fotahost blink: %s: Device or resource busy (in use by another program)\n"):format(slave), r.err)
    -- a link left by a board that is gone is refused, not written to
    os.execute(("ln -s %s %s/ttyS0"):format(h.q(slave), h.q(chip)))
    h.write(chip .. "/ttyS0.pid", "999999999\n")
    r = h.run({ "blink", "--board", "sim", chip, "--count", "1" })
    assert.are.equal(1, r.status)
    assert.matches("no virtual board is running on " .. chip:gsub("%p", "%%%0"), r.err)
    r = h.run({ "blink", "--count", "0" })
    assert.are.equal(2, r.status)
    assert.matches("%-%-count: a whole number >= 1", r.err)
  end)
end)
