-- The local MCS cloud (`fotahost cloud`, fotahost.mcs_cloud): started as a
-- process of its own, as a user runs it, and driven as a device client and
-- a test would: REST calls with fotahost.http, a fake device over TCP with
-- fotahost.tcp, the admin API and the CLI subcommands. The framing
-- and CSV parsers are also checked directly.
local h = require "helper"
local http = require "fotahost.http"
local tcp = require "fotahost.tcp"
local stream = require "fotahost.stream"
local sched = require "fotahost.sched"
local digest = require "fotahost.digest"
local cjson = require "cjson"
local mcs_cloud = require "fotahost.mcs_cloud"
local framer = require "fotahost.mcs.framer"

local ID, KEY = "Dev1xA9k", "g06jBWOtB0kqHk2B"
local ID2, KEY2 = "Dev2yB7m", "TPJVabcdefghBxBv"

local function pause(s) stream.pause(nil, s) end

-- Polls `fn` until it returns a true value, at most `seconds` (generous:
-- CI is a loaded 2-core machine). @return fn's value
local function eventually(fn, seconds, what)
  local deadline = sched.now() + (seconds or 10)
  while true do
    local v = fn()
    if v then return v end
    if sched.now() > deadline then error("timed out waiting for " .. (what or "a condition"), 2) end
    pause(0.05)
  end
end

-- Starts `fotahost cloud serve` with stdin a pipe we hold (io.popen "w"):
-- --watch-stdin makes it stop if this process dies. Waits for the ready
-- line. @return { url, tcp_port, pid, dir, stderr(), stop() }
local function start_cloud(args)
  local dir = h.tmpdir()
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = h.q(a) end
  local p = assert(io.popen(("echo $$ > %s/pid; exec %s cloud serve --port 0 --tcp-port 0 --watch-stdin %s"
    .. " > %s/out 2> %s/err")
    :format(h.q(dir), h.q(h.bin), table.concat(quoted, " "), h.q(dir), h.q(dir)), "w"))
  local c = { dir = dir }
  function c.stderr() return h.read(dir .. "/err") or "" end
  local line = eventually(function() return (h.read(dir .. "/out") or ""):match("^[^\n]*\n") end, 10,
    "the ready line")
  c.pid = math.tointeger(tonumber(h.read(dir .. "/pid")))
  local http_port, tcp_port = line:match("^cloud http://127%.0%.0%.1:(%d+) tcp 127%.0%.0%.1:(%d+)\n$")
  assert(http_port, "unexpected ready line: " .. line)
  c.url = "http://127.0.0.1:" .. http_port
  c.tcp_port = math.tointeger(tonumber(tcp_port))
  -- the token file is written before the ready line
  c.auth = assert(mcs_cloud.admin_headers(c.url))
  local stopped
  -- SIGTERM, then the exit status ("exit", n) and what it wrote on stderr.
  function c.stop()
    if stopped then return table.unpack(stopped) end
    os.execute("kill -TERM " .. c.pid .. " 2>/dev/null")
    local _, how, code = p:close()
    stopped = { how, code, c.stderr() }
    h.rmdir(dir)
    return table.unpack(stopped)
  end
  return c
end

local function request(method, url, opts)
  opts = opts or {}
  return assert(http.request { method = method, url = url, headers = opts.headers, body = opts.body,
                               retries = 0, timeout = 20 })
end

local function admin(cloud, method, path, value)
  return http.json(method, cloud.url .. path, value, { retries = 0, timeout = 20, headers = cloud.auth })
end

-- `headers` with the admin token added.
local function authed(cloud, headers)
  local t = { Authorization = cloud.auth.Authorization }
  for k, v in pairs(headers or {}) do t[k] = v end
  return t
end

local function device_state(cloud, id)
  local d = assert(admin(cloud, "GET", "/admin/devices"))
  for _, dev in ipairs(d.devices) do
    if dev.id == id then return dev end
  end
end

-- A fake device: connects, optionally sends a first heartbeat.
local function connect_device(cloud, first)
  local s = assert(tcp.connect("127.0.0.1", cloud.tcp_port, 5))
  if first then assert(s:write(first, 5)) end
  return s
end

