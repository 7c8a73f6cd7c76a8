---@meta fotahost.http
-- API stub for script authors (LuaLS). Two modules:
-- * fotahost.http (Lua: scripts/fotahost/http.lua): requests and downloads,
--   with retries, resume and atomic files; what scripts use;
-- * fotahost.http.core (C plugin: plugins/http.core.c): one libcurl
--   transfer that never waits, driven by fotahost.http.
--
-- Every wait happens in the scheduler when called from a task (other tasks
-- keep running), or in a private poller otherwise. Only http:// and
-- https:// URLs are fetched, redirects included (at most `max_redirects`).
-- TLS certificates and host names are verified unless `insecure = true`
-- (logged as a warning on every call).
--
-- Failures return `nil, "<url>: <cause>", code`: code is the HTTP status
-- (integer) when the server answered with an error, else one of "timeout",
-- "connect", "resolve", "tls", "truncated", "too_large", "protocol",
-- "redirects", "recv", "send", "file", "url", "range", "other" (and, for a
-- download past its own `timeout` or under its `min_rate`, "deadline" or
-- "too_slow"). URLs in
-- messages are masked (user:password, key/token/secret/password query
-- values); a `deviceKey` header value is registered with fotahost.log as a
-- secret and never printed. Misuse (a wrong argument type) raises.
-- Errors: fotahost.http's code is the HTTP status (an integer) or a kind
-- string, as above, never an errno; fotahost.http.core's new() returns nil,
-- "path: strerror", code when its file cannot be opened: code is the errno.
---@class fotahost.http
local http = {}

---Statuses retried by `retries` (408, 429, 500, 502, 503, 504).
---@type table<integer, boolean>
http.RETRY_STATUS = {}

---Failure kinds retried by `retries`.
---@type table<string, boolean>
http.RETRY_KINDS = {}

---@class fotahost.http.Options
---@field url string? (request() only) http:// or https://
---@field method ("GET"|"HEAD"|"POST"|"PUT"|"PATCH"|"DELETE")? default "GET"
---@field headers table<string, string>? sent as given; CR/LF in them is refused
---@field body string? request body (not for GET)
---@field max_size integer? bytes accepted; request(): default 8 MiB, download(): none
---@field connect_timeout number? seconds, default 10
---@field timeout number? seconds for the whole transfer, default none; download(): for every try and the pauses between them together (code "deadline")
---@field min_rate number? (download() only) bytes/s the download must average from its start, default 0 (no check); under it: code "too_slow"
---@field min_rate_after number? (download() only) seconds spent in transfers before min_rate is checked, default 60
---@field low_speed_limit integer? bytes/s, default 1
---@field low_speed_time number? seconds below low_speed_limit before giving up, default 30
---@field max_redirects integer? default 5; 0 does not follow
---@field cainfo string? a PEM file of CA certificates to trust instead of the system's
---@field capath string? a directory of hashed CA certificates
---@field insecure boolean? turn TLS verification off (logged)
---@field user_agent string? default "fotahost/<version>"
---@field retries integer? further tries: request() default 0, download() default 3
---@field retry_delay number? first wait between tries, seconds, default 1 (doubles, with jitter)
---@field retry_max_delay number? cap on that wait, default 30
---@field progress fun(done: integer, total: integer|nil)? at most 10 calls/s plus one at the end; runs under pcall, and an error it raises aborts the transfer and is re-raised after cleanup

---@class fotahost.http.Response
---@field status integer
---@field headers table<string, string> lower-case names; repeated headers joined with ", "
---@field body string
---@field url string the final URL, after redirects

---Sends one request; returns the response whatever its status (retries,
---if asked for, cover no answer and 408/429/5xx).
---```lua
---local res, err = http.request{ method = "POST", url = base .. "/datapoints.csv",
---  headers = { deviceKey = key, ["Content-Type"] = "text/csv" }, body = "temp,,21.5" }
---```
---@param opts fotahost.http.Options
---@return fotahost.http.Response|nil res
---@return string? err "<url>: <cause>"
---@return integer|string? code
function http.request(opts) end

---@param url string
---@param opts? fotahost.http.Options
---@return fotahost.http.Response|nil res
---@return string? err
---@return integer|string? code
function http.get(url, opts) end

---@param url string
---@param opts? fotahost.http.Options
---@return fotahost.http.Response|nil res
---@return string? err
---@return integer|string? code
function http.delete(url, opts) end

---@param url string
---@param body string
---@param opts? fotahost.http.Options
---@return fotahost.http.Response|nil res
---@return string? err
---@return integer|string? code
function http.post(url, body, opts) end

---@param url string
---@param body string
---@param opts? fotahost.http.Options
---@return fotahost.http.Response|nil res
---@return string? err
---@return integer|string? code
function http.put(url, body, opts) end

---A JSON call: `value` (unless nil) is sent as application/json; the answer
---is decoded. A non-2xx status is an error whose cause quotes the server's
---`message` field.
---@param method string
---@param url string
---@param value any
---@param opts? fotahost.http.Options
---@return any|nil decoded
---@return fotahost.http.Response|string res_or_err
---@return integer|string? code
function http.json(method, url, value, opts) end

---@class fotahost.http.Download
---@field bytes integer
---@field status integer 200 or 206
---@field url string final URL
---@field headers table<string, string>
---@field attempts integer tries made
---@field resumed integer tries that continued a partial body with Range
---@field restarted integer tries the server answered in full instead

---Downloads `url` into the file `dest` (atomically: "dest.part", fsync,
---rename; removed on failure, so `dest` is untouched) or into a sink
---function (called with each chunk from inside libcurl: it must not wait,
---and an error it raises aborts and is re-raised). Only 2xx bodies are
---taken. Retries resume with Range/If-Range; a server that ignores the
---range is taken from byte 0 again (a sink cannot rewind: that is a
---"range" error).
---@param url string
---@param dest string|fun(chunk: string)
---@param opts? fotahost.http.Options
---@return fotahost.http.Download|nil result
---@return string? err
---@return integer|string? code
function http.download(url, dest, opts) end

---`url` with user:password and sensitive query values replaced by "****".
---@param url string
---@return string
function http.redact_url(url) end

---libcurl's version string.
---@return string
function http.curl_version() end

return http
