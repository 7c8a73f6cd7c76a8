-- fotahost.mcs, the device client: its command framer alone, then the
-- client against the local cloud (`fotahost cloud serve`, a separate
-- process) over loopback.
local h = require "helper"
local sched = require "fotahost.sched"
local http = require "fotahost.http"
local cjson = require "cjson"
local framer = require "fotahost.mcs.framer"
local mcs = require "fotahost.mcs"

local ID, KEY = "Dbxx9k", "TPJVxxxxBxBv"

describe("fotahost.mcs.framer", function()
  local function frame(chunks, max)
    local f = framer.new(ID, KEY, max or 128)
    local got = {}
    for _, c in ipairs(chunks) do
      for kind, a in f:feed(c) do got[#got + 1] = kind == "command" and a or ("<" .. kind .. " " .. a .. ">") end
    end
    for kind, a in f:flush() do got[#got + 1] = "flush:" .. (kind == "command" and a or ("<" .. kind .. ">")) end
    return got
  end
  local c1, c2 = ID .. "," .. KEY .. ",1,LED,1", ID .. "," .. KEY .. ",2,LED,0"

  it("splits on line ends of every kind", function()
    assert.are.same({ c1, c2, c1 }, frame({ c1 .. "\n" .. c2 .. "\r\n" .. c1 .. "\r" }))
    assert.are.same({ c1, c2 }, frame({ c1 .. "\r", "\n" .. c2 .. "\n" }))
  end)

  it("splits unterminated commands on the id,key prefix, the last after a quiet gap", function()
    assert.are.same({ c1, "flush:" .. c2 }, frame({ c1 .. c2 }))
    -- the prefix itself split across reads
    assert.are.same({ c1, "flush:" .. c2 }, frame({ c1 .. ID .. ",", KEY:sub(1, 3), KEY:sub(4) .. ",2,LED,0" }))
    -- byte by byte
    local bytes = {}
    for i = 1, #(c1 .. c2) do bytes[i] = (c1 .. c2):sub(i, i) end
    assert.are.same({ c1, "flush:" .. c2 }, frame(bytes))
  end)

  it("keeps commas in the value", function()
    local fota = ID .. "," .. KEY .. ",1513132150790,FOTA,2.0,null,https://cdn.example.com/a,b.hex"
    local got = frame({ fota .. "\n" })
    assert.are.same({ fota }, got)
    local c = framer.parse(got[1])
    assert.are.same({ ID, KEY, 1513132150790, "FOTA", "2.0,null,https://cdn.example.com/a,b.hex" },
      { c.device_id, c.device_key, c.timestamp, c.channel, c.value })
    assert.are.same({ nil, "not a command (fewer than 5 fields)" }, { framer.parse("a,b,c") })
  end)

  it("waits for the line end once the server has been seen to send them", function()
    local f = framer.new(ID, KEY, 128)
    for _ in f:feed(c1 .. "\n") do end
    for _ in f:feed(c2:sub(1, 10)) do end
    assert.is_true(f.saw_eol) -- so a pause now is waited out longer
    local got = {}
    for kind, a in f:feed(c2:sub(11) .. "\n") do got[#got + 1] = a end
    assert.are.same({ c2 }, got)
  end)

  it("cuts off an over-long command without buffering it, and goes on", function()
    local long = ID .. "," .. KEY .. ",1,IMG," .. ("x"):rep(1000)
    assert.are.same({ "<too_long " .. #long .. ">", c1 }, frame({ long:sub(1, 500), long:sub(501) .. "\n" .. c1 .. "\n" }))
    assert.are.same({ "<too_long " .. #long .. ">", "flush:" .. c2 }, frame({ long:sub(1, 500), long:sub(501), c2 }))
    local f = framer.new(ID, KEY, 64)
    for _ = 1, 1000 do for _ in f:feed(("y"):rep(1000)) do end end
    assert.is_true(#f.buf < 64) -- a megabyte went by; a few bytes are kept
  end)
end)

describe("fotahost.mcs against the local cloud", function()
  local cloud, fwdir
  local function start_cloud(port, extra)
    local args = { "cloud", "serve", "--port", tostring(port or 0), "--tcp-port", "0",
      "--device", ID .. ":" .. KEY, "--firmware-dir", fwdir, "--watch-stdin" }
    for _, a in ipairs(extra or {}) do args[#args + 1] = a end
    cloud = h.start_server(args, { ready = "cloud http://(%S+):(%d+) tcp" })
    return cloud
  end
  local function admin(method, path, value)
    local v, res_or_err = http.json(method, cloud.url .. "/admin" .. path, value)
    assert(v, res_or_err)
    return v
  end
  local function device() return admin("GET", "/devices/" .. ID) end
  local function send(doc) return admin("POST", "/devices/" .. ID .. "/commands", doc) end

  -- Runs fn(client) in a scheduler with a client registered; closes it after.
  local function with_client(opts, fn)
    local o = { device_id = ID, device_key = KEY, api = cloud.url, heartbeat = 0.3,
                backoff_base = 0.1, backoff_cap = 1 }
    for k, v in pairs(opts) do o[k] = v end
    return sched.run(function()
      local c = mcs.register(o)
      local _ <close> = setmetatable({}, { __close = function() c:close() end })
      return fn(c)
    end)
  end
  local function until_true(what, timeout, pred)
    local deadline = sched.now() + timeout
    while not pred() do
      if sched.now() > deadline then error("timed out waiting for " .. what, 2) end
      sched.sleep(0.02)
    end
  end

  setup(function()
    fwdir = h.tmpdir()
    start_cloud()
  end)
  teardown(function()
    if cloud then cloud.stop() end
    h.rmdir(fwdir)
  end)

  it("registers, heartbeats at once and then at the interval", function()
    with_client({}, function(c)
      local states = {}
      c:on_state(function(s) states[#states + 1] = s end)
      until_true("connected", 5, function() return c.state == "connected" end)
      until_true("first heartbeat", 2, function() return device().heartbeats.count >= 1 end)
      local d = device()
      assert.is_true(d.connected)
      sched.sleep(1.4)
      d = device()
      local beats = d.heartbeats.recent
      assert.is_true(#beats >= 4, "heartbeats: " .. #beats)
      for i = 2, #beats do
        local gap = beats[i] - beats[i - 1]
        assert.is_true(gap > 0.15 and gap < 0.9, ("heartbeat gap %.3f s"):format(gap))
      end
      assert.are.same({ "connecting", "connected" }, states)
    end)
  end)

  it("frames commands split across segments, coalesced, with commas, and ignores a wrong key", function()
    with_client({}, function(c)
      local got = {}
      c:on("LED", function(v) got[#got + 1] = "LED=" .. v end)
      c:on("GPS", function(v) got[#got + 1] = "GPS=" .. v end)
      c:on("*", function(v, _, chn) got[#got + 1] = "*" .. chn .. "=" .. v end)
      until_true("connected", 5, function() return device().connected end)
      local p = ID .. "," .. KEY .. ","
      -- one command in four segments
      send({ raw = p .. "1,LED,1\n", chunks = { 3, 7, 5 }, gap_ms = 30 })
      until_true("split command", 3, function() return #got >= 1 end)
      -- three in one segment, the last split off by the next prefix only; a comma value
      send({ raw = p .. "2,LED,0\n" .. p .. "3,GPS,25.03,121.56,10\n" .. p .. "4,PWM,128,20" .. p .. "4,X,1\n" })
      until_true("coalesced commands", 3, function() return #got >= 4 end)
      -- a wrong key, then a good one
      send({ raw = ID .. ",WRONGKEY1,5,LED,1\n" .. p .. "6,LED,1\n" })
      until_true("after the wrong key", 3, function() return #got >= 6 end)
      sched.sleep(0.1)
      assert.are.same({ "LED=1", "LED=0", "GPS=25.03,121.56,10", "*PWM=128,20", "*X=1", "LED=1" }, got)
      assert.are.equal(1, c.ignored)
      -- newline-terminated from here on: a 0.5 s pause inside a command
      -- (a retransmission) does not cut it
      send({ raw = p .. "7,GPS,1,2,3\n", chunks = { 25 }, gap_ms = 500 })
      until_true("the paused command", 5, function() return #got >= 7 end)
      assert.are.equal("GPS=1,2,3", got[7])
    end)
  end)

  it("takes FOTA pushes from a cloud that ends commands with no newline", function()
    cloud.stop()
    start_cloud(0, { "--no-newline" })
    local ok, err = pcall(with_client, {}, function(c)
      local got = {}
      c:on("FOTA", function(v) got[#got + 1] = v end)
      until_true("connected", 5, function() return device().connected end)
      admin("POST", "/devices/" .. ID .. "/fota", { version = "2.0", url = "http://x.invalid/a.hex", md5 = cjson.null })
      admin("POST", "/devices/" .. ID .. "/fota", { version = "2.1", url = "http://x.invalid/b,c.hex", md5 = "0123" })
      until_true("two pushes", 3, function() return #got == 2 end)
      assert.are.same({ "2.0,null,http://x.invalid/a.hex", "2.1,0123,http://x.invalid/b,c.hex" }, got)
    end)
    cloud.stop()
    start_cloud()
    assert(ok, err)
  end)

  it("cuts off an over-long line and keeps the connection", function()
    with_client({ max_command = 4096 }, function(c)
      local got = {}
      c:on("LED", function(v) got[#got + 1] = v end)
      until_true("connected", 5, function() return device().connected end)
      local p = ID .. "," .. KEY .. ","
      local junk = p .. "1,IMG," .. ("A"):rep(300000)
      send({ raw = junk .. "\n" .. p .. "2,LED,1\n", chunks = { 65536, 65536, 65536, 65536 }, gap_ms = 5 })
      until_true("the command after the long one", 5, function() return #got == 1 end)
      assert.are.equal(1, c.cut_off)
      assert.are.equal("connected", c.state)
    end)
  end)

  it("uploads data points in batches of at most 5, and reports the version", function()
    local fw = fwdir .. "/src.hex"
    h.write(fw, ":00000001FF\n")
    admin("POST", "/firmwares", { version = "1.5", file = fw })
    with_client({}, function(c)
      for i = 1, 7 do c:emit("temp", 20 + i) end
      c:emit("status", "failed: md5 mismatch, expected a, got b") -- commas: the JSON form
      assert.is_true(c:flush(5))
      assert.is_true(c:report_version("1.5"))
      local ok, err, code = c:report_version("9.9")
      assert.are.same({ nil, 400 }, { ok, code })
      assert.matches("/firmwares: HTTP 400: ", err)
      -- firmwares registered after the reported one are offered
      local fw2 = fwdir .. "/src2.hex"
      h.write(fw2, ":00000001FF\n")
      admin("POST", "/firmwares", { version = "1.6", file = fw2 })
      local list = assert(c:available_firmware())
      assert.are.equal("1.6", list[1].version)
      assert.matches("^http://", list[1].URL)
      local tmp = fwdir .. "/got.hex"
      assert(http.download(list[1].URL, tmp, { retries = 0 }))
      assert.are.equal(":00000001FF\n", h.read(tmp))
    end)
    local d = device()
    assert.are.equal("1.5", d.version)
    local temps = {}
    for i, p in ipairs(d.datapoints.temp) do temps[i] = tonumber(p.values and p.values.value or p.value) end
    assert.are.same({ 21, 22, 23, 24, 25, 26, 27 }, temps)
    local st = d.datapoints.status[1]
    assert.are.equal("failed: md5 mismatch, expected a, got b", st.values and st.values.value or st.value)
  end)

  it("never prints the device key", function()
    local log = require "fotahost.log"
    local lines = {}
    log.configure({ sink = function(_, _, msg) lines[#lines + 1] = msg end, level = "debug" })
    local ok, err = pcall(with_client, { device_key = "WRONGKEY123" }, function(c)
      until_true("a failed attempt", 5, function() return c.failures >= 1 end)
    end)
    log.configure({ sink = "stderr", level = "info" })
    assert(ok, err)
    local all = table.concat(lines, "\n")
    assert.matches("HTTP 401", all)
    assert.is_nil(all:find("WRONGKEY123", 1, true))
  end)

  it("reconnects after the cloud is killed, with growing delays, within the cap", function()
    local port = cloud.port
    with_client({ backoff_base = 0.2, backoff_cap = 1.5 }, function(c)
      local retries, connected_at = {}, {}
      c:on_state(function(s, d)
        if s == "retrying" then retries[#retries + 1] = d end
        if s == "connected" then connected_at[#connected_at + 1] = sched.now() end
      end)
      until_true("connected", 5, function() return c.state == "connected" end)
      os.execute("kill -KILL " .. cloud.pid)
      until_true("disconnected", 5, function() return c.state ~= "connected" end)
      sched.sleep(3) -- several failed attempts while the cloud is down
      local down = #retries
      assert.is_true(down >= 3, "attempts while down: " .. down)
      for i = 2, down do
        assert.is_true(retries[i] >= retries[i - 1] or retries[i] >= 1.5 / 2,
          ("delay %d (%.2f s) shorter than delay %d (%.2f s)"):format(i, retries[i], i - 1, retries[i - 1]))
        assert.is_true(retries[i] <= 1.5, "delay over the cap: " .. retries[i])
      end
      cloud.stop()
      local restarted_at = sched.now()
      start_cloud(port)
      until_true("reconnected", 5, function() return c.state == "connected" and device().connected end)
      local back = connected_at[#connected_at] - restarted_at
      assert.is_true(back < 1.5 + 1, ("back after %.2f s"):format(back))
    end)
  end)

  it("keeps heartbeats and commands going while a handler sleeps 30 s", function()
    with_client({ heartbeat = 1 }, function(c)
      local slow_done, fast = false, 0
      c:on("SLOW", function() sched.sleep(30) slow_done = true end)
      c:on("FAST", function() fast = fast + 1 end)
      until_true("connected", 5, function() return device().connected end)
      send({ channel = "SLOW", value = "1" })
      local before = device().heartbeats.count
      local t0 = sched.now()
      while sched.now() - t0 < 30 do
        send({ channel = "FAST", value = "1" })
        sched.sleep(3)
      end
      local d = device()
      assert.is_true(d.heartbeats.count - before >= 25, ("heartbeats during the handler: %d")
        :format(d.heartbeats.count - before))
      assert.is_true(fast >= 9, "fast commands handled: " .. fast)
      until_true("the slow handler", 3, function() return slow_done end)
    end)
  end)

  it("logs a failing handler and goes on", function()
    with_client({}, function(c)
      local ok = 0
      c:on("BAD", function() error("handler bug") end)
      c:on("OK", function() ok = ok + 1 end)
      until_true("connected", 5, function() return device().connected end)
      send({ channel = "BAD", value = "1" })
      send({ channel = "OK", value = "1" })
      until_true("the next command", 3, function() return ok == 1 end)
      assert.are.equal("connected", c.state)
    end)
  end)

  it("refuses bad registrations clearly", function()
    sched.run(function()
      assert.has_error(function() mcs.register({ device_id = "a,b", device_key = KEY }) end)
      assert.has_error(function() mcs.register({ device_id = ID, device_key = KEY, api = "ftp://x" }) end,
        "mcs.register: api must be an http:// or https:// URL, got ftp://x")
    end)
    assert.has_error(function() mcs.register({ device_id = ID, device_key = KEY }) end,
      "mcs.register: call it inside sched.run (the client runs as scheduler tasks)")
  end)

  it("reconnects when the cloud drops the connection", function()
    with_client({ backoff_base = 0.1, backoff_cap = 0.4 }, function(c)
      local states = {}
      c:on_state(function(st) states[#states + 1] = st end)
      until_true("connected", 5, function() return device().connected end)
      admin("POST", "/devices/" .. ID .. "/disconnect", {})
      until_true("back", 5, function() return #states >= 5 and c.state == "connected" end)
      assert.are.same({ "connecting", "connected", "disconnected", "retrying", "connecting", "connected" },
        states)
    end)
  end)
end)
