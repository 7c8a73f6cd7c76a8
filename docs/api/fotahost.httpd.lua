---@meta fotahost.httpd
-- API stub for script authors (LuaLS). The module is Lua:
-- dev/scripts/fotahost/httpd.lua, on fotahost.tcp and fotahost.sched.
-- Errors: misuse (a bad handler, a finished response) raises; listen()
-- returns nil, "host:port: cause" with no code; a response write that fails
-- returns nil, why with no code.

---A small HTTP/1.1 server on the scheduler: keep-alive, HEAD, files with
---single byte ranges, bounded memory, every wait with a timeout. Made for
---loopback test servers and the local development cloud.
---```lua
---local httpd = require "fotahost.httpd"
---local sched = require "fotahost.sched"
---sched.run(function()
---  local srv <close> = assert(httpd.listen {
---    port = 0,
---    handler = function(req, res)
---      if req.path == "/hello" then
---        res:send(200, nil, "hi " .. (req.args.name or "") .. "\n")
---      else
---        res:send_file("/srv/files/" .. httpd.unescape(req.path:match("[^/]*$")))
---      end
---    end,
---  })
---  print("serving on " .. srv.url)
---  sched.sleep(60)
---end)
---```
---Each connection runs in a task of its own, its requests one after
---another; a handler may wait (sched.sleep, socket reads) without holding
---up other connections. A handler that raises gets a 500 (or, when it had
---started its response, the connection closed) and a log line; the server
---goes on.
---
---The server answers by itself: 400 to a malformed request line or header
---(obsolete line folding, a space before the colon, a bad Content-Length),
---414 to a request line longer than max_header, 431 to a head longer than
---max_header, 413 to a body longer than max_body, 501 to any
---Transfer-Encoding (chunked request bodies are not supported: send a
---Content-Length), 505 to HTTP other than 1.x, 408 to a head or body that
---does not arrive within idle_timeout, and 503 past max_connections; each
---then closes the connection.
---@class fotahost.httpd
---@field CHUNK integer send_file's read and write size: 65536
---@field REASONS table<integer, string> reason phrases by status
local M = {}

---@class fotahost.httpd.Options
---@field handler fun(req: fotahost.httpd.Request, res: fotahost.httpd.Response) required
---@field host? string numeric address, default "127.0.0.1"
---@field port? integer default 0: a free port (srv.port says which)
---@field idle_timeout? number seconds, default 30: the wait for the next request on a kept-alive connection, for a request's head, for its body, and for each write the client is slow to take
---@field max_header? integer bytes of request line and headers, default 16384
---@field max_body? integer bytes of request body, default 1048576
---@field max_connections? integer default 64; one more is accepted, answered 503 and closed
---@field on_response? fun(req: fotahost.httpd.Request, status: integer, res: fotahost.httpd.Response) called just before each response head is written (an access log); for the server's own refusals req holds only what was parsed

---@class fotahost.httpd.Server
---@field host string
---@field port integer
---@field url string "http://127.0.0.1:PORT"
---@field connections integer live connections
local Server = {}

---@class fotahost.httpd.Request
---@field method string "GET"
---@field target string "/a/b?x=1" as sent
---@field path string "/a/b", still percent-encoded (httpd.unescape decodes)
---@field query string "x=1", raw; "" when there is none
---@field args table<string, string> the query decoded; a key without "=" maps to ""; a repeated key: the last wins
---@field version "1.0"|"1.1"
---@field headers table<string, string> names lower-cased; repeated headers joined with ", "
---@field body string "" when none; read in full (at most max_body) before the handler runs
---@field peer string "host:port" of the client
---@field keep_alive boolean what the client asked for

---@class fotahost.httpd.Response
---@field sock fotahost.tcp.Socket the connection, for unusual cases
---@field req fotahost.httpd.Request
---@field status? integer the status sent, once the head is
local Response = {}

