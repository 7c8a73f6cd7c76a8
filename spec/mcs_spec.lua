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
      for kind, a in f:feed(c) do got[#got + 1] = kind == "command" and a.text or ("<" .. kind .. " " .. a .. ">") end
    end
    for kind, a in f:flush() do got[#got + 1] = "flush:" .. (kind == "command" and a.text or ("<" .. kind .. ">")) end
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

  it("parses what it frames, keeping commas in the value", function()
    local fota = ID .. "," .. KEY .. ",1513132150790,FOTA,2.0,null,https://cdn.example.com/a,b.hex"
    local f, got = framer.new(ID, KEY, 128), {}
    for kind, c in f:feed(fota .. "\n") do got[#got + 1] = { kind, c } end
    assert.are.equal(1, #got)
    local c = got[1][2]
    assert.are.same({ "command", ID, KEY, 1513132150790, "FOTA", "2.0,null,https://cdn.example.com/a,b.hex", fota },
      { got[1][1], c.device_id, c.device_key, c.timestamp, c.channel, c.value, c.text })
    assert.are.same({ text = "a,b,c", error = "not a command (fewer than 5 fields)" }, framer.parse("a,b,c"))
    assert.are.same({ text = "a,b,c,,v", error = "no channel" }, framer.parse("a,b,c,,v"))
    assert.are.same({ text = "a,b,x,c,", device_id = "a", device_key = "b", channel = "c", value = "" },
      framer.parse("a,b,x,c,")) -- x: no timestamp
  end)

  it("parses a command that came as MQTT's payload, the id and key from its topic", function()
    local c = framer.parse_payload(ID, KEY, "1513133357160,FOTA,2.0,null,https://x/a.bin")
    assert.are.same({ ID, KEY, 1513133357160, "FOTA", "2.0,null,https://x/a.bin" },
      { c.device_id, c.device_key, c.timestamp, c.channel, c.value })
    assert.is_nil(framer.parse_payload(ID, KEY, ",switch01,1").timestamp) -- stamped on arrival
    assert.are.equal("not a command (fewer than 3 fields)", framer.parse_payload(ID, KEY, "1,LED").error)
  end)

  it("raises on misuse, blaming its caller", function()
    local function where(fn)
      local ok, err = pcall(fn)
      assert.is_false(ok)
      return err
    end
    assert.matches("^spec/mcs_spec%.lua:%d+: framer%.new: device key required",
      where(function() framer.new(ID, "") end))
    assert.matches("^spec/mcs_spec%.lua:%d+: framer%.parse: command text expected",
      where(function() framer.parse(nil) end))
  end)

  it("waits for the line end once the server has been seen to send them", function()
    local f = framer.new(ID, KEY, 128)
    for _ in f:feed(c1 .. "\n") do end
    for _ in f:feed(c2:sub(1, 10)) do end
    assert.is_true(f.saw_eol) -- so a pause now is waited out longer
    local got = {}
    for _, a in f:feed(c2:sub(11) .. "\n") do got[#got + 1] = a.text end
    assert.are.same({ c2 }, got)
  end)

  it("cuts off an over-long command without buffering it, and goes on", function()
    local long = ID .. "," .. KEY .. ",1,IMG," .. ("x"):rep(1000)
    assert.are.same({ "<too_long " .. #long .. ">", c1 },
      frame({ long:sub(1, 500), long:sub(501) .. "\n" .. c1 .. "\n" }))
    assert.are.same({ "<too_long " .. #long .. ">", "flush:" .. c2 }, frame({ long:sub(1, 500), long:sub(501), c2 }))
    local f = framer.new(ID, KEY, 64)
    for _ = 1, 1000 do for _ in f:feed(("y"):rep(1000)) do end end
    assert.is_true(#f.buf < 64) -- a megabyte went by; a few bytes are kept
  end)

  it("cuts off an over-long command that arrives whole in one read", function()
    local long = ID .. "," .. KEY .. ",1,IMG," .. ("x"):rep(200)
    assert.are.same({ "<too_long " .. #long .. ">", c1 }, frame({ long .. "\n" .. c1 .. "\n" }))
    -- ended by the next command's prefix instead of a line end
    assert.are.same({ "<too_long " .. #long .. ">", "flush:" .. c2 }, frame({ long .. c2 }))
  end)

  it("finds the command after an over-long one when its id,key prefix is split across reads", function()
    local long = ID .. "," .. KEY .. ",1,IMG," .. ("x"):rep(1000)
    local p = ID .. "," .. KEY .. ","
    assert.are.same({ "<too_long " .. #long .. ">", "flush:" .. c2 },
      frame({ long:sub(1, 600), long:sub(601) .. p:sub(1, 4), p:sub(5, 9), c2:sub(10) }))
  end)
end)

-- The reconnect delays as the client reports them (on_state "retrying",
-- the "retrying in N s" log line), with a transport whose sessions the
-- test scripts: no network, so the sequence is exact.
describe("fotahost.mcs reconnect delays", function()
  local BASE, CAP = 0.002, 0.016
  -- Runs a client whose n-th session does `script(n, connected)` and
  -- then ends; returns the first `count` delays.
  local function delays(count, script, opts)
    local got = {}
    math.randomseed(19)
    local log = require "fotahost.log"
    log.configure { level = "warn" } -- not a "retrying" line per attempt
    local _ <close> = setmetatable({}, { __close = function() log.configure { level = "info" } end })
    sched.run(function()
      local o = { device_id = ID, device_key = KEY, api = "http://127.0.0.1:1",
                  backoff_base = BASE, backoff_cap = CAP, stable_after = 0.5,
                  transport = { session = function(ctx)
                    script(#got + 1, ctx.connected)
                    return nil, "the test ended this session"
                  end } }
      for k, v in pairs(opts or {}) do o[k] = v end
      local c = mcs.register(o)
      c:on_state(function(s, d) if s == "retrying" then got[#got + 1] = d end end)
      while #got < count do sched.sleep(0.005) end
      c:close()
    end)
    return got
  end
  -- The step of the n-th consecutive failure: doubling from BASE, capped.
  local function step(n) return math.min(CAP, BASE * 2 ^ (n - 1)) end
  local function assert_jittered(d, n, i)
    assert.is_true(d >= step(n) / 2 - 1e-9 and d <= step(n) + 1e-9,
      ("delay %d is %.4f s, not within [%.4f, %.4f] (failure %d in a row)"):format(i, d, step(n) / 2, step(n), n))
  end

  it("double from backoff_base up to backoff_cap, with jitter, while the cloud cannot be reached", function()
    local got = delays(10, function() end)
    for i, d in ipairs(got) do assert_jittered(d, i, i) end
    -- at the cap: spread between half the cap and the cap, not all alike
    local lo, hi = math.huge, 0
    for i = 5, 10 do lo, hi = math.min(lo, got[i]), math.max(hi, got[i]) end
    assert.is_true(hi - lo > CAP / 8, ("delays at the cap all within %.4f s of each other"):format(hi - lo))
  end)

  it("start over after a connection that lasted stable_after, not after one dropped at once", function()
    local got = delays(10, function(n, connected)
      if n == 5 then
        connected("test:1")
        sched.sleep(0.6) -- longer than stable_after
      elseif n >= 6 then
        connected("test:1") -- connects, and is dropped at once (a flapping server)
      end
    end)
    for i = 1, 4 do assert_jittered(got[i], i, i) end
    -- session 5 was stable: its drop is the first failure of a new series,
    -- and the flapping sessions after it keep that series growing
    for i = 5, 10 do assert_jittered(got[i], i - 4, i) end
  end)
end)

describe("fotahost.mcs and its device key", function()
  it("masks the device key in logs from registration on, whatever the transport", function()
    -- a transport that puts the key where MQTT does, in a topic, and logs
    -- it before any REST call has been made
    local key = "Fr3sh-K3y.for+mqtt"
    local log = require "fotahost.log"
    local lines = {}
    log.configure({ sink = function(_, _, msg) lines[#lines + 1] = msg end })
    local ok, err = pcall(sched.run, function()
      local c = mcs.register { device_id = ID, device_key = key, api = "http://127.0.0.1:1",
        transport = { session = function(ctx)
          ctx.log.warn("subscribe to mcs/%s/%s/+ refused", ctx.device_id, ctx.device_key)
          return nil, "refused"
        end } }
      sched.sleep(0)
      c:close()
    end)
    log.configure({ sink = "stderr" })
    assert(ok, err)
    assert.are.equal("subscribe to mcs/" .. ID .. "/****/+ refused", lines[1])
    assert.is_nil(table.concat(lines, "\n"):find(key, 1, true))
  end)
end)

-- The seam between the client and a transport (docs/transport.md): a
-- transport written against its context alone, as an MQTT one would be.
describe("fotahost.mcs and a transport", function()
  -- Runs a client over `session` until `done()` says so; returns the
  -- client and its state changes.
  local function run(session, done, setup)
    local states = {}
    local log = require "fotahost.log"
    log.configure { level = "error" }
    local _ <close> = setmetatable({}, { __close = function() log.configure { level = "info" } end })
    local c
    local ok, err = pcall(sched.run, function()
      c = mcs.register { device_id = ID, device_key = KEY, api = "http://127.0.0.1:1",
                         backoff_base = 0.001, backoff_cap = 0.002, transport = { session = session } }
      c:on_state(function(st, d) states[#states + 1] = st .. (d and " " .. tostring(d) or "") end)
      if setup then setup(c) end
      local deadline = sched.now() + 5
      while not done(c, states) do
        assert(sched.now() < deadline, "timed out; states: " .. table.concat(states, "; "))
        sched.sleep(0.005)
      end
      c:close()
    end)
    assert(ok, err)
    return c, states
  end

  it("gets whole messages delivered without the TCP framing, and counts what it likes", function()
    local got, seen = {}, nil
    local c = run(function(ctx)
      seen = ctx
      ctx.connected("broker:1883")
      ctx.counters.messages = 2
      ctx.deliver(framer.parse(ID .. "," .. KEY .. ",5,LED,1"))
      ctx.deliver(framer.parse(ID .. ",not-the-key,6,LED,0"))
      sched.sleep(60)
    end, function(cl) return #got == 1 and cl.ignored == 1 end,
    function(cl) cl:on("LED", function(v, ts) got[#got + 1] = v .. "@" .. ts end) end)
    assert.are.same({ "1@5" }, got)
    assert.are.equal(2, c.transport_counters.messages)
    -- all it sees of the client: no handler table, no queue
    local keys = {}
    for k in pairs(seen) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.are.same({ "api", "connected", "counters", "deliver", "device_id", "device_key", "log", "opts",
      "publisher" }, keys)
  end)

  it("sends data points through the session's publisher while it is connected, and only then", function()
    local sent, sessions = {}, 0
    local c = run(function(ctx)
      sessions = sessions + 1
      ctx.connected("broker:1883")
      if sessions == 1 then
        ctx.publisher(function(points)
          for _, p in ipairs(points) do sent[#sent + 1] = p.channel .. "=" .. p.value end
          return true
        end)
        sched.sleep(0.05)
        return nil, "dropped" -- the next session offers none: points wait for REST (unreachable here)
      end
      sched.sleep(60)
    end, function(cl) return #sent == 2 and sessions == 2 and cl.state == "connected" end,
    function(cl)
      cl:emit("fota_status", "done")
      cl:emit("temp", 21.5)
    end)
    assert.are.same({ "fota_status=done", "temp=21.5" }, sent)
    assert.is_nil(c._publisher)
  end)

  it("refuses a publisher outside a connected session", function()
    local _, states = run(function(ctx) ctx.publisher(function() return true end) end,
      function(_, st) return #st >= 2 end)
    assert.matches("^disconnected the transport failed: .*publisher%(%) outside a connected session", states[2])
  end)

  it("fails the session, not the client, when it delivers before it is connected", function()
    local _, states = run(function(ctx)
      ctx.deliver(framer.parse(ID .. "," .. KEY .. ",5,LED,1"))
    end, function(_, st) return #st >= 3 end)
    assert.are.equal("connecting", states[1])
    assert.matches("^disconnected the transport failed: .*deliver%(%) outside a connected session", states[2])
    assert.matches("^retrying ", states[3])
  end)

  it("is checked at registration, the caller blamed", function()
    sched.run(function()
      local ok, err = pcall(mcs.register, nil)
      assert.is_false(ok)
      assert.matches("options table expected", err)
      ok, err = pcall(function()
        mcs.register { device_id = ID, device_key = KEY, api = "http://127.0.0.1:1", transport = {} }
      end)
      assert.is_false(ok)
      assert.matches("^spec/mcs_spec%.lua:%d+: mcs%.register: transport must be a table with a session function", err)
    end)
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
    local v, res_or_err = http.json(method, cloud.url .. "/admin" .. path, value,
      { headers = assert(require("fotahost.mcs_cloud").admin_headers(cloud.url)) })
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

  it("registers and heartbeats at once, not an interval later", function()
    local before = device().heartbeats.count
    with_client({ heartbeat = 60 }, function(c)
      until_true("the cloud to see the device", 10, function()
        local d = device()
        return d.connected and d.heartbeats.count > before
      end)
      assert.are.equal("connected", c.state)
    end)
  end)

  it("heartbeats at the interval asked for", function()
    with_client({ heartbeat = 0.3 }, function(c)
      local states = {}
      c:on_state(function(s) states[#states + 1] = s end)
      until_true("connected", 5, function() return c.state == "connected" end)
      local first = device().heartbeats.count
      until_true("8 more heartbeats", 10, function() return device().heartbeats.count >= first + 8 end)
      -- arrival times at the cloud: each late by the load of the moment,
      -- but their median gap is the interval (twice it, or half, is a bug)
      local beats = device().heartbeats.recent
      local gaps = {}
      for i = #beats - 6, #beats do gaps[#gaps + 1] = beats[i] - beats[i - 1] end
      table.sort(gaps)
      local median = gaps[4]
      assert.is_true(median > 0.2 and median < 0.45,
        ("median heartbeat gap %.3f s for a 0.3 s interval"):format(median))
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
      -- a wrong key, a command for another device with our key, then a good one
      send({ raw = ID .. ",WRONGKEY1,5,LED,1\n" .. "Other7," .. KEY .. ",5,LED,1\n" .. p .. "6,LED,1\n" })
      until_true("after the wrong key", 3, function() return #got >= 6 end)
      assert.are.same({ "LED=1", "LED=0", "GPS=25.03,121.56,10", "*PWM=128,20", "*X=1", "LED=1" }, got)
      assert.are.equal(2, c.ignored)
      -- newline-terminated from here on: a 0.5 s pause inside a command
      -- (a retransmission) does not cut it
      send({ raw = p .. "7,GPS,1,2,3\n", chunks = { 25 }, gap_ms = 500 })
      until_true("the paused command", 5, function() return #got >= 7 end)
      assert.are.equal("GPS=1,2,3", got[7])
    end)
  end)

  -- The other cases meet the default cloud, which ends commands with no
  -- terminator as MCS did; this one meets a cloud that ends them with "\n".
  it("takes FOTA pushes from a cloud that ends commands with a newline", function()
    cloud.stop()
    start_cloud(0, { "--newline" })
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
      assert.are.equal(1, c.transport_counters.cut_off)
      assert.are.equal("connected", c.state)
    end)
  end)

  it("uploads data points in batches of at most 5, and reports the version", function()
    local fw = fwdir .. "/src.hex"
    h.write(fw, ":00000001FF\n")
    admin("POST", "/firmwares", { version = "1.5", file = "src.hex" })
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
      admin("POST", "/firmwares", { version = "1.6", file = "src2.hex" })
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

  it("never prints the device key, not even quoting what the cloud sent", function()
    -- a device of its own: no earlier test has registered its key as a secret
    local id3, key3 = "Dev3cZ1q", "k3y-Of.Dev3+x"
    admin("POST", "/devices", { id = id3, key = key3 })
    local log = require "fotahost.log"
    local lines = {}
    log.configure({ sink = function(_, _, msg) lines[#lines + 1] = msg end, level = "debug" })
    local ok, err = pcall(function()
      with_client({ device_id = id3, device_key = key3 }, function(c)
        until_true("connected", 5, function() return admin("GET", "/devices/" .. id3).connected end)
        -- malformed (no channel): the client says how long it is and what is wrong
        admin("POST", "/devices/" .. id3 .. "/commands", { raw = id3 .. "," .. key3 .. ",1,,on\n" })
        until_true("the malformed command", 3, function() return c.ignored == 1 end)
      end)
      -- a wrong key: the cloud's refusal is logged
      with_client({ device_id = id3, device_key = key3 .. "X" }, function(c)
        until_true("a failed attempt", 5, function() return c.failures >= 1 end)
      end)
    end)
    log.configure({ sink = "stderr", level = "info" })
    assert(ok, err)
    local all = table.concat(lines, "\n")
    assert.matches("ignored a command of 28 bytes: no channel", all)
    assert.matches("HTTP 401", all)
    assert.is_nil(all:find(key3, 1, true))
    assert.is_nil(all:find("k3y", 1, true))
  end)

  it("reconnects after the cloud is killed, with growing delays, within the cap, then starts over", function()
    local port = cloud.port
    with_client({ backoff_base = 0.2, backoff_cap = 1.5, stable_after = 0.5 }, function(c)
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
      -- connected longer than stable_after: the next drop is retried at
      -- the first delay again, not at the cap the outage reached
      sched.sleep(0.7)
      local before = #retries
      admin("POST", "/devices/" .. ID .. "/disconnect", {})
      until_true("the retry after the drop", 5, function() return #retries > before end)
      assert.is_true(retries[before + 1] <= 0.2,
        ("first delay after a stable connection: %.2f s"):format(retries[before + 1]))
    end)
  end)

  -- (a reader the handler held would take none of the commands, or take
  -- them only once the handler returned; heartbeats come from a task of
  -- their own, but a blocked loop would stop them too)
  it("keeps heartbeats and commands going while a handler sleeps 10 s", function()
    with_client({ heartbeat = 0.5 }, function(c)
      local slow_done, fast = false, 0
      c:on("SLOW", function() sched.sleep(10) slow_done = true end)
      c:on("FAST", function() fast = fast + 1 end)
      until_true("connected", 5, function() return device().connected end)
      send({ channel = "SLOW", value = "1" })
      local before = device().heartbeats.count
      local t0 = sched.now()
      while sched.now() - t0 < 6 do
        send({ channel = "FAST", value = "1" })
        sched.sleep(0.6)
      end
      local d = device()
      assert.is_false(slow_done, "the slow handler ended early")
      assert.is_true(d.heartbeats.count - before >= 8, ("heartbeats during the handler: %d")
        :format(d.heartbeats.count - before))
      assert.is_true(fast >= 8, "fast commands handled while the slow one slept: " .. fast)
      until_true("the slow handler", 8, function() return slow_done end)
    end)
  end)

  it("runs handlers from a bounded queue: a burst past it is dropped, counted, and said in one line", function()
    local log = require "fotahost.log"
    local lines = {}
    log.configure({ sink = function(_, _, msg) lines[#lines + 1] = msg end, level = "info" })
    local ok, err = pcall(function()
      with_client({ max_handlers = 2, max_pending = 10 }, function(c)
        local release, ran = false, 0
        c:on("SLOW", function()
          while not release do sched.sleep(0.01) end
          ran = ran + 1
        end)
        until_true("connected", 5, function() return device().connected end)
        local p, raw = ID .. "," .. KEY .. ",", {}
        for i = 1, 500 do raw[i] = p .. i .. ",SLOW," .. i end
        send({ raw = table.concat(raw) })
        until_true("the drop summary", 10, function()
          return table.concat(lines, "\n"):find("commands dropped", 1, true)
        end)
        assert.are.equal(488, c.dropped) -- 2 running, 10 waiting
        release = true
        until_true("the waiting ones handled", 10, function() return ran == 12 end)
        sched.sleep(0.1)
        assert.are.equal(12, ran)
      end)
    end)
    log.configure({ sink = "stderr", level = "info" })
    assert(ok, err)
    local drops = {}
    for _, l in ipairs(lines) do if l:find("dropped", 1, true) then drops[#drops + 1] = l end end
    assert.are.same({ "488 commands dropped: they came faster than the handlers took them (max_pending 10)" }, drops)
  end)

  it("logs a failing handler and goes on", function()
    local log = require "fotahost.log"
    local errors = {}
    log.configure { sink = function(level, comp, msg)
      if level == "error" then errors[#errors + 1] = comp .. ": " .. msg end
    end }
    local ok, err = pcall(with_client, {}, function(c)
      local handled = 0
      c:on("BAD", function() error("handler bug") end)
      c:on("OK", function() handled = handled + 1 end)
      until_true("connected", 5, function() return device().connected end)
      send({ channel = "BAD", value = "1" })
      send({ channel = "OK", value = "1" })
      until_true("the next command", 3, function() return handled == 1 end)
      assert.are.equal("connected", c.state)
    end)
    log.configure { sink = "stderr" }
    assert(ok, err)
    assert.are.equal(1, #errors, table.concat(errors, "\n"))
    assert.matches("^mcs: the BAD handler failed: spec/mcs_spec%.lua:%d+: handler bug\nstack traceback:", errors[1])
  end)

  it("refuses bad registrations clearly", function()
    sched.run(function()
      assert.has_error(function() mcs.register({ device_id = "a,b", device_key = KEY }) end,
        'mcs.register: device_id must be a non-empty string without commas, spaces or slashes, got "a,b"')
      assert.has_error(function() mcs.register({ device_id = ID, device_key = KEY, heartbeat = 0 }) end,
        "mcs.register: heartbeat must be a number > 0, got 0")
      assert.has_error(function() mcs.register({ device_id = ID, device_key = KEY, api = "ftp://x" }) end,
        "mcs.register: api must be an http:// or https:// URL, got ftp://x")
    end)
    assert.has_error(function() mcs.register({ device_id = ID, device_key = KEY }) end,
      "mcs.register: call it inside sched.run (the client runs as scheduler tasks)")
  end)

  it("drops a data point the cloud refuses and goes on with the next", function()
    with_client({}, function(c)
      c:emit("refusal", "1", -5) -- a negative timestamp: the cloud answers 400
      assert.is_true(c:flush(5))
      assert.are.equal(1, c.points_dropped)
      c:emit("refusal", "2")
      assert.is_true(c:flush(5))
    end)
    local points = device().datapoints.refusal
    assert.are.equal(1, #points)
    assert.are.equal("2", points[1].values.value)
  end)

  it("keeps the newest max_queue data points while the cloud is down, and sends them when it is back", function()
    local port = cloud.port
    local log = require "fotahost.log"
    local failed_sends = 0
    log.configure { sink = function(level, comp, msg)
      if msg:find("data points not sent", 1, true) then failed_sends = failed_sends + 1 end
      io.stderr:write(level, " ", comp, ": ", msg, "\n")
    end }
    local ok, err = pcall(with_client, { max_queue = 3, backoff_base = 0.2, backoff_cap = 0.4 }, function(c)
      until_true("connected", 5, function() return c.state == "connected" end)
      cloud.stop()
      c:emit("queued", 1)
      until_true("a send that failed", 5, function() return failed_sends >= 1 end)
      for i = 2, 10 do c:emit("queued", i) end
      start_cloud(port)
      assert.is_true(c:flush(10))
    end)
    log.configure { sink = "stderr" }
    assert(ok, err)
    local got = {}
    for i, p in ipairs(device().datapoints.queued) do got[i] = p.values.value end
    assert.are.same({ "8", "9", "10" }, got)
  end)

  it("with dead_peer, reconnects when the cloud is silent that long, and not while it talks", function()
    with_client({ dead_peer = 1.5, heartbeat = 30 }, function(c)
      local drops = {}
      c:on_state(function(s, why) if s == "disconnected" then drops[#drops + 1] = why end end)
      c:on("TICK", function() end)
      until_true("connected", 5, function() return c.state == "connected" and device().connected end)
      local t0 = sched.now()
      while sched.now() - t0 < 3.5 do
        send({ channel = "TICK", value = "1" })
        sched.sleep(0.25)
      end
      assert.are.same({}, drops)
      until_true("a drop for silence", 5, function() return #drops > 0 end)
      assert.matches("nothing heard for 1%.5 s$", drops[1])
    end)
  end)

  it("stops on SIGTERM while a command handler is busy, instead of calling it the handler's failure", function()
    local dir = h.tmpdir()
    h.write(dir .. "/app.lua", ([[
      local sched = require "fotahost.sched"
      local mcs = require "fotahost.mcs"
      sched.run(function()
        local c = mcs.register { device_id = %q, device_key = %q, api = %q, heartbeat = 0.5 }
        c:on("SPIN", function()
          io.open(%q, "w"):close()
          local n = 0
          while true do n = n + 1 end -- busy: checking an image, say
        end)
        sched.sleep(30)
      end)
    ]]):format(ID, KEY, cloud.url, dir .. "/ready"))
    os.execute(("(%s %s > %s/out 2> %s/err & echo $! > %s/pid; wait $!; echo $? > %s/status) &")
      :format(h.q(h.bin), h.q(dir .. "/app.lua"), h.q(dir), h.q(dir), h.q(dir), h.q(dir)))
    local ok, err = pcall(sched.run, function()
      local pid
      until_true("the app's pid", 5, function() pid = tonumber(h.read(dir .. "/pid") or "") return pid end)
      until_true("the app connected", 10, function() return device().connected end)
      send({ channel = "SPIN", value = "1" })
      until_true("the handler running", 10, function() return h.read(dir .. "/ready") end)
      os.execute("kill -TERM " .. math.tointeger(pid))
      until_true("the app to exit", 10, function() return h.read(dir .. "/status") end)
      local stderr = h.read(dir .. "/err")
      assert.are.equal(143, tonumber(h.read(dir .. "/status")), stderr)
      assert.matches("interrupted %(SIGTERM%)", stderr)
      assert.is_nil(stderr:find("handler failed", 1, true), stderr)
    end)
    local pid = tonumber(h.read(dir .. "/pid") or "")
    if pid and not h.read(dir .. "/status") then
      os.execute("kill -KILL " .. math.tointeger(pid))
      sched.run(function() pcall(until_true, "the app killed", 5, function() return h.read(dir .. "/status") end) end)
    end
    h.rmdir(dir)
    assert(ok, err)
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

describe("fotahost.mcs and a misbehaving server", function()
  it("follows no redirect from the API: the device key stays with the cloud", function()
    local dir = h.tmpdir()
    local srv = h.start_server({ "spec/support/http_test_server.lua", "--root", dir, "--log", dir .. "/requests.log" })
    local ok, err = pcall(sched.run, function()
      -- every device call is sent on (307 keeps the method and body) to /elsewhere
      local api = srv.url .. "/redirect?code=307&to=" .. srv.url .. "/elsewhere"
      local c = mcs.register { device_id = ID, device_key = KEY, api = api,
                               transport = { session = function() sched.sleep(60) end } }
      local _ <close> = setmetatable({}, { __close = function() c:close() end })
      local res, why, code = c:report_version("1.0")
      assert.is_nil(res)
      assert.are.equal(307, code)
      assert.matches("HTTP 307", why)
    end)
    srv.stop()
    local requests = h.read(dir .. "/requests.log") or ""
    h.rmdir(dir)
    assert(ok, err)
    assert.matches("^PUT /redirect", requests)
    assert.is_nil(requests:find("%u+ /elsewhere"), requests) -- nothing was sent where it points
  end)

  -- A cloud process that hangs (stopped: it no longer reads) stops
  -- acknowledging what the device sends. The device must notice from its
  -- own heartbeats going unacknowledged (2 heartbeats + 10 s), not wait
  -- for TCP's ~15 minutes or a write timeout: the long key and the short
  -- interval fill the stopped cloud's receive window in a second or two.
  it("notices a hung cloud within 2 heartbeats + 10 s of unacknowledged heartbeats", function()
    local fwdir = h.tmpdir()
    local key = ("L"):rep(1000)
    local cloud = h.start_server({ "cloud", "serve", "--port", "0", "--tcp-port", "0", "--device", ID .. ":" .. key,
      "--firmware-dir", fwdir, "--watch-stdin" }, { ready = "cloud http://(%S+):(%d+) tcp" })
    local stopped_at, dropped_at, why
    local ok, err = pcall(sched.run, function()
      local c = mcs.register { device_id = ID, device_key = key, api = cloud.url, heartbeat = 0.01,
                               heartbeat_newline = true, write_timeout = 120 }
      local _ <close> = setmetatable({}, { __close = function() c:close() end })
      c:on_state(function(s, d)
        if s == "disconnected" and stopped_at and not dropped_at then dropped_at, why = sched.now(), d end
      end)
      local deadline = sched.now() + 10
      while c.state ~= "connected" do
        assert(sched.now() < deadline, "the device never connected")
        sched.sleep(0.02)
      end
      os.execute("kill -STOP " .. cloud.pid)
      stopped_at = sched.now()
      while not dropped_at and sched.now() - stopped_at < 25 do sched.sleep(0.1) end
    end)
    os.execute("kill -CONT " .. cloud.pid)
    cloud.stop()
    h.rmdir(fwdir)
    assert(ok, err)
    assert.is_not_nil(dropped_at, "still connected to the hung cloud 25 s later")
    assert.matches(h.literal(h.strerror.ETIMEDOUT), why)
  end)
end)
