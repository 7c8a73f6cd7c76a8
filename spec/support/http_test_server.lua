-- A fault-injecting HTTP server for specs, run as a process of its own:
--
--   ./build/fotahost spec/support/http_test_server.lua --root DIR [options]
--
-- It prints one line, "listening 127.0.0.1:PORT", once it is ready, then
-- serves until SIGTERM or until its stdin reaches end of file (so a spec
-- that dies, and with it the write end of that pipe, does not leave it
-- behind). spec/helper.lua's start_server starts and stops it. Built on
-- fotahost.httpd; the routes are the table ROUTES below (--help lists them).

local sched = require "fotahost.sched"
local sys = require "fotahost.sys"
local httpd = require "fotahost.httpd"
local cjson = require "cjson"

local USAGE = [[
usage: fotahost spec/support/http_test_server.lua --root DIR [options]

  --root DIR         directory of the files served (NAME below is a file in it)
  --host ADDR        numeric address to listen on (default 127.0.0.1)
  --port N           port (default 0: a free one)
  --log FILE         append a line per request:
                     METHOD TARGET range=<Range|-> if-range=<If-Range|-> status=<code>
  --no-stdin-watch   keep serving when stdin reaches end of file
  --help             this text

Prints "listening HOST:PORT" once ready. Routes:

  /files/NAME                     the file, with Range and If-Range
  /norange/NAME                   the file, Range ignored: always 200 whole
  /cut/NAME?after=N&times=K       the first K requests for this exact target
                                  (default 1) declare the whole length but
                                  close after N body bytes; later ones are
                                  served as /files (&range=0: as /norange)
  /nolength/NAME                  the file without Content-Length: the body
                                  ends when the connection closes
  /truncate/NAME?send=N           always declares the whole length, sends N
                                  bytes, closes
  /throttle/NAME?rate=B           the file at about B bytes/s, with Range
  /status/CODE                    CODE with the body <html>error CODE</html>
                                  (&empty=1: with an empty body)
  /changing/OLD/NEW?after=N       a file replaced between a cut and a resume:
                                  the first request for this exact target gets
                                  OLD (ETag "v1") cut after N body bytes, later
                                  ones NEW (ETag "v2"), with Range and If-Range
  /weak/NAME?after=N              NAME with a weak ETag and a Last-Modified,
                                  the first request cut after N; If-Range
                                  matches the Last-Modified only (a weak tag
                                  never matches: the whole file)
  /grow/OLD/NEW?after=N           no validators: the first request gets OLD
                                  cut after N, later ones NEW with Range, and
                                  a 206 without Content-Length
  /partial/NAME?start=S[&after=N] a broken server: every answer is 206 from
                                  byte S, whatever was asked (with after=N, the
                                  first request gets the whole file cut after N)
  /drip?bytes=N&interval=S        N bytes declared, one every S seconds
  /redirect?to=URL&code=302       a redirect to any URL (301 302 303 307 308)
  /chain/N/NAME                   N redirects, then /files/NAME
  /echo                           any method: the request as JSON
                                  {method, path, query, headers, body}
  /hang                           reads the request, never answers
]]

local HANG_MAX = 600 -- seconds /hang holds a connection at most

---------------------------------------------------------------- options

local function usage_error(msg)
  io.stderr:write("http_test_server: " .. msg .. "\n" .. USAGE)
  os.exit(2)
end

local function parse_options(argv)
  local o = { host = "127.0.0.1", port = 0, watch_stdin = true }
  local i = 1
  local function value(name)
    i = i + 1
    if argv[i] == nil then usage_error(name .. " needs a value") end
    return argv[i]
  end
  while argv[i] ~= nil do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      io.stdout:write(USAGE)
      os.exit(0)
    elseif a == "--root" then o.root = value(a)
    elseif a == "--host" then o.host = value(a)
    elseif a == "--port" then
      o.port = math.tointeger(tonumber(value(a)))
      if not o.port or o.port < 0 or o.port > 65535 then usage_error("--port: 0..65535 expected") end
    elseif a == "--log" then o.log = value(a)
    elseif a == "--no-stdin-watch" then o.watch_stdin = false
    else usage_error("unknown argument " .. a)
    end
    i = i + 1
  end
  if not o.root then usage_error("--root DIR is required") end
  return o
