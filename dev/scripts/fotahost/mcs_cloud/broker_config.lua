--- fotahost.mcs_cloud.broker_config: a mosquitto (2.0) configuration for
-- the local cloud on a broker (`fotahost cloud broker-config`, docs/cloud.md).
--
-- Written in one directory: mosquitto.conf (one listener, no anonymous
-- clients, persistence in the directory, its log there too), passwd (one
-- user per device, named by the device id, and the cloud's user; hashed
-- by `mosquitto_passwd -U`, mode 0600), acl (the cloud reads and writes
-- every `mcs/#` topic; a device only `mcs/<its id>/#`), cloud.password and
-- device-ID.password (mode 0600).
--
-- A device's password is generated, not its device key: the key is a
-- level of every topic, so whoever sees topics (the cloud's user, a
-- broker's debug log) would learn a password equal to it. A password
-- already in the directory is kept, so running it again (to add a device)
-- leaves the boards set up before as they are.

local sys = require "fotahost.sys"
local token = require "fotahost.mcs_cloud.token"

local M = {}

local fmt = string.format
local PRIVATE = tonumber("600", 8)

M.DEFAULT_CLOUD_USER = "fotahost-cloud"

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- The password kept in `path`, or a new one written there (0600).
-- @return password | nil, err
local function password_in(path)
  local kept = sys.read_file(path, 4096)
  kept = kept and kept:match("^(%S+)\n?$")
  if kept then return kept end
  local pw, err = token.new_secret()
  if not pw then return nil, err end
  local ok, werr = sys.write_file(path, pw .. "\n", PRIVATE)
  if not ok then return nil, werr end
  return pw
end

--- The ACL: the cloud's user everything under mcs/, each device (its user
-- name is its id: %u) only its own topics.
function M.acl(cloud_user)
  return table.concat({
    "# written by fotahost cloud broker-config",
    "user " .. cloud_user,
    "topic readwrite mcs/#",
    "",
    "# every other user: a device, whose user name is its id",
    "pattern readwrite mcs/%u/#",
    "",
  }, "\n")
end

--- mosquitto.conf's text. o: dir, host, port, run_as, tls = { cert, key, ca }.
function M.conf(o)
  local d = o.dir
  local lines = {
    "# written by fotahost cloud broker-config; start with: mosquitto -c " .. d .. "/mosquitto.conf",
    "per_listener_settings false",
    "allow_anonymous false",
    -- a client is known by its user: nobody can take another's client id
    -- (mosquitto would drop the other's connection, and its session)
    "use_username_as_clientid true",
    "password_file " .. d .. "/passwd",
    "acl_file " .. d .. "/acl",
    "persistence true",
    "persistence_location " .. d .. "/",
    "log_dest file " .. d .. "/mosquitto.log",
    "log_type error",
    "log_type warning",
    "log_type notice",
    "log_type information",
    -- started as root, mosquitto would become user "mosquitto", who cannot
    -- read the 0600 files written here
    "user " .. o.run_as,
    "",
    fmt("listener %d %s", o.port, o.host),
  }
  if o.tls then
    lines[#lines + 1] = "certfile " .. o.tls.cert
    lines[#lines + 1] = "keyfile " .. o.tls.key
    if o.tls.ca then lines[#lines + 1] = "cafile " .. o.tls.ca end
  end
  return table.concat(lines, "\n") .. "\n"
end

-- Hashes the "user:password" lines of `path` in place (mosquitto_passwd
-- keeps the file's mode). @return true | nil, err
local function hash_passwords(path)
  local ok = os.execute("mosquitto_passwd -U " .. quote(path) .. " >/dev/null 2>&1")
  if not ok then return nil, "mosquitto_passwd -U " .. path .. " failed (is mosquitto installed?)" end
  return true
end

local function id_of_user()
  local p = io.popen("id -un")
  local name = p and p:read("l")
  if p then p:close() end
  return name or "root"
end

--- Writes the directory. o: dir, port, host ("127.0.0.1"), devices (list
-- of { id, key }), cloud_user, tls ({ cert, key, ca } or nil).
-- @return { url, conf, cloud_user, cloud_password_file, devices = { { id, password_file } } } | nil, err
function M.write(o)
  local dir = o.dir:gsub("(.)/+$", "%1")
  local cloud_user = o.cloud_user or M.DEFAULT_CLOUD_USER
  if not cloud_user:find("^[%w_%-%.]+$") then return nil, fmt("bad cloud user name %q", cloud_user) end
  local ok, err = sys.mkdir(dir, tonumber("700", 8))
  if not ok then return nil, err end
  local users, out = {}, { devices = {}, cloud_user = cloud_user }
  out.cloud_password_file = dir .. "/cloud.password"
  local pw, perr = password_in(out.cloud_password_file)
  if not pw then return nil, perr end
  users[1] = cloud_user .. ":" .. pw
  for _, d in ipairs(o.devices) do
    if d.id == cloud_user then return nil, fmt("device %s: the cloud's user has that name (--cloud-user)", d.id) end
    local file = dir .. "/device-" .. d.id .. ".password"
    pw, perr = password_in(file)
    if not pw then return nil, perr end
    users[#users + 1] = d.id .. ":" .. pw
    out.devices[#out.devices + 1] = { id = d.id, password_file = file }
  end
  local passwd = dir .. "/passwd"
  ok, err = sys.write_file(passwd, table.concat(users, "\n") .. "\n", PRIVATE)
  if not ok then return nil, err end
  ok, err = hash_passwords(passwd)
  if not ok then return nil, err end
  ok, err = sys.write_file(dir .. "/acl", M.acl(cloud_user), tonumber("644", 8))
  if not ok then return nil, err end
  local host = o.host or "127.0.0.1"
  out.conf = dir .. "/mosquitto.conf"
  ok, err = sys.write_file(out.conf, M.conf { dir = dir, host = host, port = o.port, tls = o.tls,
    run_as = id_of_user() })
  if not ok then return nil, err end
  out.url = fmt("%s://%s:%d", o.tls and "mqtts" or "mqtt", host:find(":") and "[" .. host .. "]" or host, o.port)
  return out
end

return M