---@class fotahost.httpd.FileOptions
---@field range? boolean false: ignore Range, always 200 with the whole file
---@field etag? string instead of "size-<n>" (quotes added)
---@field last_modified? number|string seconds since the epoch, or an HTTP date
---@field content_type? string instead of the guess from the extension
---@field max_send? integer fault injection: declare the whole length, send this many body bytes, then abort
---@field rate? number bytes per second: pace the body (small writes every ~25 ms)

---Binds and starts the accept loop as a task; returns at once. Must be
---called inside a running scheduler (sched.run). Misuse (no handler, a bad
---option) raises.
---@param opts fotahost.httpd.Options
---@return fotahost.httpd.Server|nil server
---@return string? err "host:port: cause", e.g. "127.0.0.1:8080: Address already in use"
function M.listen(opts) end

---Stops accepting and closes every live connection (their tasks are
---cancelled; a handler calling it finishes its own request first).
---Idempotent; `<close>` calls it. Tasks still running when sched.run ends
---are closed too, and the port with them.
---@return true
function Server:close() end

---A whole response, with its Content-Length. Content-Type is
---"text/plain; charset=utf-8" unless `headers` say otherwise; Date and
---Server are added. Headers: name -> string, number, or a list of strings
---(a header sent several times); a name or value that would break the head
---(CR, LF) raises. 204 and 304 carry no body. For HEAD only the head goes.
---@param status integer 200..599
---@param headers? table<string, string|number|string[]>
---@param body? string default ""
---@return true|nil ok
---@return string? why "timeout" or "closed" (the client went away or does not read); the connection is then closed
function Response:send(status, headers, body) end

---Sends the head of a streamed response. With a Content-Length header,
---exactly that many bytes must follow (more raises; fewer: the connection
---is closed at finish, so the client sees the body short). Without one,
---the response says Connection: close and the body ends with the
---connection (no chunked encoding).
---@param status integer 200..599
---@param headers? table<string, string|number|string[]>
---@return true|nil ok
---@return string? why
function Response:start(status, headers) end

---Sends part of a streamed body (discarded for HEAD).
---@param data string
---@return true|nil ok
---@return string? why "timeout" or "closed"
function Response:write(data) end

---Ends a streamed response. A handler that returns without it has it
---called for it.
---@return true|nil ok
---@return string? why a write had failed
function Response:finish() end

---Streams a file in 64 KiB chunks, in constant memory: Content-Length,
---Accept-Ranges: bytes, ETag ("size-<n>" or opts.etag), Last-Modified
---(opts.last_modified) and a Content-Type guessed from the extension. For
---GET and HEAD, a single `Range: bytes=a-b`, `bytes=a-` or `bytes=-n` gets
---206 with Content-Range, or 416 (with `Content-Range: bytes */size`) when
---it starts past the end; several ranges or a malformed header are ignored
---(200, the whole file). If-Range that matches neither the ETag nor
---Last-Modified: 200, the whole file. A missing file (or a directory): 404.
---@param path string
---@param headers? table<string, string|number|string[]> more headers; a Content-Type here wins
---@param opts? fotahost.httpd.FileOptions
---@return true|nil ok
---@return string? why "timeout", "closed", or "path: file shrank while being sent"
function Response:send_file(path, headers, opts) end

---Closes the connection at once, whatever was sent (fault injection: a
---body cut midway).
---@return true
function Response:abort() end

---Decodes %XX escapes ("+" stays "+").
---@param s string
---@return string
function M.unescape(s) end

---Decodes a query string: "a=1&b=x+y&c" -> { a = "1", b = "x y", c = "" }.
---@param query string
---@return table<string, string>
function M.parse_query(query) end

---Reads a `Range` header against a resource of `size` bytes.
---@param value string e.g. "bytes=0-99"
---@param size integer
---@return integer|"unsatisfiable"|nil first nil: ignore the header (not bytes, several ranges, malformed)
---@return integer? last inclusive, clamped to size - 1
function M.parse_range(value, size) end

---An HTTP date: "Sun, 06 Nov 1994 08:49:37 GMT".
---@param t number seconds since the epoch
---@return string
function M.http_date(t) end

return M
