-- The local cloud on an MQTT broker (`fotahost cloud serve --mqtt`,
-- fotahost.mcs_cloud.broker) and the configuration for that broker
-- (`fotahost cloud broker-config`). A real mosquitto runs on what
-- broker-config wrote; devices are the real mosquitto_pub and
-- mosquitto_sub clients with the credentials broker-config made.
local h = require "helper"
local sys = require "fotahost.sys"
local stream = require "fotahost.stream"
local sched = require "fotahost.sched"
local cjson = require "cjson"
local mosquitto = require "support.mosquitto"
local mcs_cloud = require "fotahost.mcs_cloud"

local ID, KEY = "Dev1xA9k", "g06jBWOtB0kqHk2B"
local ID2, KEY2 = "Dev2yB7m", "TPJVabcdefghBxBv"
local ID3, KEY3 = "Dev3app", "AppKey3abcdefgh"
local CLOUD_USER = "fotahost-cloud"

-- Polls fn every 50 ms until it returns a true value (at most 10 s).
local function eventually(what, fn)
  local deadline = sched.now() + 10
  while true do
    local v = fn()
    if v then return v end
    if sched.now() > deadline then error("timed out waiting for " .. what, 2) end
    stream.pause(nil, 0.05)
  end
end

local function mode(path) return (assert(sys.lstat(path), path)).mode end

