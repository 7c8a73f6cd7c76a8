--- fotahost.mcs.framer: the MCS command format, in one place: cutting the
-- command channel's byte stream into commands (framing) and splitting a
-- command into its fields (parsing).
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
-- What comes out is a command (see parse()), ready for the client's
-- deliver(): a transport that receives whole messages (MQTT) skips the
-- framing and calls parse_payload() (or parse()) alone.
--
--     local f = framer.new("Dbxx9k", "TPJV", 8192)
--     for kind, a in f:feed(data) do  -- kind: "command" (a = a command) or "too_long" (a = bytes dropped)
--     end
--     if f:pending() then ... after a quiet gap: for kind, a in f:flush() do ... end

local M = {}

local methods = {}
local mt = { __index = methods }

-- A command of `text`, whose fields after the id and key are `rest`:
-- "timestamp,dataChnId,value".
local function command(text, id, key, rest, short)
  local ts, chn, value = rest:match("^([^,]*),([^,]*),(.*)$")
  if not ts then return { text = text, error = short } end
  if chn == "" then return { text = text, error = "no channel" } end
  return { text = text, device_id = id, device_key = key, timestamp = tonumber(ts), channel = chn, value = value }
end

--- Splits a command's text into its fields. Returns a command, always a
-- table: `{ text, device_id, device_key, timestamp (number or nil),
-- channel, value }`, or `{ text, error = why }` when it cannot be read.
-- The value is everything after the fourth comma, commas and all. (The
-- text holds the device key: it is for counting and matching, never for
-- a log.)
function M.parse(text)
  if type(text) ~= "string" then error("framer.parse: command text expected", 2) end
  local id, key, rest = text:match("^([^,]*),([^,]*),(.*)$")
  return command(text, id, key, rest or "", "not a command (fewer than 5 fields)")
end

--- The same for a command that comes as MCS's MQTT sent it: the id and
-- key from the topic (`mcs/ID/KEY/CHANNEL`), the payload
-- "timestamp,dataChnId,value". `text` is then the payload.
function M.parse_payload(device_id, device_key, payload)
  if type(payload) ~= "string" then error("framer.parse_payload: payload string expected", 2) end
  return command(payload, device_id, device_key, payload, "not a command (fewer than 3 fields)")
end

--- A framer for the device with this id and key; `max` bounds one command.
function M.new(device_id, device_key, max)
  if type(device_id) ~= "string" or device_id == "" then error("framer.new: device id required", 2) end
  if type(device_key) ~= "string" or device_key == "" then error("framer.new: device key required", 2) end
  if max ~= nil and math.type(max) ~= "integer" then error("framer.new: max must be an integer", 2) end
  return setmetatable({
    prefix = device_id .. "," .. device_key .. ",",
    max = max or 8192,
    buf = "",        -- the unfinished command (at most max bytes)
    dropping = 0,    -- > 0 while skipping an over-long command: bytes skipped so far
  }, mt)
end

-- Hands out what one read held. Commands wait as text and are parsed as
-- they are handed out, each entry let go once out: a read of thousands of
-- commands in a flood holds strings, not a table per command.
local function iter(list)
  local i = 0
  return function()
    i = i + 1
    local e = list[i]
    if e then
      list[i] = false
      if e[1] == "command" and type(e[2]) == "string" then return "command", M.parse(e[2]) end
      return e[1], e[2]
    end
  end
end

-- The length of the line end at `nl`: "\r\n" is one.
local function eol_len(s, nl)
  return (s:byte(nl) == 13 and s:byte(nl + 1) == 10) and 2 or 1
end

-- The next separator in `s` at or after `from`: a line end (`nl`, the
-- next one at or after `from`, or nil), or a prefix after `cmd_start` (a
-- command's own prefix does not end it). Returns its position and its
-- length (0 for a prefix: it belongs to the next command).
local function next_separator(s, from, cmd_start, prefix, nl)
  local p = s:find(prefix, math.max(from, cmd_start + 1), true)
  if p and (not nl or p < nl) then return p, 0 end
  if nl then return nl, eol_len(s, nl), true end
  return nil
end

-- Adds what `text` is to `out`: a command, or news that one was cut off.
local function emit(self, out, text)
  if #text > self.max then
    out[#out + 1] = { "too_long", #text }
  elseif text ~= "" then
    out[#out + 1] = { "command", text }
  end
end

-- While dropping an over-long command, looks for the first separator that
-- ends it; the last few dropped bytes are kept in `buf` so that a prefix
-- split across two reads is still seen. Returns where the bytes after it
-- start in `s`, or nil when all of `s` is still being dropped.
local function skip_long(self, s, carried, out)
  local nl = s:find("[\r\n]", 1)
  local p = s:find(self.prefix, 1, true)
  local stop = (p and (not nl or p < nl)) and p or nl
  if not stop then
    self.dropping = self.dropping + #s - carried
    self.buf = s:sub(-(#self.prefix - 1))
    return nil
  end
  out[#out + 1] = { "too_long", self.dropping + (stop - 1) - carried }
  self.dropping = 0
  if stop == nl then return nl + eol_len(s, nl) end
  return stop
end

-- Cuts the commands out of `s` from `start` on; returns the unended tail.
local function cut(self, s, start, out)
  local from = start
  -- Where the next line end is, found once and not again for each command
  -- before it: without line ends (MCS sent none) a read of many commands
  -- would otherwise be scanned to its end once per command.
  local nl = 0
  while true do
    if nl and nl < from then nl = s:find("[\r\n]", from) or false end
    local at, seplen, eol = next_separator(s, from, start, self.prefix, nl or nil)
    if not at then break end
    if eol then self.saw_eol = true end
    emit(self, out, s:sub(start, at - 1))
    start = at + seplen
    from = start
  end
  return s:sub(start)
end

--- Takes the next bytes; returns an iterator over what they completed.
function methods:feed(data)
  local out = {}
  local s = self.buf .. data
  local carried = #self.buf
  self.buf = ""
  local start = 1
  if self.dropping > 0 then
    start = skip_long(self, s, carried, out)
    if not start then return iter(out) end
  end
  local tail = cut(self, s, start, out)
  if #tail > self.max then
    -- cut off: nothing more of it is kept
    self.dropping = #tail
    self.buf = tail:sub(-(#self.prefix - 1))
  else
    self.buf = tail
  end
  return iter(out)
end

--- True when an unfinished command is buffered (flush it after a gap).
-- `saw_eol` says whether this stream has ended commands with line ends:
-- then a pause inside one is more likely a slow network than its end, and
-- the caller waits longer before flushing.
function methods:pending()
  return self.buf ~= "" or self.dropping > 0
end

--- Ends the buffered command (the line has been quiet).
function methods:flush()
  local out = {}
  if self.dropping > 0 then
    out[1] = { "too_long", self.dropping }
  elseif self.buf ~= "" then
    out[1] = { "command", M.parse(self.buf) }
  end
  self.buf, self.dropping = "", 0
  return iter(out)
end

return M
