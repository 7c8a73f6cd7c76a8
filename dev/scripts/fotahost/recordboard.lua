--- fotahost.recordboard: a board that records the image it would flash,
-- for fleet simulations (development wing; `fotahost cloud fleet-sim`).
--
-- The virtual board ("sim") bit-bangs every ISP command through a
-- simulated chip: right for one device, far too dear for a thousand in one
-- process. The record board keeps everything of the update policy
-- (download, MD5, signature, journal, commit) and replaces only the ISP
-- session: an erase fills DIR/flash.bin with 0xFF and appends a line to
-- DIR/erases.log (as the simulated chip's directory has them), a write
-- puts the image's pages into flash.bin, and the verify reads flash.bin
-- back and compares it with the image, so a policy that skipped a step
-- still fails here. No GPIO, no timing, no signature bytes on the wire.
--
--     local record = require "fotahost.recordboard"
--     record.add()                          -- boards.record, for config.check
--     local policy = fota.new(config)       -- config.board = "record"
--     record.attach(policy, dir)            -- its ISP sessions are recorded in dir

local boards = require "fotahost.avr.boards"
local isp = require "fotahost.avr.isp"
local parts = require "fotahost.avr.parts"
local sys = require "fotahost.sys"

local M = {}

local duo = boards["linkit-smart-7688-duo"]

--- The board entry: the Duo's MCU and application size, no pins driven.
M.BOARD = {
  desc = "a recording stand-in for fleet simulations (no chip: the image goes to a file)",
  part = duo.part,
  pins = duo.pins,
  backend = "record",
  fuses = duo.fuses,
  app_size = duo.app_size,
}

--- Makes "record" a known board name (config.check and fota.new look it up).
function M.add()
  boards.record = M.BOARD
end

local Session = {}
Session.__index = Session
Session.__close = function(s) s:close() end

local function append(path, line)
  local f, err = io.open(path, "ab")
  if not f then return nil, err end
  f:write(line)
  f:close()
  return true
end

local function write_file(path, data)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(data)
  f:close()
  if not ok then return nil, werr end
  return true
end

--- A recording ISP session on directory `dir` for `part` (a parts entry).
function M.open(dir, part)
  return setmetatable({ dir = dir, part = part, connected = false, stats_ = { erases = 0, pages = 0 } }, Session)
end

function Session:connect()
  self.connected = true
  return { table.unpack(self.part.signature) }
end

function Session:erase()
  if not self.connected then return nil, "not connected" end
  local ok, err = write_file(self.dir .. "/flash.bin", ("\xFF"):rep(self.part.flash_size))
  if not ok then return nil, err end
  self.stats_.erases = self.stats_.erases + 1
  return append(self.dir .. "/erases.log", ("%.3f chip erase\n"):format(sys.time()))
end

-- flash.bin as a list of pages (strings of flash_page bytes).
function Session:_pages()
  local f, err = io.open(self.dir .. "/flash.bin", "rb")
  if not f then return nil, err end
  local data = f:read("a")
  f:close()
  local size, psize = self.part.flash_size, self.part.flash_page
  if #data ~= size then return nil, ("flash.bin has %d bytes, not %d"):format(#data, size) end
  local list = {}
  for a = 0, size - 1, psize do list[#list + 1] = data:sub(a + 1, a + psize) end
  return list
end

--- Puts the image's pages into flash.bin. As on a chip, a page is ANDed
-- with what was there: writing over an unerased page leaves a mix.
function Session:write_flash(image)
  if not self.connected then return nil, "not connected" end
  local pages, err = isp.pages(self.part, image)
  if not pages then return nil, err end
  local flash
  flash, err = self:_pages()
  if not flash then return nil, err end
  local psize = self.part.flash_page
  for _, pg in ipairs(pages) do
    local k = pg.addr // psize + 1
    local old = flash[k]
    if old ~= ("\xFF"):rep(psize) then
      local t = {}
      for i = 1, psize do t[i] = string.char(old:byte(i) & pg.data:byte(i)) end
      flash[k] = table.concat(t)
    else
      flash[k] = pg.data
    end
  end
  self.stats_.pages = self.stats_.pages + #pages
  local ok, werr = write_file(self.dir .. "/flash.bin", table.concat(flash))
  if not ok then return nil, werr end
  return #pages
end

--- Reads flash.bin back and compares the image's bytes.
function Session:verify_flash(image)
  if not self.connected then return nil, "not connected" end
  local flash, err = self:_pages()
  if not flash then return nil, err end
  local data = table.concat(flash)
  for _, seg in ipairs(image:segments()) do
    local got = data:sub(seg.addr + 1, seg.addr + #seg.data)
    if got ~= seg.data then
      local i = 1
      while got:byte(i) == seg.data:byte(i) do i = i + 1 end
      return nil, ("verification error at 0x%04X: file 0x%02X, MCU 0x%02X")
        :format(seg.addr + i - 1, seg.data:byte(i), got:byte(i) or 0xFF)
    end
  end
  return true
end

function Session:write_fuse(name, value)
  if not self.connected then return nil, "not connected" end
  return append(self.dir .. "/fuses.log", ("%s=0x%02X\n"):format(name, value))
end

function Session:stats() return self.stats_ end

function Session:close() self.connected = false end

--- Makes `policy` (fotahost.fota) flash through recording sessions in `dir`.
function M.attach(policy, dir)
  local part = assert(parts.get(policy.config.part or M.BOARD.part))
  policy.open_isp = function() return M.open(dir, part) end
  return policy
end

return M