end

local opts = parse_options(arg)

local log_file
if opts.log then
  local err
  log_file, err = io.open(opts.log, "a")
  if not log_file then usage_error("--log: " .. err) end
  log_file:setvbuf("line") -- a spec reads it while we run
end

-- Called by httpd just before a response head goes out, so the line is in
-- the file before the client can have seen the response.
local function log_request(req, status)
  if not log_file then return end
  log_file:write(("%s %s range=%s if-range=%s status=%s\n"):format(
    req.method or "-", req.target or "-", req.headers.range or "-",
    req.headers["if-range"] or "-", tostring(status)))
end

---------------------------------------------------------------- helpers

-- NAME as a file under --root: one path component, decoded; nil for
-- anything that could leave the root.
local function file_for(name)
  name = httpd.unescape(name)
  if name == "" or name == "." or name == ".." or name:find("[/%z]") then return nil end
  return opts.root .. "/" .. name
end

-- An integer query argument: its value, the default, or nil, message.
local function int_arg(req, key, default, min)
  local v = req.args[key]
  if v == nil or v == "" then
    if default == nil then return nil, key .. " is required" end
    return default
  end
  local n = math.tointeger(tonumber(v))
  if not n or n < (min or 0) then return nil, ("%s must be an integer >= %d"):format(key, min or 0) end
  return n
end

local function bad_request(res, msg)
  return res:send(400, nil, "bad request: " .. msg .. "\n")
end

local function not_found(res)
  return res:send(404, { ["Content-Type"] = "text/html" }, "<html>error 404</html>")
end

-- Runs `fn(res, path)` for an existing NAME, else answers 404.
local function with_file(res, name, fn)
  local path = file_for(name)
  if not path then return not_found(res) end
  local f = io.open(path, "rb")
  if not f then return not_found(res) end
  f:close()
  return fn(path)
end

local cut_count = {} -- target -> requests seen, for /cut

-- How many requests for this exact target there have been, this one included.
local function nth(req)
  local n = (cut_count[req.target] or 0) + 1
  cut_count[req.target] = n
  return n
end

-- Streams `path` with exactly the validators given (o.etag, o.last_modified:
-- header values as sent, nil for none), for what send_file cannot do. A
-- single Range is honoured, if an If-Range allows it: a strong ETag equal
-- to o.etag or a date equal to o.last_modified (RFC 9110 13.1.5: a weak tag
-- never matches). o.cut = N: declare the length, send N bytes, close.
-- o.from = S: 206 from byte S whatever was asked. o.no_length: a 206 with
-- no Content-Length, the body ending when the connection closes.
local function send_with(req, res, path, o)
  local f <close> = assert(io.open(path, "rb"))
  local size = f:seek("end")
  local h = { ["Content-Type"] = "application/octet-stream", ETag = o.etag, ["Last-Modified"] = o.last_modified }
  local first, last, status = 0, size - 1, 200
  if o.from then
    first, status = o.from, 206
  elseif req.headers.range then
    local ir = req.headers["if-range"]
    local strong = o.etag and not o.etag:match("^W/") and o.etag
    if ir == nil or ir == strong or ir == o.last_modified then
      local a, b = httpd.parse_range(req.headers.range, size)
      if a == "unsatisfiable" then
        return res:send(416, { ["Content-Range"] = ("bytes */%d"):format(size) }, "")
      elseif a then
        first, last, status = a, b, 206
      end
    end
  end
  if status == 206 then h["Content-Range"] = ("bytes %d-%d/%d"):format(first, last, size) end
  local length = last - first + 1
  if not (o.no_length and status == 206) then h["Content-Length"] = length end
  if not res:start(status, h) then return end
  f:seek("set", first)
  local to_send = math.min(length, o.cut or length)
  local left = to_send
  while left > 0 do
    local data = assert(f:read(math.min(httpd.CHUNK, left)))
    if not res:write(data) then return end
    left = left - #data
  end
  if to_send < length then return res:abort() end
  res:finish()
