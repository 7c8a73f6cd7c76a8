-- fotahost cloud: a local MCS-compatible cloud (development and test tool).
--
-- `serve` runs the cloud (fotahost.mcs_cloud): the MCS device REST API,
-- the TCP command channel, firmware files and an admin API, and with
-- --mqtt MCS's MQTT topics on a broker. `broker-config` writes a mosquitto
-- configuration for that. The other subcommands talk to a running cloud
-- through the admin API. See docs/cloud.md.

local USAGE = [[
usage: fotahost cloud serve [options]       run the cloud until Ctrl-C / SIGTERM
       fotahost cloud status [--json]       devices, connections, heartbeats, firmwares
       fotahost cloud register --version V (--file PATH [--signature SIG] | --name NAME)
       fotahost cloud push --device ID --version V [--file PATH] [--signature SIG]
                           [--url URL] [--md5 HEX|null]
       fotahost cloud send --device ID --channel C --value V
       fotahost cloud send --device ID --raw BYTES [--chunks N,N,...] [--gap-ms MS]
       fotahost cloud datapoints --device ID [--channel C]
       fotahost cloud add-device ID:KEY
       fotahost cloud disconnect --device ID
       fotahost cloud broker-config --dir DIR --port N [--host ADDR] [--device ID[:KEY] ...]
                           [--cloud-user NAME] [--tls-cert F --tls-key F] [--tls-ca F]
       fotahost cloud rollout start --firmware V [--devices ID,ID,...|all] [--canary N]
                           [--batch P%] [--max-failures F%] [--step-timeout SECONDS]
       fotahost cloud rollout status [--json] | pause | resume | abort
       fotahost cloud fleet-sim N --broker URL --api URL [--dir DIR] [--prefix P]
                           [--register] [--username U --password P]

serve options:
  --host ADDR          numeric address to listen on (default 127.0.0.1). 0.0.0.0 opens
                       the device API, the command port and the admin API to the network:
                       commands, device keys included, travel in clear text, and anyone
                       who sees the admin token (sent in clear too) can push firmware
  --port N             HTTP port (default 8080; 0: a free one)
  --tcp-port N         TCP command channel port (default 0: a free one)
  --device ID:KEY      a device the cloud knows (repeat for more)
  --firmware-dir DIR   where firmware files live, with a manifest of the registered
                       ones, so a restart keeps them (default: a new /tmp directory)
  --firmware V=PATH    register firmware version V at start (repeat for more)
  --public-url URL     base of the URLs handed out to devices (default http://HOST:PORT)
  --newline            end each command with "\n" (MCS sent no terminator; default: none)
  --spacing MS         least time between two commands to one device (default 20;
                       0 writes them back to back, as a benchmark wants)
  --token-file PATH    where to write the admin token (mode 0600; default
                       $XDG_RUNTIME_DIR/fotahost/cloud-PORT.token, else
                       ~/.local/state/fotahost/cloud-PORT.token)
  --idle-timeout S     close a device connection silent for S seconds (default: never)
  --max-connections N  HTTP connections served at once (default 64; past it: 503, retry
                       after 1 s); a fleet downloading at once wants more
  --watch-stdin        stop when stdin reaches end of file (for scripts and tests)
  --mqtt URL           also reach devices through an MQTT broker (mqtt://HOST:PORT or
                       mqtts://): subscribe to mcs/+/+/+ (data points, `online`), publish
                       commands and FOTA pushes (QoS 1) to devices with no TCP connection
  --mqtt-user U        the broker user (broker-config's: fotahost-cloud)
  --mqtt-password-file F  its password, the file's first line (broker-config's cloud.password)
  --mqtt-cafile CA     the CA that signed an mqtts:// broker's certificate
  --mqtt-client-id ID  the cloud's client id, stable across restarts (default fotahost-cloud)
Prints "cloud http://HOST:PORT tcp HOST:TCPPORT" once both ports listen (and the
broker is connected), then "admin token in PATH", then "broker URL" with --mqtt.
The web console is at http://HOST:PORT/ (it asks for the admin token).

broker-config options (writes DIR/mosquitto.conf, passwd, acl, cloud.password and
device-ID.password, and says how to start mosquitto and configure each device):
  --dir DIR            where (made 0700 if missing); passwords already there are kept
  --port N, --host A   the broker's listener (host default 127.0.0.1)
  --device ID[:KEY]    a device: user ID, a generated password (repeat for more)
  --cloud-user NAME    the cloud's user (default fotahost-cloud)
  --tls-cert F --tls-key F, --tls-ca F  a TLS listener (mqtts://); --tls-ca: the
                       CA devices and the cloud verify the broker with

client options:
  --cloud URL          the running cloud (default http://127.0.0.1:8080)
  --token T            the admin token (default: $FOTAHOST_CLOUD_TOKEN, else the
                       token file of the cloud's port, as serve wrote it)
  --token-file PATH    read the admin token from PATH
  --file PATH          register, push: upload PATH as version V, and PATH.minisig (its
                       minisign signature) with it when there is one
  --signature SIG      register, push: upload SIG as the signature of --file instead
  --name NAME          register: a file already in the cloud's firmware directory (with
                       NAME.minisig there when there is one)
  --url URL, --md5 X   push: send exactly this URL / MD5 ("null" for none), for tests
  --raw BYTES          send: bytes as given; \n \r \t \\ and \xHH are decoded
  --chunks N,N,...     send --raw: write in pieces of these sizes (the rest last)
  --gap-ms MS          send --raw: pause between pieces (default 20)

rollout (one at a time; the cloud saves it in its firmware directory and a restarted
cloud goes on with it):
  --firmware V         a registered version, pushed as `push` would
  --devices LIST|all   the devices, in this order (default all: every device, by id)
  --canary N           the first N devices go first, alone; any failure among them
                       aborts the rollout (default 1; 0: no canary batch)
  --batch P%           then batches of P% of the devices, rounded up (default 25%)
  --max-failures F%    a batch whose failures exceed F% of it aborts the rollout; the
                       next batch starts only when every device of this one finished
                       (default 0%)
  --step-timeout S     a device with no done/failed status and no version report S
                       seconds after its push has failed (default 600). A device
                       offline when its batch comes is pushed when it connects (its
                       timeout starts then): the batch waits for it
  pause, resume        no new pushes while paused (those under way finish and count)
  abort                no new pushes, ever
  status               counts per state and per batch, a progress bar on a terminal

fleet-sim (N simulated devices in this one process, over an MQTT broker; docs/cloud.md):
  --broker URL         the broker (mqtt://HOST:PORT), where every device subscribes to
                       mcs/ID/KEY/+ and reports its statuses
  --api URL            the cloud's device API (version reports, firmware downloads)
  --dir DIR            each device's state and record board under DIR/ID (default: a
                       new /tmp directory, removed at exit)
  --prefix P           device i is P0001 (key P0001-key) ... (default sim)
  --register           add every device to the cloud at --api first (its admin API:
                       --token or --token-file, as the client commands)
  --username U, --password P   one broker account for every device (default: none)
Each device runs the real update policy on the record board (the image goes to
DIR/ID/chip/flash.bin); errors only are logged (FOTAHOST_LOG_LEVEL to change).
Prints "fleet: N devices connected in S s" once they all are, and a summary line
(devices connected, updates done and failed) when stopped (SIGTERM, Ctrl-C, or end
of stdin).
  -h, --help           this help
The cloud serves a firmware's signature at its URL with .minisig appended, where
devices fetch it; status shows who signed each firmware (SIGNED: the key id), and
push warns on stderr when the firmware it pushes has no signature.
]]

local cli = require("fotahost.cli").new("cloud", USAGE)

local function die(msg)
  io.stderr:write("fotahost cloud: ", tostring(msg), "\n")
  os.exit(1)
end

---------------------------------------------------------------- options

-- Options each subcommand takes: name -> "value" | "list" (repeatable) | "flag".
local OPTIONS = {
  serve = { ["--host"] = "value", ["--port"] = "value", ["--tcp-port"] = "value",
            ["--device"] = "list", ["--firmware-dir"] = "value", ["--firmware"] = "list",
            ["--public-url"] = "value", ["--newline"] = "flag", ["--no-newline"] = "flag", ["--spacing"] = "value",
            ["--idle-timeout"] = "value", ["--watch-stdin"] = "flag", ["--token-file"] = "value",
            ["--mqtt"] = "value", ["--mqtt-user"] = "value", ["--mqtt-password-file"] = "value",
            ["--mqtt-cafile"] = "value", ["--mqtt-client-id"] = "value",
            ["--max-connections"] = "value" },
  ["broker-config"] = { ["--dir"] = "value", ["--port"] = "value", ["--host"] = "value", ["--device"] = "list",
                        ["--cloud-user"] = "value", ["--tls-cert"] = "value", ["--tls-key"] = "value",
                        ["--tls-ca"] = "value" },
  status = { ["--json"] = "flag" },
  register = { ["--version"] = "value", ["--file"] = "value", ["--signature"] = "value", ["--name"] = "value" },
  push = { ["--device"] = "value", ["--version"] = "value", ["--file"] = "value", ["--signature"] = "value",
           ["--url"] = "value", ["--md5"] = "value" },
  send = { ["--device"] = "value", ["--channel"] = "value",
           ["--value"] = "value", ["--raw"] = "value", ["--chunks"] = "value", ["--gap-ms"] = "value" },
  datapoints = { ["--device"] = "value", ["--channel"] = "value" },
  ["add-device"] = {},
  disconnect = { ["--device"] = "value" },
  rollout = { ["--firmware"] = "value", ["--devices"] = "value", ["--canary"] = "value", ["--batch"] = "value",
              ["--max-failures"] = "value", ["--step-timeout"] = "value", ["--json"] = "flag" },
  ["fleet-sim"] = { ["--broker"] = "value", ["--api"] = "value", ["--dir"] = "value", ["--prefix"] = "value",
                    ["--register"] = "flag", ["--username"] = "value", ["--password"] = "value" },
}
-- Every client subcommand: which cloud, and its admin token.
for cmd, known in pairs(OPTIONS) do
  if cmd ~= "serve" and cmd ~= "broker-config" then
    known["--cloud"], known["--token"], known["--token-file"] = "value", "value", "value"
  end
end

local function parse(argv)
  local cmd = argv[1]
  if cmd == nil then cli:fail("a subcommand is required") end
  if cmd == "-h" or cmd == "--help" then
    io.stdout:write(USAGE)
    os.exit(0)
  end
  local known = OPTIONS[cmd]
  if not known then cli:fail("unknown subcommand '%s'", cmd) end
  local o, positional = {}, {}
  for a, value in cli:each(table.move(argv, 2, #argv, 1, {}), "option %s needs a value") do
    local kind = known[a]
    local key = a:gsub("^%-%-", ""):gsub("%-", "_")
    if kind == "flag" then
      o[key] = true
    elseif kind == "list" then
      o[key] = o[key] or {}
      table.insert(o[key], value())
    elseif kind then
      o[key] = value()
    elseif a:sub(1, 1) == "-" then
      cli:fail("%s: unknown option '%s'", cmd, a)
    else
      positional[#positional + 1] = a
    end
  end
  return cmd, o, positional
end

local function port_value(v, name)
  local n = math.tointeger(tonumber(v))
  if not n or n < 0 or n > 65535 then cli:fail("%s %s: a port 0..65535 expected", name, v) end
  return n
end

local function need(o, key, cmd)
  if not o[key] then cli:fail("%s needs --%s", cmd, key:gsub("_", "-")) end
  return o[key]
end

---------------------------------------------------------------- serve

-- new()'s mqtt table from serve's --mqtt options, or nil.
local function broker_options(o)
  if not o.mqtt then
    for _, k in ipairs({ "mqtt_user", "mqtt_password_file", "mqtt_cafile", "mqtt_client_id" }) do
      if o[k] then cli:fail("--%s goes with --mqtt URL", k:gsub("_", "-")) end
    end
    return nil
  end
  if not o.mqtt:find("^mqtts?://[^%s/?#@]+/?$") then
    cli:fail("--mqtt %s: mqtt://HOST[:PORT] or mqtts://HOST[:PORT] expected (the user goes in --mqtt-user)", o.mqtt)
  end
  local password
  if o.mqtt_password_file then
    local sys = require "fotahost.sys"
    local text, err = sys.read_file(o.mqtt_password_file, 4096)
    if not text then die("--mqtt-password-file: " .. err) end
    password = text:match("^([^\r\n]*)")
  end
  return { url = o.mqtt, username = o.mqtt_user, password = password, cafile = o.mqtt_cafile,
           client_id = o.mqtt_client_id }
end

local function serve(o)
  local sched = require "fotahost.sched"
  local sys = require "fotahost.sys"
  local log = require "fotahost.log"
  local mcs_cloud = require "fotahost.mcs_cloud"
  -- A tool someone runs in a terminal or a test harness: log to stderr
  -- unless FOTAHOST_LOG says otherwise.
  if not os.getenv("FOTAHOST_LOG") then log.configure { sink = "stderr" } end

  local firmwares = {}
  for _, spec in ipairs(o.firmware or {}) do
    local v, path = spec:match("^([^=]+)=(.+)$")
    if not v then cli:fail("--firmware %s: VERSION=PATH expected", spec) end
    firmwares[#firmwares + 1] = { version = v, file = path }
  end
  local idle
  if o.idle_timeout then
    idle = tonumber(o.idle_timeout)
    if not idle or idle <= 0 then cli:fail("--idle-timeout %s: seconds > 0 expected", o.idle_timeout) end
  end
  local spacing
  if o.spacing then
    spacing = tonumber(o.spacing)
    if not spacing or spacing < 0 then cli:fail("--spacing %s: milliseconds >= 0 expected", o.spacing) end
    spacing = spacing / 1000
  end
  local max_connections
  if o.max_connections then
    max_connections = math.tointeger(tonumber(o.max_connections))
    if not max_connections or max_connections < 1 then
      cli:fail("--max-connections %s: an integer >= 1 expected", o.max_connections)
    end
  end
  local cloud, err = mcs_cloud.new {
    host = o.host or "127.0.0.1",
    port = o.port and port_value(o.port, "--port") or 8080,
    tcp_port = o.tcp_port and port_value(o.tcp_port, "--tcp-port") or 0,
    devices = o.device,
    firmware_dir = o.firmware_dir,
    firmwares = firmwares,
    public_url = o.public_url,
    -- (--no-newline: what the default was before; still taken)
    newline = o.newline == true,
    command_spacing = spacing,
    idle_timeout = idle,
    token_file = o.token_file,
    mqtt = broker_options(o),
    max_connections = max_connections,
  }
  if not cloud then die(err) end

  local ok, run_err = pcall(sched.run, function()
    local started, serr = cloud:start()
    if not started then
      cloud:remove_temp_dir()
      die(serr)
    end
    -- The ready line stays first: scripts wait for it.
    io.stdout:write(cloud:ready_line(), "\nadmin token in ", cloud.token_file, "\n")
    if cloud.broker then io.stdout:write("broker ", cloud.broker.shown, "\n") end
    io.stdout:flush()
    io.stderr:write(("fotahost cloud: firmware directory %s; admin API %s/admin\n")
      :format(cloud.firmware_dir, cloud.url))
    if o.watch_stdin then
      -- Returns at end of file (the starter went away) or on a read error.
      while true do
        if sched.wait_fd(0, "r", 3600) then
          local data, why = sys.read(0, 4096)
          if not data and why ~= "wouldblock" then break end
        end
      end
      io.stderr:write("fotahost cloud: stdin closed, stopping\n")
    else
      while true do sched.sleep(3600) end
    end
    cloud:close()
  end)
  cloud:remove_token_file() -- a signal ends sched.run before close()
  cloud:remove_temp_dir()
  if not ok then
    -- SIGTERM is how a service manager or a test stops the cloud: a clean exit.
    require("fotahost.cli").exit_on_signal(run_err, function(sig)
      io.stderr:write("fotahost cloud: stopped (", sig, ")\n")
    end, { SIGTERM = 0 })
  end
  os.exit(0)
end

---------------------------------------------------------------- client side

local function client(o)
  local http = require "fotahost.http"
  local mcs_cloud = require "fotahost.mcs_cloud"
  local base = (o.cloud or "http://127.0.0.1:8080"):gsub("/+$", "")
  local token = o.token or (not o.token_file and os.getenv("FOTAHOST_CLOUD_TOKEN")) or nil
  if token == "" then token = nil end
  local headers, err = mcs_cloud.admin_headers(base, token, o.token_file)
  if not headers then die(err .. " (is `fotahost cloud serve` running there? else give --token or --token-file)") end
  local function call(method, path, value)
    local r, cerr = http.json(method, base .. path, value,
      { retries = 0, timeout = 30, connect_timeout = 5, headers = headers })
    if r == nil then die(cerr) end
    return r
  end
  return call
end

local function unescape_raw(s)
  return (s:gsub("\\(x%x%x)", function(h) return string.char(tonumber(h:sub(2), 16)) end)
    :gsub("\\(.)", { n = "\n", r = "\r", t = "\t", ["\\"] = "\\" }))
end

local function ago(now, t)
  if type(t) ~= "number" then return "-" end
  local s = now - t
  if s < 0 then s = 0 end
  if s < 120 then return ("%.0f s ago"):format(s) end
  if s < 7200 then return ("%.0f min ago"):format(s / 60) end
  return os.date("%Y-%m-%d %H:%M:%S", math.floor(t))
end

local function text(v)
  if v == nil or v == require("cjson").null then return "-" end
  if type(v) == "number" then return math.tointeger(v) and ("%d"):format(v) or ("%g"):format(v) end
  return tostring(v)
end

local function print_table(rows)
  local widths = {}
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do widths[i] = math.max(widths[i] or 0, #cell) end
  end
  for _, row in ipairs(rows) do
    local cells = {}
    for i, cell in ipairs(row) do
      cells[i] = i < #row and cell .. (" "):rep(widths[i] - #cell) or cell
    end
    io.stdout:write(table.concat(cells, "  "), "\n")
  end
end

local COMMANDS = {}

function COMMANDS.status(o)
  local call = client(o)
  local d = call("GET", "/admin/devices")
  local f = call("GET", "/admin/firmwares")
  if o.json then
    local cjson = require "cjson"
    io.stdout:write(cjson.encode({ devices = d.devices, firmwares = f.firmwares, broker = d.broker }), "\n")
    return
  end
  local rows = { { "DEVICE", "CONNECTED", "PEER", "SINCE", "HEARTBEATS", "LAST HEARTBEAT", "VERSION", "DATA" } }
  for _, dev in ipairs(d.devices) do
    local data = {}
    for chn, points in pairs(dev.datapoints or {}) do
      local last = points[#points]
      data[#data + 1] = ("%s=%s"):format(chn, last and text(last.values and last.values.value) or "-")
    end
    table.sort(data)
    rows[#rows + 1] = {
      dev.id, dev.connected and "yes" or "no", text(dev.peer), ago(d.now, dev.connected_since),
      text(dev.heartbeats and dev.heartbeats.count), ago(d.now, dev.last_heartbeat),
      text(dev.version), #data > 0 and table.concat(data, " ") or "-",
    }
  end
  print_table(rows)
  io.stdout:write("\n")
  if #f.firmwares == 0 then
    io.stdout:write("no firmware registered\n")
  else
    local frows = { { "FIRMWARE", "FWID", "MD5", "SIGNED", "URL" } }
    for _, fw in ipairs(f.firmwares) do
      frows[#frows + 1] = { text(fw.version), text(fw.fwId), text(fw.md5), fw.signed and text(fw.key_id) or "no",
                            text(fw.url) }
    end
    print_table(frows)
  end
end

-- The text of the signature to upload with `file`: the file `given`
-- (--signature), else FILE.minisig when minisign left one beside it;
-- nil when there is none.
local function signature_of(file, given)
  local sys = require "fotahost.sys"
  local path = given or file .. ".minisig"
  if not given and not sys.lstat(path) then return nil end
  -- the cloud says what is wrong with a malformed one; one far too large is refused here
  local sig, err = sys.read_file(path, require("fotahost.minisign").limits.signature_file)
  if not sig then die("signature: " .. err) end
  return sig
end

-- Uploads the local file `file` as `version`, with its signature (the
-- cloud reads no path).
local function register(call, version, file, signature)
  local sys = require "fotahost.sys"
  local content, err = sys.read_file(file, require("fotahost.mcs_cloud").MAX_FIRMWARE)
  if not content then die(err) end
  return call("POST", "/admin/firmwares", { version = version, name = file:match("([^/]+)/*$"), content = content,
                                            signature = signature_of(file, signature) })
end

function COMMANDS.register(o)
  local call = client(o)
  local version = need(o, "version", "register")
  local fw
  if o.name then
    if o.signature then cli:fail("register --name takes NAME.minisig from the firmware directory, not --signature") end
    fw = call("POST", "/admin/firmwares", { version = version, file = o.name })
  else
    fw = register(call, version, need(o, "file", "register"), o.signature)
  end
  io.stdout:write(("registered %s as %s: md5 %s, %s, %s\n"):format(fw.version, fw.fwId, fw.md5, fw.url,
    fw.signed and "signed by key " .. text(fw.key_id) or "no signature"))
end

function COMMANDS.push(o)
  local call = client(o)
  local device, version = need(o, "device", "push"), need(o, "version", "push")
  if o.signature and not o.file then cli:fail("push --signature goes with --file") end
  if o.file then register(call, version, o.file, o.signature) end
  local body = { version = version, url = o.url }
  if o.md5 then body.md5 = o.md5 == "null" and require("cjson").null or o.md5 end
  local r = call("POST", "/admin/devices/" .. device .. "/fota", body)
  io.stdout:write("sent ", (tostring(r.command):gsub("\n$", "")), "\n")
  -- r.firmware: the registered firmware pushed (none when --url sent another URL)
  local fw = r.firmware
  if type(fw) == "table" and fw.signed == false then
    io.stderr:write(("fotahost cloud: warning: firmware %s has no signature (%s.minisig): a device with"
      .. " trusted_keys refuses it\n"):format(version, text(fw.name)))
  end
end

function COMMANDS.send(o)
  local call = client(o)
  local device = need(o, "device", "send")
  local body
  if o.raw then
    body = { raw = unescape_raw(o.raw) }
    if o.chunks then
      body.chunks = {}
      for n in o.chunks:gmatch("[^,]+") do
        local v = math.tointeger(tonumber(n))
        if not v or v < 1 then cli:fail("--chunks %s: sizes >= 1 expected", o.chunks) end
        body.chunks[#body.chunks + 1] = v
      end
    end
    if o.gap_ms then
      body.gap_ms = tonumber(o.gap_ms) or cli:fail("--gap-ms %s: a number expected", o.gap_ms)
    end
  else
    body = { channel = need(o, "channel", "send"), value = need(o, "value", "send") }
  end
  local r = call("POST", "/admin/devices/" .. device .. "/commands", body)
  local shown = tostring(r.command):gsub("[%c\\]", function(c)
    local named = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ["\\"] = "\\\\" }
    return named[c] or ("\\x%02x"):format(c:byte())
  end)
  io.stdout:write("sent ", shown, "\n")
end

function COMMANDS.datapoints(o)
  local call = client(o)
  local device = need(o, "device", "datapoints")
  local channels
  if o.channel then
    local r = call("GET", "/admin/devices/" .. device .. "/datapoints?channel=" .. o.channel)
    channels = { [o.channel] = r.datapoints }
  else
    channels = call("GET", "/admin/devices/" .. device .. "/datapoints").channels
  end
  local names = {}
  for chn in pairs(channels) do names[#names + 1] = chn end
  table.sort(names)
  local rows = { { "CHANNEL", "TIMESTAMP", "VALUE" } }
  for _, chn in ipairs(names) do
    for _, p in ipairs(channels[chn]) do
      local v = p.values and p.values.value
      if v == nil then v = require("cjson").encode(p.values) end
      rows[#rows + 1] = { chn, text(p.timestamp), text(v) }
    end
  end
  print_table(rows)
end

function COMMANDS.add_device(o, positional)
  local call = client(o)
  local id, key = (positional[1] or ""):match("^([^:]+):(.+)$")
  if not id then cli:fail("add-device needs ID:KEY") end
  call("POST", "/admin/devices", { id = id, key = key })
  io.stdout:write("added device ", id, "\n")
end

function COMMANDS.disconnect(o)
  local call = client(o)
  local device = need(o, "device", "disconnect")
  call("POST", "/admin/devices/" .. device .. "/disconnect", {})
  io.stdout:write("disconnected ", device, "\n")
end

---------------------------------------------------------------- broker-config

local function broker_config(o)
  local bc = require "fotahost.mcs_cloud.broker_config"
  local dir = need(o, "dir", "broker-config")
  local port = port_value(need(o, "port", "broker-config"), "--port")
  if port == 0 then cli:fail("broker-config --port 0: the broker needs a fixed port") end
  local devices = {}
  for _, d in ipairs(o.device or {}) do
    local id = d:match("^([^:]+)")
    if not id or not id:find("^[%w_%-%.]+$") then
      cli:fail("--device %s: ID or ID:KEY expected (ID: letters, digits, _ - .)", (d:gsub(":.*", ":****")))
    end
    devices[#devices + 1] = { id = id }
  end
  local tls
  if o.tls_cert or o.tls_key or o.tls_ca then
    if not (o.tls_cert and o.tls_key) then cli:fail("broker-config: TLS needs both --tls-cert and --tls-key") end
    tls = { cert = o.tls_cert, key = o.tls_key, ca = o.tls_ca }
  end
  local r, err = bc.write { dir = dir, port = port, host = o.host, devices = devices, cloud_user = o.cloud_user,
                            tls = tls }
  if not r then die(err) end
  local ca = tls and tls.ca and " --mqtt-cafile " .. tls.ca or ""
  local w = function(...) io.stdout:write(...) end
  w(("wrote %s, passwd, acl and the passwords in %s\n\n"):format(r.conf, dir),
    "start the broker:\n  mosquitto -c ", r.conf, "   # its log: ", dir, "/mosquitto.log\n",
    "then the cloud:\n  fotahost cloud serve --mqtt ", r.url, " --mqtt-user ", r.cloud_user,
    " --mqtt-password-file ", r.cloud_password_file, ca, " --device ID:KEY ...\n")
  for _, d in ipairs(r.devices) do
    w(("device %s: user %s, password in %s; on the board (copy the file there):\n"):format(
      d.id, d.id, d.password_file),
      "  uci set fotahost.main.transport=mqtt; uci set fotahost.main.mqtt_url=", r.url, "\n",
      "  uci set fotahost.main.mqtt_username=", d.id,
      "; uci set fotahost.main.mqtt_password=\"$(cat ", d.password_file:match("[^/]+$"), ")\"\n")
    if tls and tls.ca then
      w("  uci set fotahost.main.mqtt_cafile=/etc/fotahost/broker-ca.pem   # a copy of ", tls.ca, "\n")
    end
  end
  if #r.devices > 0 then
    w("(or in the app's Lua config: transport = \"mqtt\", mqtt = { url = ..., username = ..., password = ... })\n")
  end
end

---------------------------------------------------------------- rollouts

-- "25%" or "25": a percentage.
local function percent(v, name)
  local n = tonumber((v:gsub("%%$", "")))
  if not n or n < 0 or n > 100 then cli:fail("--%s %s: a percentage 0..100 expected", name, v) end
  return n
end

local ROLLOUT_STATES = { "pending", "pushed", "done", "failed", "timeout", "skipped" }

local function counts_text(c)
  local parts = {}
  for _, s in ipairs(ROLLOUT_STATES) do
    if (c[s] or 0) > 0 then parts[#parts + 1] = ("%d %s"):format(c[s], s == "timeout" and "timed out" or s) end
  end
  return #parts > 0 and table.concat(parts, ", ") or "-"
end

-- "[#####.....] 5/10 finished": on a terminal only.
local function progress(c, total)
  local finished = c.done + c.failed + c.timeout + c.skipped
  local width = 40
  local n = total > 0 and math.floor(finished * width / total + 0.5) or width
  return ("[%s%s] %d/%d finished"):format(("#"):rep(n), ("."):rep(width - n), finished, total)
end

local function print_rollout(r, json)
  if json then
    io.stdout:write(require("cjson").encode(r), "\n")
    return
  end
  io.stdout:write(("rollout of %s: %s%s\n"):format(r.firmware, r.state,
    r.reason ~= require("cjson").null and r.reason and (" (" .. r.reason .. ")") or ""))
  if require("fotahost.sys").isatty(1) then io.stdout:write(progress(r.counts, r.devices), "\n") end
  io.stdout:write(("%d devices: %s\n"):format(r.devices, counts_text(r.counts)))
  local rows = { { "BATCH", "SIZE", "STATES", "DEVICES" } }
  for _, b in ipairs(r.batches) do
    local ids = {}
    for _, d in ipairs(b.devices) do
      ids[#ids + 1] = d.id .. (d.state == "pending" and not d.connected and " (offline)" or "")
    end
    rows[#rows + 1] = { ("%d%s%s"):format(b.number, b.canary and " canary" or "",
      b.number == r.current_batch and (r.state == "running" or r.state == "paused") and " <" or ""),
      text(b.size), counts_text(b.counts), table.concat(ids, " ") }
  end
  print_table(rows)
  for _, b in ipairs(r.batches) do
    for _, d in ipairs(b.devices) do
      if d.why then io.stdout:write(("%s: %s: %s\n"):format(d.id, d.state, d.why)) end
    end
  end
end

local ROLLOUT = {}

function ROLLOUT.start(o, call)
  local body = { firmware = need(o, "firmware", "rollout start") }
  if o.devices and o.devices ~= "all" then
    body.devices = {}
    for id in o.devices:gmatch("[^,]+") do body.devices[#body.devices + 1] = id end
  end
  if o.canary then
    body.canary = math.tointeger(tonumber(o.canary))
    if not body.canary or body.canary < 0 then cli:fail("--canary %s: a count >= 0 expected", o.canary) end
  end
  body.batch = o.batch and percent(o.batch, "batch")
  body.max_failures = o.max_failures and percent(o.max_failures, "max-failures")
  if o.step_timeout then
    body.step_timeout = tonumber(o.step_timeout)
    if not body.step_timeout or body.step_timeout <= 0 then
      cli:fail("--step-timeout %s: seconds > 0 expected", o.step_timeout)
    end
  end
  print_rollout(call("POST", "/admin/rollout", body), o.json)
end

function ROLLOUT.status(o, call) print_rollout(call("GET", "/admin/rollout"), o.json) end
for _, action in ipairs({ "pause", "resume", "abort" }) do
  ROLLOUT[action] = function(o, call) print_rollout(call("POST", "/admin/rollout/" .. action, {}), o.json) end
end

function COMMANDS.rollout(o, positional)
  local action = positional[1]
  if not ROLLOUT[action] then cli:fail("rollout: start, status, pause, resume or abort expected") end
  if positional[2] then cli:fail("rollout %s: unexpected argument '%s'", action, positional[2]) end
  ROLLOUT[action](o, client(o))
end

---------------------------------------------------------------- fleet-sim

-- Adds devices 1..n to the cloud at `api` (one that knows one already is fine).
local function register_fleet(o, fleet, n)
  local http = require "fotahost.http"
  local headers, err = require("fotahost.mcs_cloud").admin_headers(o.api, o.token, o.token_file)
  if not headers then die(err .. " (give --token or --token-file)") end
  for i = 1, n do
    local id, key = fleet.device(o.prefix, i)
    local r, cerr, code = http.json("POST", o.api .. "/admin/devices", { id = id, key = key },
      { retries = 0, timeout = 30, connect_timeout = 5, headers = headers })
    if r == nil and code ~= 409 then die(cerr) end
  end
end

function COMMANDS.fleet_sim(o, positional)
  local n = math.tointeger(tonumber(positional[1] or ""))
  if not n or n < 1 or #positional > 1 then cli:fail("fleet-sim needs N, a number of devices >= 1") end
  local sched = require "fotahost.sched"
  local sys = require "fotahost.sys"
  local log = require "fotahost.log"
  local fleet = require "fotahost.fleet"
  o.api = need(o, "api", "fleet-sim"):gsub("/+$", "")
  need(o, "broker", "fleet-sim")
  -- a thousand devices' info lines and warnings (the same for each) would
  -- drown the two lines that matter
  if not os.getenv("FOTAHOST_LOG") then log.configure { sink = "stderr" } end
  if not os.getenv("FOTAHOST_LOG_LEVEL") then log.configure { level = "error" } end
  local temp = not o.dir
  local dir = o.dir or assert(io.popen("mktemp -d /tmp/fotahost-fleet-XXXXXX")):read("l")
  if o.register then register_fleet(o, fleet, n) end
  local f
  local ok, err = pcall(sched.run, function()
    f = fleet.start{ n = n, broker = o.broker, api = o.api, dir = dir, prefix = o.prefix,
                     username = o.username, password = o.password }
    f.wait_connected()
    io.stdout:write(("fleet: %d devices connected in %.1f s\n"):format(n, sched.now() - f.started))
    io.stdout:flush()
    -- until end of stdin (or a signal)
    while true do
      if sched.wait_fd(0, "r", 3600) then
        local data, why = sys.read(0, 4096)
        if not data and why ~= "wouldblock" then break end
      end
    end
  end)
  if f then io.stdout:write(f.summary(), "\n") end
  if temp then os.execute("rm -rf '" .. dir .. "'") end
  if not ok then
    require("fotahost.cli").exit_on_signal(err, function() end, { SIGTERM = 0, SIGINT = 0 })
  end
  os.exit(0)
end

local cmd, o, positional = parse(arg)
if cmd == "broker-config" then
  if #positional > 0 then cli:fail("broker-config: unexpected argument '%s'", positional[1]) end
  broker_config(o)
elseif cmd == "serve" then
  if #positional > 0 then cli:fail("serve: unexpected argument '%s'", positional[1]) end
  serve(o)
else
  if cmd ~= "add-device" and cmd ~= "rollout" and cmd ~= "fleet-sim" and #positional > 0 then
    cli:fail("%s: unexpected argument '%s'", cmd, positional[1])
  end
  COMMANDS[cmd:gsub("%-", "_")](o, positional)
end