-- Reads commands as a device does (fotahost.mcs.framer: a command ends at
-- a line end, at the next id,key, prefix, or when the line goes quiet).
-- @return read(timeout) -> the next command | nil, why
local function command_reader(s, id, key)
  local f, queue = framer.new(id or ID, key or KEY), {}
  return function(timeout)
    local deadline = sched.now() + (timeout or 10)
    while #queue == 0 do
      local left = deadline - sched.now()
      if left <= 0 then return nil, "timeout" end
      local data, why = s:read_some(65536, f:pending() and math.min(left, 0.3) or left)
      local got
      if data then
        got = f:feed(data)
      elseif why == "timeout" and f:pending() then
        got = f:flush()
      elseif why ~= "timeout" then
        return nil, why
      end
      for kind, a in got or function() end do
        if kind == "command" then queue[#queue + 1] = a.text end
      end
    end
    return table.remove(queue, 1)
  end
end

local function random_bytes(n, seed)
  math.randomseed(seed)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

describe("fotahost cloud", function()
  local dir, fwfile, cloud, base1

  setup(function()
    dir = h.tmpdir()
    fwfile = h.write(dir .. "/blink-250.bin", random_bytes(20000, 7))
    cloud = start_cloud({ "--device", ID .. ":" .. KEY, "--device", ID2 .. ":" .. KEY2,
                          "--firmware-dir", dir .. "/fw" })
    base1 = cloud.url .. "/mcs/v2/devices/" .. ID
  end)

  teardown(function()
    if cloud then cloud.stop() end
    h.rmdir(dir)
  end)

  local AUTH = { deviceKey = KEY }

  describe("device REST API", function()
    it("gives the command server as CSV and as JSON", function()
      local r = request("GET", base1 .. "/connections.csv", { headers = AUTH })
      assert.are.equal(200, r.status)
      assert.matches("^text/csv", r.headers["content-type"])
      assert.are.equal("127.0.0.1," .. cloud.tcp_port, r.body)
      r = request("GET", base1 .. "/connections", { headers = AUTH })
      assert.are.same({ ip = "127.0.0.1", port = cloud.tcp_port }, cjson.decode(r.body))
    end)

    it("answers 401 to a wrong or missing key and 404 to an unknown device, in JSON", function()
      local r = request("GET", base1 .. "/connections.csv", { headers = { deviceKey = KEY2 } })
      assert.are.equal(401, r.status)
      assert.are.equal(401, cjson.decode(r.body).code)
      r = request("GET", base1 .. "/connections.csv")
      assert.are.equal(401, r.status)
      assert.matches("deviceKey", cjson.decode(r.body).message)
      r = request("GET", cloud.url .. "/mcs/v2/devices/nobody/connections", { headers = AUTH })
      assert.are.equal(404, r.status)
      local e = cjson.decode(r.body)
      assert.are.equal(404, e.code)
      assert.matches("nobody", e.message)
    end)

    it("stores CSV data points, with the server's time for an empty timestamp", function()
      local before = math.floor(os.time() * 1000) - 5000
      local r = request("POST", base1 .. "/datapoints.csv", {
        headers = { deviceKey = KEY, ["Content-Type"] = "text/csv" },
        body = "temp,,21.5\r\ngps,1432538716989,25.03,121.56,10\n" })
      assert.are.equal(200, r.status)
      assert.are.equal("Success.", r.body)
      local d = assert(admin(cloud, "GET", "/admin/devices/" .. ID .. "/datapoints?channel=temp"))
      assert.are.equal(1, #d.datapoints)
      assert.are.equal("21.5", d.datapoints[1].values.value)
      assert.is_true(d.datapoints[1].timestamp >= before)
      d = assert(admin(cloud, "GET", "/admin/devices/" .. ID .. "/datapoints?channel=gps"))
      assert.are.equal(1432538716989, d.datapoints[1].timestamp)
      assert.are.equal("25.03,121.56,10", d.datapoints[1].values.value)
    end)

    it("refuses more than 5 data points in one request, storing none", function()
      local lines = {}
      for i = 1, 6 do lines[i] = "many,," .. i end
      local r = request("POST", base1 .. "/datapoints.csv", {
        headers = { deviceKey = KEY, ["Content-Type"] = "text/csv" }, body = table.concat(lines, "\n") })
      assert.are.equal(400, r.status)
      assert.matches("at most 5", cjson.decode(r.body).message)
      local d = assert(admin(cloud, "GET", "/admin/devices/" .. ID .. "/datapoints?channel=many"))
      assert.are.same({}, d.datapoints)
      r = request("POST", base1 .. "/datapoints.csv", {
        headers = { deviceKey = KEY, ["Content-Type"] = "text/csv" }, body = "no-value-here\n" })
      assert.are.equal(400, r.status)
      assert.matches("line 1", cjson.decode(r.body).message)
    end)

    it("stores JSON data points", function()
      local r = request("POST", base1 .. "/datapoints", {
        headers = { deviceKey = KEY, ["Content-Type"] = "application/json" },
        body = '{"datapoints":[{"dataChnId":"1","timestamp":1432538716989,"values":{"value":"26"}}]}' })
      assert.are.equal(200, r.status)
      local d = assert(admin(cloud, "GET", "/admin/devices/" .. ID .. "/datapoints?channel=1"))
      assert.are.equal(1432538716989, d.datapoints[1].timestamp)
      assert.are.equal("26", d.datapoints[1].values.value)
      local dev = device_state(cloud, ID)
      assert.are.equal("26", dev.datapoints["1"][1].values.value)
    end)

    it("registers a firmware, offers it with its URL, and serves the same bytes (Range too)", function()
      local fw = assert(admin(cloud, "POST", "/admin/firmwares",
        { version = "2.0", name = "blink-250.bin", content = h.read(fwfile) }))
      assert.are.equal(digest.file(fwfile, "md5"), fw.md5)
      assert.matches("^" .. cloud.url:gsub("%p", "%%%0") .. "/firmwares/", fw.url)
      local r = request("GET", base1 .. "/firmwares/available?url=true", { headers = AUTH })
      assert.are.equal(200, r.status)
      local found
      for _, e in ipairs(cjson.decode(r.body).results) do
        if e.version == "2.0" then found = e end
      end
      assert.truthy(found, r.body)
      assert.are.equal(fw.fwId, found.fwid)
      assert.are.equal(cjson.null, found.description)
      assert.are.equal(fw.url, found.URL)
      r = request("GET", base1 .. "/firmwares/available", { headers = AUTH })
      assert.is_nil(cjson.decode(r.body).results[1].URL)
      r = request("GET", base1 .. "/firmwares/" .. fw.fwId .. "/url", { headers = AUTH })
      assert.are.equal(fw.url, cjson.decode(r.body).url)
      local got = dir .. "/downloaded.bin"
      assert(http.download(fw.url, got, { retries = 0, timeout = 20 }))
      assert.are.equal(h.read(fwfile), h.read(got))
      r = request("GET", fw.url, { headers = { Range = "bytes=100-199" } })
      assert.are.equal(206, r.status)
      assert.are.equal(h.read(fwfile):sub(101, 200), r.body)
    end)

    it("serves only files of its firmware directory, never ../ or its manifest", function()
      for _, name in ipairs({ ("..%2F"):rep(8) .. "etc%2Fpasswd", "..%2Ffw%2Fcloud-firmwares.json",
                              "cloud-firmwares.json", ".hidden", "%2Fetc%2Fpasswd" }) do
        local r = request("GET", cloud.url .. "/firmwares/" .. name)
        assert.are.equal(404, r.status, name)
        assert.is_nil(r.body:find("root:", 1, true), name)
      end
    end)

    it("records the version a device reports, and refuses an unknown one", function()
      assert(admin(cloud, "POST", "/admin/firmwares",
        { version = "1.0", name = "blink-250.bin", content = h.read(fwfile) }))
      local r = request("PUT", base1 .. "/firmwares", {
        headers = { deviceKey = KEY, ["Content-Type"] = "application/json" }, body = '{"version":"1.0"}' })
      assert.are.equal(200, r.status)
      local body = cjson.decode(r.body)
      assert.are.equal(200, body.code)
      assert.are.equal("Request has succeeded", body.message)
      assert.is_string(body.fwId)
      assert.are.equal("1.0", device_state(cloud, ID).version)
      r = request("PUT", base1 .. "/firmwares", {
        headers = { deviceKey = KEY, ["Content-Type"] = "application/json" }, body = '{"version":"9.9"}' })
      assert.are.equal(400, r.status)
      assert.matches("9%.9", cjson.decode(r.body).message)
      assert.are.equal("1.0", device_state(cloud, ID).version)
    end)
  end)

  describe("TCP command channel", function()
    it("takes heartbeats without and with a line end, and shows the device connected", function()
      local s <close> = connect_device(cloud, ID .. "," .. KEY .. ",0")
      local dev = eventually(function()
        local d = device_state(cloud, ID)
        return d.connected and d.heartbeats.count >= 1 and d
      end, 10, "the first heartbeat")
      local count = dev.heartbeats.count
      assert(s:write(ID .. "," .. KEY .. ",1513132150790\n", 5))
      dev = eventually(function()
        local d = device_state(cloud, ID)
        return d.heartbeats.count == count + 1 and d
      end, 10, "the second heartbeat")
      assert.are.equal("1513132150790", dev.heartbeats.last_timestamp)
      assert.is_number(dev.heartbeats.recent[#dev.heartbeats.recent])
      assert.matches("^127%.0%.0%.1:%d+$", dev.peer)
      -- two glued together, as mcsjs's bare writes can arrive
      assert(s:write(ID .. "," .. KEY .. ",0" .. ID .. "," .. KEY .. ",7", 5))
      eventually(function() return device_state(cloud, ID).heartbeats.count == count + 3 end, 10,
        "two glued heartbeats")
    end)

    it("pushes FOTA as id,key,ts,FOTA,version,md5,url with the file's MD5 (fotahost cloud push)", function()
      local s <close> = connect_device(cloud, ID .. "," .. KEY .. ",0\n")
      eventually(function() return device_state(cloud, ID).connected end, 10, "the device")
      local r = h.run({ "cloud", "push", "--cloud", cloud.url, "--device", ID, "--version", "3.0",
                        "--file", fwfile })
      assert.are.equal(0, r.status, r.err)
      local line = assert(command_reader(s)())
      local id, key, ts, chn, version, md5, url = line:match("^([^,]+),([^,]+),(%d+),([^,]+),([^,]+),([^,]+),(.+)$")
      assert.are.same({ ID, KEY, "FOTA", "3.0", digest.file(fwfile, "md5") }, { id, key, chn, version, md5 })
      assert.is_true(tonumber(ts) > 1.4e12)
      local got = dir .. "/fota.bin"
      assert(http.download(url, got, { retries = 0, timeout = 20 }))
      assert.are.equal(h.read(fwfile), h.read(got))
      assert.matches("sent " .. ID .. ",%*%*%*%*,%d+,FOTA,3%.0,", r.out)
      assert.is_nil(r.out:find(KEY, 1, true))
    end)

    it("sends any URL and md5 null for tests, and 409 for a device that is not connected", function()
      local s <close> = connect_device(cloud, ID .. "," .. KEY .. ",0\n")
      eventually(function() return device_state(cloud, ID).connected end, 10, "the device")
      assert(admin(cloud, "POST", "/admin/devices/" .. ID .. "/fota",
        { version = "x", url = "http://127.0.0.1:1/nothing.hex", md5 = cjson.null }))
      local line = assert(command_reader(s)())
      assert.matches(",FOTA,x,null,http://127%.0%.0%.1:1/nothing%.hex$", line)
      local v, err, code = admin(cloud, "POST", "/admin/devices/" .. ID2 .. "/fota", { version = "3.0" })
      assert.is_nil(v)
      assert.are.equal(409, code)
      assert.matches("not connected", err)
      local r = h.run({ "cloud", "send", "--cloud", cloud.url, "--device", ID2, "--channel", "LED", "--value", "1" })
      assert.are.equal(1, r.status)
      assert.matches("not connected", r.err)
    end)

    it("writes raw bytes in the chunks asked for, pausing between them", function()
      local s <close> = connect_device(cloud, ID .. "," .. KEY .. ",0\n")
      eventually(function() return device_state(cloud, ID).connected end, 10, "the device")
      local cmd1 = ID .. "," .. KEY .. ",1,LED,1\n"
      local cmd2 = ID .. "," .. KEY .. ",2,LED,0\n"
      local raw = cmd1 .. cmd2 .. ("z"):rep(5000) .. "\n"
      local done
      sched.run(function()
        local poster = sched.spawn(function()
          done = { admin(cloud, "POST", "/admin/devices/" .. ID .. "/commands",
            { raw = raw, chunks = { 5, #cmd1 - 5 + 3 }, gap_ms = 300 }) }
        end)
        -- the first 5 bytes, then (at least 0.3 s later) the rest of cmd1 with 3 bytes of cmd2
        local a = assert(s:read(5, 10))
        local t1 = sched.now()
        local b = assert(s:read(#cmd1 - 5 + 3, 10))
        local t2 = sched.now()
        local rest = assert(s:read(#raw - #cmd1 - 3, 10))
        assert.are.equal(raw, a .. b .. rest)
        assert.is_true(t2 - t1 >= 0.25, "no pause between chunks: " .. (t2 - t1))
        sched.join(poster, 20)
      end)
      assert.truthy(done and done[1], done and done[2])
    end)

    it("sends a command with fotahost cloud send with no terminator, as MCS did", function()
      local s <close> = connect_device(cloud, ID .. "," .. KEY .. ",0\n")
      eventually(function() return device_state(cloud, ID).connected end, 10, "the device")
      local r = h.run({ "cloud", "send", "--cloud", cloud.url, "--device", ID,
        "--channel", "PWM", "--value", "128,20" })
      assert.are.equal(0, r.status, r.err)
      -- every byte that came, up to a quiet 0.5 s
      local got = {}
      repeat
        local data = s:read_some(4096, #got == 0 and 10 or 0.5)
        got[#got + 1] = data
      until not data
      assert.matches("^" .. ID .. "," .. KEY .. ",%d+,PWM,128,20$", table.concat(got))
      r = h.run({ "cloud", "send", "--cloud", cloud.url, "--device", ID, "--raw", "a\\x41\\n" })
      assert.are.equal(0, r.status, r.err)
      assert.are.equal("aA", s:read_line(10))
      assert.are.equal("sent a\\x41\\n\n", r.out:gsub("A", "\\x41"))
    end)

    it("closes a connection whose heartbeat has a wrong key, or names an unknown device", function()
      for _, hb in ipairs({ ID2 .. ",wrongkey,0\n", "nobody," .. KEY .. ",0\n" }) do
        local s <close> = connect_device(cloud, hb)
        local data, why = s:read(1, 10)
        assert.is_nil(data)
        assert.are.equal("closed", why)
      end
      assert.is_false(device_state(cloud, ID2).connected)
      assert.matches("wrong key; closing", cloud.stderr())
      assert.is_nil(cloud.stderr():find("wrongkey", 1, true))
    end)

    it("closes a connection that sends 4 KiB without a message boundary", function()
      local s <close> = connect_device(cloud, ID2 .. "," .. KEY2 .. ",0\n")
      assert(s:write(("x"):rep(20000), 5))
      local data, why = s:read(1, 10)
      assert.is_nil(data)
      assert.are.equal("closed", why)
      assert.matches("%d+ bytes without a message boundary; closing", cloud.stderr())
    end)

    it("refuses admin calls a web page makes (another Origin), and serves its own and tools'", function()
      local s <close> = connect_device(cloud, ID .. "," .. KEY .. ",0\n")
      eventually(function() return device_state(cloud, ID).connected end, 10, "the device")
      -- what a page on another site can send without asking first: a POST with a text/plain body
      local r = request("POST", cloud.url .. "/admin/devices/" .. ID .. "/fota", {
        headers = { Origin = "http://evil.example", ["Content-Type"] = "text/plain" },
        body = '{"version":"6.6","url":"http://evil.example/x.hex","md5":null}' })
      assert.are.equal(403, r.status)
      assert.matches("no cross%-site requests %(Origin http://evil%.example%)", cjson.decode(r.body).message)
      r = request("GET", cloud.url .. "/admin/devices", { headers = { Origin = "null" } })
      assert.are.equal(403, r.status)
      -- the cloud's own origin, and no Origin at all (curl, fotahost cloud), are served
      r = request("POST", cloud.url .. "/admin/devices/" .. ID .. "/commands", {
        headers = authed(cloud, { Origin = cloud.url, ["Content-Type"] = "application/json" }),
        body = '{"channel":"LED","value":"1"}' })
      assert.are.equal(200, r.status, r.body)
      r = request("POST", cloud.url .. "/admin/devices/" .. ID .. "/commands", {
        headers = authed(cloud, { ["Content-Type"] = "application/json" }), body = '{"channel":"LED","value":"0"}' })
      assert.are.equal(200, r.status, r.body)
      -- the device got those two, and no FOTA push before them
      local read = command_reader(s)
      assert.matches(",LED,1$", assert(read()))
      assert.matches(",LED,0$", assert(read()))
    end)

    it("never writes a device key to its log", function()
      local s <close> = connect_device(cloud, ID .. "," .. KEY .. ",0\n")
      eventually(function() return device_state(cloud, ID).connected end, 10, "the device")
      local r = h.run({ "cloud", "send", "--cloud", cloud.url, "--device", ID, "--channel", "LED", "--value", "1" })
      assert.are.equal(0, r.status, r.err)
      assert(command_reader(s)())
      -- a message that is not a heartbeat is quoted in the log, masked
      assert(s:write(ID .. "," .. KEY .. ",notatime\n", 5))
      eventually(function() return cloud.stderr():find("not a heartbeat", 1, true) end, 10, "the warning")
      local err = cloud.stderr()
      assert.matches("device " .. ID .. ": sent " .. ID .. ",%*%*%*%*,%d+,LED,1", err)
      assert.is_nil(err:find(KEY, 1, true))
      assert.is_nil(err:find(KEY2, 1, true))
    end)

    it("lets the newest connection of a device win, closing the older one", function()
      local old <close> = connect_device(cloud, ID2 .. "," .. KEY2 .. ",0\n")
      local first = eventually(function()
        local d = device_state(cloud, ID2)
        return d.connected and d
      end, 10, "the first connection")
      local new <close> = connect_device(cloud, ID2 .. "," .. KEY2 .. ",0\n")
      local data, why = old:read(1, 10)
      assert.is_nil(data)
      assert.are.equal("closed", why)
      local d = device_state(cloud, ID2)
      assert.is_true(d.connected)
      assert.are_not.equal(first.peer, d.peer)
      assert(admin(cloud, "POST", "/admin/devices/" .. ID2 .. "/commands", { channel = "LED", value = "1" }))
      assert.matches(",LED,1$", assert(command_reader(new, ID2, KEY2)()))
    end)

    it("lists devices and firmwares in fotahost cloud status", function()
      local _conn <close> = connect_device(cloud, ID .. "," .. KEY .. ",0\n")
      eventually(function() return device_state(cloud, ID).connected end, 10, "the device")
      local r = h.run({ "cloud", "status", "--cloud", cloud.url })
      assert.are.equal(0, r.status, r.err)
      assert.matches("DEVICE%s+CONNECTED", r.out)
      assert.matches("\n" .. ID .. "%s+yes%s+127%.0%.0%.1:%d+", r.out)
      assert.matches("\n" .. ID2 .. "%s+", r.out)
      assert.matches("\n2%.0%s+fw%d+%s+" .. digest.file(fwfile, "md5"), r.out)
    end)
  end)

  describe("framing, with the device client (fotahost.mcs)", function()
    -- Runs fn(client) in a scheduler with a client of ID connected; closes it after.
    local function with_device(fn, on_state)
      local mcs = require "fotahost.mcs"
      local log = require "fotahost.log"
      log.configure { level = "warn" } -- no "connected" lines in the suite's output
      local _ <close> = setmetatable({}, { __close = function()
        log.configure { level = os.getenv("FOTAHOST_LOG_LEVEL") or "info" }
      end })
      return sched.run(function()
        local c = mcs.register { device_id = ID, device_key = KEY, api = cloud.url, heartbeat = 30 }
        local _ <close> = setmetatable({}, { __close = function() c:close() end })
        if on_state then c:on_state(on_state) end
        return fn(c)
      end)
    end
    local function wait_until(what, pred)
      local deadline = sched.now() + 10
      while not pred() do
        if sched.now() > deadline then error("timed out waiting for " .. what, 2) end
        sched.sleep(0.02)
      end
    end

    it("delivers two commands queued back to back, spaced, with no terminator in the values", function()
      local got = {}
      with_device(function(c)
        c:on("LED", function(value) got[#got + 1] = value end)
        wait_until("the device", function() return device_state(cloud, ID).connected end)
        local before = #device_state(cloud, ID).commands_recent
        local posts = {}
        for i, v in ipairs({ "on", "off" }) do
          posts[i] = sched.spawn(function()
            return assert(admin(cloud, "POST", "/admin/devices/" .. ID .. "/commands", { channel = "LED", value = v }))
          end)
        end
        for _, t in ipairs(posts) do assert(sched.join(t, 20)) end
        wait_until("both commands", function() return #got >= 2 end)
        local times = device_state(cloud, ID).commands_recent
        assert.is_true(#times >= before + 2)
        -- written at least the spacing apart (wall clock: a little slack)
        assert.is_true(times[#times] - times[#times - 1] >= mcs_cloud.COMMAND_SPACING * 0.75,
          ("%.4f s apart"):format(times[#times] - times[#times - 1]))
      end)
      table.sort(got)
      assert.are.same({ "off", "on" }, got)
    end)

    it("accepts a command pushed right after the device's first heartbeat", function()
      local reply, got
      local spawned = false
      with_device(function(c)
        c:on("LED", function(value) got = value end)
        wait_until("the command", function() return got ~= nil or (reply and reply[1] == nil) end)
      end, function(state)
        -- the device has just written its first heartbeat (bare, as mcsjs did): push now
        if state == "connected" and not spawned then
          spawned = true
          sched.spawn(function()
            reply = { admin(cloud, "POST", "/admin/devices/" .. ID .. "/commands", { channel = "LED", value = "now" }) }
          end)
        end
      end)
      assert.truthy(reply and reply[1], reply and reply[2])
      assert.are.equal("now", got)
    end)
  end)

  describe("admin API safeguards", function()
    local function firmware_versions()
      local list = {}
      for _, fw in ipairs(assert(admin(cloud, "GET", "/admin/firmwares")).firmwares) do list[#list + 1] = fw.version end
      return table.concat(list, " ")
    end

    it("refuses a cross-origin text/plain POST from a web page, registering nothing", function()
      local secret = h.write(dir .. "/secret.txt", "top secret\n")
      local r = request("POST", cloud.url .. "/admin/firmwares", {
        headers = { Origin = "http://evil.example", ["Content-Type"] = "text/plain" },
        body = cjson.encode({ version = "stolen", file = secret }) })
      assert.are.equal(403, r.status)
      assert.is_nil(firmware_versions():find("stolen", 1, true))
    end)

    it("answers 401 to a request with no token or a wrong one, and acts on neither", function()
      local s <close> = connect_device(cloud, ID .. "," .. KEY .. ",0\n")
      eventually(function() return device_state(cloud, ID).connected end, 10, "the device")
      local token = cloud.auth.Authorization:match("^Bearer (%x+)$")
      local last = token:sub(-1) == "0" and "1" or "0"
      local first = token:sub(1, 1) == "0" and "1" or "0"
      for _, auth in ipairs({ "", "Bearer ", "Bearer " .. token:sub(1, -2) .. last, "Bearer " .. first .. token:sub(2),
                              "Bearer " .. token .. "0", "Basic " .. token }) do
        local r = request("POST", cloud.url .. "/admin/devices/" .. ID .. "/commands", {
          headers = { Authorization = auth ~= "" and auth or nil, ["Content-Type"] = "application/json" },
          body = '{"channel":"LED","value":"7"}' })
        assert.are.equal(401, r.status, auth)
        assert.are.equal(401, cjson.decode(r.body).code)
        r = request("GET", cloud.url .. "/admin/devices", { headers = { Authorization = auth ~= "" and auth or nil } })
        assert.are.equal(401, r.status, auth)
      end
      assert.are.same({ nil, "timeout" }, { s:read_some(100, 0.3) })
      -- the CLI: a wrong --token is refused; the right one from the environment serves
      local r = h.run({ "cloud", "status", "--cloud", cloud.url, "--token", token:sub(1, -2) .. last })
      assert.are.equal(1, r.status)
      assert.matches("wrong admin token", r.err)
      r = h.run({ "cloud", "status", "--cloud", cloud.url },
        { env = { FOTAHOST_CLOUD_TOKEN = token, HOME = dir, XDG_RUNTIME_DIR = dir } })
      assert.are.equal(0, r.status, r.err)
    end)

    it("takes application/json bodies only (415)", function()
      for _, ct in ipairs({ "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x" }) do
        local r = request("POST", cloud.url .. "/admin/devices", {
          headers = authed(cloud, { ["Content-Type"] = ct }), body = '{"id":"formdev","key":"formkey1"}' })
        assert.are.equal(415, r.status, ct)
      end
      local r = request("POST", cloud.url .. "/admin/devices",
        { headers = authed(cloud), body = '{"id":"formdev","key":"formkey1"}' })
      assert.are.equal(415, r.status)
      assert.is_nil(device_state(cloud, "formdev"))
      r = request("POST", cloud.url .. "/admin/devices", {
        headers = authed(cloud, { ["Content-Type"] = "application/json; charset=utf-8" }),
        body = '{"id":"jsondev","key":"jsonkey1"}' })
      assert.are.equal(201, r.status, r.body)
    end)

    it("takes firmware by upload or by a name in its firmware directory, never by a path", function()
      local secret = h.write(dir .. "/secret.txt", "top secret\n")
      local fwdir = dir .. "/fw"
      assert(os.execute(("ln -sf %s %s/link.hex"):format(h.q(secret), h.q(fwdir))))
      for _, file in ipairs({ secret, "../secret.txt", "../../" .. secret, "link.hex", fwdir, "." }) do
        local v, err, code = admin(cloud, "POST", "/admin/firmwares", { version = "esc", file = file })
        assert.is_nil(v, file)
        assert.are.equal(400, code, file .. ": " .. tostring(err))
      end
      for _, name in ipairs({ "../up.hex", "/tmp/abs.hex", ".hidden", "cloud-firmwares.json" }) do
        local v, _, code = admin(cloud, "POST", "/admin/firmwares",
          { version = "esc", name = name, content = ":00000001FF\n" })
        assert.is_nil(v, name)
        assert.are.equal(400, code, name)
      end
      assert.is_nil(h.read(dir .. "/up.hex"))
      assert.is_nil(firmware_versions():find("esc", 1, true))
      -- a link in the directory is not served either
      assert.are.equal(404, request("GET", cloud.url .. "/firmwares/link.hex").status)
      -- a file already in the directory, by name (fotahost cloud register --name)
      h.write(fwdir .. "/placed.hex", ":00000001FF\n")
      local r = h.run({ "cloud", "register", "--cloud", cloud.url, "--version", "placed", "--name", "placed.hex" })
      assert.are.equal(0, r.status, r.err)
      assert.matches("registered placed as fw%d+: md5 " .. digest.file(fwdir .. "/placed.hex", "md5"), r.out)
    end)

    it("shows no device key in a FOTA push reply, a command reply or a device listing", function()
      local s <close> = connect_device(cloud, ID .. "," .. KEY .. ",0\n")
      eventually(function() return device_state(cloud, ID).connected end, 10, "the device")
      local read = command_reader(s)
      local replies = {}
      for _, call in ipairs({ { "/fota", { version = "k", url = "http://127.0.0.1:1/k.hex", md5 = cjson.null } },
                              { "/commands", { channel = "LED", value = "1" } },
                              { "/commands", { raw = ID .. "," .. KEY .. ",1,LED,0" } } }) do
        local r = request("POST", cloud.url .. "/admin/devices/" .. ID .. call[1], {
          headers = authed(cloud, { ["Content-Type"] = "application/json" }), body = cjson.encode(call[2]) })
        assert.are.equal(200, r.status, r.body)
        assert.matches('"command":"' .. ID .. ',%*%*%*%*,', r.body)
        replies[#replies + 1] = r.body
        assert(read()) -- the device got the key, in the command
      end
      for _, path in ipairs({ "/admin/devices", "/admin/devices/" .. ID, "/admin/devices/" .. ID .. "/datapoints" }) do
        replies[#replies + 1] = request("GET", cloud.url .. path, { headers = authed(cloud) }).body
      end
      replies[#replies + 1] = request("POST", cloud.url .. "/admin/devices", {
        headers = authed(cloud, { ["Content-Type"] = "application/json" }),
        body = '{"id":"newdev","key":"NewDevKey123456"}' }).body
      for _, body in ipairs(replies) do
        for _, key in ipairs({ KEY, KEY2, "NewDevKey123456" }) do assert.is_nil(body:find(key, 1, true), body) end
      end
    end)

    it("keeps its token in a file of mode 0600, and neither the token nor a key in its log", function()
      local path = h.read(cloud.dir .. "/out"):match("\nadmin token in (%S+)\n")
      assert.truthy(path)
      local st = assert(require("fotahost.sys").lstat(path))
      assert.are.same({ "file", tonumber("600", 8) }, { st.type, st.mode })
      local token = h.read(path):match("^(%x+)\n$")
      assert.are.equal("Bearer " .. token, cloud.auth.Authorization)
      assert.are.equal(64, #token)
      local log = cloud.stderr() .. h.read(cloud.dir .. "/out")
      for _, secret in ipairs({ token, KEY, KEY2 }) do assert.is_nil(log:find(secret, 1, true)) end
    end)
  end)
end)

describe("fotahost cloud serve", function()
  it("ends commands with a newline with --newline, and exits 0 on SIGTERM", function()
    local cloud = start_cloud({ "--device", ID .. ":" .. KEY, "--newline" })
    local ok, err = pcall(function()
      local s <close> = connect_device(cloud, ID .. "," .. KEY .. ",0")
      eventually(function() return device_state(cloud, ID).connected end, 10, "the device")
      local r = assert(admin(cloud, "POST", "/admin/devices/" .. ID .. "/commands", { channel = "LED", value = "1" }))
      assert.are.equal(ID .. ",****,", r.command:sub(1, #ID + 6))
      assert.matches("^" .. ID .. "," .. KEY .. ",%d+,LED,1$", assert(s:read_line(10)))
    end)
    local token_file = h.read(cloud.dir .. "/out"):match("\nadmin token in (%S+)\n")
    local how, code, stderr = cloud.stop()
    assert(ok, err)
    assert.are.same({ "exit", 0 }, { how, code }, stderr)
    assert.matches("stopped %(SIGTERM%)", stderr)
    assert.is_nil(h.read(token_file), "the token file outlived the cloud")
  end)

  it("warns on stderr when it serves plain HTTP beyond loopback, unless an https --public-url fronts it", function()
    local dir = h.tmpdir()
    finally(function() h.rmdir(dir) end)
    local function serve(extra)
      local c = h.start_cloud(dir .. "/fw", 0, extra)
      local out, err = c.out, c.stderr()
      c.stop()
      return out, err
    end
    local out, err = serve({ "--host", "0.0.0.0" })
    assert.matches("^cloud http://0%.0%.0%.0:%d+ tcp ", out) -- the ready line stays first
    assert.matches("http://0%.0%.0%.0:%d+ is plain HTTP beyond loopback: the console's admin token, device keys "
      .. "and commands cross the network in clear text", err)
    err = select(2, serve({ "--host", "0.0.0.0", "--public-url", "https://cloud.example.org" }))
    assert.is_nil(err:find("clear text", 1, true), err)
    err = select(2, serve({ "--public-url", "http://cloud.example.org" }))
    assert.is_nil(err:find("clear text", 1, true), err)
  end)

  it("prints its usage with --help and refuses unknown options", function()
    local r = h.run({ "cloud", "--help" })
    assert.are.equal(0, r.status)
    assert.matches("fotahost cloud serve", r.out)
    r = h.run({ "cloud", "serve", "--bogus" })
    assert.are.equal(2, r.status)
    assert.matches("unknown option '%-%-bogus'", r.err)
    r = h.run({ "cloud", "serve", "--spacing", "-5" })
    assert.are.equal(2, r.status)
    assert.matches("%-%-spacing %-5: milliseconds >= 0 expected", r.err)
  end)

  it("knows the firmwares of its firmware directory again after a restart", function()
    local dir = h.tmpdir()
    local file = h.write(dir .. "/a.hex", ":00000001FF\n")
    local log = require "fotahost.log"
    log.configure { level = "warn" } -- no "registered" line in the suite's output
    local ok, c1 = pcall(mcs_cloud.new,
      { firmware_dir = dir .. "/fw", firmwares = { { version = "1.0", file = file } } })
    log.configure { level = os.getenv("FOTAHOST_LOG_LEVEL") or "info" }
    assert(ok, c1)
    c1 = assert(c1)
    local fw1 = c1.fw_by_version["1.0"]
    local c2 = assert(mcs_cloud.new { firmware_dir = dir .. "/fw" })
    local fw2 = c2.fw_by_version["1.0"]
    h.rmdir(dir)
    assert.truthy(fw2)
    assert.are.same({ fw1.fwId, fw1.md5, "a.hex" }, { fw2.fwId, fw2.md5, fw2.name })
  end)
end)

describe("fotahost.mcs_cloud parsers", function()
  it("splits heartbeats on line ends and on the id,key, prefix", function()
    local split = mcs_cloud.split_messages
    assert.are.same({ { "d,k,0", "d,k,1" }, "" }, { split("d,k,0\r\nd,k,1\n") })
    assert.are.same({ { "d,k,0", "d,k,1" }, "d,k,2" }, { split("d,k,0d,k,1d,k,2") })
    assert.are.same({ { "d,k,0", "d,k,1", "d,k,2" }, "" }, { split("d,k,0d,k,1d,k,2", true) })
    assert.are.same({ {}, "d,k,15131" }, { split("d,k,15131") })
    assert.are.same({ { "d,k,1513132150790" }, "" }, { split("d,k,1513132150790", true) })
    assert.are.same({ {}, "" }, { split("\r\n\n") })
  end)

  it("parses datapoints.csv bodies, the value being all after the second comma", function()
    local p = assert(mcs_cloud.parse_csv("a,,1\nb,12,1,2,3\r\n\n"))
    assert.are.same({ { channel = "a", value = "1" }, { channel = "b", timestamp = 12, value = "1,2,3" } }, p)
    assert.is_nil((mcs_cloud.parse_csv("a,x,1")))
    assert.is_nil((mcs_cloud.parse_csv("a b,,1")))
    assert.truthy(mcs_cloud.parse_csv(string.rep("a", 64) .. ",,1"))
    assert.are.same({ nil, "line 2: data channel id of 65 bytes (at most 64)" },
      { mcs_cloud.parse_csv("a,,1\n" .. string.rep("a", 65) .. ",,1") })
    -- the broker's payloads too
    local parse_payload = require("fotahost.mcs_cloud.broker").parse_payload
    assert.are.same({ timestamp = 5, channel = "a", value = "1,2" }, parse_payload("5,a,1,2"))
    assert.is_nil(parse_payload("," .. string.rep("a", 65) .. ",1"))
  end)
end)
