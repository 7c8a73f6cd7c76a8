-- fotahost.httpd in this process (server and a raw client on
-- fotahost.tcp, both under sched.run), then the fault-injecting test
-- server (spec/support/http_test_server.lua) as a process of its own,
-- driven by curl.
local httpd = require "fotahost.httpd"
local sched = require "fotahost.sched"
local tcp = require "fotahost.tcp"
local log = require "fotahost.log"
local cjson = require "cjson"
local h = require "helper"

local T = 5 -- seconds any single wait of the client may take

-- Runs `fn(srv)` in a scheduler next to a server answering with `handler`
-- (`opts` are more listen options); returns what fn returns.
local function with_server(handler, opts, fn)
  if fn == nil then opts, fn = {}, opts end
  return sched.run(function()
    local o = { handler = handler }
    for k, v in pairs(opts) do o[k] = v end
    local srv <close> = assert(httpd.listen(o))
    return fn(srv)
  end)
end

local function connect(srv)
  return assert(tcp.connect("127.0.0.1", srv.port, T))
end

-- Reads one response: { status = n, headers = { lower-case = value }, body }.
-- The body is read by Content-Length, or up to the end of the connection;
-- `head_only` (a HEAD request) reads none.
local function read_response(sock, head_only)
  local line, why = sock:read_line(T)
  if not line then return nil, why end
  local r = { status = math.tointeger(tonumber(line:match("^HTTP/1%.1 (%d%d%d) "))), headers = {} }
  while true do
    line = assert(sock:read_line(T))
    if line == "" then break end
    local k, v = line:match("^([^:]+): (.*)$")
    r.headers[k:lower()] = v
  end
  local n = tonumber(r.headers["content-length"])
  if head_only or r.status == 204 or r.status == 304 then
    r.body = ""
  elseif n then
    local body, bwhy, partial = sock:read(n, T)
    r.body, r.cut = body or partial, bwhy
  else
    local parts = {}
    repeat
      local data, _, partial = sock:read(65536, T)
      parts[#parts + 1] = data or partial
    until not data
    r.body = table.concat(parts)
  end
  return r
end

-- True when the server has closed `sock` (end of stream within T).
local function closed_by_server(sock)
  local data, why = sock:read(1, T)
  return data == nil and why == "closed"
end

-- One request on a connection of its own.
local function request(srv, raw, head_only)
  local sock <close> = connect(srv)
  assert(sock:write(raw, T))
  return read_response(sock, head_only)
end

local function get(path, extra)
  return "GET " .. path .. " HTTP/1.1\r\nHost: test\r\n" .. (extra or "") .. "\r\n"
end

local function hello(_req, res)
  res:send(200, nil, "hello")
end

describe("fotahost.httpd", function()
  it("answers a GET, with the request parsed", function()
    local seen
    local r = with_server(function(req, res)
      seen = req
      res:send(200, { ["X-Answer"] = 42 }, "hello")
    end, function(srv)
      assert.matches("^http://127%.0%.0%.1:%d+$", srv.url)
      assert.is_true(srv.port > 0)
      return request(srv, get("/a/b", "X-Two: 1\r\nx-two: 2\r\nUser-Agent:  spec \r\n"))
    end)
    assert.are.equal(200, r.status)
    assert.are.equal("hello", r.body)
    assert.are.equal("5", r.headers["content-length"])
    assert.are.equal("text/plain; charset=utf-8", r.headers["content-type"])
    assert.are.equal("42", r.headers["x-answer"])
    assert.are.same({ "GET", "/a/b", "/a/b", "", "1.1", "" },
      { seen.method, seen.target, seen.path, seen.query, seen.version, seen.body })
    assert.are.same({ host = "test", ["x-two"] = "1, 2", ["user-agent"] = "spec" }, seen.headers)
    assert.matches("^127%.0%.0%.1:%d+$", seen.peer)
  end)

  it("keeps an HTTP/1.1 connection alive, and closes 1.0 and Connection: close", function()
    local peers = {}
    with_server(function(req, res)
      peers[#peers + 1] = req.peer
      res:send(200, nil, req.path)
    end, function(srv)
      local sock <close> = connect(srv)
      -- two requests written at once (pipelined), two answers in order
      assert(sock:write(get("/one") .. get("/two"), T))
      assert.are.equal("/one", read_response(sock).body)
      local r = read_response(sock)
      assert.are.equal("/two", r.body)
      assert.is_nil(r.headers.connection)
      assert(sock:write(get("/three", "Connection: close\r\n"), T))
      r = read_response(sock)
      assert.are.same({ "/three", "close" }, { r.body, r.headers.connection })
      assert.is_true(closed_by_server(sock))

      local s10 <close> = connect(srv)
      assert(s10:write("GET /old HTTP/1.0\r\n\r\n", T))
      assert.are.equal("/old", read_response(s10).body)
      assert.is_true(closed_by_server(s10))

      local ka <close> = connect(srv)
      assert(ka:write("GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", T))
      assert.are.equal("keep-alive", read_response(ka).headers.connection)
      assert(ka:write("GET /ka2 HTTP/1.0\r\n\r\n", T))
      assert.are.equal("/ka2", read_response(ka).body)
    end)
    assert.are.equal(6, #peers)
    assert.are.equal(peers[1], peers[2])
    assert.are.equal(peers[1], peers[3])
  end)

  it("answers HEAD with the head only", function()
    with_server(hello, function(srv)
      local sock <close> = connect(srv)
      assert(sock:write("HEAD / HTTP/1.1\r\n\r\n", T))
      local r = read_response(sock, true)
      assert.are.same({ 200, "5" }, { r.status, r.headers["content-length"] })
      -- no body bytes came: the next response starts right away
      assert(sock:write(get("/"), T))
      assert.are.equal("hello", read_response(sock).body)
    end)
  end)

  it("adds res.extra_headers to every answer, the server's 500 and send_file's 404 too", function()
    local extra = { ["X-Frame-Options"] = "DENY", ["Cache-Control"] = "no-store" }
    with_server(function(req, res)
      res.extra_headers = extra
      if req.path == "/own" then return res:send(200, { ["cache-control"] = "max-age=5" }, "own") end
      if req.path == "/missing" then return res:send_file("/nonexistent/fotahost-spec") end
      if req.path == "/fail" then error("on purpose") end
      res:send(200, nil, "ok")
    end, function(srv)
      log.configure { sink = function() end } -- the 500 logs its error
      finally(function() log.configure { sink = "stderr" } end)
      for _, path in ipairs({ "/plain", "/missing", "/fail" }) do
        local r = request(srv, get(path, "Connection: close\r\n"))
        assert.are.same({ "DENY", "no-store" }, { r.headers["x-frame-options"], r.headers["cache-control"] }, path)
      end
      local r = request(srv, get("/own", "Connection: close\r\n"))
      assert.are.same({ "DENY", "max-age=5" }, { r.headers["x-frame-options"], r.headers["cache-control"] })
    end)
  end)

  it("decodes query arguments", function()
    local seen
    with_server(function(req, res) seen = req res:send(204) end, function(srv)
      local r = request(srv, get("/q%20x?a=1&b=hello%20world&c=x+y&d&e=%zz&a=2&%C3%A9=%E2%82%AC"))
      assert.are.equal(204, r.status)
    end)
    assert.are.equal("/q%20x", seen.path)
    assert.are.equal("a=1&b=hello%20world&c=x+y&d&e=%zz&a=2&%C3%A9=%E2%82%AC", seen.query)
    assert.are.same({ a = "2", b = "hello world", c = "x y", d = "", e = "%zz", ["é"] = "€" }, seen.args)
    assert.are.equal("/q x", httpd.unescape(seen.path))
  end)

  it("reads a POST body, answering Expect: 100-continue first", function()
    local bodies = {}
    with_server(function(req, res)
      bodies[#bodies + 1] = req.body
      res:send(201, { ["Content-Type"] = "application/json" }, '{"ok":true}')
    end, function(srv)
      local r = request(srv, "POST /up HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world")
      assert.are.same({ 201, "application/json", '{"ok":true}' },
        { r.status, r.headers["content-type"], r.body })
      local sock <close> = connect(srv)
      assert(sock:write("PUT /up HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n", T))
      assert.are.equal("HTTP/1.1 100 Continue", sock:read_line(T))
      assert.are.equal("", sock:read_line(T))
      assert(sock:write("data", T))
      assert.are.equal(201, read_response(sock).status)
    end)
    assert.are.same({ "hello world", "data" }, bodies)
  end)

  it("answers 400 to a malformed request and closes", function()
    local called = false
    with_server(function(_req, res) called = true res:send(200) end, function(srv)
      for _, raw in ipairs({
        "GARBAGE\r\n\r\n",
        "GET /x HTTP/1.1 extra\r\n\r\n",
        "GET x HTTP/1.1\r\n\r\n",
        "GET /x HTTP/1.1\r\nno colon here\r\n\r\n",
        "GET /x HTTP/1.1\r\nName : space before colon\r\n\r\n",
        "GET /x HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n",
        "POST /x HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
        "POST /x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
      }) do
        local sock <close> = connect(srv)
        assert(sock:write(raw, T))
        local r = read_response(sock)
        assert.are.equal(400, r.status, raw)
        assert.are.equal("close", r.headers.connection)
        assert.is_true(closed_by_server(sock))
      end
      assert.are.equal(505, request(srv, "GET / HTTP/2.0\r\n\r\n").status)
      assert.are.equal(501, request(srv,
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").status)
    end)
    assert.is_false(called)
  end)

  it("answers 431 past max_header and 413 past max_body", function()
    local called = false
    with_server(function(_req, res) called = true res:send(200) end,
      { max_header = 1024, max_body = 100 }, function(srv)
        local r = request(srv, get("/", "X-Big: " .. ("b"):rep(2000) .. "\r\n"))
        assert.are.same({ 431, "close" }, { r.status, r.headers.connection })
        local many = ("X-Some: " .. ("s"):rep(50) .. "\r\n"):rep(30) -- each line fits, not all
        assert.are.equal(431, request(srv, get("/", many)).status)
        assert.are.equal(414, request(srv, get("/" .. ("u"):rep(2000))).status)
        -- the body is not read: the 413 comes while the client still sends
        local sock <close> = connect(srv)
        assert(sock:write("POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" .. ("p"):rep(1000), T))
        r = read_response(sock)
        assert.are.same({ 413, "close" }, { r.status, r.headers.connection })
        assert.are.equal(200, request(srv, "POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n"
          .. ("p"):rep(100)).status)
      end)
    assert.is_true(called)
  end)

  describe("send_file", function()
    local dir, data
    setup(function()
      dir = h.tmpdir()
      local t = {}
      for i = 0, 999 do t[#t + 1] = string.char(i % 251) end
      data = table.concat(t)
      h.write(dir .. "/data.bin", data)
      h.write(dir .. "/empty", "")
    end)
    teardown(function() h.rmdir(dir) end)

    local function file_server(fn)
      return with_server(function(req, res)
        local opts = { range = req.args.range ~= "off" }
        res:send_file(dir .. req.path, nil, opts)
      end, fn)
    end

    it("sends a file whole, with its validators", function()
      file_server(function(srv)
        local r = request(srv, get("/data.bin"))
        assert.are.equal(200, r.status)
        assert.are.equal(data, r.body)
        assert.are.same({ "1000", "bytes", '"size-1000"', "application/octet-stream" },
          { r.headers["content-length"], r.headers["accept-ranges"], r.headers.etag,
            r.headers["content-type"] })
        r = request(srv, "HEAD /data.bin HTTP/1.1\r\n\r\n", true)
        assert.are.same({ 200, "1000" }, { r.status, r.headers["content-length"] })
        assert.are.same({ 200, "" }, { request(srv, get("/empty")).status, request(srv, get("/empty")).body })
        assert.are.equal(404, request(srv, get("/missing")).status)
        assert.are.equal(404, request(srv, get("/")).status) -- the directory itself
      end)
    end)

    it("honours a single Range with 206, and answers 416 past the end", function()
      file_server(function(srv)
        local function range(spec, extra)
          return request(srv, get("/data.bin", "Range: " .. spec .. "\r\n" .. (extra or "")))
        end
        local r = range("bytes=10-19")
        assert.are.same({ 206, "bytes 10-19/1000", "10", data:sub(11, 20) },
          { r.status, r.headers["content-range"], r.headers["content-length"], r.body })
        r = range("bytes=990-")
        assert.are.same({ 206, "bytes 990-999/1000", data:sub(991) },
          { r.status, r.headers["content-range"], r.body })
        r = range("bytes=-5")
        assert.are.same({ 206, "bytes 995-999/1000", data:sub(996) },
          { r.status, r.headers["content-range"], r.body })
        r = range("bytes=-5000") -- more than there is: all of it
        assert.are.same({ 206, "bytes 0-999/1000" }, { r.status, r.headers["content-range"] })
        r = range("bytes=900-99999")
        assert.are.same({ 206, "bytes 900-999/1000" }, { r.status, r.headers["content-range"] })
        r = range("bytes=1000-")
        assert.are.same({ 416, "bytes */1000" }, { r.status, r.headers["content-range"] })
        assert.are.equal(416, range("bytes=-0").status)
        -- several ranges, another unit, nonsense: ignored, the whole file
        for _, spec in ipairs({ "bytes=0-1,5-6", "lines=1-2", "bytes=5-1", "bytes=abc" }) do
          r = range(spec)
          assert.are.same({ 200, data }, { r.status, r.body }, spec)
        end
        r = request(srv, get("/data.bin?range=off", "Range: bytes=10-19\r\n"))
        assert.are.same({ 200, "none", data }, { r.status, r.headers["accept-ranges"], r.body })
      end)
    end)

    it("honours If-Range: a stale validator gets the whole file", function()
      file_server(function(srv)
        local r = request(srv, get("/data.bin", 'Range: bytes=100-\r\nIf-Range: "size-1000"\r\n'))
        assert.are.same({ 206, data:sub(101) }, { r.status, r.body })
        r = request(srv, get("/data.bin", 'Range: bytes=100-\r\nIf-Range: "size-999"\r\n'))
        assert.are.same({ 200, data }, { r.status, r.body })
        r = request(srv, get("/data.bin", "Range: bytes=100-\r\nIf-Range: Wed, 21 Oct 2015 07:28:00 GMT\r\n"))
        assert.are.equal(200, r.status)
      end)
    end)
  end)

  it("streams a body with or without a Content-Length", function()
    with_server(function(req, res)
      if req.path == "/known" then
        res:start(200, { ["Content-Length"] = 6 })
        res:write("abc")
        sched.sleep(0.01)
        res:write("def")
        res:finish()
      else
        res:start(200, {})
        for i = 1, 3 do res:write("part" .. i .. ";") end
        -- not finished: the server finishes it
      end
    end, function(srv)
      local sock <close> = connect(srv)
      assert(sock:write(get("/known"), T))
      assert.are.equal("abcdef", read_response(sock).body)
      assert(sock:write(get("/unknown"), T))
      local r = read_response(sock)
      assert.are.same({ "close", "part1;part2;part3;" }, { r.headers.connection, r.body })
    end)
  end)

  it("turns a handler error into a 500, logs it and keeps serving", function()
    local logged = {}
    log.configure { sink = function(level, comp, msg) logged[#logged + 1] = { level, comp, msg } end }
    finally(function() log.configure { sink = "stderr" } end)
    with_server(function(req, res)
      if req.path == "/boom" then error("kaboom") end
      if req.path == "/silent" then return end
      if req.path == "/late" then
        res:start(200, { ["Content-Length"] = 10 })
        res:write("12345")
        error("late kaboom")
      end
      if req.path == "/badheader" then res:send(200, { ["X-Evil"] = "a\r\nInjected: 1" }, "no") end
      res:send(200, nil, "fine")
    end, function(srv)
      local sock <close> = connect(srv)
      assert(sock:write(get("/boom"), T))
      assert.are.equal(500, read_response(sock).status)
      assert(sock:write(get("/after"), T)) -- same connection, still served
      assert.are.equal("fine", read_response(sock).body)
      assert.are.equal(500, request(srv, get("/silent")).status)
      local r = request(srv, get("/badheader"))
      assert.are.same({ 500, nil }, { r.status, r.headers.injected })
      local late <close> = connect(srv)
      assert(late:write(get("/late"), T))
      r = read_response(late)
      assert.are.same({ 200, "12345", "closed" }, { r.status, r.body, r.cut })
      assert.are.equal("fine", request(srv, get("/")).body)
    end)
    assert.are.equal(4, #logged)
    assert.are.same({ "error", "httpd" }, { logged[1][1], logged[1][2] })
    assert.matches("GET /boom from 127%.0%.0%.1:%d+: handler failed: .*kaboom", logged[1][3])
    assert.matches("the handler sent no response", logged[2][3])
    assert.matches("bad value for header X%-Evil", logged[3][3])
    assert.matches("late kaboom", logged[4][3])
  end)

  it("aborts a body midway", function()
    with_server(function(_req, res)
      res:start(200, { ["Content-Length"] = 100 })
      res:write(("a"):rep(10))
      res:abort()
    end, function(srv)
      local r = request(srv, get("/"))
      assert.are.same({ 200, ("a"):rep(10), "closed" }, { r.status, r.body, r.cut })
    end)
  end)

  it("limits connections, idle time, and closes live connections on close()", function()
    with_server(hello, { max_connections = 1, idle_timeout = 0.2 }, function(srv)
      local first = connect(srv)
      assert(first:write(get("/"), T))
      assert.are.equal(200, read_response(first).status)
      local second <close> = connect(srv)
      local r = read_response(second)
      assert.are.same({ 503, "close" }, { r.status, r.headers.connection })
      -- the first, idle for longer than idle_timeout, is closed...
      local t0 = sched.now()
      assert.is_true(closed_by_server(first))
      assert.is_true(sched.now() - t0 < 2)
      first:close()
      sched.sleep(0.01)
      -- ...which makes room
      assert.are.equal(200, request(srv, get("/")).status)
      local idle <close> = connect(srv)
      assert(idle:write(get("/"), T))
      read_response(idle)
      srv:close()
      assert.are.same({ nil, "closed", "" }, { idle:read(1, T) })
      assert.is_nil(tcp.connect("127.0.0.1", srv.port, T))
    end)
  end)

  it("refuses misuse", function()
    assert.has_error(function() httpd.listen { handler = hello } end,
      "httpd.listen: not inside a scheduler task (call it within sched.run)")
    sched.run(function()
      assert.has_error(function() httpd.listen {} end, "httpd.listen: handler function required")
      assert.has_error(function() httpd.listen { handler = hello, max_body = "big" } end,
        "httpd.listen: bad max_body: big")
      local a <close> = assert(httpd.listen { handler = hello })
      local b, err = httpd.listen { handler = hello, port = a.port }
      assert.is_nil(b)
      assert.are.equal(("127.0.0.1:%d: %s"):format(a.port, h.strerror.EADDRINUSE), err)
    end)
    local errors, logged = {}, {}
    log.configure { sink = function(_, _, msg) logged[#logged + 1] = msg end }
    finally(function() log.configure { sink = "stderr" } end)
    with_server(function(_req, res)
      for _, call in ipairs({
        function() res:write("x") end,
        function() res:send(99) end,
        function() res:send(200, "headers", "") end,
        function() res:send(200, nil, 42) end,
        function() res:start(200, { ["Content-Length"] = 2 }) res:write("abc") end,
        function() res:send(200) end,
      }) do
        local ok, e = pcall(call)
        errors[#errors + 1] = not ok and e:gsub("^[^:]+:%d+: ", "") or "no error"
      end
    end, function(srv) request(srv, get("/")) end)
    assert.are.same({
      "res:write: res:start comes first",
      "res:send: status must be an integer 200..599, got 99",
      "res:send: headers must be a table, got string",
      "res:send: body must be a string, got number",
      "res:write: 1 bytes past the Content-Length declared",
      "res:send: the response was already started",
    }, errors)
    assert.are.same({ "GET /: body ended 2 bytes short of its Content-Length; closing" }, logged)
  end)

  it("parses ranges", function()
    assert.are.same({ 0, 9 }, { httpd.parse_range("bytes=0-9", 100) })
    assert.are.same({ 90, 99 }, { httpd.parse_range("bytes=-10", 100) })
    assert.are.same({ 0, 99 }, { httpd.parse_range("Bytes = 0-", 100) })
    assert.are.same({ 5, 99 }, { httpd.parse_range("bytes=5-99999999999999999999999", 100) })
    assert.are.equal("unsatisfiable", httpd.parse_range("bytes=99999999999999999999999-", 100))
    assert.are.equal("unsatisfiable", httpd.parse_range("bytes=0-", 0))
    assert.is_nil(httpd.parse_range("bytes=-", 100))
    assert.is_nil(httpd.parse_range("bytes=1-2,4-5", 100))
  end)
end)

describe("http_test_server", function()
  local dir, srv, logfile, data
  local script = "spec/support/http_test_server.lua"

  -- curl's output, written to a file; returns body, "code exit" line.
  local function curl(args)
    local out = dir .. "/curl.out"
    local p = io.popen(("curl -s -o %s -w '%%{http_code}' --max-time 10 %s; echo \" $?\""):format(
      h.q(out), args))
    local status = p:read("a")
    p:close()
    return h.read(out) or "", (status:gsub("%s+$", ""))
  end

  setup(function()
    dir = h.tmpdir()
    local t = {}
    for i = 1, 100000 do t[i] = string.char((i * 7) % 256) end
    data = table.concat(t)
    h.write(dir .. "/fw.bin", data)
    logfile = dir .. "/requests.log"
    srv = h.start_server({ script, "--root", dir, "--log", logfile })
  end)
  teardown(function()
    srv.stop()
    h.rmdir(dir)
  end)

  local function log_lines()
    local lines = {}
    for l in (h.read(logfile) or ""):gmatch("[^\n]+") do lines[#lines + 1] = l end
    return lines
  end

  it("says where it listens", function()
    assert.matches("^http://127%.0%.0%.1:%d+$", srv.url)
    assert.is_true(srv.port > 0)
  end)

  it("serves files, ranges cross-checked with curl", function()
    assert.are.same({ data, "200 0" }, { curl(srv.url .. "/files/fw.bin") })
    assert.are.same({ data:sub(11, 20), "206 0" }, { curl("-r 10-19 " .. srv.url .. "/files/fw.bin") })
    assert.are.same({ data:sub(-100), "206 0" }, { curl("-r -100 " .. srv.url .. "/files/fw.bin") })
    assert.are.same({ data, "200 0" }, { curl("-r 10-19 " .. srv.url .. "/norange/fw.bin") })
    local _, head = curl("-D - " .. srv.url .. "/nolength/fw.bin")
    assert.are.same({ data, "200 0" }, { h.read(dir .. "/curl.out"), head:match("%d+ %d+$") })
    assert.is_nil(head:lower():match("content%-length"))
    assert.are.same({ "<html>error 404</html>", "404 0" }, { curl(srv.url .. "/files/nope.bin") })
    assert.are.same({ "<html>error 404</html>", "404 0" }, { curl(srv.url .. "/files/..") })
  end)

  it("answers /status/CODE", function()
    assert.are.same({ "<html>error 404</html>", "404 0" }, { curl(srv.url .. "/status/404") })
    assert.are.same({ "<html>error 503</html>", "503 0" }, { curl(srv.url .. "/status/503") })
  end)

  it("cuts a body once, then serves the rest by range", function()
    local url = srv.url .. "/cut/fw.bin?after=4000"
    local part, status = curl(url)
    assert.are.equal("200 18", status) -- curl: "transfer closed with bytes remaining"
    assert.are.equal(data:sub(1, 4000), part)
    local rest
    rest, status = curl("-r 4000- " .. url)
    assert.are.equal("206 0", status)
    assert.are.equal(data, part .. rest)
    -- &range=0: the later requests ignore Range
    assert.are.equal("200 18", select(2, curl("'" .. url .. "&range=0'")))
    assert.are.same({ data, "200 0" }, { curl("-r 4000- '" .. url .. "&range=0'") })
    local lines = log_lines()
    assert.are.same({
      "GET /cut/fw.bin?after=4000 range=- if-range=- status=200",
      "GET /cut/fw.bin?after=4000 range=bytes=4000- if-range=- status=206",
      "GET /cut/fw.bin?after=4000&range=0 range=- if-range=- status=200",
      "GET /cut/fw.bin?after=4000&range=0 range=bytes=4000- if-range=- status=200",
    }, { table.unpack(lines, #lines - 3) })
  end)

  it("answers an error with an empty body, and serves a file replaced after a cut", function()
    assert.are.same({ "", "500 0" }, { curl(srv.url .. "/status/500?empty=1") })
    h.write(dir .. "/fw2.bin", data:reverse())
    local url = srv.url .. "/changing/fw.bin/fw2.bin?after=4000"
    local part, status = curl("-D " .. h.q(dir .. "/head") .. " " .. url)
    assert.are.same({ data:sub(1, 4000), "200 18" }, { part, status })
    assert.matches('\r\n[Ee][Tt]ag: "v1"\r\n', h.read(dir .. "/head"))
    -- the old validator: the new file whole; the new one (or none): its rest
    assert.are.same({ data:reverse(), "200 0" }, { curl("-r 4000- -H 'If-Range: \"v1\"' " .. url) })
    assert.are.same({ data:reverse():sub(4001), "206 0" }, { curl("-r 4000- -H 'If-Range: \"v2\"' " .. url) })
    assert.are.same({ data:reverse():sub(4001), "206 0" }, { curl("-r 4000- " .. url) })
  end)

  it("matches If-Range with the date, never with a weak ETag", function()
    local url = srv.url .. "/weak/fw.bin?after=4000"
    local part, status = curl("-D " .. h.q(dir .. "/head") .. " " .. url)
    assert.are.same({ data:sub(1, 4000), "200 18" }, { part, status })
    local head = h.read(dir .. "/head")
    assert.matches('\r\n[Ee][Tt]ag: W/"w1"\r\n', head)
    local date = head:match("\r\n[Ll]ast%-[Mm]odified: ([^\r]+)\r\n")
    assert.are.equal(httpd.http_date(1700000000), date)
    assert.are.same({ data:sub(4001), "206 0" }, { curl("-r 4000- -H 'If-Range: " .. date .. "' " .. url) })
    assert.are.same({ data, "200 0" }, { curl("-r 4000- -H 'If-Range: W/\"w1\"' " .. url) })
  end)

  it("grows a file between a cut and a resume, and sends 206s nobody asked for", function()
    h.write(dir .. "/fw-big.bin", data .. data)
    local url = srv.url .. "/grow/fw.bin/fw-big.bin?after=4000"
    assert.are.same({ data:sub(1, 4000), "200 18" }, { curl(url) })
    local rest, status = curl("-D " .. h.q(dir .. "/head") .. " -r 4000- " .. url)
    assert.are.same({ (data .. data):sub(4001), "206 0" }, { rest, status })
    local head = h.read(dir .. "/head"):lower()
    assert.is_nil(head:find("content-length", 1, true))
    assert.is_nil(head:find("etag", 1, true))
    assert.matches("\r\ncontent%-range: bytes 4000%-199999/200000\r\n", head)
    -- /partial: 206 from byte S whatever was asked, after a first cut
    url = srv.url .. "/partial/fw.bin?start=10"
    assert.are.same({ data:sub(11), "206 0" }, { curl(url) })
    assert.are.same({ data:sub(11), "206 0" }, { curl("-r 500- " .. url) })
    url = srv.url .. "/partial/fw.bin?start=10\\&after=100"
    assert.are.same({ data:sub(1, 100), "200 18" }, { curl(url) })
    assert.are.same({ data:sub(11), "206 0" }, { curl("-r 100- " .. url) })
  end)

  it("truncates, drips, throttles and redirects", function()
    local body, status = curl(srv.url .. "/truncate/fw.bin?send=10")
    assert.are.same({ data:sub(1, 10), "200 18" }, { body, status })
    assert.are.same({ "xxx", "200 0" }, { curl(srv.url .. "'/drip?bytes=3&interval=0.01'") })
    assert.are.same({ data:sub(1, 500), "206 0" },
      { curl("-r 0-499 " .. srv.url .. "/throttle/fw.bin?rate=50000") })
    assert.are.same({ data, "200 0" }, { curl("-L " .. srv.url .. "/chain/3/fw.bin") })
    local lines = log_lines()
    assert.are.equal("GET /files/fw.bin range=- if-range=- status=200", lines[#lines])
    assert.are.equal("GET /chain/1/fw.bin range=- if-range=- status=302", lines[#lines - 1])
    assert.are.equal("GET /chain/3/fw.bin range=- if-range=- status=302", lines[#lines - 3])
    local _, redir = curl("-w '%{http_code} %{redirect_url}' '" .. srv.url
      .. "/redirect?to=file:///etc/passwd&code=301'")
    assert.are.equal("301 file:///etc/passwd 0", redir)
  end)

  it("echoes a request as JSON", function()
    local body, status = curl(("-X PUT -H 'X-Test: yes' --data-binary 'a=1&b' '%s/echo?q=1'"):format(srv.url))
    assert.are.equal("200 0", status)
    local e = cjson.decode(body)
    assert.are.same({ "PUT", "/echo", "q=1", "a=1&b", "yes", "5" },
      { e.method, e.path, e.query, e.body, e.headers["x-test"], e.headers["content-length"] })
  end)

  it("hangs until the client gives up", function()
    local t0 = sched.now()
    local _, status = curl("--max-time 0.3 " .. srv.url .. "/hang")
    assert.are.equal("000 28", status) -- curl: operation timed out
    assert.is_true(sched.now() - t0 < 3)
    local lines = log_lines()
    assert.are.equal("GET /hang range=- if-range=- status=-", lines[#lines])
  end)

  it("exits when its stdin closes", function()
    local other = h.start_server({ script, "--root", dir })
    assert.are.equal("200 0", select(2, curl(other.url .. "/status/200")))
    local how, err = other.stop()
    assert.are.equal("exited", how)
    assert.matches("stdin closed, stopping", err)
    assert.is_nil(tcp.connect("127.0.0.1", other.port, 1))
  end)

  it("says what is wrong with its arguments", function()
    local r = h.run({ script, "--port", "x" })
    assert.are.equal(2, r.status)
    assert.matches("http_test_server: %-%-port: 0..65535 expected", r.err)
    r = h.run({ script, "--help" })
    assert.are.equal(0, r.status)
    assert.matches("/cut/NAME%?after=N&times=K", r.out)
    local ok, err = pcall(h.start_server, { script, "--nonsense" }, { timeout = 2 })
    assert.is_false(ok)
    assert.matches("exited before listening; its stderr:\nhttp_test_server: unknown argument %-%-nonsense", err)
  end)
end)
