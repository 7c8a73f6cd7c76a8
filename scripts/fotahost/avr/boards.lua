--- Boards: how an AVR is wired to the Linux side, as data.
--
-- `pins`: GPIO numbers of RESET, SCK, MOSI (host -> MCU) and MISO, on the
-- board's first GPIO chip. `invert`: pins driven through an inverter.
-- `revision`: where the board keeps its revision byte, and below which
-- revision MOSI and MISO are swapped. `enable`: extra lines that must be
-- driven while programming (a level shifter's output enable). `fuses`: the
-- values the board ships with. `bootloader`: where the USB bootloader
-- lives, so an update can keep it. `pinmux`: a pin group to switch to
-- GPIO first. `f_cpu`: the MCU's clock in Hz, which bounds the SCK speed.
-- `backend`: the only GPIO access that reaches the board (else the
-- config's). `chip_dir`: the config key naming a directory that stands for
-- the board's chip; a revision `file` is then relative to it. `dev`: a
-- development-wing module that reads what that directory holds (the
-- chip's part), required only when this board is used.

local M = {}

M["linkit-smart-7688-duo"] = {
  desc = "LinkIt Smart 7688 Duo (MT7688 + ATmega32U4)",
  part = "m32u4",
  chip = "gpiochip0",
  pins = { reset = 3, sck = 15, mosi = 16, miso = 17 },
  -- Factory partition, byte 1043: boards before revision 3 swap MOSI and MISO.
  revision = { path = "/dev/mtd2", offset = 1043, swap_below = 3 },
  -- GPIO14-17 are the SPI-slave group: switched to GPIO before sysfs or
  -- gpiod can drive them (the mmio backend does it itself).
  pinmux = "mt7688-spis",
  f_cpu = 8000000,
  fuses = { lfuse = 0xFF, hfuse = 0xD8, efuse = 0xCE, lock = 0x2F },
  bootloader = { file = "/etc/arduino/Caterina-smart7688.hex", addr = 0x7000, size = 4096 },
  app_size = 28672,
}

M["arduino-yun"] = {
  desc = "Arduino Yun (AR9331 + ATmega32U4)",
  part = "m32u4",
  chip = "gpiochip0",
  pins = { reset = 18, sck = 11, mosi = 27, miso = 8 },
  invert = { reset = true },
  enable = { { line = 21, level = 1 } },   -- GPIO_SPI_OE: the level shifter
  f_cpu = 16000000,
  fuses = { lfuse = 0xFF, hfuse = 0xD8, efuse = 0xFB, lock = 0x2F },
  bootloader = { file = "/etc/arduino/Caterina-Yun.hex", addr = 0x7000, size = 4096 },
  app_size = 28672,
}

-- The virtual board: a LinkIt Smart 7688 Duo whose MCU is a simulated chip
-- in a directory (the app's sim_dir, flash's -P). Only the development
-- wing (the sim GPIO backend and the module named by `dev`) knows what the
-- directory holds; this entry says where to find it.
local duo = M["linkit-smart-7688-duo"]
M.sim = {
  desc = "the virtual board (a simulated LinkIt Smart 7688 Duo)",
  part = duo.part,
  pins = duo.pins,
  backend = "sim",
  chip_dir = "sim_dir",
  revision = { file = "mtd2", offset = 1043, swap_below = 3 },
  dev = "fotahost.simchip",
  f_cpu = duo.f_cpu,
  fuses = duo.fuses,
  bootloader = duo.bootloader,
  app_size = duo.app_size,
}

--- The board named `name`, or nil, "unknown board ...".
function M.get(name)
  local b = M[name]
  if type(b) ~= "table" then
    local names = {}
    for k, v in pairs(M) do
      if type(v) == "table" then names[#names + 1] = k end
    end
    table.sort(names)
    return nil, ("unknown board '%s' (known: %s)"):format(tostring(name), table.concat(names, ", "))
  end
  return b
end

--- The board's revision byte, or nil, why. `path`: the file holding it
-- (default: the board's own).
function M.revision(board, path)
  local r = board.revision
  if not r then return nil, "the board has no revision byte" end
  path = path or r.path
  if not path then return nil, "the board's revision file is in its chip directory" end
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local ok = f:seek("set", r.offset)
  local byte = ok and f:read(1)
  f:close()
  if not byte then return nil, ("%s: shorter than %d bytes"):format(path, r.offset + 1) end
  return byte:byte()
end

--- The board's development module (its `dev`), or nil. The one place the
-- product requires a development-wing module, and only by a name a board
-- entry gives: so a product built without the dev wing fails only when
-- the virtual board is used (spec/wings_spec.lua checks this). Without the
-- dev wing installed it is nil, and the sim GPIO backend then says what is
-- missing; a dev module that is there but broken raises its own error.
function M.dev(board)
  if not board.dev then return nil end
  if not package.searchpath(board.dev, package.path) then return nil end
  return require(board.dev)
end

-- Pin groups a GPIO access must switch before it can drive them, by
-- board.pinmux then backend: the mmio backend switches them itself.
local PINMUX_NEEDED = { ["mt7688-spis"] = { sysfs = true, gpiod = true } }

local function entry(v)
  if type(v) == "table" or v == nil then return v end
  return M.get(v)
end

--- Options for fotahost.avr.isp.open from a config: the app's, doctor's,
-- or flash's command line. Read from `cfg`: board (name or entry),
-- backend, chip, part, pins, invert, f_cpu, revision_path, and the key a
-- board's `chip_dir` names (the app's sim_dir). `extra`: more options for
-- isp.open (progress, force, ...), copied as they are; they win over cfg.
-- The rest comes from the board: backend, chip, part, pins, invert,
-- clock, revision file, pinmux, enable lines and factory fuses (a
-- simulated chip keeps the part its own files name: the sim backend, in
-- the dev wing, knows them). The one place that turns a board entry into
-- programming options.
-- @return options | nil, "unknown board ..."
function M.isp_options(cfg, extra)
  local o = {}
  for k, v in pairs(extra or {}) do o[k] = v end
  local board, err = entry(o.board or cfg.board)
  if err then return nil, err end
  o.board = board
  for _, k in ipairs({ "backend", "chip", "part", "pins", "invert", "f_cpu", "revision_path" }) do
    if o[k] == nil then o[k] = cfg[k] end
  end
  if not board then return o end
  o.backend = board.backend or o.backend
  o.chip = o.chip or (board.chip_dir and cfg[board.chip_dir]) or board.chip
  o.part = o.part or board.part
  o.pins = o.pins or board.pins
  o.invert = o.invert or board.invert
  o.f_cpu = o.f_cpu or board.f_cpu
  o.enable = board.enable
  o.factory = board.fuses
  local r = board.revision
  if not o.revision_path and r then
    o.revision_path = r.file and o.chip and (o.chip .. "/" .. r.file) or r.path
  end
  local by = board.pinmux and PINMUX_NEEDED[board.pinmux]
  o.pinmux = by and by[o.backend] and board.pinmux or nil
  return o
end

return M
