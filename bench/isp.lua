-- make bench, part 2: flashing. Runs the tutorial's job (erase, write,
-- verify, lock 0x0F) for two workloads on the simulated chip, and replays
-- the exact instruction stream of each on the real sysfs backend (over a
-- fake /sys/class/gpio tree) and on the mmio backend (over a file mapped in
-- place of /dev/mem) to count what those backends cost per SPI bit.
-- Usage: fotahost bench/isp.lua TMPDIR
local isp = require "fotahost.avr.isp"
local ispc = require "fotahost.avr.isp.core"
local gpio = require "fotahost.gpio"
local ihex = require "fotahost.ihex"
local parts = require "fotahost.avr.parts"
local sys = require "fotahost.sys"

local tmp = assert(arg[1], "usage: fotahost bench/isp.lua TMPDIR")
local part = parts.m32u4
local HALF = 250e-9            -- SCK half-period at the 2 MHz limit of an 8 MHz part

-- Sketch-like data: compiled AVR code has few 0xFF bytes.
local function sketch(n, seed)
  local t, x = {}, seed
  for i = 1, n do
    x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    t[i] = string.char((x >> 16) % 255)
  end
  return table.concat(t)
end

local function sh(cmd) assert(os.execute(cmd), cmd) end

local function fake_sysfs(dir)
  for _, n in ipairs({ 3, 15, 16, 17 }) do
    sh(("mkdir -p %s/gpio%d && echo in > %s/gpio%d/direction && echo 0 > %s/gpio%d/value")
      :format(dir, n, dir, n, dir, n))
  end
end

local function replay(backend, extra, trace)
  local o = { backend = backend, chip = "gpiochip0", lines = { 3, 15, 16, 17 },
              outputs = { true, true, true, false }, initial = { 0, 0, 0 } }
  for k, v in pairs(extra) do o[k] = v end
  local lines = assert(gpio.open(o))
  local prog = ispc.new(lines, part, { half_period_ns = backend == "mmio" and 250 or 0 })
  local before = lines:stats()
  local t0 = sys.now()
  assert(prog:replay(trace))
  local dt = sys.now() - t0
  local after = lines:stats()
  lines:close()
  local gpio_calls = (after.set_calls + after.get_calls) - (before.set_calls + before.get_calls)
  return after.syscalls - before.syscalls, gpio_calls, dt
end

local workloads = {
  { name = "4 KB sketch", data = sketch(4096, 7), addr = 0 },
  { name = "28 KB application", data = sketch(28672, 11), addr = 0 },
}

local rows = {}
for i, w in ipairs(workloads) do
  local dir = ("%s/w%d"):format(tmp, i)
  sh("mkdir -p " .. dir .. "/chip")
  local img = ihex.from_binary(w.data, w.addr)
  local s = assert(isp.open{ board = "sim", chip = dir .. "/chip", trace = true })
  local t0 = sys.now()
  assert(s:connect())
  assert(s:erase())
  local pages = assert(s:write_flash(img))
  assert(s:verify_flash(img))
  assert(s:write_fuse("lock", 0x0F))
  local wall = sys.now() - t0
  local st = s:stats()
  local trace = s.prog:trace()
  s:close()

  -- The same sequence at the physical limit: every instruction except the
  -- extra RDY/BSY polls at 2 MHz, plus the datasheet's waits.
  local needed = st.commands - st.polls
  local busy = (part.t_wd_erase_us + pages * part.t_wd_flash_us + part.t_wd_fuse_us) / 1e6
  local phys = needed * 32 * 2 * HALF + 0.020 + busy

  fake_sysfs(dir .. "/sysfs")
  local sys_calls, _, sys_dt = replay("sysfs", { sysfs_root = dir .. "/sysfs" }, trace)
  sh(("truncate -s %d %s/mem"):format(0x10001000, dir))
  local mmio_calls, _, mmio_dt = replay("mmio", { mem_path = dir .. "/mem" }, trace)
  local tbits = #trace // 4 * 32

  -- avrdude 7.1 linuxgpio on the same image (its algorithm, per avr-isp.md):
  -- one command per byte loaded and per byte verified, 0xFF included, a
  -- fixed 4.5 ms per page, 2 enables, 3 signature reads, erase, ~8 lock commands.
  local npages = #w.data // part.flash_page
  local av_cmds = 2 + 3 + 1 + #w.data + npages + #w.data + 8
  local av_sleep = 0.40 + 0.32 + 0.009 + npages * 0.0045 + 0.010 + 0.054

  rows[#rows + 1] = {
    name = w.name, commands = st.commands, polls = st.polls, bits = st.bits,
    ops_per_bit = (st.gpio_sets + st.gpio_gets) / st.bits,
    sysfs_per_bit = sys_calls / tbits, gpiod_per_bit = (st.gpio_sets + st.gpio_gets) / st.bits,
    mmio_per_bit = mmio_calls / tbits, sleep = st.sleep_us / 1e6, wall = wall, phys = phys,
    sysfs_replay = sys_dt, mmio_replay = mmio_dt,
    av_cmds = av_cmds, av_bits = av_cmds * 32, av_sleep = av_sleep,
  }
end

local out = {}
local function p(fmt, ...) out[#out + 1] = fmt:format(...) end
p("%-44s %18s %18s", "tutorial job: erase, write, verify, lock", rows[1].name, rows[2].name)
local function row(label, fmt, key)
  p("%-44s %18s %18s", label, fmt:format(rows[1][key]), fmt:format(rows[2][key]))
end
row("ISP commands", "%d", "commands")
row("  RDY/BSY polls", "%d", "polls")
row("SPI bits", "%d", "bits")
row("GPIO operations per SPI bit", "%.2f", "ops_per_bit")
row("system calls per bit, sysfs (measured)", "%.2f", "sysfs_per_bit")
row("system calls per bit, gpiod (1 ioctl/op)", "%.2f", "gpiod_per_bit")
row("system calls per bit, mmio (measured)", "%.2f", "mmio_per_bit")
row("fixed sleeps, s (datasheet minimum 0.020)", "%.3f", "sleep")
row("wall time on sim, s", "%.3f", "wall")
row("physical limit, s (2 MHz SCK + write times)", "%.3f", "phys")
p("%-44s %18.2f %18.2f", "  wall / physical limit", rows[1].wall / rows[1].phys, rows[2].wall / rows[2].phys)
row("sysfs replay over a fake tree, s", "%.3f", "sysfs_replay")
row("avrdude 7.1 linuxgpio: ISP commands", "%d", "av_cmds")
p("%-44s %18d %18d", "avrdude 7.1 linuxgpio: system calls per bit", 5, 5)
row("avrdude 7.1 linuxgpio: fixed sleeps, s", "%.3f", "av_sleep")
print(table.concat(out, "\n"))
