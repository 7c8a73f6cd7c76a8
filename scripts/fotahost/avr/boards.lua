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

--- The board's revision byte, or nil, why. `root` replaces the directory of
-- the revision file (the simulated board keeps its own `mtd2`).
function M.revision(board, path)
  local r = board.revision
  if not r then return nil, "the board has no revision byte" end
  path = path or r.path
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local ok = f:seek("set", r.offset)
  local byte = ok and f:read(1)
  f:close()
  if not byte then return nil, ("%s: shorter than %d bytes"):format(path, r.offset + 1) end
  return byte:byte()
end

return M
