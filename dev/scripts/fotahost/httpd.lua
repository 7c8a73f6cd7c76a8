--- fotahost.httpd: a small HTTP/1.1 server on the scheduler.
--
-- Made for loopback test servers and a local development cloud: plain
-- HTTP/1.1, keep-alive, bounded memory, every wait with a timeout.
--
--     local httpd = require "fotahost.httpd"
--     sched.run(function()
--       local srv <close> = assert(httpd.listen {
--         host = "127.0.0.1", port = 0,        -- 0: a free port; srv.port says which
--         handler = function(req, res)
--           if req.path == "/hello" then
--             res:send(200, { ["Content-Type"] = "text/plain" }, "hi " .. (req.args.name or "") .. "\n")
--           else
--             res:send_file("/srv/files" .. req.path)
--           end
--         end,
--       })
--       print("serving on " .. srv.url)
--       sched.sleep(60)
--     end)
--
-- listen(opts) must be called inside a running scheduler: it binds, starts
-- the accept loop as a task and returns at once. opts:
--
--   host, port        numeric address (default "127.0.0.1") and port (0: any)
--   handler           function(req, res), required
--   idle_timeout      seconds (default 30): the wait for the next request on
--                     a kept-alive connection, and the limit for receiving a
--                     request's head, its body, and for each write the client
--                     is slow to take
--   max_header        bytes of request line + headers (default 16384); past
--                     it 431 (414 for the request line alone), then close
--   max_body          bytes of request body (default 1 MiB); past it 413
--   max_connections   live connections (default 64); one more is accepted,
--                     answered 503 and closed
--   on_response       function(req, status, res), called just before a
--                     response head is written (an access log); also for
--                     the server's own error responses, where req may hold
--                     only what was parsed
--
-- Each connection has a task of its own; its requests run one after another
-- in that task, so a handler may wait (sched.sleep, socket reads) without
-- holding up other connections. A handler that raises gets a 500 (if it
-- had sent nothing yet; else the connection is closed) and a log line
-- through fotahost.log; the server goes on.
--
-- The request, `req`:
--
--   method, target    "GET", "/a/b?x=1" as sent
--   path, query       "/a/b" (still percent-encoded: httpd.unescape decodes),
--                     "x=1" (raw; "" when there is none)
--   args              the query decoded: { x = "1" } (a repeated key: the last wins)
--   version           "1.0" or "1.1"
--   headers           names lower-cased; repeated headers joined with ", "
--   body              the body ("" when none), read in full before the
--                     handler runs, at most max_body bytes
--   peer              "host:port" of the client
--
-- Request bodies need a Content-Length: a Transfer-Encoding (chunked
-- uploads) is refused with 501 and the connection closed. `Expect:
-- 100-continue` is answered with 100 Continue before the body is read.
--
-- The response, `res` (each method raises on misuse, such as sending twice;
-- writes return true | nil, why when the client has gone or is too slow, and
-- the connection is then closed):
--
--   res:send(status, headers, body)   a whole response; body a string;
--                     Content-Length set; Content-Type text/plain by default
--   res:start(status, headers)        a streamed response: then
--   res:write(data) ... res:finish()  with a Content-Length header, exactly
--                     that much must follow (fewer: the connection is closed
--                     at finish); without one, the body ends when the
--                     connection closes (no chunked encoding)
--   res:send_file(path, headers, opts) a file, streamed (see below)
--   res:abort()       closes the connection at once (to cut a body midway)
--   res.sock          the fotahost.tcp socket under it, for unusual cases
--   res.status        the status sent, once started
--   res.extra_headers a table the handler may set: headers every answer
--                     to this request carries (send_file's 404 and the
--                     server's 500 included) unless the answer gives its own
--
-- Headers are a table name -> value (a string, a number, or a list of
-- strings for a header sent several times). A handler that returns without
-- responding gets a 500; one that started a response without finishing it
-- has it finished. HEAD requests get the head of the GET response and no
-- body: write() then discards what it is given.
--
-- res:send_file(path, headers, opts) streams a file in 64 KiB chunks in
-- constant memory: Content-Length, Accept-Ranges: bytes, an ETag
-- ("size-<n>", or opts.etag), Last-Modified (opts.last_modified: seconds
-- since the epoch or an HTTP date) and a Content-Type guessed from the
-- extension unless `headers` give one. For GET and HEAD it honours a single
-- `Range: bytes=a-b`, `bytes=a-` or `bytes=-n` (206 with Content-Range; 416
-- when it cannot be satisfied; several ranges or a malformed header: 200
-- with the whole file) and If-Range (a validator that does not match the
-- ETag or Last-Modified: 200 with the whole file). A missing file is a 404.
-- opts:
--
--   range = false     ignore Range, always 200 with the whole file
--   etag, last_modified, content_type
--   max_send = n      fault injection: declare the whole length, send n
--                     bytes of the body, then abort
--   rate = bytes/s    pace the body (small writes every ~25 ms)

local sched = require "fotahost.sched"
local sys = require "fotahost.sys"
local tcp = require "fotahost.tcp"
local log = require("fotahost.log").get("httpd")

local M = {}

M.CHUNK = 65536 -- send_file's read and write size

local DEFAULTS = {
  host = "127.0.0.1",
  port = 0,
  idle_timeout = 30,
  max_header = 16384,
  max_body = 1 << 20,
  max_connections = 64,
}

local LINGER = 1 -- seconds an error response waits for the client to stop sending

local now = sched.now
local concat, fmt = table.concat, string.format

M.REASONS = {
  [100] = "Continue", [200] = "OK", [201] = "Created", [202] = "Accepted",
  [204] = "No Content", [206] = "Partial Content",
  [301] = "Moved Permanently", [302] = "Found", [303] = "See Other",
  [304] = "Not Modified", [307] = "Temporary Redirect", [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict",
  [410] = "Gone", [411] = "Length Required", [413] = "Content Too Large",
  [414] = "URI Too Long", [415] = "Unsupported Media Type", [416] = "Range Not Satisfiable",
  [421] = "Misdirected Request", [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout", [505] = "HTTP Version Not Supported",
}

local CONTENT_TYPES = {
  html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8",
  txt = "text/plain; charset=utf-8", json = "application/json", hex = "text/plain",
  bin = "application/octet-stream", gz = "application/gzip", zip = "application/zip",
  css = "text/css", js = "text/javascript", png = "image/png", jpg = "image/jpeg",
}

---------------------------------------------------------------- helpers

--- Decodes %XX escapes (and nothing else: "+" stays "+").
function M.unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- application/x-www-form-urlencoded: "+" is a space, then %XX.
local function form_unescape(s)
  return M.unescape((s:gsub("+", " ")))
end

--- Decodes a query string into a table; a key without "=" maps to "".
function M.parse_query(query)
  local args = {}
  for pair in query:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    args[form_unescape(k)] = form_unescape(v)
  end
  return args
end

--- An HTTP date (RFC 9110 IMF-fixdate) for `t` seconds since the epoch.
function M.http_date(t)
  return os.date("!%a, %d %b %Y %H:%M:%S GMT", math.floor(t))
end

--- Reads a single-range `Range` header against a resource of `size`
-- bytes: first, last (inclusive) | "unsatisfiable" | nil when the header
-- is to be ignored (not bytes, several ranges, malformed).
function M.parse_range(value, size)
  local spec = value:match("^%s*[bB][yY][tT][eE][sS]%s*=%s*(.-)%s*$")
  if not spec or spec:find(",", 1, true) then return nil end
  local a, b = spec:match("^(%d*)%s*%-%s*(%d*)$")
  if not a or (a == "" and b == "") then return nil end
  -- Numbers too large for an integer come back as floats: they only ever
  -- compare with size, and whatever is returned is clamped to it.
  if a == "" then -- the last b bytes
    local n = tonumber(b)
    if n == 0 or size == 0 then return "unsatisfiable" end
    return math.tointeger(math.max(0, size - n)) or 0, size - 1
  end
  local first, last = tonumber(a), b ~= "" and tonumber(b) or nil
  if last and last < first then return nil end
  if first >= size then return "unsatisfiable" end
  return math.tointeger(first), last and last < size and math.tointeger(last) or size - 1
end

local TOKEN = "^[%w!#%$%%&'%*%+%-%.%^_`|~]+$"

-- Raises (at the handler's level) unless name/value can go in a header
-- line: a response must never let a value split itself into two headers.
local function check_header(name, value, what)
  if type(name) ~= "string" or not name:find(TOKEN) then
    error(fmt("%s: bad header name %q", what, tostring(name)), 4)
  end
  if type(value) == "number" then value = fmt("%d", value) end
  if type(value) ~= "string" or value:find("[%z\r\n]") then
    error(fmt("%s: bad value for header %s: %q", what, name, tostring(value)), 4)
  end
  return value
end

-- True when the comma-separated header `value` holds `token` (any case).
local function has_token(value, token)
  if type(value) ~= "string" then return false end
  for t in value:gmatch("[^,%s]+") do
    if t:lower() == token then return true end
  end
  return false
end

local function is_interrupt(err)
  return sys.interrupted() and tostring(err):find("interrupted (", 1, true) ~= nil
end

-- Sends what remains of a refusal, then waits a little for the client to
-- stop sending before closing: closing with unread input makes the kernel
-- reset the connection, and the client may then never see the response.
local function linger_close(sock)
  if sock._closed then return end
  sock:shutdown("w")
  local deadline = now() + LINGER
  repeat
    local _, why = sock:read(M.CHUNK, math.max(0, deadline - now()))
  until why ~= nil -- "timeout" or "closed": either way, done
  sock:close()
end

---------------------------------------------------------------- responses

local Response = {}
local response_mt = { __name = "fotahost.httpd.response", __index = Response }

local function new_response(conn, req)
  return setmetatable({
    sock = conn.sock,
    req = req,
    _srv = conn.srv,
    _head_only = req.method == "HEAD",
    _keep_alive = req.keep_alive or false,
    _state = "new", -- "started" (head sent), "finished", "aborted"
  }, response_mt)
end

local function check_new(res, what)
  if getmetatable(res) ~= response_mt then error(what .. ": response expected", 3) end
  if res._state ~= "new" then
    error(fmt("%s: the response was already %s", what, res._state), 3)
  end
end

-- Builds the status line and headers. `length`: the Content-Length to
-- declare (nil: the user's, or none). Updates res._left and _keep_alive.
local function build_head(res, status, headers, length, what)
  if math.type(status) ~= "integer" or status < 200 or status > 599 then
    error(what .. ": status must be an integer 200..599, got " .. tostring(status), 3)
  end
  if headers ~= nil and type(headers) ~= "table" then
    error(what .. ": headers must be a table, got " .. type(headers), 3)
  end
  local out = { fmt("HTTP/1.1 %d %s\r\n", status, M.REASONS[status] or "Unknown") }
  local seen = {}
  for name, value in pairs(headers or {}) do
    local lname = type(name) == "string" and name:lower() or name
    if lname == "connection" then
      if has_token(value, "close") then res._keep_alive = false end
    -- a caller's Content-Length is dropped when we know the length: ours
    -- wins, send() knows the real length
    elseif lname ~= "content-length" or not length then
      local values = type(value) == "table" and value or { value }
      for _, v in ipairs(values) do
        out[#out + 1] = name .. ": " .. check_header(name, v, what) .. "\r\n"
      end
      seen[lname] = value
    end
  end
  for name, value in pairs(res.extra_headers or {}) do
    if not seen[name:lower()] then
      out[#out + 1] = name .. ": " .. check_header(name, value, what) .. "\r\n"
      seen[name:lower()] = value
    end
  end
  local no_body = status == 204 or status == 304
  if length and not no_body then
    out[#out + 1] = fmt("Content-Length: %d\r\n", length)
    res._left = length
  elseif seen["content-length"] then
    local n = math.tointeger(tonumber(seen["content-length"]))
    if not n or n < 0 then
      error(fmt("%s: bad Content-Length %q", what, tostring(seen["content-length"])), 3)
    end
    res._left = n
  elseif not no_body and not res._head_only then
    -- the body ends when the connection does
    res._keep_alive = false
  end
  if not seen["content-type"] and not no_body then
    out[#out + 1] = "Content-Type: text/plain; charset=utf-8\r\n"
  end
  if not seen["date"] then out[#out + 1] = "Date: " .. M.http_date(sys.time()) .. "\r\n" end
  if not seen["server"] then out[#out + 1] = "Server: fotahost\r\n" end
  if not res._keep_alive then
    out[#out + 1] = "Connection: close\r\n"
  elseif res.req.version == "1.0" then
    out[#out + 1] = "Connection: keep-alive\r\n"
  end
  out[#out + 1] = "\r\n"
  res.status = status
  res._no_body = no_body or res._head_only
  local hook = res._srv.on_response
  if hook then hook(res.req, status, res) end
  return concat(out)
end

-- Writes to the client; a failure closes the connection for good.
local function put(res, data)
  if res._failed then return nil, res._failed end
  local ok, why = res.sock:write(data, res._srv.idle_timeout)
  if not ok then
    res._failed = why
    res._keep_alive = false
    return nil, why
  end
  return true
end

--- A whole response: `body` (a string, default "") with its Content-Length.
function Response:send(status, headers, body)
  check_new(self, "res:send")
  body = body or ""
  if type(body) ~= "string" then error("res:send: body must be a string, got " .. type(body), 2) end
  local head = build_head(self, status, headers, #body, "res:send")
  self._state = "finished"
  if self._no_body then return put(self, head) end
  -- One write for small responses: one segment on the wire.
  if #body <= M.CHUNK then return put(self, head .. body) end
  local ok, why = put(self, head)
  if not ok then return nil, why end
  return put(self, body)
end

--- Sends the head of a streamed response; write() and finish() follow.
function Response:start(status, headers)
  check_new(self, "res:start")
  local head = build_head(self, status, headers, nil, "res:start")
  self._state = "started"
  return put(self, head)
end

--- Sends part of a streamed body.
function Response:write(data)
  if getmetatable(self) ~= response_mt then error("res:write: response expected", 2) end
  if self._state ~= "started" then
    error("res:write: " .. (self._state == "new" and "res:start comes first" or "the response was " .. self._state), 2)
  end
  if type(data) ~= "string" then error("res:write: string expected, got " .. type(data), 2) end
  if self._left then
    if #data > self._left then
      error(fmt("res:write: %d bytes past the Content-Length declared", #data - self._left), 2)
    end
    self._left = self._left - #data
  end
  if self._no_body or data == "" then return true end
  return put(self, data)
end

--- Ends a streamed response. A body shorter than its Content-Length
-- cannot be mended: the connection is closed, so the client sees it short.
function Response:finish()
  if getmetatable(self) ~= response_mt then error("res:finish: response expected", 2) end
  if self._state == "finished" then return true end
  if self._state ~= "started" then
    error("res:finish: " .. (self._state == "new" and "res:start comes first" or "the response was " .. self._state), 2)
  end
  self._state = "finished"
  if self._left and self._left > 0 and not self._no_body then
    log.warn("%s %s: body ended %d bytes short of its Content-Length; closing",
      self.req.method, self.req.target, self._left)
    self._keep_alive = false
  end
  if self._failed then return nil, self._failed end
  return true
end

--- Closes the connection now, whatever was sent.
function Response:abort()
  if getmetatable(self) ~= response_mt then error("res:abort: response expected", 2) end
  self._state = "aborted"
  self._keep_alive = false
  self.sock:close()
  return true
end

local function content_type_for(path)
  local ext = path:match("%.([%w]+)$")
  return ext and CONTENT_TYPES[ext:lower()] or "application/octet-stream"
end

local function open_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  -- A directory opens too (and seeks to a huge "size"); "dir/" opens only
  -- when path is one.
  local d = io.open(path .. "/", "rb")
  if d then
    d:close()
    f:close()
    return nil
  end
  return f
end

--- Streams a file; see the header of this file for ranges and opts.
-- @return true | nil, why
function Response:send_file(path, headers, opts)
  check_new(self, "res:send_file")
  if type(path) ~= "string" then error("res:send_file: path must be a string", 2) end
  opts = opts or {}
  local f <close> = open_file(path)
  if not f then
    return self:send(404, { ["Content-Type"] = "text/plain; charset=utf-8" }, "not found\n")
  end
  local size = f:seek("end")
  local h, has_type = {}, false
  for k, v in pairs(headers or {}) do
    h[k] = v
    if type(k) == "string" and k:lower() == "content-type" then has_type = true end
  end
  if not has_type then h["Content-Type"] = opts.content_type or content_type_for(path) end
  local etag = opts.etag and ('"' .. tostring(opts.etag):gsub('"', "") .. '"') or fmt('"size-%d"', size)
  h["ETag"] = etag
  local lm = opts.last_modified
  if type(lm) == "number" then lm = M.http_date(lm) end
  if lm then h["Last-Modified"] = lm end
  h["Accept-Ranges"] = opts.range == false and "none" or "bytes"

  local req = self.req
  local first, last, status = 0, size - 1, 200
  local range = req.headers.range
  if range and opts.range ~= false and (req.method == "GET" or req.method == "HEAD") then
    local if_range = req.headers["if-range"]
    -- If-Range: the range only applies to the representation the client
    -- already has part of; otherwise it gets the whole new one.
    if not if_range or if_range == etag or (lm and if_range == lm) then
      local a, b = M.parse_range(range, size)
      if a == "unsatisfiable" then
        return self:send(416, { ["Content-Range"] = fmt("bytes */%d", size), ["ETag"] = etag },
          "range not satisfiable\n")
      elseif a then
        first, last, status = a, b, 206
        h["Content-Range"] = fmt("bytes %d-%d/%d", first, last, size)
      end
    end
  end
  local length = last - first + 1
  h["Content-Length"] = length
  local ok, why = self:start(status, h)
  if not ok then return nil, why end
  if self._no_body then return self:finish() end

  f:seek("set", first)
  local to_send = length
  if opts.max_send and opts.max_send < length then to_send = math.max(0, opts.max_send) end
  local rate = opts.rate
  local chunk = M.CHUNK
  if rate then chunk = math.max(1, math.min(M.CHUNK, math.floor(rate / 40))) end
  local t0, sent = now(), 0
  while sent < to_send do
    local data = f:read(math.min(chunk, to_send - sent))
    if not data then
      log.error("%s: the file shrank while being sent; closing", path)
      self:abort()
      return nil, path .. ": file shrank while being sent"
    end
    ok, why = self:write(data)
    if not ok then return nil, why end
    sent = sent + #data
    if rate then
      local ahead = t0 + sent / rate - now()
      if ahead > 0 then sched.sleep(ahead) end
    end
  end
  if to_send < length then
    self:abort()
    return true
  end
  return self:finish()
end

---------------------------------------------------------------- requests

-- Reads and checks one request head and its body. Returns req, or nil,
-- status (an error to answer, then close), or nil when the connection is
-- to be closed silently (the client left, or stayed idle).
local function read_request(conn)
  local srv, sock = conn.srv, conn.sock
  local req = { headers = {}, peer = conn.peer, body = "" }
  local budget = srv.max_header
  local line, why
  repeat -- a client may send empty lines between requests: skip them
    if budget < 1 then return nil, 431, req end
    line, why = sock:read_line(srv.idle_timeout, budget)
    if not line then
      if why == "line too long" then return nil, 414, req end
      return nil -- closed or idle
    end
    budget = budget - #line - 2
    if budget < 0 then return nil, 431, req end
  until line ~= ""
  local deadline = now() + srv.idle_timeout

  local method, target, major, minor = line:match("^(%S+) (%S+) HTTP/(%d)%.(%d)$")
  if not method or not method:find(TOKEN) or target:find("%c") then return nil, 400, req end
  req.method, req.target = method, target
  if major ~= "1" then return nil, 505, req end
  req.version = minor == "0" and "1.0" or "1.1" -- a later 1.x speaks 1.1 at least

  -- absolute-form (proxies send it): keep the path and query only
  local rest = target:match("^[hH][tT][tT][pP][sS]?://[^/?#]*(.*)$")
  if rest then target = rest:sub(1, 1) == "/" and rest or "/" .. rest end
  if target:sub(1, 1) ~= "/" and not (target == "*" and method == "OPTIONS") then
    return nil, 400, req
  end
  req.path, req.query = target:match("^([^?#]*)%??([^#]*)")
  req.args = M.parse_query(req.query)

  local headers = req.headers
  while true do
    local left = deadline - now()
    if budget < 1 then return nil, 431, req end
    line, why = sock:read_line(math.max(0, left), budget)
    if not line then
      if why == "line too long" then return nil, 431, req end
      if why == "timeout" then return nil, 408, req end
      return nil
    end
    budget = budget - #line - 2
    if budget < 0 then return nil, 431, req end
    if line == "" then break end
    -- No obsolete line folding, no space before the colon, no bare CR.
    local name, value = line:match("^([^:%s]+):[ \t]*(.-)[ \t]*$")
    if not name or not name:find(TOKEN) or value:find("[%z\r]") then return nil, 400, req end
    name = name:lower()
    local old = headers[name]
    headers[name] = old and (old .. ", " .. value) or value
  end

  local conn_hdr = headers.connection
  if req.version ~= "1.0" then
    req.keep_alive = not has_token(conn_hdr, "close")
  else
    req.keep_alive = has_token(conn_hdr, "keep-alive")
  end

  if headers["transfer-encoding"] then return nil, 501, req end
  local cl = headers["content-length"]
  local length = 0
  if cl then
    -- repeated Content-Length headers are joined: all must agree
    for v in cl:gmatch("[^,]+") do
      local n = v:match("^%s*(%d+)%s*$")
      n = n and #n <= 15 and math.tointeger(tonumber(n))
      if not n or (length ~= 0 and n ~= length) then return nil, 400, req end
      length = n
    end
  end
  if length > srv.max_body then return nil, 413, req end
  if length > 0 then
    if has_token(headers.expect, "100-continue") and req.version == "1.1" then
      if not sock:write("HTTP/1.1 100 Continue\r\n\r\n", srv.idle_timeout) then return nil end
    end
    local body, bwhy = sock:read(length, srv.idle_timeout)
    if not body then return nil, bwhy == "timeout" and 408 or nil, req end
    req.body = body
  end
  return req
end

-- Answers a request the server itself refuses, then closes.
local function refuse(conn, status, req)
  req.headers = req.headers or {}
  req.method = req.method or "-"
  req.target = req.target or "-"
  req.version = req.version or "1.1"
  req.keep_alive = false
  local res = new_response(conn, req)
  local ok, err = pcall(res.send, res, status, nil, fmt("%d %s\n", status, M.REASONS[status]))
  if not ok then
    if is_interrupt(err) then error(err, 0) end
    log.error("on_response failed: %s", tostring(err))
  end
  linger_close(conn.sock)
end

local function traceback(err)
  if is_interrupt(err) then return err end
  return debug.traceback(tostring(err), 2)
end

-- Runs the handler for one request. @return true to keep the connection
local function handle(conn, req)
  local srv = conn.srv
  local res = new_response(conn, req)
  local ok, err = xpcall(srv.handler, traceback, req, res)
  if not ok then
    if is_interrupt(err) then error(err, 0) end
    log.error("%s %s from %s: handler failed: %s", req.method, req.target, req.peer, err)
  elseif res._state == "new" then
    log.error("%s %s from %s: the handler sent no response", req.method, req.target, req.peer)
  end
  if res._state == "new" then
    ok, err = pcall(res.send, res, 500, nil, "internal server error\n")
    if not ok then
      if is_interrupt(err) then error(err, 0) end
      log.error("on_response failed: %s", tostring(err))
      return false
    end
  elseif res._state == "started" then
    if ok then
      res:finish()
    else
      res._keep_alive = false -- a body cut by an error must not look whole
    end
  end
  -- (_closed: a handler may have closed res.sock itself)
  return res._keep_alive and not res._failed and not conn.sock._closed
end

local function serve(srv, sock)
  local task = sched.current()
  local conn = { srv = srv, sock = sock }
  local host, port = sock:getpeername()
  conn.peer = host and fmt(host:find(":", 1, true) and "[%s]:%d" or "%s:%d", host, port) or "?"
  -- However the task ends (done, failed, cancelled by close()), the socket
  -- closes and the connection stops counting.
  local _ <close> = setmetatable({}, { __close = function()
    sock:close()
    srv._conns[task] = nil
    srv.connections = srv.connections - 1
  end })
  while not srv._closed do
    local req, status, partial = read_request(conn)
    if not req then
      if status then refuse(conn, status, partial) end
      return
    end
    if not handle(conn, req) then return end
  end
end

-- Past max_connections: say so, briefly, in a task of its own (not counted).
local function turn_away(srv, sock)
  local task = sched.current()
  local _ <close> = setmetatable({}, { __close = function()
    sock:close()
    srv._conns[task] = nil
  end })
  sock:write("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    .. "Content-Length: 5\r\nRetry-After: 1\r\nConnection: close\r\n\r\nbusy\n", 0)
  linger_close(sock)
end

---------------------------------------------------------------- server

local Server = {}
local server_mt = { __name = "fotahost.httpd.server", __index = Server }

local function accept_loop(srv)
  local listener <close> = srv._listener
  while not srv._closed do
    -- A finite wait keeps the rule "every wait has a timeout"; a timeout
    -- only means "no client for a minute".
    local sock, err = listener:accept(60)
    if sock then
      local over = srv.connections >= srv.max_connections
      if not over then srv.connections = srv.connections + 1 end
      local t = sched.spawn({ name = "httpd " .. sock.name, log_errors = true },
        over and turn_away or serve, srv, sock)
      srv._conns[t] = sock
    elseif err ~= "timeout" then
      -- EMFILE and friends: do not spin, let connections end
      log.warn("accept on %s: %s", srv.url, tostring(err))
      sched.sleep(0.1)
    end
  end
end

local function opt(opts, name, kind, check)
  local v = opts[name]
  if v == nil then return DEFAULTS[name] end
  if (kind == "integer" and math.type(v) ~= "integer") or (kind ~= "integer" and type(v) ~= kind)
      or (check and not check(v)) then
    error(fmt("httpd.listen: bad %s: %s", name, tostring(v)), 3)
  end
  return v
end

local function positive(v) return v > 0 end

--- Binds and starts serving (see the top of this file).
-- @return server | nil, "host:port: cause"
function M.listen(opts)
  if type(opts) ~= "table" then error("httpd.listen: options table expected", 2) end
  if type(opts.handler) ~= "function" then error("httpd.listen: handler function required", 2) end
  if not sched.current() then
    error("httpd.listen: not inside a scheduler task (call it within sched.run)", 2)
  end
  local srv = setmetatable({
    host = opt(opts, "host", "string"),
    handler = opts.handler,
    on_response = opts.on_response,
    idle_timeout = opt(opts, "idle_timeout", "number", positive),
    max_header = opt(opts, "max_header", "integer", positive),
    max_body = opt(opts, "max_body", "integer", function(v) return v >= 0 end),
    max_connections = opt(opts, "max_connections", "integer", positive),
    connections = 0, -- live connections, past the 503 ones
    _conns = {},     -- task -> its socket, for every connection task
  }, server_mt)
  if srv.on_response ~= nil and type(srv.on_response) ~= "function" then
    error("httpd.listen: on_response must be a function", 2)
  end
  local listener, err = tcp.listen(srv.host, opt(opts, "port", "integer"), 64)
  if not listener then return nil, err end
  srv._listener = listener
  local _, port = listener:getsockname()
  srv.port = port
  srv.url = fmt(srv.host:find(":", 1, true) and "http://[%s]:%d" or "http://%s:%d", srv.host, port)
  srv._accept_task = sched.spawn({ name = "httpd accept " .. srv.url, log_errors = true },
    accept_loop, srv)
  return srv
end

--- Stops accepting and closes every live connection (their tasks are
-- cancelled; a handler calling close() finishes its own request first).
-- Idempotent; `<close>` calls it.
function Server:close()
  if getmetatable(self) ~= server_mt then error("srv:close: httpd server expected", 2) end
  if self._closed then return true end
  self._closed = true
  local me = sched.current()
  if self._accept_task ~= me then sched.cancel(self._accept_task) end
  for task, sock in pairs(self._conns) do
    if task ~= me then
      sched.cancel(task)
      sock:close() -- if the task never ran, nothing else will
    end
  end
  self._listener:close()
  return true
end

server_mt.__close = function(self) self:close() end
server_mt.__tostring = function(self)
  return "httpd server " .. self.url .. (self._closed and " (closed)" or "")
end

return M
