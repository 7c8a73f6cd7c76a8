-- The local cloud's web console, its server side (issue 17): the page
-- and its files at / with the security headers, the Host check (a DNS
-- rebinding page gets 421), cross-site requests refused (Origin,
-- Sec-Fetch-Site), and /admin/events, the long poll the page follows:
-- it returns when a device sends a data point, pages with since=N, says
-- reset when N is older than its ring, and never shows a device key.
-- The cloud runs as a process of its own (`fotahost cloud serve`); every
-- request is written by hand over TCP, so the Host and the method are
-- exactly what a browser or a tool would send.
local h = require "helper"
local tcp = require "fotahost.tcp"
local sched = require "fotahost.sched"
local poll_mod = require "fotahost.poll"
local cjson = require "cjson"
local mcs_cloud = require "fotahost.mcs_cloud"

local fmt = string.format
local ID, KEY = "Con1xQ7w", "Vh3kP9sLm2Nb8RtY"

local dir, cloud, port, tcp_port, token

-- Reads an HTTP answer to its end (the request said Connection: close):
-- { status, headers (lower-case names), body }.
local function read_answer(s, timeout)
  local deadline = sched.now() + timeout
  local chunks = {}
  while true do
    local left = deadline - sched.now()
    assert(left > 0, "no whole answer within " .. timeout .. " s: " .. table.concat(chunks))
    local data, why = s:read_some(65536, left)
    if data then
      chunks[#chunks + 1] = data
    elseif why == "closed" then
      break
    end
  end
  local text = table.concat(chunks)
  local head, body = text:match("^(.-)\r\n\r\n(.*)$")
  assert(head, "not an HTTP answer: " .. text)
  local status = math.tointeger(tonumber(head:match("^HTTP/1%.%d (%d+)")))
  local headers = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+): ([^\r\n]*)") do headers[name:lower()] = value end
  return { status = status, headers = headers, body = body }
end

