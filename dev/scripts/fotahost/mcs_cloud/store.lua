--- fotahost.mcs_cloud.store: the local cloud's devices and firmwares.
--
-- Devices (id, key, heartbeats, data points, commands sent) are kept in
-- memory, bounded; registered firmwares are files in the firmware
-- directory with a manifest (cloud-firmwares.json), so a restarted cloud
-- knows them again. A firmware NAME may have its minisign signature
-- beside it: NAME.minisig (minisign's naming; a device fetches
-- URL.minisig). Its functions are methods of the cloud object
-- (fotahost.mcs_cloud installs them).

local sys = require "fotahost.sys"
local cjson = require "cjson.safe"
local logmod = require "fotahost.log"
local C = require "fotahost.mcs_cloud.common"

local log = logmod.get("cloud")
local fmt = string.format
local array, encode, as_text, now_ms, push_bounded = C.array, C.encode, C.as_text, C.now_ms, C.push_bounded
local WILDCARD = C.WILDCARD

local S = {}
local methods = {}
S.methods = methods

-- A firmware file name fit for /firmwares/NAME: no directory, nothing hidden.
function S.safe_name(name)
  return type(name) == "string" and name ~= "" and not name:find("[/%c]") and name:sub(1, 1) ~= "."
end

-- Why `name` in the firmware directory `dir` is not a firmware file the
-- cloud may read, or nil when it is one: a regular file, not a link (a
-- link could name any file of the host), not a device or FIFO.
function S.unfit_file(dir, name)
  if not S.safe_name(name) or name == C.MANIFEST or name == C.ROLLOUT then
    return fmt("bad firmware file name %q (a name inside the firmware directory %s)", tostring(name), dir), 400
  end
  local st = sys.lstat(dir .. "/" .. name)
  if not st then return fmt("%s/%s: no such firmware file", dir, name), 404 end
  if st.type ~= "file" then
    return fmt("%s/%s: a %s, not a regular file: refused", dir, name, st.type), 400
  end
  return nil
end

