--- fotahost.mcs_cloud.common: what the parts of the local cloud share:
-- its limits, JSON answers, and the comparison of secrets.

local sys = require "fotahost.sys"
local cjson = require "cjson.safe"

local fmt = string.format

-- The answers' encoder: a number no JSON can carry (inf, nan) comes out as
-- null rather than failing the whole answer. Bodies with one are refused
-- (decode_body); this keeps whatever gets past that from locking the
-- admin API with 500s.
local encoder = cjson.new()
encoder.encode_invalid_numbers("null")

local C = {}

C.MAX_POINTS = 1000           -- data points kept per device and channel
C.MAX_HEARTBEATS = 100        -- heartbeat arrival times kept per device
C.MAX_POINTS_PER_REQUEST = 5  -- as the MCS reference says
C.MAX_CHANNEL = 64            -- bytes of a data channel id (every event and answer names it)
C.MAX_DEPTH = 32              -- levels a JSON body may nest (answers nest it further, up to cjson's 1000)
C.QUIET_GAP = 0.2             -- s of silence that ends an unterminated device message
C.MAX_MESSAGE = 4096          -- bytes of device message without a boundary: the peer is closed
C.WRITE_TIMEOUT = 10          -- s a command write may wait for the device to take it
C.DEFAULT_GAP_MS = 20         -- pause between raw chunks unless gap_ms says otherwise
C.COMMAND_SPACING = 0.02      -- s between two commands to one device (MCS sent no terminator)
C.MAX_COMMANDS_KEPT = 20      -- command write times kept per device
C.MAX_FIRMWARE = 4 << 20      -- bytes of one firmware file (an uploaded body, or --firmware)
C.TOKEN_BYTES = 32            -- random bytes in the admin token (hex: twice as many characters)
C.MANIFEST = "cloud-firmwares.json"
C.ROLLOUT = "cloud-rollout.json" -- the rollout, in the firmware directory too

function C.now_ms()
  return math.floor(sys.time() * 1000)
end

-- "host:port", bracketed for an IPv6 address.
function C.display(host, port)
  return fmt(host:find(":", 1, true) and "[%s]:%d" or "%s:%d", host, port)
end

-- lua-cjson 2.1 encodes an empty table as {}: lists that may be empty go
-- through array(), and encode() turns the marker back into [].
local EMPTY_ARRAY = "\1fotahost-empty-array\1"
function C.array(t)
  if #t == 0 then return EMPTY_ARRAY end
  return t
end

--- JSON text of `value`, or nil, why.
function C.try_encode(value)
  local s, err = encoder.encode(value)
  if not s then return nil, err end
  return (s:gsub('"\\u0001fotahost%-empty%-array\\u0001"', "[]"))
end

--- JSON text of `value` (an answer the cloud built: a failure is a bug, and raises).
function C.encode(value)
  return assert(C.try_encode(value))
end

-- A JSON value as a command or label string: cjson decodes every number as
-- a float, and 2.0 must read "2", not "2.0".
function C.as_text(v)
  if type(v) == "number" then
    local i = math.tointeger(v)
    return i and tostring(i) or fmt("%.14g", v)
  end
  if type(v) == "string" then return v end
  return nil
end

-- Compares a secret given (an admin token, a device key) with the real one
-- in a time that does not depend on where they differ: a remote guesser
-- learns nothing from timing. `given` may be nil (not sent).
function C.same_secret(given, token)
  if type(given) ~= "string" then return false end
  if #given ~= #token then return false end
  local diff = 0
  for i = 1, #token do diff = diff | (given:byte(i) ~ token:byte(i)) end
  return diff == 0
end

-- The addresses that mean "every address": where the cloud listens on one,
-- URLs handed out name the host the request was sent to.
C.WILDCARD = { ["0.0.0.0"] = true, ["::"] = true }

function C.push_bounded(list, item, max)
  list[#list + 1] = item
  if #list > max then table.remove(list, 1) end
end

---------------------------------------------------------------- HTTP answers

function C.send_json(res, status, value)
  return res:send(status, { ["Content-Type"] = "application/json" }, C.encode(value))
end

-- MCS error bodies: {"code": N, "message": "..."}.
function C.fail(res, status, message)
  return C.send_json(res, status, { code = status, message = message })
end

-- Why decoded JSON `value` can be neither kept nor shown again, or nil:
-- a number that is not finite (1e999 decodes to inf, which no answer can
-- carry), or nesting deeper than MAX_DEPTH (an answer that holds it
-- would pass cjson's limit).
local function unfit(value, depth)
  if type(value) == "number" then
    if value ~= value or value == math.huge or value == -math.huge then return "a number that is not finite" end
  elseif type(value) == "table" then
    if depth > C.MAX_DEPTH then return fmt("nested deeper than %d levels", C.MAX_DEPTH) end
    for _, v in pairs(value) do
      local why = unfit(v, depth + 1)
      if why then return why end
    end
  end
  return nil
end

function C.decode_body(req, res)
  local value, err = cjson.decode(req.body)
  if type(value) ~= "table" then
    C.fail(res, 400, "request body must be a JSON object" .. (err and ": " .. err or ""))
    return nil
  end
  local why = unfit(value, 1)
  if why then
    C.fail(res, 400, "request body: " .. why)
    return nil
  end
  return value
end

return C