-- One request on a connection of its own. `headers`: what to send besides
-- Host (127.0.0.1:PORT unless headers.Host says otherwise; false: none).
-- @return the answer (read_answer), and the seconds it took
local function request(method, path, headers, body, timeout)
  local s <close> = assert(tcp.connect("127.0.0.1", port, 5))
  headers = headers or {}
  local lines = { fmt("%s %s HTTP/1.1", method, path), "Connection: close" }
  local host = headers.Host == nil and fmt("127.0.0.1:%d", port) or headers.Host
  if host then lines[#lines + 1] = "Host: " .. host end
  for name, value in pairs(headers) do
    if name ~= "Host" then lines[#lines + 1] = name .. ": " .. value end
  end
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  local t0 = sched.now()
  assert(s:write(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or ""), 5))
  local answer = read_answer(s, timeout or 20)
  return answer, sched.now() - t0
end

local function authed(headers)
  local t = { Authorization = "Bearer " .. token }
  for k, v in pairs(headers or {}) do t[k] = v end
  return t
end

local function admin(method, path, value)
  local body = value and cjson.encode(value)
  local r = request(method, "/admin" .. path, authed(body and { ["Content-Type"] = "application/json" }), body)
  assert(r.status < 300, fmt("%s %s: %d %s", method, path, r.status, r.body))
  return cjson.decode(r.body)
end

local function events(query, timeout)
  local r, took = request("GET", "/admin/events?" .. query, authed(), nil, timeout)
  assert.are.equal(200, r.status, r.body)
  return cjson.decode(r.body), took
end

-- A data point from the device, as its REST client sends one.
local function send_point(channel, value)
  local r = request("POST", fmt("/mcs/v2/devices/%s/datapoints.csv", ID),
    { deviceKey = KEY, ["Content-Type"] = "text/csv" }, fmt("%s,,%s", channel, value))
  assert.are.equal(200, r.status, r.body)
end

local SECURITY = {
  ["content-security-policy"] = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    .. "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; "
    .. "require-trusted-types-for 'script'; trusted-types 'none'",
  ["x-content-type-options"] = "nosniff",
  ["referrer-policy"] = "no-referrer",
  ["cache-control"] = "no-store",
  ["x-frame-options"] = "DENY",
}

local function assert_secured(r, what)
  for name, value in pairs(SECURITY) do assert.are.equal(value, r.headers[name], what .. ": " .. name) end
end

setup(function()
  dir = h.tmpdir()
  cloud = h.start_cloud(dir .. "/fw", 0, { "--device", ID .. ":" .. KEY })
  port = cloud.port
  tcp_port = math.tointeger(tonumber(cloud.out:match("tcp 127%.0%.0%.1:(%d+)")))
  token = assert(mcs_cloud.read_token(cloud.url))
end)

teardown(function()
  if cloud then cloud.stop() end
  if dir then h.rmdir(dir) end
end)

describe("the web console's files", function()
  local CONSOLE = h.top .. "/dev/scripts/fotahost/mcs_cloud/console/"

  it("are served at / and /console/ with their types and the security headers, HEAD too", function()
    for path, file in pairs({ ["/"] = "index.html", ["/console/console.js"] = "console.js",
                              ["/console/console.css"] = "console.css" }) do
      local r = request("GET", path)
      assert.are.equal(200, r.status, path)
      assert.are.equal(h.read(CONSOLE .. file), r.body, path)
      assert_secured(r, path)
      local head = request("HEAD", path)
      assert.are.equal(200, head.status, path)
      assert.are.equal("", head.body, path)
      assert.are.equal(tostring(#r.body), head.headers["content-length"], path)
      assert_secured(head, "HEAD " .. path)
    end
    assert.matches("^text/html", request("GET", "/").headers["content-type"])
    assert.matches("^text/javascript", request("GET", "/console/console.js").headers["content-type"])
    assert.matches("^text/css", request("GET", "/console/console.css").headers["content-type"])
  end)

  it("load no inline script or style, and nothing from elsewhere", function()
    local page = h.read(CONSOLE .. "index.html")
    assert.is_nil(page:find("<script>", 1, true))
    assert.is_nil(page:find("<style", 1, true))
    assert.is_nil(page:find(" style=", 1, true))
    assert.is_nil(page:find(" on%a+="))
    assert.is_nil(page:find("https?://"))
    assert.matches('<script src="/console/console.js" defer></script>', page, 1, true)
    local script = h.read(CONSOLE .. "console.js")
    assert.is_nil(script:find("innerHTML", 1, true))
    assert.is_nil(script:find("insertAdjacentHTML", 1, true))
  end)

  it("answer 404 with the headers for any other file under /console/", function()
    local r = request("GET", "/console/../../token")
    assert.are.equal(404, r.status)
    assert_secured(r, "404")
    assert.are.equal(404, request("GET", "/console/index.html.bak").status)
  end)
end)

describe("the Host check", function()
  it("answers 421 to a name the cloud does not listen on, for the console and the admin API", function()
    for _, path in ipairs({ "/", "/console/console.js", "/admin/devices" }) do
      local r = request("GET", path, authed({ Host = fmt("rebound.example:%d", port) }))
      assert.are.equal(421, r.status, path)
      assert.matches("does not answer to the name rebound%.example", cjson.decode(r.body).message)
      assert_secured(r, path)
    end
    -- the right name on another port is another site too
    assert.are.equal(421, request("GET", "/", { Host = fmt("127.0.0.1:%d", port + 1) }).status)
  end)

  it("serves the address and port it listens on, localhost on its port, and a tool that sends no Host", function()
    assert.are.equal(200, request("GET", "/").status)
    assert.are.equal(200, request("GET", "/", { Host = fmt("LOCALHOST:%d", port) }).status)
    assert.are.equal(200, request("GET", "/admin/devices", authed({ Host = false })).status)
  end)

  it("leaves the device API and firmware files to any name: devices use whatever they were given", function()
    local r = request("GET", fmt("/mcs/v2/devices/%s/connections", ID),
      { Host = "cloud.example.net", deviceKey = KEY })
    assert.are.equal(200, r.status, r.body)
    assert.is_nil(r.headers["content-security-policy"])
  end)
end)

describe("the admin API from a browser", function()
  it("refuses a request without the token (401), with the security headers", function()
    local r = request("GET", "/admin/events?wait=0")
    assert.are.equal(401, r.status)
    assert.matches("needs its token", cjson.decode(r.body).message)
    assert_secured(r, "401")
  end)

  it("refuses another site's page: a foreign Origin, or Sec-Fetch-Site cross-site, GET included", function()
    local r = request("GET", "/admin/devices", authed({ Origin = "http://evil.example" }))
    assert.are.equal(403, r.status)
    for _, site in ipairs({ "cross-site", "same-site" }) do
      r = request("GET", "/admin/devices", authed({ ["Sec-Fetch-Site"] = site }))
      assert.are.equal(403, r.status, site)
      assert.matches("no cross%-site requests %(Sec%-Fetch%-Site " .. h.literal(site) .. "%)",
        cjson.decode(r.body).message)
      assert_secured(r, site)
    end
  end)

  it("serves its own page's requests: same-origin, or typed in (none), from any of its names", function()
    for _, site in ipairs({ "same-origin", "none" }) do
      assert.are.equal(200, request("GET", "/admin/devices", authed({ ["Sec-Fetch-Site"] = site })).status, site)
    end
    local r = request("GET", "/admin/devices", authed({ Host = fmt("localhost:%d", port),
      Origin = fmt("http://localhost:%d", port), ["Sec-Fetch-Site"] = "same-origin" }))
    assert.are.equal(200, r.status, r.body)
    assert_secured(r, "/admin/devices")
  end)
end)

describe("/admin/events", function()
  it("answers at once with wait=0: the last seq and what came after since", function()
    local now = events("wait=0")
    assert.is_false(now.reset)
    send_point("temp", "21.5")
    local later = events("since=" .. now.seq .. "&wait=0")
    assert.are.equal(now.seq + 1, later.seq)
    assert.are.equal(1, #later.events)
    local ev = later.events[1]
    assert.are.same({ "point", ID, "temp", "21.5", later.seq },
      { ev.type, ev.device, ev.channel, ev.value, math.tointeger(ev.seq) })
    assert.is_true(math.abs(ev.at - os.time()) < 60)
    assert.are.same({}, events("since=" .. later.seq .. "&wait=0").events)
  end)

  it("long-polls: a request waiting for news returns when a device sends a data point", function()
    local since = events("wait=0").seq
    local s <close> = assert(tcp.connect("127.0.0.1", port, 5))
    assert(s:write(fmt("GET /admin/events?since=%d&wait=25 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
      .. "Authorization: Bearer %s\r\nConnection: close\r\n\r\n", since, port, token), 5))
    -- nothing happens: no answer (the request waits)
    local early, why = s:read_some(65536, 0.5)
    assert.are.same({ nil, "timeout" }, { early, why })
    local t0 = sched.now()
    send_point("fota_status", "downloading")
    local r = read_answer(s, h.wait_limit(20))
    assert.is_true(sched.now() - t0 < 15, "the long poll did not wake")
    local doc = cjson.decode(r.body)
    assert.are.equal(1, #doc.events)
    assert.are.same({ "point", "fota_status", "downloading" }, { doc.events[1].type, doc.events[1].channel,
      doc.events[1].value })
  end)

  it("records a device's connection, heartbeats and version, and firmwares with their size", function()
    local since = events("wait=0").seq
    local dev <close> = assert(tcp.connect("127.0.0.1", tcp_port, 5))
    assert(dev:write(fmt("%s,%s,0\n", ID, KEY), 5))
    local fw = admin("POST", "/firmwares", { version = "2.0", name = "app.hex", content = ":00000001FF\n" })
    assert.are.equal(12, fw.size)
    assert.are.equal(12, admin("GET", "/firmwares").firmwares[1].size)
    local r = request("PUT", fmt("/mcs/v2/devices/%s/firmwares", ID),
      { deviceKey = KEY, ["Content-Type"] = "application/json" }, '{"version":"2.0"}')
    assert.are.equal(200, r.status, r.body)
    local seen = {}
    local deadline = sched.now() + h.wait_limit(20)
    while not (seen.device and seen.heartbeat and seen.firmware and seen.version) do
      assert(sched.now() < deadline, "events missing: " .. cjson.encode(seen))
      local doc = events("since=" .. since .. "&wait=5")
      for _, ev in ipairs(doc.events) do seen[ev.type] = ev end
      since = doc.seq
    end
    assert.are.same({ ID, true, "tcp" }, { seen.device.device, seen.device.connected, seen.device.transport })
    assert.matches("^127%.0%.0%.1:%d+$", seen.device.peer)
    assert.are.equal(ID, seen.heartbeat.device)
    assert.are.equal("2.0", seen.firmware.version)
    assert.are.same({ ID, "2.0" }, { seen.version.device, seen.version.version })
    dev:close()
    local gone
    deadline = sched.now() + h.wait_limit(20)
    repeat
      assert(sched.now() < deadline, "no disconnection event")
      local doc = events("since=" .. since .. "&wait=5")
      for _, ev in ipairs(doc.events) do
        if ev.type == "device" and ev.connected == false then gone = ev end
      end
      since = doc.seq
    until gone
    assert.are.equal(ID, gone.device)
  end)

  it("shows a command's channel and a push's version, never the line: it holds the device key", function()
    local since = events("wait=0").seq
    local dev <close> = assert(tcp.connect("127.0.0.1", tcp_port, 5))
    assert(dev:write(fmt("%s,%s,0\n", ID, KEY), 5))
    local deadline = sched.now() + h.wait_limit(20)
    while not admin("GET", "/devices/" .. ID).connected do
      assert(sched.now() < deadline, "the device did not connect")
      events("since=" .. events("wait=0").seq .. "&wait=1")
    end
    admin("POST", "/firmwares", { version = "2.1", name = "app21.hex", content = ":00000001FF\n" })
    admin("POST", "/devices/" .. ID .. "/fota", { version = "2.1" })
    admin("POST", "/devices/" .. ID .. "/commands", { channel = "LED", value = "1" })
    local r = request("GET", "/admin/events?since=" .. since .. "&wait=0", authed())
    assert.is_nil(r.body:find(KEY, 1, true), r.body)
    local commands = {}
    for _, ev in ipairs(cjson.decode(r.body).events) do
      if ev.type == "command" then commands[#commands + 1] = ev end
    end
    assert.are.equal(2, #commands)
    assert.are.same({ ID, "FOTA", "2.1", "tcp" }, { commands[1].device, commands[1].channel, commands[1].version,
      commands[1].via })
    assert.are.same({ "LED" }, { commands[2].channel, commands[2].version })
  end)

  it("sends every change of a rollout, not only a new state: a push while it stays running", function()
    admin("POST", "/firmwares", { version = "3.0", name = "app30.hex", content = ":00000001FF\n" })
    admin("POST", "/firmwares", { version = "3.1", name = "app31.hex", content = ":00000001FF\n" })
    admin("POST", "/rollout", { firmware = "3.1", devices = { ID }, canary = 0, batch = 100 })
    finally(function() admin("POST", "/rollout/abort", {}) end)
    local since = events("wait=0").seq
    -- the device comes and reports its version: the rollout pushes to it
    local dev <close> = assert(tcp.connect("127.0.0.1", tcp_port, 5))
    assert(dev:write(fmt("%s,%s,0\n", ID, KEY), 5))
    local r = request("PUT", fmt("/mcs/v2/devices/%s/firmwares", ID),
      { deviceKey = KEY, ["Content-Type"] = "application/json" }, '{"version":"3.0"}')
    assert.are.equal(200, r.status, r.body)
    local seen
    local deadline = sched.now() + h.wait_limit(20)
    repeat
      assert(sched.now() < deadline, "no rollout event for the push")
      local doc = events("since=" .. since .. "&wait=5")
      for _, ev in ipairs(doc.events) do
        if ev.type == "rollout" then seen = ev end
      end
      since = doc.seq
    until seen
    assert.are.same({ "3.1", "running" }, { seen.firmware, seen.state })
    assert.are.equal("pushed", admin("GET", "/rollout").batches[1].devices[1].state)
  end)

  it("pages with since=N, and says reset (giving the whole ring) when N is older than the ring or unknown", function()
    local n = 1005
    -- five a request (the MCS limit): 201 requests
    for i = 1, n, 5 do
      local lines = {}
      for k = i, math.min(i + 4, n) do lines[#lines + 1] = "count,," .. k end
      local r = request("POST", fmt("/mcs/v2/devices/%s/datapoints.csv", ID),
        { deviceKey = KEY, ["Content-Type"] = "text/csv" }, table.concat(lines, "\n"))
      assert.are.equal(200, r.status, r.body)
    end
    local last = events("wait=0").seq
    local page = events("since=" .. (last - 3) .. "&wait=0")
    assert.is_false(page.reset)
    assert.are.same({ "1003", "1004", "1005" }, { page.events[1].value, page.events[2].value, page.events[3].value })
    -- the ring holds the last 1000: since=last-1000 still pages, one less is a reset
    page = events("since=" .. (last - 1000) .. "&wait=0")
    assert.is_false(page.reset)
    assert.are.equal(1000, #page.events)
    page = events("since=" .. (last - 1001) .. "&wait=0")
    assert.is_true(page.reset)
    assert.are.equal(1000, #page.events)
    assert.are.equal(last - 999, math.tointeger(page.events[1].seq))
    -- a seq from before a restart (ahead of this cloud's) is a reset too
    page = events("since=" .. (last + 50) .. "&wait=0")
    assert.is_true(page.reset)
    assert.are.equal(last, math.tointeger(page.seq))
  end)

  it("refuses a data channel id over 64 bytes, CSV or JSON, and an event never names a longer one", function()
    local long = string.rep("c", 65)
    local r = request("POST", fmt("/mcs/v2/devices/%s/datapoints.csv", ID),
      { deviceKey = KEY, ["Content-Type"] = "text/csv" }, long .. ",,1")
    assert.are.equal(400, r.status, r.body)
    assert.matches("line 1: data channel id of 65 bytes %(at most 64%)", cjson.decode(r.body).message)
    local doc = { datapoints = { { dataChnId = long, values = { value = "1" } } } }
    r = request("POST", fmt("/mcs/v2/devices/%s/datapoints", ID), { deviceKey = KEY,
      ["Content-Type"] = "application/json" }, cjson.encode(doc))
    assert.are.equal(400, r.status, r.body)
    assert.matches("datapoints%[1%]: data channel id of 65 bytes %(at most 64%)", cjson.decode(r.body).message)
    local since = events("wait=0").seq
    send_point(string.rep("c", 64), "1")
    assert.are.equal(string.rep("c", 64), events("since=" .. since .. "&wait=0").events[1].channel)
    -- whatever way in lets a longer one through, its event is cut
    local c = assert(mcs_cloud.new {})
    finally(function() c:remove_temp_dir() end)
    c:emit_point({ id = ID }, string.rep("x", 100000), 1, { value = "1" })
    local list = c:events_since(0)
    assert.are.equal(string.rep("x", 64), list[#list].channel)
  end)

  it("refuses a since or wait that is no count of events or seconds", function()
    for _, q in ipairs({ "since=-1", "since=abc", "wait=26", "wait=-1", "wait=1.5" }) do
      local r = request("GET", "/admin/events?" .. q, authed())
      assert.are.equal(400, r.status, q)
      assert.matches("expected", cjson.decode(r.body).message, 1, true)
    end
  end)
end)

describe("the devices as the console loads them", function()
  it("GET /admin/devices says the last event it includes (seq): the page follows on from there", function()
    send_point("seqtest", "1")
    local before = events("wait=0").seq
    local doc = admin("GET", "/devices")
    local after = events("wait=0").seq
    assert.is_true(before <= doc.seq and doc.seq <= after, cjson.encode({ before, doc.seq, after }))
    local points = doc.devices[1].datapoints.seqtest
    assert.are.equal("1", points[#points].values.value)
  end)

  it("GET /admin/devices/ID?recent=N gives the last N points per channel; every one kept without it", function()
    for i = 1, 3 do send_point("recent", tostring(i)) end
    assert.are.equal(3, #admin("GET", "/devices/" .. ID).datapoints.recent)
    local last2 = admin("GET", "/devices/" .. ID .. "?recent=2").datapoints.recent
    assert.are.same({ "2", "3" }, { last2[1].values.value, last2[2].values.value })
    assert.are.same({}, admin("GET", "/devices/" .. ID .. "?recent=0").datapoints.recent)
    for _, bad in ipairs({ "-1", "x", "1.5", "", "1e3" }) do
      local r = request("GET", "/admin/devices/" .. ID .. "?recent=" .. bad, authed())
      assert.are.equal(400, r.status, bad)
      assert.matches("a count of data points expected", cjson.decode(r.body).message, 1, true)
    end
  end)
end)

describe("hostile numbers from a device", function()
  local function post_json(body)
    return request("POST", fmt("/mcs/v2/devices/%s/datapoints", ID),
      { deviceKey = KEY, ["Content-Type"] = "application/json" }, body)
  end

  it("refuses a number that is not finite, or values nested too deep: no point locks the admin API", function()
    local cases = {
      ['{"datapoints":[{"dataChnId":"fota_status","values":{"value":"x","e":1e999}}]}'] = "not finite",
      ['{"datapoints":[{"dataChnId":"temp","values":{"a":-1e999}}]}'] = "not finite",
      ['{"datapoints":[{"dataChnId":"temp","values":{"a":NaN}}]}'] = "not finite",
      ['{"datapoints":[{"dataChnId":"temp","values":{"a":' .. string.rep("[", 40) .. string.rep("]", 40) .. '}}]}']
        = "nested deeper than 32 levels",
    }
    local since = events("wait=0").seq
    for body, why in pairs(cases) do
      local r = post_json(body)
      assert.are.equal(400, r.status, body)
      assert.matches(why, cjson.decode(r.body).message, 1, true)
    end
    assert.are.equal(200, post_json('{"datapoints":[{"dataChnId":"temp","values":{"a":1e300}}]}').status)
    -- the console still reads everything
    assert.are.equal(ID, admin("GET", "/devices").devices[1].id)
    assert.are.equal(ID, admin("GET", "/devices/" .. ID).id)
    local list = events("since=" .. since .. "&wait=0").events
    assert.are.same({ 1, "temp", '{"a":1e+300}' }, { #list, list[1].channel, list[1].value })
  end)

  it("shows a number no JSON can carry as null, should one be stored", function()
    local c = assert(mcs_cloud.new {})
    finally(function() c:remove_temp_dir() end)
    local dev = assert(c:add_device("inf1", "key12345"))
    c:store_point(dev, "x", nil, { a = 1 / 0, b = 0 / 0 })
    local shown = cjson.decode(require("fotahost.mcs_cloud.common").encode(c:device_json(dev)))
    assert.are.same({ a = cjson.null, b = cjson.null }, shown.datapoints.x[1].values)
    local list = c:events_since(0)
    assert.are.same({ a = cjson.null, b = cjson.null }, cjson.decode(list[#list].value))
  end)
end)

describe("the Host rule", function()
  -- A cloud made, not started: the rule needs only what it listens on.
  local function cloud_on(host, public_url)
    local c = assert(mcs_cloud.new { host = host, port = 8080, public_url = public_url })
    c.port = 8080
    finally(function() c:remove_temp_dir() end)
    return c
  end

  local function check(c, cases)
    for value, allowed in pairs(cases) do
      assert.are.equal(allowed, c:host_allowed(value), value)
    end
  end

  it("on loopback: its address and port, or localhost on its port", function()
    check(cloud_on("127.0.0.1"), {
      ["127.0.0.1:8080"] = true, ["localhost:8080"] = true, ["LocalHost:8080"] = true,
      ["127.0.0.1:8081"] = false, ["127.0.0.1"] = false, ["127.0.0.2:8080"] = false, ["[::1]:8080"] = false,
      ["rebound.example:8080"] = false, ["localhost.rebound.example:8080"] = false,
      ["127.0.0.1:8080@evil"] = false, ["evil 127.0.0.1:8080"] = false, [""] = false,
    })
    check(cloud_on("::1"), { ["[::1]:8080"] = true, ["localhost:8080"] = true, ["127.0.0.1:8080"] = false })
    assert.is_true(cloud_on("127.0.0.1"):host_allowed(nil))
  end)

  it("on every address: any IP address with its port, or localhost; never a name", function()
    check(cloud_on("0.0.0.0"), {
      ["192.168.1.10:8080"] = true, ["[fe80::1]:8080"] = true, ["localhost:8080"] = true,
      ["192.168.1.10:9"] = false, ["board.lan:8080"] = false, ["10.0.0.1.nip.io:8080"] = false,
    })
  end)

  it("the public URL's host, its port the URL's scheme's when none is given", function()
    check(cloud_on("127.0.0.1", "https://cloud.example.org/"), {
      ["cloud.example.org"] = true, ["cloud.example.org:443"] = true, ["Cloud.Example.org"] = true,
      ["cloud.example.org:8080"] = false, ["other.example.org"] = false, ["127.0.0.1:8080"] = true,
    })
    check(cloud_on("0.0.0.0", "http://fleet.lan:9000"), {
      ["fleet.lan:9000"] = true, ["fleet.lan"] = false, ["fleet.lan:8080"] = false, ["10.1.2.3:8080"] = true,
    })
  end)

  it("takes a page's Origin as its own when it is http:// and the Host the Host check let through", function()
    local c = cloud_on("0.0.0.0")
    c.url = "http://0.0.0.0:8080"
    local function foreign(origin, host)
      return c:foreign_origin({ headers = { origin = origin, host = host } })
    end
    assert.is_false(foreign("http://192.168.1.10:8080", "192.168.1.10:8080"))
    assert.is_true(foreign("http://evil.example:8080", "192.168.1.10:8080"))
    assert.is_true(foreign("http://evil.example:8080", "evil.example:8080"))
  end)
end)

describe("long polls and the connection slots", function()
  -- A cloud of its own with four slots: long polls may hold two of them.
  local busy, bdir
  setup(function()
    bdir = h.tmpdir()
    busy = h.start_cloud(bdir .. "/fw", 0, { "--device", ID .. ":" .. KEY, "--max-connections", "4" })
  end)
  teardown(function()
    if busy then busy.stop() end
    if bdir then h.rmdir(bdir) end
  end)

  -- A request to the busy cloud on a connection of its own, left open.
  local function send(path, headers)
    local s = assert(tcp.connect("127.0.0.1", busy.port, 5))
    local lines = { "GET " .. path .. " HTTP/1.1", fmt("Host: 127.0.0.1:%d", busy.port), "Connection: close" }
    for name, value in pairs(headers) do lines[#lines + 1] = name .. ": " .. value end
    assert(s:write(table.concat(lines, "\r\n") .. "\r\n\r\n", 5))
    return s
  end

  local function poll(since)
    local btoken = assert(mcs_cloud.read_token(busy.url))
    return send(fmt("/admin/events?since=%d&wait=25", since), { Authorization = "Bearer " .. btoken })
  end

  local function last_seq()
    local s <close> = poll(1 << 40) -- ahead of the ring: a reset, answered at once
    return math.tointeger(cjson.decode(read_answer(s, 10).body).seq)
  end

  local function device_request()
    local s <close> = send(fmt("/mcs/v2/devices/%s/connections", ID), { deviceKey = KEY })
    return read_answer(s, 10)
  end

  it("ends a poll whose client went away at once, freeing its slot for a device", function()
    local since = last_seq()
    local polls = { poll(since), poll(since) }
    -- the other two slots: connections that send nothing yet
    local idle = { assert(tcp.connect("127.0.0.1", busy.port, 5)), assert(tcp.connect("127.0.0.1", busy.port, 5)) }
    finally(function()
      for _, s in ipairs(polls) do s:close() end
      for _, s in ipairs(idle) do s:close() end
    end)
    assert.are.equal(503, device_request().status, "the polls and the idle connections hold every slot")
    -- the page reloads: its polls' clients close their side
    for _, s in ipairs(polls) do
      local t0 = sched.now()
      s:shutdown("w")
      -- the cloud answers and closes: well before the poll's 25 s
      local r = read_answer(s, 15)
      assert.are.equal(200, r.status, r.body)
      assert.is_true(sched.now() - t0 < 15)
    end
    local r = device_request()
    assert.are.equal(200, r.status, r.body)
  end)

  it("answers a poll at once past the waiters' cap (half the slots): the rest stay for devices", function()
    local since = last_seq()
    local polls = { poll(since), poll(since), poll(since) }
    finally(function() for _, s in ipairs(polls) do s:close() end end)
    -- two wait; whichever came last is answered at once
    local watch <close> = assert(poll_mod.new())
    for _, s in ipairs(polls) do assert(watch:add(s:fd(), true, false)) end
    local fd = watch:wait(15)
    assert.truthy(fd, "every poll waited")
    for _, s in ipairs(polls) do
      if s:fd() == fd then
        local r = read_answer(s, 5)
        assert.are.same({ 200, since }, { r.status, math.tointeger(cjson.decode(r.body).seq) })
      end
    end
    assert.are.equal(200, device_request().status)
  end)
end)