---------------------------------------------------------------- signatures
-- The cloud holds no key: it checks that a signature file is one (parsed,
-- within minisign's limits) and shows who signed, never that it is good.
-- Devices verify.

local SIG = ".minisig"

local function minisign()
  return require "fotahost.minisign" -- a plugin: loaded when first needed
end

-- The signature file `text` parsed (lines, lengths, algorithm, and its
-- size: at most minisign.limits.signature_file): { key_id, comment, alg }
-- | nil, why (`what` names it in the message).
local function parse_signature(text, what)
  local info, err = minisign().signature_info(text)
  if not info then return nil, what .. ": " .. err end
  return info
end

-- The signature beside the firmware file `name` of `dir`, parsed: info,
-- false when there is none, or nil, why, http_status (malformed, too
-- large, a link).
local function signature_beside(dir, name)
  local unfit, status = S.unfit_file(dir, name .. SIG)
  if status == 404 then return false end
  if unfit then return nil, unfit, status end
  local path = dir .. "/" .. name .. SIG
  local text, err = sys.read_file(path, minisign().limits.signature_file)
  if not text then return nil, err, 400 end
  local info, perr = parse_signature(text, path)
  if not info then return nil, perr, 400 end
  return info
end

-- Why `name` cannot be a firmware's: it would be (or clobber) another
-- firmware's signature.
local function signature_name(name)
  if type(name) == "string" and name:sub(-#SIG) == SIG then
    return fmt("bad firmware file name %q: a %s file is the signature of the firmware it extends"
      .. " (upload it as that firmware's \"signature\")", name, SIG)
  end
end


---------------------------------------------------------------- the store

-- The devices given to new(): "ID:KEY" strings or { id =, key = } tables.
-- @return true | nil, err
local function add_devices(self, list)
  for _, d in ipairs(list) do
    local id, key
    if type(d) == "table" then
      id, key = d.id, d.key
    else
      id, key = tostring(d):match("^([^:]+):(.+)$")
    end
    if not id then return nil, fmt("device %q: expected ID:KEY", tostring(d)) end
    local ok, err = self:add_device(id, key)
    if not ok then return nil, err end
  end
  return true
end

-- The firmware directory: `dir`, made if missing, or a fresh one in /tmp
-- (removed by remove_temp_dir()). @return dir, temporary | nil, err
local function firmware_dir(dir)
  if not dir then
    local p = io.popen("mktemp -d /tmp/fotahost-cloud-XXXXXX")
    dir = p and p:read("l")
    if p then p:close() end
    if not dir then return nil, "cannot create a temporary firmware directory" end
    return dir, true
  end
  dir = dir:gsub("(.)/+$", "%1")
  if not os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'") then
    return nil, dir .. ": cannot create the firmware directory"
  end
  return dir, false
end

--- Fills a new cloud's store from new()'s options: devices,
-- firmware_dir, firmwares. @return true | nil, err
function S.open(self, opts)
  self.devices = {}      -- id -> device
  self.device_order = {} -- ids, in the order added
  self.firmwares = {}    -- list, in the order registered
  self.fw_by_version, self.fw_by_id, self.next_fw = {}, {}, 1
  local ok, err = add_devices(self, opts.devices or {})
  if not ok then return nil, err end
  local dir, temporary = firmware_dir(opts.firmware_dir)
  if not dir then return nil, temporary end
  self.firmware_dir, self.temp_dir = dir, temporary
  self:load_manifest()
  for _, fw in ipairs(opts.firmwares or {}) do
    local content, rerr = sys.read_file(fw.file, C.MAX_FIRMWARE)
    if not content then return nil, "firmware " .. tostring(fw.version) .. ": " .. rerr end
    -- its signature, when minisign left one beside it
    local signature
    if sys.lstat(fw.file .. SIG) then
      signature, rerr = sys.read_file(fw.file .. SIG, minisign().limits.signature_file)
      if not signature then return nil, "firmware " .. tostring(fw.version) .. ": " .. rerr end
    end
    local up, uerr = self:upload_firmware(fw.version, fw.file:match("([^/]+)$"), content, signature)
    if not up then return nil, uerr end
  end
  return true
end

--- Adds a device. IDs and keys are short ASCII strings without commas
-- (they are fields of the command lines). @return device | nil, err
function methods:add_device(id, key)
  if type(id) ~= "string" or not id:find("^[%w_%-%.]+$") then
    return nil, fmt("bad device id %q (letters, digits, _ - . only)", tostring(id))
  end
  if type(key) ~= "string" or key == "" or key:find("[,%s%c]") then
    return nil, fmt("device %s: bad key (no commas, spaces or control characters)", id)
  end
  if self.devices[id] then return nil, "device " .. id .. " exists already" end
  if #key >= 4 then log.secret(key) end
  local dev = {
    id = id, key = key,
    conn = nil,           -- the bound TCP connection, if any
    mqtt_since = nil,     -- since when the broker says it is online (epoch s), if it is
    heartbeats = {},      -- recent { at = epoch s, timestamp = "..." }
    heartbeat_count = 0,
    points = {},          -- channel -> list of { timestamp, values, received }
    channel_order = {},
    commands_sent = 0,
    commands = {},        -- when the latest commands were written (epoch s)
  }
  self.devices[id] = dev
  self.device_order[#self.device_order + 1] = id
  return dev
end

---------------------------------------------------------------- firmwares

-- Where firmware URLs point: --public-url, else the address listened on;
-- when that is every address, the host the request was sent to.
function methods:base_url(req)
  if not self.public_url_given and WILDCARD[self.host] and req and req.headers.host then
    return "http://" .. req.headers.host
  end
  return self.public_url
end

function methods:firmware_url(fw, req)
  return self:base_url(req) .. "/firmwares/" .. fw.name:gsub("[^%w%-%._~]", function(c)
    return fmt("%%%02X", c:byte())
  end)
end

function methods:save_manifest()
  local list = {}
  for i, fw in ipairs(self.firmwares) do
    list[i] = { fwId = fw.fwId, version = fw.version, name = fw.name }
  end
  local path = self.firmware_dir .. "/" .. C.MANIFEST
  local f, err = io.open(path .. ".tmp", "wb")
  if not f then log.warn("cannot save the firmware manifest: %s", err) return end
  f:write(encode({ firmwares = array(list) }), "\n")
  f:close()
  os.rename(path .. ".tmp", path)
end

-- Registers again what a previous run registered (files still there only).
function methods:load_manifest()
  local data = sys.read_file(self.firmware_dir .. "/" .. C.MANIFEST, 1 << 20)
  if not data then return end
  local doc = cjson.decode(data)
  if type(doc) ~= "table" or type(doc.firmwares) ~= "table" then
    log.warn("%s/%s: not a firmware manifest; ignored", self.firmware_dir, C.MANIFEST)
    return
  end
  for _, e in ipairs(doc.firmwares) do
    local n = type(e.fwId) == "string" and math.tointeger(tonumber(e.fwId:match("^fw(%d+)$") or ""))
    if n and n >= self.next_fw then self.next_fw = n + 1 end
    local fw, err = self:register_firmware(as_text(e.version), e.name, e.fwId, true)
    if not fw then log.warn("manifest: %s; skipped", err) end
  end
end

local function bad_version(version)
  if type(version) ~= "string" or version == "" or version:find("[,%c]") then
    return fmt("bad firmware version %q (a non-empty label without commas)", tostring(version))
  end
end

--- Registers `version` as the file `name` of the firmware directory (a
-- name, never a path: the admin API must not make the cloud read, and
-- then serve, any file of its host), with NAME.minisig when it is there.
-- A version registered again is replaced (its fwId kept). Versions may
-- not hold commas or line ends: they are a field of the FOTA command.
-- @return firmware | nil, err, http_status
function methods:register_firmware(version, name, fw_id, quiet)
  local bad = bad_version(version) or signature_name(name)
  if bad then return nil, bad, 400 end
  local dir = self.firmware_dir
  local unfit, status = S.unfit_file(dir, name)
  if unfit then return nil, "firmware " .. version .. ": " .. unfit, status end
  local signature, serr, sstatus = signature_beside(dir, name)
  if signature == nil then return nil, "firmware " .. version .. ": " .. serr, sstatus end
  local path = dir .. "/" .. name
  local digest = require "fotahost.digest" -- a plugin: loaded when first needed
  local md5, err = digest.file(path, "md5")
  if not md5 then return nil, err, 500 end
  local fw = self.fw_by_version[version]
  if not fw then
    if not fw_id then
      fw_id = "fw" .. self.next_fw
      self.next_fw = self.next_fw + 1
    end
    fw = { fwId = fw_id, version = version }
    self.firmwares[#self.firmwares + 1] = fw
    self.fw_by_version[version] = fw
    self.fw_by_id[fw_id] = fw
  end
  fw.name, fw.path, fw.md5, fw.registered_at = name, path, md5, sys.time()
  local st = sys.lstat(path)
  fw.size = st and st.size
  fw.signature = signature or nil
  if not quiet then
    self:save_manifest()
    log.info("firmware %s registered: %s (md5 %s, %s, %s)", version, path, md5, fw.fwId,
      signature and "signed by key " .. signature.key_id or "no signature")
    self:emit("firmware", { version = version })
  end
  return fw
end

--- Stores `content` (an uploaded firmware) as `name` in the firmware
-- directory, and `signature` (its .minisig text, optional) beside it as
-- NAME.minisig, and registers it as `version`. Another version's file of
-- the same name is kept: this one is then stored as VERSION-NAME (and
-- its signature as VERSION-NAME.minisig).
-- @return firmware | nil, err, http_status
function methods:upload_firmware(version, name, content, signature)
  local bad = bad_version(version)
  if bad then return nil, bad, 400 end
  if type(content) ~= "string" or content == "" then
    return nil, "firmware " .. version .. ": empty content", 400
  end
  if not S.safe_name(name) or name == C.MANIFEST or name == C.ROLLOUT then
    return nil, fmt("bad firmware file name %q (no /, not hidden)", tostring(name)), 400
  end
  bad = signature_name(name)
  if bad then return nil, bad, 400 end
  if signature ~= nil then
    if type(signature) ~= "string" then return nil, "firmware " .. version .. ": the signature must be text", 400 end
    local info, serr = parse_signature(signature, "firmware " .. version)
    if not info then return nil, serr, 400 end
  end
  for _, other in ipairs(self.firmwares) do
    if other.name == name and other.version ~= version then
      name = version:gsub("[^%w%-%._]", "_") .. "-" .. name
      break
    end
  end
  local path = self.firmware_dir .. "/" .. name
  -- A signature already beside `name` signs the bytes this upload
  -- replaces: it goes before them, never served for the new ones.
  if sys.lstat(path .. SIG) then
    local gone, rerr = os.remove(path .. SIG)
    if not gone then return nil, "removing the previous signature: " .. rerr, 500 end
    if not signature then
      log.info("firmware %s: %s removed: it signed the file this upload replaces, and the upload has none",
        version, path .. SIG)
    end
  end
  -- write_file replaces a link at `name` instead of writing through it
  local ok, err = sys.write_file(path, content)
  if not ok then return nil, "storing the firmware: " .. err, 500 end
  if signature then
    ok, err = sys.write_file(path .. SIG, signature)
    if not ok then return nil, "storing the signature: " .. err, 500 end
  end
  return self:register_firmware(version, name)
end

-- A firmware as the admin API shows it. The trusted comment is whatever
-- the signer wrote (nothing here checked it): data, never markup.
function methods:firmware_json(fw, req)
  local sig = fw.signature
  return { fwId = fw.fwId, version = fw.version, name = fw.name, md5 = fw.md5, size = fw.size,
           url = self.public_url and self:firmware_url(fw, req), file = fw.path,
           signed = sig ~= nil, key_id = sig and sig.key_id, trusted_comment = sig and sig.comment }
end

---------------------------------------------------------------- devices

function methods:store_point(dev, channel, timestamp, values)
  local list = dev.points[channel]
  if not list then
    list = {}
    dev.points[channel] = list
    dev.channel_order[#dev.channel_order + 1] = channel
  end
  local point = { timestamp = timestamp or now_ms(), values = values, received = now_ms() }
  push_bounded(list, point, C.MAX_POINTS)
  self:emit_point(dev, channel, point.timestamp, values)
  self:rollout_point(dev, channel, values)
end

-- A device as the admin API shows it; `recent`: how many of the latest
-- data points per channel (nil: all kept).
function methods:device_json(dev, recent)
  local conn = dev.conn
  local beats = {}
  for i, hb in ipairs(dev.heartbeats) do beats[i] = hb.at end
  local points = {}
  for _, chn in ipairs(dev.channel_order) do
    local list = dev.points[chn]
    local from = recent and math.max(1, #list - recent + 1) or 1
    points[chn] = array(table.move(list, from, #list, 1, {}))
  end
  -- Reached through the broker (its `online` channel) or by TCP: TCP wins
  -- when both, as commands do (admin_api).
  local via_broker = not conn and dev.mqtt_since or nil
  return {
    id = dev.id,
    connected = conn ~= nil or via_broker ~= nil,
    transport = conn and "tcp" or via_broker and "mqtt" or cjson.null,
    peer = conn and conn.peer or via_broker and self.broker.shown or cjson.null,
    connected_since = conn and conn.since or via_broker or cjson.null,
    last_heartbeat = dev.last_heartbeat or cjson.null,
    last_disconnect = dev.disconnected_at or cjson.null,
    -- recent: arrival times (epoch s); last_timestamp: the field the last one carried
    heartbeats = { count = dev.heartbeat_count, recent = array(beats),
                   last_timestamp = #dev.heartbeats > 0 and dev.heartbeats[#dev.heartbeats].timestamp or cjson.null },
    version = dev.version or cjson.null,
    version_reported_at = dev.version_at or cjson.null,
    commands_sent = dev.commands_sent,
    commands_recent = array(table.move(dev.commands, 1, #dev.commands, 1, {})),
    datapoints = points,
  }
end
return S
