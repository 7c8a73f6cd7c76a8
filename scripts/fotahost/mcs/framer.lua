--- fotahost.mcs.framer: cuts the MCS command channel's byte stream into
-- commands.
--
-- Commands are `deviceId,deviceKey,timestamp,dataChnId,value`. TCP may hand
-- us part of one, or several at once, and whether the server ends each with
-- a newline is not documented (see the protocol note), so:
--
-- 1. a line end ("\n", "\r\n" or "\r") always ends a command;
-- 2. without line ends, every command starts with the same
--    `deviceId,deviceKey,` prefix, so a new prefix ends the one before;
-- 3. the last command of a burst, with nothing after it, ends when the
--    line has been quiet for a short gap: the caller calls flush() then.
--
-- A command longer than `max` bytes is cut off, not buffered: its bytes are
-- dropped up to the next line end or prefix, and a "too long" event says so.
-- Memory is bounded by `max` plus one read.
--
--     local f = framer.new("Dbxx9k,TPJV", 8192)
--     for kind, a in f:feed(data) do  -- kind: "command" (a = the text) or "too_long" (a = bytes dropped)
--     end
--     if f:pending() then ... after a quiet gap: for kind, a in f:flush() do ... end

local M = {}

local Framer = {}
Framer.__index = Framer

--- A framer for the device with this id and key; `max` bounds one command.
function M.new(device_id, device_key, max)
  assert(type(device_id) == "string" and device_id ~= "", "framer.new: device id required")
  assert(type(device_key) == "string" and device_key ~= "", "framer.new: device key required")
  return setmetatable({
    prefix = device_id .. "," .. device_key .. ",",
    max = max or 8192,
    buf = "",        -- the unfinished command (at most max bytes)
    dropping = 0,    -- > 0 while skipping an over-long command: bytes skipped so far
  }, Framer)
end

local function iter(list)
  local i = 0
  return function()
    i = i + 1
    local e = list[i]
    if e then return e[1], e[2] end
  end
end

-- The next separator in `s` at or after `from`: a line end (`nl`, the
-- next one at or after `from`, or nil), or a prefix after `cmd_start` (a
-- command's own prefix does not end it). Returns its position and its
-- length (0 for a prefix: it belongs to the next command).
local function next_separator(s, from, cmd_start, prefix, nl)
  local p = s:find(prefix, math.max(from, cmd_start + 1), true)
  if p and (not nl or p < nl) then return p, 0 end
  if nl then
    local len = (s:byte(nl) == 13 and s:byte(nl + 1) == 10) and 2 or 1
    return nl, len, true
  end
  return nil
end

--- Takes the next bytes; returns an iterator over what they completed.
function Framer:feed(data)
  local out = {}
  local prefix = self.prefix
  -- While dropping an over-long command, look for the first separator that
  -- ends it; the last few dropped bytes are kept in `buf` so that a prefix
  -- split across two reads is still seen.
  local s = self.buf .. data
  local carried = #self.buf
  self.buf = ""
  local start = 1
  if self.dropping > 0 then
    local nl = s:find("[\r\n]", 1)
    local p = s:find(prefix, 1, true)
    local stop = (p and (not nl or p < nl)) and p or nl
    if not stop then
      self.dropping = self.dropping + #s - carried
      self.buf = s:sub(-(#prefix - 1))
      return iter(out)
    end
    out[#out + 1] = { "too_long", self.dropping + (stop - 1) - carried }
    self.dropping = 0
    start = stop
    if stop == nl then
      start = nl + ((s:byte(nl) == 13 and s:byte(nl + 1) == 10) and 2 or 1)
    end
  end
  local from = start
  -- Where the next line end is, found once and not again for each command
  -- before it: without line ends (MCS sent none) a read of many commands
  -- would otherwise be scanned to its end once per command.
  local nl = 0
  while true do
    if nl and nl < from then nl = s:find("[\r\n]", from) or false end
    local at, seplen, eol = next_separator(s, from, start, prefix, nl or nil)
    if not at then break end
    if eol then self.saw_eol = true end
    local text = s:sub(start, at - 1)
    if #text > self.max then
      out[#out + 1] = { "too_long", #text }
    elseif text ~= "" then
      out[#out + 1] = { "command", text }
    end
    start = at + seplen
    from = start
  end
  local tail = s:sub(start)
  if #tail > self.max then
    -- cut off: nothing more of it is kept
    self.dropping = #tail
    self.buf = tail:sub(-(#prefix - 1))
  else
    self.buf = tail
  end
  return iter(out)
end

--- True when an unfinished command is buffered (flush it after a gap).
-- `saw_eol` says whether this stream has ended commands with line ends:
-- then a pause inside one is more likely a slow network than its end, and
-- the caller waits longer before flushing.
function Framer:pending()
  return self.buf ~= "" or self.dropping > 0
end

--- Ends the buffered command (the line has been quiet).
function Framer:flush()
  local out = {}
  if self.dropping > 0 then
    out[1] = { "too_long", self.dropping }
  elseif self.buf ~= "" then
    out[1] = { "command", self.buf }
  end
  self.buf, self.dropping = "", 0
  return iter(out)
end

--- Splits a command into its fields. Returns
-- `{ device_id, device_key, timestamp (number or nil), channel, value }`
-- or nil and why. The value is everything after the fourth comma, commas
-- and all.
function M.parse(text)
  local id, key, ts, chn, value = text:match("^([^,]*),([^,]*),([^,]*),([^,]*),(.*)$")
  if not id then
    return nil, "not a command (fewer than 5 fields)"
  end
  if chn == "" then return nil, "no channel" end
  return { device_id = id, device_key = key, timestamp = tonumber(ts), channel = chn, value = value }
end

return M