end

---------------------------------------------------------------- routes

-- { path pattern, function(req, res, captures...) }, tried in order.
local ROUTES = {
  { "^/files/([^/]+)$", function(_req, res, name)
    with_file(res, name, function(path) return res:send_file(path) end)
  end },

  { "^/norange/([^/]+)$", function(_req, res, name)
    with_file(res, name, function(path) return res:send_file(path, nil, { range = false }) end)
  end },

  { "^/cut/([^/]+)$", function(req, res, name)
    local after, err = int_arg(req, "after", nil)
    if not after then return bad_request(res, err) end
    local times
    times, err = int_arg(req, "times", 1)
    if not times then return bad_request(res, err) end
    with_file(res, name, function(path)
      local n = (cut_count[req.target] or 0) + 1
      cut_count[req.target] = n
      return res:send_file(path, nil, {
        max_send = n <= times and after or nil,
        range = req.args.range ~= "0",
      })
    end)
  end },

  { "^/nolength/([^/]+)$", function(_req, res, name)
    with_file(res, name, function(path)
      local f <close> = assert(io.open(path, "rb"))
      -- no Content-Length: httpd closes the connection after the body
      if not res:start(200, { ["Content-Type"] = "application/octet-stream" }) then return end
      for data in f:lines(httpd.CHUNK) do
        if not res:write(data) then return end
      end
      res:finish()
    end)
  end },

  { "^/truncate/([^/]+)$", function(req, res, name)
    local send, err = int_arg(req, "send", nil)
    if not send then return bad_request(res, err) end
    with_file(res, name, function(path)
      return res:send_file(path, nil, { range = false, max_send = send })
    end)
  end },

  { "^/throttle/([^/]+)$", function(req, res, name)
    local rate, err = int_arg(req, "rate", nil, 1)
    if not rate then return bad_request(res, err) end
    with_file(res, name, function(path) return res:send_file(path, nil, { rate = rate }) end)
  end },

  { "^/status/(%d+)$", function(req, res, code)
    code = math.tointeger(tonumber(code))
    if code < 200 or code > 599 then return bad_request(res, "status must be 200..599") end
    res:send(code, { ["Content-Type"] = "text/html" },
      req.args.empty ~= "1" and ("<html>error %d</html>"):format(code) or "")
  end },

  { "^/changing/([^/]+)/([^/]+)$", function(req, res, old, new)
    local after, err = int_arg(req, "after", nil)
    if not after then return bad_request(res, err) end
    local first = nth(req) == 1
    with_file(res, first and old or new, function(path)
      return res:send_file(path, nil, { etag = first and "v1" or "v2", max_send = first and after or nil })
    end)
  end },

  { "^/weak/([^/]+)$", function(req, res, name)
    local after, err = int_arg(req, "after", nil)
    if not after then return bad_request(res, err) end
    local first = nth(req) == 1
    with_file(res, name, function(path)
      return send_with(req, res, path, { etag = 'W/"w1"', last_modified = httpd.http_date(1700000000),
                                         cut = first and after or nil })
    end)
  end },

  { "^/grow/([^/]+)/([^/]+)$", function(req, res, old, new)
    local after, err = int_arg(req, "after", nil)
    if not after then return bad_request(res, err) end
    local first = nth(req) == 1
    with_file(res, first and old or new, function(path)
      return send_with(req, res, path, { cut = first and after or nil, no_length = true })
    end)
  end },

  { "^/partial/([^/]+)$", function(req, res, name)
    local start, err = int_arg(req, "start", nil)
    if not start then return bad_request(res, err) end
    local after
    after, err = int_arg(req, "after", -1, -1)
    if not after then return bad_request(res, err) end
    local cut = after >= 0 and nth(req) == 1
    with_file(res, name, function(path)
      return send_with(req, res, path, cut and { cut = after } or { from = start })
    end)
  end },

  { "^/drip$", function(req, res)
    local bytes, err = int_arg(req, "bytes", 10)
    if not bytes then return bad_request(res, err) end
    local interval = tonumber(req.args.interval or "1")
    if not interval or interval < 0 then return bad_request(res, "interval must be seconds >= 0") end
    if not res:start(200, { ["Content-Type"] = "application/octet-stream", ["Content-Length"] = bytes }) then
      return
    end
    for i = 1, bytes do
      if not res:write("x") then return end -- the client gave up
      if i < bytes then sched.sleep(interval) end
    end
    res:finish()
  end },

  { "^/redirect$", function(req, res)
    local to = req.args.to
    if not to or to == "" or to:find("%c") then return bad_request(res, "to=URL is required") end
    local code = int_arg(req, "code", 302)
    if not (code == 301 or code == 302 or code == 303 or code == 307 or code == 308) then
      return bad_request(res, "code must be 301, 302, 303, 307 or 308")
    end
    res:send(code, { Location = to, ["Content-Type"] = "text/html" }, "<html>redirect</html>")
  end },

  { "^/chain/(%d+)/([^/]+)$", function(_req, res, n, name)
    n = math.tointeger(tonumber(n))
    if n == 0 then
      return with_file(res, name, function(path) return res:send_file(path) end)
    end
    local to = n > 1 and ("/chain/%d/%s"):format(n - 1, name) or "/files/" .. name
    res:send(302, { Location = to, ["Content-Type"] = "text/html" }, "<html>redirect</html>")
  end },

  { "^/echo$", function(req, res)
    res:send(200, { ["Content-Type"] = "application/json" }, cjson.encode({
      method = req.method, path = req.path, query = req.query,
      headers = req.headers, body = req.body,
    }))
  end },

  { "^/hang$", function(req, res)
    log_request(req, "-")
    -- Never answer; read (and drop) until the client closes, so the
    -- connection does not outlive it.
    local deadline = sched.now() + HANG_MAX
    while sched.now() < deadline do
      local _, why = res.sock:read(4096, 1)
      if why == "closed" or (why and why ~= "timeout") then break end
    end
    res:abort()
  end },
}

