--- fotahost.mcs_cloud.device_api: the local cloud's device REST API
-- (under /mcs/v2/devices/ID, the deviceKey header checked) and the
-- firmware files the URLs it hands out point to. Its routes and methods
-- are installed by fotahost.mcs_cloud.

local sys = require "fotahost.sys"
local httpd = require "fotahost.httpd"
local cjson = require "cjson.safe"
local logmod = require "fotahost.log"
local C = require "fotahost.mcs_cloud.common"
local store = require "fotahost.mcs_cloud.store"

local log = logmod.get("cloud")
local fmt = string.format
local array, as_text, same_secret, WILDCARD = C.array, C.as_text, C.same_secret, C.WILDCARD
local send_json, fail, decode_body = C.send_json, C.fail, C.decode_body
local unfit_file = store.unfit_file

local D = {}
local methods = {}
D.methods = methods

--- Why `chn` is no data channel id (letters, digits, _ and -, at most
-- MAX_CHANNEL bytes: the console's events and answers name it), or nil.
function D.bad_channel(chn)
  if #chn > C.MAX_CHANNEL then return fmt("data channel id of %d bytes (at most %d)", #chn, C.MAX_CHANNEL) end
  if not chn:find("^[%w_%-]+$") then return fmt("bad data channel id %q", chn) end
  return nil
end

--- Parses a datapoints.csv body: lines "chn,timestamp,value" where the
-- value is everything after the second comma (GPS "lat,lon,alt", PWM
-- "value,period") and an empty timestamp means "now".
-- @return list of { channel, timestamp|nil, value } | nil, message
function D.parse_csv(body)
  local points, n = {}, 0
  for line in (body .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = line:gsub("\r$", "")
    if line ~= "" then
      local chn, ts, value = line:match("^([^,]*),([^,]*),(.*)$")
      if not chn then
        return nil, fmt("line %d: expected \"dataChnId,timestamp,value\", got %q", n, line)
      end
      local bad = D.bad_channel(chn)
      if bad then return nil, fmt("line %d: %s", n, bad) end
      if ts ~= "" and not ts:find("^%d+$") then
        return nil, fmt("line %d: timestamp must be milliseconds or empty, got %q", n, ts)
      end
      points[#points + 1] = { channel = chn, timestamp = math.tointeger(tonumber(ts)), value = value }
    end
  end
  return points
end

-- The address devices are told to connect to: the public URL's host when
-- one was given, the listening address, or - when listening on every
-- address - the host name the device used to reach us.
local function url_host(url)
  local authority = url and url:match("^%a[%w+.-]*://([^/?#]*)")
  if not authority then return nil end
  authority = authority:gsub("^.*@", "")
  return authority:match("^%[([^%]]+)%]") or authority:match("^([^:]+)")
end

function methods:advertised_ip(req)
  local h = self.public_url_given and url_host(self.public_url)
  if h then return h end
  if not WILDCARD[self.host] then return self.host end
  local hh = req.headers.host or ""
  return hh:match("^%[([^%]]+)%]") or hh:match("^([^:]+)") or "127.0.0.1"
end

-- The device of a device route, or nil after answering 404 / 401.
function methods:authorize(req, res, id)
  id = httpd.unescape(id)
  local dev = self.devices[id]
  if not dev then
    fail(res, 404, "no device " .. id)
    return nil
  end
  local key = req.headers.devicekey
  if not same_secret(key, dev.key) then
    fail(res, 401, key and "wrong deviceKey" or "deviceKey header required")
    return nil
  end
  return dev
end


local H = {} -- route handlers: H.name(cloud, req, res, captures...)

function H.connections_csv(self, req, res)
  return res:send(200, { ["Content-Type"] = "text/csv" }, fmt("%s,%d", self:advertised_ip(req), self.tcp_port))
end

function H.connections_json(self, req, res)
  return send_json(res, 200, { ip = self:advertised_ip(req), port = self.tcp_port })
end

local function too_many(res, n)
  return fail(res, 400, fmt("at most %d data points per request, got %d", C.MAX_POINTS_PER_REQUEST, n))
end

function H.datapoints_csv(self, req, res, dev)
  local points, err = D.parse_csv(req.body)
  if not points then return fail(res, 400, err) end
  if #points == 0 then return fail(res, 400, "no data points in the request body") end
  if #points > C.MAX_POINTS_PER_REQUEST then return too_many(res, #points) end
  for _, p in ipairs(points) do
    self:store_point(dev, p.channel, p.timestamp, { value = p.value })
  end
  return res:send(200, { ["Content-Type"] = "text/plain" }, "Success.")
end

function H.datapoints_json(self, req, res, dev)
  local doc = decode_body(req, res)
  if not doc then return end
  local list = doc.datapoints
  if type(list) ~= "table" or #list == 0 then
    return fail(res, 400, "\"datapoints\" must be a non-empty list")
  end
  if #list > C.MAX_POINTS_PER_REQUEST then return too_many(res, #list) end
  local checked = {}
  for i, p in ipairs(list) do
    local chn = type(p) == "table" and as_text(p.dataChnId)
    if not chn then return fail(res, 400, fmt("datapoints[%d]: missing dataChnId", i)) end
    local bad = D.bad_channel(chn)
    if bad then return fail(res, 400, fmt("datapoints[%d]: %s", i, bad)) end
    local ts = p.timestamp
    if ts ~= nil and ts ~= cjson.null and not math.tointeger(ts) then
      return fail(res, 400, fmt("datapoints[%d]: timestamp must be integer milliseconds", i))
    end
    if type(p.values) ~= "table" or p.values.value == nil and next(p.values) == nil then
      return fail(res, 400, fmt("datapoints[%d]: \"values\" must be an object such as {\"value\": \"26\"}", i))
    end
    checked[i] = { chn, ts ~= cjson.null and math.tointeger(ts) or nil, p.values }
  end
  for _, c in ipairs(checked) do self:store_point(dev, c[1], c[2], c[3]) end
  return send_json(res, 200, { code = 200, message = "Request has succeeded" })
end

function H.report_version(self, req, res, dev)
  local doc = decode_body(req, res)
  if not doc then return end
  local version = as_text(doc.version)
  if not version then return fail(res, 400, "\"version\" (a string) required") end
  local fw = self.fw_by_version[version]
  if not fw then
    return fail(res, 400, fmt("unknown firmware version %q: register it first (POST /admin/firmwares)", version))
  end
  dev.version, dev.version_at = version, sys.time()
  log.info("device %s reports firmware %s", dev.id, version)
  self:emit("version", { device = dev.id, version = version })
  self:rollout_version(dev)
  return send_json(res, 200, { code = 200, message = "Request has succeeded", fwId = fw.fwId })
end

-- "Firmwares compatible with the reported version": here, those registered
-- after the one the device reports (all of them when it reported none).
function H.available(self, req, res, dev)
  local results, after = {}, dev.version == nil or self.fw_by_version[dev.version] == nil
  local with_url = req.args.url == "true"
  for _, fw in ipairs(self.firmwares) do
    if after then
      results[#results + 1] = { fwid = fw.fwId, name = fw.name, description = cjson.null,
                                version = fw.version, URL = with_url and self:firmware_url(fw, req) or nil }
    end
    if fw.version == dev.version then after = true end
  end
  return send_json(res, 200, { results = array(results) })
end

function H.firmware_url(self, req, res, _dev, fw_id)
  local fw = self.fw_by_id[httpd.unescape(fw_id)]
  if not fw then return fail(res, 404, "no firmware " .. httpd.unescape(fw_id)) end
  return send_json(res, 200, { url = self:firmware_url(fw, req) })
end

-- Firmware files: what the URLs handed out point to (no key, as a CDN).
function H.firmware_file(self, _req, res, name)
  name = httpd.unescape(name)
  if unfit_file(self.firmware_dir, name) then return fail(res, 404, "no such firmware file") end
  return res:send_file(self.firmware_dir .. "/" .. name)
end

-- Method, path pattern (captures are the handler's arguments), handler.
-- `device = true`: the first capture is a device ID whose deviceKey header
-- is checked (authorize()), and the handler gets the device instead.
local DEVICE = "^/mcs/v2/devices/([^/]+)"
D.ROUTES = {
  { "GET",  DEVICE .. "/connections%.csv$", H.connections_csv, device = true },
  { "GET",  DEVICE .. "/connections$", H.connections_json, device = true },
  { "POST", DEVICE .. "/datapoints%.csv$", H.datapoints_csv, device = true },
  { "POST", DEVICE .. "/datapoints$", H.datapoints_json, device = true },
  { "PUT",  DEVICE .. "/firmwares$", H.report_version, device = true },
  { "GET",  DEVICE .. "/firmwares/available$", H.available, device = true },
  { "GET",  DEVICE .. "/firmwares/([^/]+)/url$", H.firmware_url, device = true },
  { "GET",  "^/firmwares/([^/]+)$", H.firmware_file },
}

return D
