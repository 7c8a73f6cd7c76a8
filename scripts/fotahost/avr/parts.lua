--- AVR parts, as data. The ISP programmer and the simulated chip read these
-- tables; add a part by adding a table (the C side checks every field and
-- names the part and field it rejects).
--
-- Sizes are bytes. `fuse_mask`: the bits of each fuse and of the lock byte
-- that mean something (verify compares only those). `factory`: a new chip's
-- values. Delays are the datasheet's minimum waits, used only where RDY/BSY
-- polling is unavailable. Sources: the parts' datasheets and avrdude.conf
-- (see ../shared/docs/avr-isp.md in the project for the ATmega32U4).

local M = {}

M.m32u4 = {
  id = "m32u4", desc = "ATmega32U4",
  signature = { 0x1E, 0x95, 0x87 },
  calibration = 0x5A,
  flash_size = 32768, flash_page = 128,
  eeprom_size = 1024, eeprom_page = 4,
  boot_size_max = 4096,          -- BOOTSZ = 00: 2048 words at 0x7000
  fuse_mask = { lfuse = 0xFF, hfuse = 0xFF, efuse = 0x0F, lock = 0x3F },
  factory   = { lfuse = 0x52, hfuse = 0x99, efuse = 0xFB, lock = 0xFF },
  t_wd_flash_us = 4500, t_wd_erase_us = 9000, t_wd_eeprom_us = 9000, t_wd_fuse_us = 4500,
}

M.m328p = {
  id = "m328p", desc = "ATmega328P",
  signature = { 0x1E, 0x95, 0x0F },
  calibration = 0x9B,
  flash_size = 32768, flash_page = 128,
  eeprom_size = 1024, eeprom_page = 4,
  boot_size_max = 4096,
  fuse_mask = { lfuse = 0xFF, hfuse = 0xFF, efuse = 0x07, lock = 0x3F },
  factory   = { lfuse = 0x62, hfuse = 0xD9, efuse = 0xFF, lock = 0xFF },
  t_wd_flash_us = 4500, t_wd_erase_us = 9000, t_wd_eeprom_us = 3600, t_wd_fuse_us = 4500,
}

M.m2560 = {
  id = "m2560", desc = "ATmega2560",
  signature = { 0x1E, 0x98, 0x01 },
  calibration = 0x88,
  flash_size = 262144, flash_page = 256,   -- above 64K words: Load Extended Address
  eeprom_size = 4096, eeprom_page = 8,
  boot_size_max = 8192,
  fuse_mask = { lfuse = 0xFF, hfuse = 0xFF, efuse = 0x07, lock = 0x3F },
  factory   = { lfuse = 0x62, hfuse = 0x99, efuse = 0xFF, lock = 0xFF },
  t_wd_flash_us = 4500, t_wd_erase_us = 9000, t_wd_eeprom_us = 9000, t_wd_fuse_us = 4500,
}

--- Aliases avrdude users type.
M.aliases = { atmega32u4 = "m32u4", atmega328p = "m328p", atmega2560 = "m2560" }

--- The part named `name` (an id or an alias), or nil, "unknown part ...".
function M.get(name)
  local p = M[name] or M[M.aliases[name] or ""]
  if type(p) ~= "table" or not p.id then
    local ids = {}
    for k, v in pairs(M) do
      if type(v) == "table" and v.id then ids[#ids + 1] = k end
    end
    table.sort(ids)
    return nil, ("unknown part '%s' (known: %s)"):format(tostring(name), table.concat(ids, ", "))
  end
  return p
end

return M
