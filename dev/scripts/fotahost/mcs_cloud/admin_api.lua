--- fotahost.mcs_cloud.admin_api: the local cloud's admin API (under
-- /admin): devices and their data, firmwares, FOTA pushes and any command.
-- JSON only, a bearer token made at start (fotahost.mcs_cloud.token), and
-- no cross-site requests from browsers. Its routes and methods are
-- installed by fotahost.mcs_cloud.

local sched = require "fotahost.sched"
local sys = require "fotahost.sys"
local httpd = require "fotahost.httpd"
local cjson = require "cjson.safe"
local logmod = require "fotahost.log"
local C = require "fotahost.mcs_cloud.common"

local log = logmod.get("cloud")
local fmt, concat = string.format, table.concat
local array, as_text, same_secret = C.array, C.as_text, C.same_secret
local send_json, fail, decode_body = C.send_json, C.fail, C.decode_body

local A = {}
local methods = {}
A.methods = methods

-- `text` with every occurrence of `secret` replaced by "****".
local function mask(text, secret)
  local out, at = {}, 1
  while true do
    local s, e = text:find(secret, at, true)
    if not s then break end
    out[#out + 1] = text:sub(at, s - 1) .. "****"
    at = e + 1
  end
  out[#out + 1] = text:sub(at)
  return concat(out)
end

---------------------------------------------------------------- who may ask

-- The origins the cloud's own pages have: what it listens on (under
-- localhost too, when that is loopback) and its public URL.
local function origin_of(url)
  return url and url:match("^(%a[%w+.-]*://[^/?#]+)")
end

-- A browser sends Origin with every cross-site POST, including the "simple"
-- ones it sends without asking first (a form, text/plain): any web page the
-- user visits could otherwise drive the admin API of a cloud on loopback and
-- push a firmware to their devices. Tools (curl, fotahost cloud) send no
-- Origin; a page of the cloud's own sends the cloud's, or (the console
-- opened under another of the cloud's names: listening on every address)
-- http:// and the Host it was sent to, which the Host check let through.
function methods:foreign_origin(req)
  local origin = req.headers.origin
  if origin == nil then return false end
  if origin == origin_of(self.url) or origin == origin_of(self.public_url) then return false end
  if self.host == "127.0.0.1" and origin == fmt("http://localhost:%d", self.port) then return false end
  local host = req.headers.host
  if host and origin == "http://" .. host:lower() and self:host_allowed(host) then return false end
  return true
end

-- Sec-Fetch-Site, which browsers send with every request (GETs too,
-- where they send no Origin): a request another site's page made is
-- refused, even one that would only read. Tools send none.
local function cross_site(req)
  local site = req.headers["sec-fetch-site"]
  return site ~= nil and site ~= "same-origin" and site ~= "none"
end

local function media_type(value)
  local t = value and value:match("^%s*([^;%s]+)")
  return t and t:lower()
end

-- Why an admin request is refused (status, message), or nil. A browser
-- page can send a cross-site POST with a text/plain or form body without
-- asking first, but neither an Authorization header nor a JSON body.
function methods:admin_refusal(req)
  if self:foreign_origin(req) then
    return 403, fmt("the admin API takes no cross-site requests (Origin %s)", req.headers.origin)
  end
  if cross_site(req) then
    return 403, fmt("the admin API takes no cross-site requests (Sec-Fetch-Site %s)", req.headers["sec-fetch-site"])
  end
  local given = (req.headers.authorization or ""):match("^[Bb]earer +(%S+) *$")
  if not given then
    return 401, "the admin API needs its token: header \"Authorization: Bearer TOKEN\", the token being in "
      .. (self.token_file or "the token file")
  end
  if not same_secret(given, self.token) then return 401, "wrong admin token" end
  local writes = req.method == "POST" or req.method == "PUT"
  if writes and media_type(req.headers["content-type"]) ~= "application/json" then
    return 415, "the admin API takes application/json bodies only"
  end
end

---------------------------------------------------------------- handlers

local H = {} -- route handlers: H.name(cloud, req, res, captures...)

local function admin_device(self, res, id)
  local dev = self.devices[httpd.unescape(id)]
  if not dev then fail(res, 404, "no device " .. httpd.unescape(id)) end
  return dev
end

function H.admin_devices(self, _req, res)
  local list = {}
  for _, id in ipairs(self.device_order) do
    list[#list + 1] = self:device_json(self.devices[id], 10)
  end
  -- rollout: whether GET /admin/rollout has one to show (the console asks only then);
  -- seq: the last event this answer includes, for the console to follow on from
  return send_json(res, 200, { now = sys.time(), devices = array(list), broker = self.broker and self:broker_json(),
                               rollout = self.rollout ~= nil, seq = self.events.seq })
end

function H.admin_add_device(self, req, res)
  local doc = decode_body(req, res)
  if not doc then return end
  if self.devices[doc.id] then return fail(res, 409, "device " .. tostring(doc.id) .. " exists already") end
  local dev, err = self:add_device(doc.id, doc.key)
  if not dev then return fail(res, 400, err) end
  return send_json(res, 201, self:device_json(dev, 10))
end

-- ?recent=N: the latest N data points per channel (default: every one kept).
function H.admin_device(self, req, res, id)
  local dev = admin_device(self, res, id)
  if not dev then return end
  local recent = req.args.recent
  if recent ~= nil then
    local n = recent:find("^%d+$") and math.tointeger(tonumber(recent))
    if not n then return fail(res, 400, fmt("recent=%s: a count of data points expected", recent)) end
    recent = n
  end
  return send_json(res, 200, self:device_json(dev, recent))
end

function H.admin_datapoints(self, req, res, id)
  local dev = admin_device(self, res, id)
  if not dev then return end
  local chn = req.args.channel
  if chn then
    return send_json(res, 200, { device = dev.id, channel = chn, datapoints = array(dev.points[chn] or {}) })
  end
  local all = {}
  for _, c in ipairs(dev.channel_order) do all[c] = array(dev.points[c]) end
  return send_json(res, 200, { device = dev.id, channels = all })
end

function H.admin_disconnect(self, _req, res, id)
  local dev = admin_device(self, res, id)
  if not dev then return end
  if not dev.conn then
    return fail(res, 409, "device " .. dev.id .. " has no TCP connection"
      .. (dev.mqtt_since and " (it is reached through the broker, whose connections the cloud cannot close)" or ""))
  end
  sched.cancel(dev.conn.task)
  return send_json(res, 200, { code = 200, message = "disconnected" })
end

function H.admin_firmwares(self, req, res)
  local list = {}
  for i, fw in ipairs(self.firmwares) do list[i] = self:firmware_json(fw, req) end
  return send_json(res, 200, { firmwares = array(list) })
end

-- {"version", "name", "content"[, "signature"]}: an upload, with the
-- text of its .minisig; {"version", "file"}: a file already in the
-- firmware directory, by name (with FILE.minisig when it is there).
function H.admin_register(self, req, res)
  local doc = decode_body(req, res)
  if not doc then return end
  local version = as_text(doc.version)
  local fw, err, status
  if doc.signature ~= nil and (doc.content == nil or type(doc.signature) ~= "string") then
    return fail(res, 400, "\"signature\" (the text of a .minisig file) goes with a \"content\" upload;"
      .. " a \"file\" registration takes FILE.minisig from the firmware directory")
  end
  if doc.content ~= nil then
    if type(doc.content) ~= "string" then return fail(res, 400, "\"content\" must be a string") end
    fw, err, status = self:upload_firmware(version, doc.name, doc.content, doc.signature)
  elseif doc.file ~= nil then
    fw, err, status = self:register_firmware(version, doc.file)
  else
    return fail(res, 400, "\"content\" (an upload, with a \"name\") or \"file\" (a name in the firmware directory)"
      .. " required")
  end
  if not fw then return fail(res, status or 400, err) end
  return send_json(res, 200, self:firmware_json(fw, req))
end

-- `text` with every device key masked: what the admin API and the log
-- may show of a command.
function methods:without_keys(text)
  for _, id in ipairs(self.device_order) do text = mask(text, self.devices[id].key) end
  return logmod.redact(text)
end

-- Sends `line` to a connected device and answers the admin request. The
-- answer shows the command with the key masked: a device key never leaves
-- the cloud but to its device. `firmware`: the firmware pushed, if any,
-- for the answer to show (whether it is signed).
local function command_reply(self, res, dev, pieces, gap, shown, firmware)
  local ok, err = self:send_and_wait(dev, pieces, gap)
  if not ok then return fail(res, 409, err) end
  self:emit("command", { device = dev.id, raw = true, via = "tcp" })
  shown = self:without_keys(shown)
  log.info("device %s: sent %s", dev.id, (shown:gsub("\n$", "")))
  return send_json(res, 200, { code = 200, message = "sent", command = shown, firmware = firmware, via = "tcp" })
end

-- A command sent, as an event: its channel, and a FOTA's version. Never
-- the line, nor the topic: they hold the device's key.
function methods:emit_command(dev, channel, value, via)
  local version = channel == "FOTA" and value:match("^[^,]*") or nil
  self:emit("command", { device = dev.id, channel = channel, version = version, via = via })
end

-- send_command's sending. @return what was sent, "tcp" | "mqtt" | nil, err
local function send_by(self, dev, channel, value)
  if dev.conn or not self.broker then
    if not dev.conn then return nil, "device " .. dev.id .. " is not connected" end
    local line = self:command_line(dev, channel, value)
    local ok, err = self:send_and_wait(dev, { line }, 0)
    if not ok then return nil, err end
    return line, "tcp"
  end
  local payload, err = self:broker_publish(dev, channel, value)
  if not payload then return nil, err end
  return fmt("mcs/%s/%s/%s %s", dev.id, dev.key, channel, payload), "mqtt"
end

--- Sends `value` on `channel` to `dev` the way it is reached: its TCP
-- connection when it has one (it is listening there now), else the
-- broker when the cloud is on one, which delivers at once to a device
-- online and keeps the command in the session of one offline.
-- @return what was sent (the line, or "topic payload"), "tcp" | "mqtt" | nil, err
function methods:send_command(dev, channel, value)
  local sent, via = send_by(self, dev, channel, value)
  if sent then self:emit_command(dev, channel, value, via) end
  return sent, via
end

--- Pushes a FOTA to `dev` (value "version,MD5,URL"), by send_command().
-- The admin API's push and rollouts both go through here.
-- @return the command sent | nil, err
function methods:push_fota(dev, version, md5, url)
  return self:send_command(dev, "FOTA", concat({ version, md5, url }, ","))
end

-- Sends a command and answers the admin request, the key masked.
local function command(self, res, dev, channel, value, firmware)
  local sent, via = self:send_command(dev, channel, value)
  if not sent then return fail(res, 409, via) end
  local shown = self:without_keys(sent)
  log.info("device %s: sent %s (%s)", dev.id, (shown:gsub("\n$", "")), via)
  local message = "sent"
  if via == "mqtt" and not dev.mqtt_since then
    message = "queued: the device is offline, the broker keeps it for its session"
  end
  return send_json(res, 200, { code = 200, message = message, command = shown, firmware = firmware, via = via })
end

-- FOTA push: "id,key,ts,FOTA,version,MD5,URL". A registered version gets
-- its own MD5 and URL, and the answer shows that firmware (signed or
-- not: the device fetches URL.minisig); a test may instead give any
-- version, url and md5 (null, or a wrong one) to exercise a client's checks.
function H.admin_fota(self, req, res, id)
  local dev = admin_device(self, res, id)
  if not dev then return end
  local doc = decode_body(req, res)
  if not doc then return end
  local version = as_text(doc.version)
  if not version then return fail(res, 400, "\"version\" required") end
  local fw = self.fw_by_version[version]
  local url, md5, pushed
  if doc.url ~= nil then
    url = as_text(doc.url)
    if not url then return fail(res, 400, "\"url\" must be a string") end
    md5 = fw and fw.md5 or "null"
  elseif fw then
    url, md5, pushed = self:firmware_url(fw, req), fw.md5, self:firmware_json(fw, req)
  else
    return fail(res, 400, fmt("unknown firmware version %q: register it first, or give a \"url\"", version))
  end
  if doc.md5 == cjson.null then
    md5 = "null"
  elseif doc.md5 ~= nil then
    md5 = as_text(doc.md5)
    if not md5 then return fail(res, 400, "\"md5\" must be a string or null") end
  end
  return command(self, res, dev, "FOTA", concat({ version, md5, url }, ","), pushed)
end

-- The chunks of a raw command: "raw" cut at the "chunks" sizes (the rest
-- in one more), and the pause between them ("gap_ms", in seconds).
-- @return pieces, gap | nil, why
local function raw_pieces(doc)
  local raw = as_text(doc.raw)
  if not raw or raw == "" then return nil, "\"raw\" must be a non-empty string" end
  local chunks = doc.chunks or {}
  if type(chunks) ~= "table" then return nil, "\"chunks\" must be a list of sizes" end
  local pieces, at = {}, 1
  for i, n in ipairs(chunks) do
    n = math.tointeger(n)
    if not n or n < 1 then return nil, fmt("chunks[%d]: a size >= 1 expected", i) end
    if at + n - 1 > #raw then return nil, "\"chunks\" add up to more than \"raw\" holds" end
    pieces[#pieces + 1] = raw:sub(at, at + n - 1)
    at = at + n
  end
  if at <= #raw then pieces[#pieces + 1] = raw:sub(at) end
  local gap_ms = doc.gap_ms == nil and C.DEFAULT_GAP_MS or tonumber(doc.gap_ms)
  if not gap_ms or gap_ms < 0 then return nil, "\"gap_ms\" must be a number >= 0" end
  return pieces, gap_ms / 1000
end

-- Any command ({"channel","value"}), or raw bytes split into chunks with
-- a pause between them, to test how a client frames what it reads.
function H.admin_command(self, req, res, id)
  local dev = admin_device(self, res, id)
  if not dev then return end
  local doc = decode_body(req, res)
  if not doc then return end
  if doc.raw == nil then
    local chn, value = as_text(doc.channel), as_text(doc.value)
    -- no "/", "+" or "#" either: the channel is a topic level
    if not chn or chn == "" or chn:find("[,%c/+#]") then
      return fail(res, 400, "\"channel\" required (no commas, no / + #)")
    end
    if not value then return fail(res, 400, "\"value\" (a string) required") end
    return command(self, res, dev, chn, value)
  end
  local pieces, gap = raw_pieces(doc)
  if not pieces then return fail(res, 400, gap) end
  if not dev.conn then
    return fail(res, 409, "device " .. dev.id
      .. " has no TCP connection (raw bytes go over the TCP command channel only)")
  end
  return command_reply(self, res, dev, pieces, gap, as_text(doc.raw))
end

A.ROUTES = {
  { "GET",  "^/admin/devices$", H.admin_devices },
  { "POST", "^/admin/devices$", H.admin_add_device },
  { "GET",  "^/admin/devices/([^/]+)$", H.admin_device },
  { "GET",  "^/admin/devices/([^/]+)/datapoints$", H.admin_datapoints },
  { "POST", "^/admin/devices/([^/]+)/fota$", H.admin_fota },
  { "POST", "^/admin/devices/([^/]+)/commands$", H.admin_command },
  { "POST", "^/admin/devices/([^/]+)/disconnect$", H.admin_disconnect },
  { "GET",  "^/admin/firmwares$", H.admin_firmwares },
  { "POST", "^/admin/firmwares$", H.admin_register },
}

return A