local function route(req, res)
  for _, r in ipairs(ROUTES) do
    local caps = table.pack(req.path:match(r[1]))
    if caps[1] ~= nil then return r[2](req, res, table.unpack(caps, 1, caps.n)) end
  end
  return not_found(res)
end

---------------------------------------------------------------- main

-- Returns when stdin reaches end of file. Data read is dropped. A stdin
-- that cannot be polled (/dev/null, a regular file) is not watched.
local function watch_stdin()
  while true do
    local ok, err = pcall(sched.wait_fd, 0, "r", 3600)
    if not ok then
      if sys.interrupted() then error(err, 0) end
      io.stderr:write("http_test_server: stdin cannot be watched (" .. tostring(err)
        .. "); serving until killed\n")
      return false
    end
    if err ~= "timeout" then
      local data, why = sys.read(0, 4096)
      if not data and why ~= "wouldblock" then return true end -- "closed", or an error
    end
  end
end

local ok, status = pcall(sched.run, function()
  local srv, err = httpd.listen {
    host = opts.host, port = opts.port,
    handler = route, on_response = log_request,
    idle_timeout = 30,
  }
  if not srv then
    io.stderr:write("http_test_server: " .. err .. "\n")
    return 1
  end
  io.stdout:write(("listening %s:%d\n"):format(opts.host, srv.port))
  io.stdout:flush()
  if opts.watch_stdin and watch_stdin() then
    io.stderr:write("http_test_server: stdin closed, stopping\n")
  else
    while true do sched.sleep(3600) end
  end
  srv:close()
  return 0
end)
if log_file then log_file:close() end
if not ok then
  -- SIGTERM is how specs may stop us: say so in one line, exit as the
  -- host would (128 + signal number), without the traceback.
  local sig = sys.interrupted()
  if not sig then error(status, 0) end
  io.stderr:write("http_test_server: stopped by " .. sig .. "\n")
  os.exit(sig == "SIGINT" and 130 or 143)
end
os.exit(status)