local function broker_config(dir, port, ...)
  local args = { "cloud", "broker-config", "--dir", dir, "--port", tostring(port) }
  for _, a in ipairs({ ... }) do args[#args + 1] = a end
  return h.run(args)
end

describe("fotahost cloud broker-config", function()
  local dir
  before_each(function() dir = h.tmpdir() .. "/broker" end)
  after_each(function() h.rmdir(dir:match("^(.*)/broker$")) end)

  it("writes mosquitto.conf, a 0600 password file, the ACL and the passwords, and says how to use them", function()
    local r = broker_config(dir, 18830, "--device", ID .. ":" .. KEY, "--device", ID2)
    assert.equal(0, r.status, r.err)
    local conf = h.read(dir .. "/mosquitto.conf")
    for _, line in ipairs({ "listener 18830 127.0.0.1", "allow_anonymous false", "password_file " .. dir .. "/passwd",
      "acl_file " .. dir .. "/acl", "persistence true", "persistence_location " .. dir .. "/",
      "use_username_as_clientid true" }) do
      assert.matches("\n" .. h.literal(line) .. "\n", conf)
    end
    assert.equal("# written by fotahost cloud broker-config\nuser fotahost-cloud\ntopic readwrite mcs/#\n\n"
      .. "# every other user: a device, whose user name is its id\npattern readwrite mcs/%u/#\n",
      h.read(dir .. "/acl"))
    local private = { "passwd", "cloud.password", "device-" .. ID .. ".password", "device-" .. ID2 .. ".password" }
    for _, f in ipairs(private) do
      assert.equal(tonumber("600", 8), mode(dir .. "/" .. f), f)
    end
    local passwd = h.read(dir .. "/passwd")
    -- hashed, one user per device and the cloud's
    assert.matches("^" .. h.literal(CLOUD_USER) .. ":%$7%$", passwd)
    assert.matches("\n" .. ID .. ":%$7%$", passwd)
    assert.matches("\n" .. ID2 .. ":%$7%$", passwd)
    local pw = h.read(dir .. "/device-" .. ID .. ".password")
    assert.matches("^%x+\n$", pw)
    assert.is_nil(passwd:find(pw:sub(1, -2), 1, true))
    assert.not_equal(KEY .. "\n", pw) -- generated: the key is in every topic
    assert.matches("mosquitto %-c " .. h.literal(dir .. "/mosquitto.conf"), r.out)
    assert.matches("fotahost cloud serve %-%-mqtt mqtt://127%.0%.0%.1:18830 %-%-mqtt%-user fotahost%-cloud "
      .. "%-%-mqtt%-password%-file " .. h.literal(dir .. "/cloud.password"), r.out)
    assert.matches("mqtt_username=" .. ID .. "; uci set fotahost%.main%.mqtt_password=\"%$%(cat device%-"
      .. ID .. "%.password%)\"", r.out)
    assert.is_nil(r.out:find(KEY, 1, true))
    -- again, with one more device: the passwords set up before stay
    r = broker_config(dir, 18830, "--device", ID, "--device", "Dev3")
    assert.equal(0, r.status, r.err)
    assert.equal(pw, h.read(dir .. "/device-" .. ID .. ".password"))
  end)

  it("writes a TLS listener", function()
    local r = broker_config(dir, 18830, "--tls-cert", "/c/server.crt", "--tls-key", "/c/server.key",
      "--tls-ca", "/c/ca.crt", "--host", "0.0.0.0")
    assert.equal(0, r.status, r.err)
    assert.matches("listener 18830 0%.0%.0%.0\ncertfile /c/server%.crt\nkeyfile /c/server%.key\ncafile /c/ca%.crt\n",
      h.read(dir .. "/mosquitto.conf"))
    assert.matches("%-%-mqtt mqtts://0%.0%.0%.0:18830 .* %-%-mqtt%-cafile /c/ca%.crt", r.out)
  end)

  it("refuses what it cannot use", function()
    assert.equal(2, broker_config(dir, 0).status)
    assert.equal(2, h.run({ "cloud", "broker-config", "--port", "1883" }).status)
    local r = broker_config(dir, 1883, "--device", "a/b:" .. KEY)
    assert.equal(2, r.status)
    assert.is_nil(r.err:find(KEY, 1, true))
    assert.equal(2, broker_config(dir, 1883, "--tls-cert", "/x").status)
    assert.equal(1, broker_config(dir, 1883, "--device", CLOUD_USER).status)
  end)
end)

describe("the cloud's broker messages", function()
  -- In-process: what each topic and payload does to the store.
  local cloud
  before_each(function()
    cloud = assert(mcs_cloud.new { port = 0, devices = { ID .. ":" .. KEY },
      mqtt = { url = "mqtt://127.0.0.1:1" } })
  end)
  after_each(function() cloud:remove_temp_dir() end)

  local function points(chn) return cloud.devices[ID].points[chn] or {} end

  it("stores a known device's data point, and ignores and counts the rest", function()
    cloud:on_broker_message(("mcs/%s/%s/temp"):format(ID, KEY), "1700000000000,temp,21.5")
    assert.same({ value = "21.5" }, points("temp")[1].values)
    assert.equal(1700000000000, points("temp")[1].timestamp)
    cloud:on_broker_message(("mcs/%s/%s/gps"):format(ID, KEY), ",gps,1,2,3")
    assert.same({ value = "1,2,3" }, points("gps")[1].values)
    cloud:on_broker_message(("mcs/%s/%s/temp"):format(ID, "wrong" .. KEY), ",temp,99")
    cloud:on_broker_message(("mcs/%s/%s/temp"):format(ID, KEY:sub(1, -2)), ",temp,99")
    cloud:on_broker_message(("mcs/%s/%s/temp"):format("Ghost", KEY), ",temp,99")
    cloud:on_broker_message(("mcs/%s/%s/temp"):format(ID, KEY), ",other,99")
    cloud:on_broker_message(("mcs/%s/%s/temp"):format(ID, KEY), "x,temp,99")
    cloud:on_broker_message(("mcs/%s/%s/temp/x"):format(ID, KEY), ",temp,99")
    assert.equal(1, #points("temp"))
    local c = cloud.broker.counters
    assert.same({ 2, 1, 3, 2 }, { c.wrong_key, c.unknown_device, c.malformed, c.points })
    assert.equal(8, c.messages)
  end)

  it("takes `online` as the device's connection", function()
    local json = function() return cloud:device_json(cloud.devices[ID]) end
    local online = ("mcs/%s/%s/online"):format(ID, KEY)
    cloud:on_broker_message(online, ",online,1")
    assert.same({ true, "mqtt" }, { json().connected, json().transport })
    assert.is_number(json().connected_since)
    cloud:on_broker_message(("mcs/%s/%s/online"):format(ID, "x" .. KEY), ",online,0")
    assert.is_true(json().connected)
    cloud:on_broker_message(online, ",online,0")
    assert.is_false(json().connected)
    assert.is_number(json().last_disconnect)
    assert.equal(0, #points("online"))
  end)
end)

describe("fotahost cloud serve --mqtt, on mosquitto as broker-config set it up", function()
  local dir, fwdir, broker, cloud
  local pw = {}
  local subs = {}

  -- A device's MQTT client: mosquitto_sub with its credentials on `topic`
  -- (persistent session, QoS 1, verbose); extra args after. Returns
  -- { out(), kill() } once it is subscribed.
  local function subscribe(user, topic, ...)
    local f = dir .. "/sub-" .. #subs
    local args = { "-u", user, "-P", pw[user], "-i", "spec-" .. user .. "-" .. #subs, "-c", "-q", "1",
      "-v", "-d", "-t", topic, ... }
    -- line-buffered: "Subscribed" shows when it happens
    os.execute(("stdbuf -oL %s > %s 2>&1 & echo $! > %s"):format(broker.cmd("mosquitto_sub", args), h.q(f),
      h.q(f .. ".pid")))
    local s = { pid = math.tointeger(tonumber(eventually("its pid", function() return h.read(f .. ".pid") end))) }
    function s.out() return h.read(f) or "" end
    -- the messages it received: "topic payload" lines
    function s.messages()
      local m = {}
      for line in s.out():gmatch("[^\n]+") do
        if line:find("^mcs/") then m[#m + 1] = line end
      end
      return m
    end
    function s.kill() os.execute("kill -KILL " .. s.pid .. " 2>/dev/null") end
    eventually("the subscription", function() return s.out():find("Subscribed (mid", 1, true) end)
    subs[#subs + 1] = s
    return s
  end

  local function publish(user, topic, payload, ...)
    h.must(broker.cmd("mosquitto_pub", { "-u", user, "-P", pw[user], "-t", topic, "-m", payload, "-q", "1", ... }))
  end

  local function device(id) return h.cloud_admin(cloud.url, "GET", "/devices/" .. id) end
  local function cli(...)
    local args = { "cloud", ... }
    table.move({ "--cloud", cloud.url }, 1, 2, #args + 1, args)
    local r = h.run(args)
    assert.equal(0, r.status, r.err)
    return r.out
  end

  setup(function()
    local top = h.tmpdir()
    dir, fwdir = top .. "/broker", top .. "/fw"
    local port = mosquitto.free_port()
    local r = broker_config(dir, port, "--device", ID .. ":" .. KEY, "--device", ID2, "--device", ID3)
    assert(r.status == 0, r.err)
    for _, u in ipairs({ ID, ID2, ID3 }) do pw[u] = h.read(dir .. "/device-" .. u .. ".password"):match("%S+") end
    broker = mosquitto.run { conf = dir .. "/mosquitto.conf", dir = top, port = port, log = dir .. "/mosquitto.log" }
    cloud = h.start_cloud(fwdir, 0, { "--device", ID .. ":" .. KEY, "--device", ID2 .. ":" .. KEY2,
      "--device", ID3 .. ":" .. KEY3, "--firmware", "good=" .. h.firmware("blink-250.hex"),
      "--mqtt", broker.url, "--mqtt-user", CLOUD_USER, "--mqtt-password-file", dir .. "/cloud.password" })
  end)

  teardown(function()
    for _, s in ipairs(subs) do s.kill() end
    if cloud then
      local _, err = cloud.stop()
      assert.is_nil(err:find(KEY, 1, true), "a device key in the cloud's log")
    end
    if broker then broker.stop() end -- removes the directory
  end)

  it("says it is on the broker", function()
    assert.matches("\nbroker " .. h.literal(broker.url) .. "\n", cloud.out)
  end)

  it("publishes a push to the device's subscription in MCS's format (QoS 1, not retained)", function()
    local s = subscribe(ID, ("mcs/%s/%s/+"):format(ID, KEY))
    local out = cli("push", "--device", ID, "--version", "9", "--url", "http://127.0.0.1:9/x.hex", "--md5", "null")
    assert.matches("^sent mcs/" .. ID .. "/%*%*%*%*/FOTA %d+,FOTA,9,null,http://127%.0%.0%.1:9/x%.hex\n$", out)
    out = cli("send", "--device", ID, "--channel", "LED", "--value", "1")
    assert.matches("^sent mcs/" .. ID .. "/%*%*%*%*/LED %d+,LED,1\n$", out)
    local m = eventually("both at the device", function() local l = s.messages() return #l >= 2 and l end)
    assert.matches("^mcs/" .. ID .. "/" .. KEY .. "/FOTA %d+,FOTA,9,null,http://127%.0%.0%.1:9/x%.hex$", m[1])
    assert.matches("^mcs/" .. ID .. "/" .. KEY .. "/LED %d+,LED,1$", m[2])
    assert.equal(2, device(ID).commands_sent)
    -- not retained: a client subscribing now gets nothing of them
    local late = subscribe(ID, ("mcs/%s/%s/+"):format(ID, KEY))
    cli("send", "--device", ID, "--channel", "LED", "--value", "0")
    eventually("the next command", function() return #late.messages() == 1 end)
    assert.matches("/LED %d+,LED,0$", late.messages()[1])
  end)

  it("stores a data point the device publishes: cloud datapoints shows it", function()
    publish(ID, ("mcs/%s/%s/temp"):format(ID, KEY), ",temp,21.5")
    local out = eventually("the point", function()
      local o = cli("datapoints", "--device", ID, "--channel", "temp")
      return o:find("21.5", 1, true) and o
    end)
    assert.matches("\ntemp +%d+ +21%.5\n", out)
  end)

  it("follows the device's online message and its will: connected, and since when", function()
    assert.is_false(device(ID2).connected)
    local online = ("mcs/%s/%s/online"):format(ID2, KEY2)
    local s = subscribe(ID2, ("mcs/%s/%s/+"):format(ID2, KEY2), "--will-topic", online,
      "--will-payload", ",online,0", "--will-qos", "1", "--will-retain")
    publish(ID2, online, ",online,1", "-r")
    local d = eventually("connected", function() local v = device(ID2) return v.connected and v end)
    assert.equal("mqtt", d.transport)
    assert.is_number(d.connected_since)
    assert.matches(ID2 .. " +yes +" .. h.literal(broker.url), cli("status"))
    s.kill() -- an unclean end: the broker publishes the will
    d = eventually("disconnected", function() local v = device(ID2) return not v.connected and v end)
    assert.is_number(d.last_disconnect)
  end)

  it("lets a device's credentials reach only its own topics (mosquitto 2: SUBACK granted, nothing delivered;"
    .. " a PUBLISH acknowledged and dropped)", function()
    publish(ID, ("mcs/%s/%s/online"):format(ID, KEY), ",online,1", "-r") -- retained: a subscriber gets it at once
    local spy = subscribe(ID2, "mcs/" .. ID .. "/#")
    local own = subscribe(ID, ("mcs/%s/%s/+"):format(ID, KEY))
    cli("send", "--device", ID, "--channel", "LED", "--value", "spied")
    eventually("the command at its device", function()
      for _, l in ipairs(own.messages()) do if l:find("spied", 1, true) then return true end end
    end)
    publish(ID2, ("mcs/%s/%s/temp"):format(ID, KEY), ",temp,-66")
    publish(ID, ("mcs/%s/%s/temp"):format(ID, KEY), ",temp,67")
    eventually("the device's own point", function()
      return cli("datapoints", "--device", ID, "--channel", "temp"):find(" 67\n", 1, true)
    end)
    assert.same({}, spy.messages())
    assert.is_nil(cli("datapoints", "--device", ID):find("-66", 1, true))
    for _, l in ipairs(own.messages()) do assert.is_nil(l:find("-66", 1, true)) end
  end)

  it("ignores, counts and never logs a message whose topic has a wrong key", function()
    local before = h.cloud_admin(cloud.url, "GET", "/devices").broker.counters.wrong_key
    publish(ID, ("mcs/%s/%s/temp"):format(ID, "WrongKey123"), ",temp,-99")
    publish(ID, ("mcs/%s/%s/temp"):format(ID, KEY), ",temp,100")
    eventually("the good point", function()
      return cli("datapoints", "--device", ID, "--channel", "temp"):find(" 100\n", 1, true)
    end)
    assert.is_nil(cli("datapoints", "--device", ID):find("-99", 1, true))
    local b = h.cloud_admin(cloud.url, "GET", "/devices").broker
    assert.equal(before + 1, b.counters.wrong_key)
    assert.is_true(b.connected)
    assert.is_nil(cloud.stderr():find("WrongKey123", 1, true))
    assert.matches("message for device " .. ID .. " with a wrong key", cloud.stderr())
  end)

  it("keeps a push for a device offline, and its persistent session gets it when it is back", function()
    local id = "spec-offline"
    local args = { "-u", ID, "-P", pw[ID], "-i", id, "-c", "-q", "1", "-v", "-t", ("mcs/%s/%s/LED"):format(ID, KEY) }
    -- a session made, then the device away
    h.must(broker.cmd("mosquitto_sub", args) .. " -W 1 -E >/dev/null 2>&1")
    local r = h.cloud_admin(cloud.url, "POST", "/devices/" .. ID .. "/commands", { channel = "LED", value = "later" })
    assert.equal("mqtt", r.via)
    local p <close> = assert(io.popen(broker.cmd("mosquitto_sub", args) .. " -C 1 -W 10 2>&1"))
    local got = p:read("a")
    assert.matches("/LED %d+,LED,later", got)
  end)

  it("speaks with fotahost's own device client on transport mqtt: a push in, a data point out", function()
    local mcs = require "fotahost.mcs"
    local pushed, point_seen
    local ok, err = pcall(sched.run, function()
      local c = mcs.register { device_id = ID2, device_key = KEY2, api = cloud.url,
        transport = require "fotahost.mcs.mqtt_channel",
        mqtt = { url = broker.url, username = ID2, password = pw[ID2], client_id = "spec-app-" .. ID2 } }
      c:on("FOTA", function(value) pushed = value end)
      local deadline = sched.now() + 10
      while c.state ~= "connected" and sched.now() < deadline do sched.sleep(0.02) end
      -- the CLI blocks this task a moment: the broker keeps the push meanwhile
      cli("push", "--device", ID2, "--version", "7", "--url", "http://127.0.0.1:9/seven.hex", "--md5", "null")
      c:emit("temp", "42")
      c:flush(5)
      while not pushed and sched.now() < deadline do sched.sleep(0.02) end
      while not point_seen and sched.now() < deadline do
        point_seen = cli("datapoints", "--device", ID2, "--channel", "temp"):find(" 42\n", 1, true)
        sched.sleep(0.05)
      end
      c:close()
    end)
    assert(ok, err)
    assert.equal("7,null,http://127.0.0.1:9/seven.hex", pushed)
    assert.truthy(point_seen)
  end)

  it("rolls a firmware out to the real app on transport mqtt: pushed through the broker, flashed, done", function()
    local adir = dir:match("^(.*)/broker$") .. "/app"
    local cfg = adir .. "/config.lua"
    assert(os.execute("mkdir -p " .. h.q(adir .. "/chip")))
    h.write(cfg, ([[
return {
  device_id = %q, device_key = %q, api = %q,
  board = "sim", sim_dir = %q, state_dir = %q, volatile_state_ok = true,
  heartbeat = 1, backoff_cap = 1, http = { retries = 0 },
  transport = "mqtt", mqtt = { url = %q, username = %q, password = %q },
}
]]):format(ID3, KEY3, cloud.url, adir .. "/chip", adir .. "/state", broker.url, ID3, pw[ID3]))
    local app = h.start_app(adir, cfg, "")
    local ok, err = pcall(function()
      eventually("the app online through the broker", function()
        if not h.alive(app.pid) then error("the app exited: " .. (h.read(adir .. "/app.log") or "")) end
        return device(ID3).transport == "mqtt"
      end)
      cli("rollout", "start", "--firmware", "good", "--devices", ID3, "--canary", "0", "--batch", "100%")
      h.until_true("the rollout to complete", 90, function()
        local st = cjson.decode(cli("rollout", "status", "--json"))
        assert(st.state ~= "aborted", st.reason)
        return st.state == "completed" and st.counts.done == 1
      end)
      assert.equal("good", device(ID3).version)
      -- its statuses, published over MQTT, end with done
      eventually("fota_status done", function()
        local points = h.cloud_admin(cloud.url, "GET", "/devices/" .. ID3 .. "/datapoints?channel=fota_status")
        local last = points.datapoints[#points.datapoints]
        return last and last.values.value == "done"
      end)
    end)
    h.stop_app(app)
    assert(ok, tostring(err) .. "\napp log:\n" .. (h.read(adir .. "/app.log") or ""))
  end)

  it("reconnects when the broker comes back, and takes data points again", function()
    local port, top = broker.port, broker.dir
    broker.kill()
    eventually("the cloud to notice", function()
      return not h.cloud_admin(cloud.url, "GET", "/devices").broker.connected
    end)
    broker = mosquitto.run { conf = dir .. "/mosquitto.conf", dir = top, port = port, log = dir .. "/mosquitto.log" }
    eventually("the cloud back", function() return h.cloud_admin(cloud.url, "GET", "/devices").broker.connected end)
    publish(ID, ("mcs/%s/%s/temp"):format(ID, KEY), ",temp,after-restart")
    eventually("the point", function()
      return cli("datapoints", "--device", ID, "--channel", "temp"):find("after-restart", 1, true)
    end)
  end)

  it("sends by TCP to a device connected by TCP: TCP wins", function()
    local tcp = require "fotahost.tcp"
    local sock <close> = assert(tcp.connect("127.0.0.1", cloud.tcp_port or
      math.tointeger(tonumber(cloud.out:match("tcp 127%.0%.0%.1:(%d+)"))), 5))
    assert(sock:write(("%s,%s,0\n"):format(ID, KEY), 5))
    eventually("bound", function() return device(ID).transport == "tcp" end)
    local r = h.cloud_admin(cloud.url, "POST", "/devices/" .. ID .. "/commands", { channel = "LED", value = "tcp" })
    assert.equal("tcp", r.via)
    local data = ""
    eventually("the command on TCP", function()
      data = data .. (sock:read_some(4096, 0.1) or "")
      return data:find(",LED,tcp", 1, true)
    end)
  end)
end)
