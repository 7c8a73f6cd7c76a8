-- The app over MQTT (issue 16): `fotahost app` with transport = "mqtt"
-- against a real mosquitto (spec/support/mosquitto.lua) with per-device
-- credentials and an ACL, FOTA pushes published in MCS's format by the real
-- mosquitto_pub, the status points read back with mosquitto_sub, and the
-- image flashed onto the simulated chip. The REST side (firmware files,
-- the version report) is the local cloud's.
local h = require "helper"
local ihex = require "fotahost.ihex"
local mosquitto = require "support.mosquitto"

local WAIT = h.wait_limit(90)
local FLASH_SIZE = 32768
local CTL, CTL_PW = "ctl", "ctl-password"

describe("the app over MQTT: a real broker, the local cloud's REST and the simulated chip", function()
  local dir, broker, cloud
  local cleanups = {}
  local ndev = 0

  local function admin(method, path, value) return h.cloud_admin(cloud.url, method, path, value) end

  setup(function()
    dir = h.tmpdir()
    os.execute("mkdir " .. h.q(dir .. "/fw"))
    cloud = h.start_cloud(dir .. "/fw")
    for _, v in ipairs({ "blink-1000", "blink-250" }) do
      admin("POST", "/firmwares", { version = v, name = v .. ".hex", content = h.read(h.firmware(v .. ".hex")) })
    end
    local users = { [CTL] = CTL_PW }
    for i = 1, 8 do users["mq" .. i] = "mq-password-" .. i end
    -- each device (user = its id) reads and writes its own topics only
    broker = mosquitto.start{ users = users, tls = true, config = { "max_queued_messages 1000" },
      acl = { "pattern readwrite mcs/%u/#", "user " .. CTL, "topic readwrite mcs/#" } }
  end)
  teardown(function()
    if broker then broker.stop() end
    if cloud then cloud.stop() end
    h.rmdir(dir)
  end)
  after_each(function()
    for i = #cleanups, 1, -1 do pcall(cleanups[i]) end
    cleanups = {}
  end)

  -- A device: its id (a broker user), key, chip, state and config, on the
  -- broker at `url` (default: the plain listener) with its credentials.
  local function new_device(url)
    ndev = ndev + 1
    local d = h.tmpdir()
    cleanups[#cleanups + 1] = function() h.rmdir(d) end
    local t = { id = "mq" .. ndev, key = ("mqkey%04d"):format(ndev), dir = d, chip = d .. "/chip",
      state = d .. "/state", cfg = d .. "/config.lua" }
    t.topic = ("mcs/%s/%s/"):format(t.id, t.key)
    assert(os.execute("mkdir " .. h.q(t.chip)))
    admin("POST", "/devices", { id = t.id, key = t.key })
    h.write(t.cfg, ([[
return {
  device_id = %q, device_key = %q, api = %q,
  board = "sim", sim_dir = %q, state_dir = %q, volatile_state_ok = true,
  heartbeat = 5, backoff_cap = 1, http = { retries = 0 },
  transport = "mqtt",
  mqtt = %s,
}
]]):format(t.id, t.key, cloud.url, t.chip, t.state,
      ("{ url = %q, username = %q, password = %q }"):format(url or broker.url, t.id, "mq-password-" .. ndev)))
    return t
  end

  -- mosquitto_sub as the cloud's user on the device's topic `channel`,
  -- in the background; returns the file it writes, one message per line.
  local function watch(t, channel)
    local file = t.dir .. "/sub-" .. channel
    local pid = broker.sub({ "-u", CTL, "-P", CTL_PW, "-t", t.topic .. channel, "-q", "1",
      "-i", "watch-" .. t.id .. "-" .. channel }, file)
    cleanups[#cleanups + 1] = function() os.execute("kill " .. pid .. " 2>/dev/null") end
    return file
  end

  local function lines(file)
    local l = {}
    for line in (h.read(file) or ""):gmatch("[^\n]+") do l[#l + 1] = line end
    return l
  end

  local function start_app(t)
    t.app = h.start_app(t.dir, t.cfg, t.wrap or "")
    local app = t.app
    cleanups[#cleanups + 1] = function() h.stop_app(app) end
    return t
  end

  -- Waits until the app says it is connected to the broker (its log).
  local function connected(t, n)
    h.until_true("the app to connect to the broker", WAIT, function()
      if not h.alive(t.app.pid) then error("the app exited:\n" .. (h.read(t.dir .. "/app.log") or "")) end
      local k = 0
      for _ in (h.read(t.dir .. "/app.log") or ""):gmatch("connected to the command server mqtt") do k = k + 1 end
      return k >= (n or 1)
    end)
  end

  -- Publishes a FOTA command as MCS did: `,FOTA,version,md5,url` on the device's FOTA topic.
  local function push(t, version)
    local fw = admin("GET", "/firmwares").firmwares
    for _, f in ipairs(fw) do
      if f.version == version then
        broker.pub{ "-u", CTL, "-P", CTL_PW, "-t", t.topic .. "FOTA", "-q", "1",
          "-m", ("%d,FOTA,%s,%s,%s"):format(os.time() * 1000, version, f.md5, f.url) }
        return
      end
    end
    error("no firmware " .. version)
  end

  -- Waits for `n` final statuses (done / failed:) in the watched file; returns the status values.
  local function statuses(file, n)
    local got
    h.until_true(n .. " final statuses in " .. file, WAIT, function()
      got = {}
      local finals = 0
      for _, l in ipairs(lines(file)) do
        local v = l:match("^[^,]*,fota_status,(.*)$")
        if v and not v:find("^idle: ") then
          got[#got + 1] = v
          if v == "done" or v:find("^failed: ") then finals = finals + 1 end
        end
      end
      return finals >= n
    end)
    return got
  end

  local function holds(t, name)
    h.assert_flash_holds(t.chip, assert(ihex.load(h.firmware(name .. ".hex"))):bytes(0, FLASH_SIZE - 1), name)
  end

  it("flashes a FOTA published with mosquitto_pub, its statuses seen with mosquitto_sub", function()
    local t = new_device()
    local status, online = watch(t, "fota_status"), watch(t, "online")
    start_app(t)
    connected(t)
    assert.are.same({ ",online,1" }, mosquitto.lines_of(online, 1))
    push(t, "blink-1000")
    assert.are.same({ "downloading", "verifying", h.UNSIGNED, "flashing", "done" }, statuses(status, 1))
    holds(t, "blink-1000")
    -- the version report stays on REST
    h.until_true("the version report", WAIT, function()
      return admin("GET", "/devices/" .. t.id).version == "blink-1000"
    end)
    -- an unclean end: the broker publishes the will
    os.execute("kill -KILL " .. t.app.pid)
    assert.are.same({ ",online,1", ",online,0" }, mosquitto.lines_of(online, 2, WAIT))
  end)

  it("is checked by fotahost doctor: the broker takes the device's credentials and subscription", function()
    local t = new_device()
    local r = h.run({ "doctor", "--config", t.cfg })
    assert.matches("\nOK   command server: the broker " .. broker.url:gsub("%p", "%%%0") .. " accepts device "
      .. t.id .. " and its subscription\n", r.out)
    h.write(t.cfg, h.read(t.cfg):gsub("mq%-password%-%d+", "wrong-password"))
    r = h.run({ "doctor", "--config", t.cfg })
    assert.matches("\nFAIL command server: the broker " .. broker.url:gsub("%p", "%%%0") .. ": refused: not "
      .. "authorised %(bad credentials, or no access for this client%) %- check set mqtt%.url in ", r.out)
    assert.is_nil(r.out:find("wrong-password", 1, true))
  end)

  it("flashes a push published while the app was stopped, once it starts (a persistent session)", function()
    local t = new_device()
    start_app(t)
    connected(t)
    h.stop_app(t.app)
    -- a clean stop says offline too (retained, so a cloud that looks later knows)
    assert.are.same({ ",online,0" }, mosquitto.lines_of(watch(t, "online"), 1))
    local status = watch(t, "fota_status")
    push(t, "blink-250")
    start_app(t)
    assert.are.same({ "downloading", "verifying", h.UNSIGNED, "flashing", "done" }, statuses(status, 1))
    holds(t, "blink-250")
  end)

  it("reconnects after the broker restarted, and a later push succeeds", function()
    local t = new_device()
    start_app(t)
    connected(t)
    broker.restart()
    connected(t, 2)
    local status = watch(t, "fota_status")
    push(t, "blink-1000")
    assert.are.same({ "downloading", "verifying", h.UNSIGNED, "flashing", "done" }, statuses(status, 1))
    holds(t, "blink-1000")
  end)

  it("refuses a broker whose certificate it cannot check, and connects with the CA file", function()
    local t = new_device(broker.tls_url)
    start_app(t)
    h.until_true("the TLS failure in the app's log", WAIT, function()
      return (h.read(t.dir .. "/app.log") or ""):find("certificate verify failed", 1, true)
    end)
    assert.is_nil((h.read(t.dir .. "/app.log") or ""):find("connected to the command server", 1, true))
    h.stop_app(t.app)
    h.write(t.cfg, h.read(t.cfg):gsub("mqtt = {", ("mqtt = { cafile = %q,"):format(broker.cafile)))
    start_app(t)
    connected(t)
    local status = watch(t, "fota_status")
    push(t, "blink-250")
    assert.are.equal("done", statuses(status, 1)[5])
  end)

  it("keeps a device out of another device's topics", function()
    local a, b = new_device(), new_device()
    -- a's credentials, subscribed to b's topics and to its own
    local file = a.dir .. "/snoop"
    local snoop = broker.sub({ "-u", a.id, "-P", "mq-password-" .. a.id:match("%d+"), "-t", b.topic .. "#",
      "-t", a.topic .. "#", "-q", "1", "-v", "-i", "snoop-" .. a.id }, file)
    cleanups[#cleanups + 1] = function() os.execute("kill " .. snoop .. " 2>/dev/null") end
    -- a message for b, then one for a: once a's arrives, b's would have
    broker.pub{ "-u", CTL, "-P", CTL_PW, "-t", b.topic .. "FOTA", "-q", "1", "-m", ",FOTA,x,null,http://h/x.hex" }
    broker.pub{ "-u", CTL, "-P", CTL_PW, "-t", a.topic .. "LED", "-q", "1", "-m", ",LED,1" }
    assert.are.same({ a.topic .. "LED ,LED,1" }, mosquitto.lines_of(file, 1))
    -- nor can a publish as b: b's subscriber sees only what the cloud sent
    local bfile = watch(b, "LED")
    broker.pub{ "-u", a.id, "-P", "mq-password-" .. a.id:match("%d+"), "-t", b.topic .. "LED", "-q", "1",
      "-m", ",LED,forged" }
    broker.pub{ "-u", CTL, "-P", CTL_PW, "-t", b.topic .. "LED", "-q", "1", "-m", ",LED,real" }
    assert.are.same({ ",LED,real" }, mosquitto.lines_of(bfile, 1))
  end)

  it("keeps its memory flat under a flood on its topics, and flashes the next push", function()
    local t = new_device()
    -- under check-asan freed memory waits in a quarantine: RSS would measure that
    local asan = os.getenv("ASAN_OPTIONS")
    t.wrap = asan and ("ASAN_OPTIONS=%s "):format(h.q(asan .. ":quarantine_size_mb=0")) or nil
    local status = watch(t, "fota_status")
    start_app(t)
    connected(t)
    local function kib(field) -- VmRSS now, VmHWM the peak
      return tonumber((h.read(("/proc/%d/status"):format(t.app.pid)) or ""):match(field .. ":%s+(%d+)"))
    end
    local function flood(n)
      local f = t.dir .. "/flood"
      local body = {}
      local pad = ("x"):rep(1000)
      for i = 1, n do body[i] = (",noise,%d %s"):format(i, pad) end
      h.write(f, table.concat(body, "\n") .. "\n")
      h.must(broker.cmd("mosquitto_pub", { "-u", CTL, "-P", CTL_PW, "-t", t.topic .. "noise", "-q", "0", "-l" })
        .. " < " .. h.q(f))
    end
    -- mosquitto_pub ends before the broker has read all it sent, and
    -- mosquitto 2.0 silently drops any packet for a client whose queue
    -- holds max_queued_messages, a QoS 1 PUBLISH too (sent again only at a
    -- reconnect): a push made while the flood is still on its way is lost
    -- whatever the app does. The app sums a burst up in its log once none
    -- has come for a second: the `n`th such line says burst `n` is over.
    local function drained(n)
      h.until_true("the app's summary of flood " .. n, WAIT, function()
        local k = 0
        for _ in (h.read(t.dir .. "/app.log") or ""):gmatch("more commands on channels without a handler ignored") do
          k = k + 1
        end
        return k >= n
      end)
    end
    flood(2000) -- warm up: the first burst grows the heap to its working size
    drained(1)
    local before = kib("VmRSS")
    flood(8000) -- 8 MB: kept, it would show
    drained(2)
    push(t, "blink-1000")
    assert.are.equal("done", statuses(status, 1)[5])
    local peak = kib("VmHWM")
    assert.is_true(peak - before < 6 * 1024, ("RSS grew from %d to a peak of %d KiB"):format(before, peak))
    holds(t, "blink-1000")
  end)
end)
