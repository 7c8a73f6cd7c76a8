--- fotahost.http: HTTP and HTTPS for scripts, on libcurl, inside the
-- scheduler.
--
--     local http = require "fotahost.http"
--     local res, err = http.request{ method = "PUT", url = url, body = '{"version":"2"}',
--                                    headers = { ["Content-Type"] = "application/json" } }
--     if res then print(res.status, res.headers["content-type"], res.body) end
--
--     local ok, err, code = http.download(url, "/var/lib/fotahost/fw.hex", {
--       max_size = 256 * 1024,
--       progress = function(done, total) print(done, total) end,
--     })
--
-- While a transfer runs, the task that started it waits in the scheduler
-- (one fd per transfer, see plugins/http.core.c), so the other tasks keep
-- running: a heartbeat, a serial read, a timer. Outside any task the calls
-- wait in a poller of their own and work the same.
--
-- Failures return `nil, "<url>: <cause>", code`, where code is the HTTP
-- status (an integer) when the server answered with an error, else a short
-- kind: "timeout", "connect", "resolve", "tls", "truncated", "too_large",
-- "protocol" (a refused scheme or redirect, a malformed answer), "redirects",
-- "recv", "send", "file", "url", "range", "other", and for a download
-- past its own limits "deadline" or "too_slow". URLs in messages have
-- their user:password and any key, token, secret or password query values
-- masked, and the value of any `deviceKey` header is registered as a
-- secret with fotahost.log, so it is never printed by anyone.
--
-- Only http and https, for the first URL and every redirect (at most
-- `max_redirects`, default 5). TLS verification is always on unless a call
-- says `insecure = true`, which is logged as a warning each time.

local core = require "fotahost.http.core"
local sched = require "fotahost.sched"
local stream = require "fotahost.stream"
local sys = require "fotahost.sys"
local logmod = require "fotahost.log"

local log = logmod.get("http")

local M = {}

local now = sched.now

--- HTTP statuses worth another try (the server may recover), as curl's
-- --retry has them.
M.RETRY_STATUS = { [408] = true, [429] = true, [500] = true, [502] = true, [503] = true, [504] = true }

--- Transport failures worth another try.
M.RETRY_KINDS = { timeout = true, connect = true, resolve = true, recv = true, send = true,
                  truncated = true }

-- Options passed through to fotahost.http.core as they are.
local PASS = { "connect_timeout", "timeout", "low_speed_time", "low_speed_limit", "max_redirects",
               "max_size", "cainfo", "capath", "insecure", "user_agent" }

local SENSITIVE = { "key", "token", "secret", "password", "passwd", "sig" }

--- `url` fit for a message: user:password@ and the values of query
-- parameters whose names contain key, token, secret, password or sig
-- replaced by "****".
function M.redact_url(url)
  url = tostring(url):gsub("^(%a[%w+.-]*://)[^/?#@]*@", "%1****@")
  return (url:gsub("([?&])([^=&#]*)=([^&#]*)", function(sep, name, value)
    local lname = name:lower()
    for _, word in ipairs(SENSITIVE) do
      if lname:find(word, 1, true) then return sep .. name .. "=****" end
    end
    return sep .. name .. "=" .. value
  end))
end

-- A shallow copy of `t` (nil: an empty table), with `extra`'s fields over it.
local function copy(t, extra)
  local c = {}
  for k, v in pairs(t or {}) do c[k] = v end
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

local function label(url, cause)
  return logmod.redact(M.redact_url(url) .. ": " .. cause)
end

local function check_opts(opts, what)
  if type(opts) ~= "table" then error(what .. ": options table expected", 3) end
  if type(opts.url) ~= "string" then error(what .. ": url must be a string", 3) end
  if opts.progress ~= nil and type(opts.progress) ~= "function" then
    error(what .. ": progress must be a function", 3)
  end
end

-- The options for core.new, from a call's options. A deviceKey header is
-- made a log secret here, before anything can print it.
local function curl_opts(opts, url)
  local c = { url = url, method = opts.method, body = opts.body }
  for _, k in ipairs(PASS) do c[k] = opts[k] end
  if opts.headers then
    c.headers = {}
    for name, value in pairs(opts.headers) do
      if type(name) == "string" and name:lower() == "devicekey" and type(value) == "string" then
        logmod.secret(value)
      end
      c.headers[name] = value
    end
  end
  if opts.insecure then
    log.warn("TLS certificate and host verification are OFF for %s (insecure = true)",
      M.redact_url(url))
  end
  return c
end

-- Runs a transfer to its end, waiting in the scheduler (or the holder's
-- poller), and reports progress under pcall: a raising callback stops the
-- transfer, and its error goes up after the caller's cleanup. `watch(t)`,
-- if given, is asked at least once a second whether to stop: a kind and a
-- cause end the drive there (the caller closes the transfer) and are
-- returned.
local function drive(t, holder, progress, watch)
  local fd = t:fd()
  local last_done, last_at = -1, -math.huge
  while true do
    local state, wait = t:step()
    if progress then
      local done, total = t:progress()
      local at = now()
      if done ~= last_done and (state == "done" or at - last_at >= 0.1) then
        last_done, last_at = done, at
        local ok, err = pcall(progress, done, total)
        if not ok then error(err, 0) end
      end
    end
    if state == "done" then return end
    if watch then
      local kind, cause = watch(t)
      if kind then return kind, cause end
    end
    if wait and wait <= 0 then
      -- libcurl has more to do at once (a fast download): let the other
      -- tasks run first, or a loopback transfer would hold the process
      if sched.current() then sched.yield() end
    else
      -- libcurl always keeps a timer while it runs; the 1 s cap is only a
      -- safety net.
      stream.wait(holder, fd, "r", now() + math.min(wait or 1, 1))
    end
  end
end

local function close_holder(holder)
  if holder._poller then
    holder._poller:close()
    holder._poller = nil
  end
end

-- How long to wait before try number `n + 1`: exponential from `base`,
-- capped, with jitter (half to all of it), or the server's Retry-After
-- when that is sooner than the cap.
local function backoff(n, base, cap, retry_after)
  local ra = tonumber(retry_after)
  if ra and ra >= 0 then return math.min(ra, cap) end
  local d = math.min(cap, base * 2 ^ (n - 1))
  return d * (0.5 + 0.5 * math.random())
end

local function retryable(info)
  if info.kind == "http" then return M.RETRY_STATUS[info.status] == true end
  return M.RETRY_KINDS[info.kind] == true
end

local function failure(url, info, attempts)
  local cause = info.error
  if attempts > 1 then cause = ("%s (after %d attempts)"):format(cause, attempts) end
  return nil, label(url, cause), info.kind == "http" and info.status or info.kind
end

--- Sends one request and returns the whole response, whatever its status:
-- `{ status = 200, headers = { ["content-type"] = ... }, body = "...", url = final URL }`
-- or `nil, "<url>: <cause>", code` when there was no answer. Options:
-- `url`, `method` ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"),
-- `headers` (name -> value), `body` (a string), `max_size` (bytes kept,
-- default 8 MiB), `connect_timeout` (s, default 10), `timeout` (s, whole
-- request, default none), `low_speed_time`/`low_speed_limit` (abort when
-- slower than limit B/s for time s; default 1 B/s for 30 s),
-- `max_redirects`, `cainfo`, `capath`, `insecure`, `user_agent`,
-- `retries` (default 0) with `retry_delay` and `retry_max_delay`, and
-- `progress(done, total)`. (download()'s `min_rate` and `min_rate_after`
-- are ignored here, so one table of options serves both.)
function M.request(opts)
  check_opts(opts, "http.request")
  local holder = { name = M.redact_url(opts.url) }
  local tries = (opts.retries or 0) + 1
  local ok, res, err, code = pcall(function()
    for n = 1, tries do
      local t <close> = assert(core.new(curl_opts(opts, opts.url)))
      drive(t, holder, opts.progress)
      local info = t:info()
      local bad = info.error or (M.RETRY_STATUS[info.status] and n < tries)
      if not bad then
        return { status = info.status, headers = info.headers, body = info.body, url = info.url }
      end
      if not info.error then info.kind, info.error = "http", "HTTP " .. info.status end
      if n == tries or not retryable(info) then return failure(opts.url, info, n) end
      local d = backoff(n, opts.retry_delay or 1, opts.retry_max_delay or 30,
        info.headers["retry-after"])
      log.info("%s; retrying in %.1f s", label(opts.url, info.error), d)
      stream.pause(holder, d)
    end
  end)
  close_holder(holder)
  if not ok then error(res, 0) end
  return res, err, code
end

for _, method in ipairs({ "get", "delete" }) do
  M[method] = function(url, opts)
    return M.request(copy(opts, { url = url, method = method:upper() }))
  end
end
for _, method in ipairs({ "post", "put" }) do
  M[method] = function(url, body, opts)
    return M.request(copy(opts, { url = url, method = method:upper(), body = body }))
  end
end

--- A JSON call: encodes `value` (if not nil) as the body with
-- Content-Type application/json, and decodes the answer. Returns the
-- decoded value and the response, or `nil, "<url>: <cause>", code`: a
-- non-2xx status is an error here, its cause quoting the server's
-- `message` field (MCS error bodies are {"code": N, "message": "..."}).
function M.json(method, url, value, opts)
  local cjson = require "cjson.safe"
  local o = copy(opts, { url = url, method = method })
  o.headers = copy(opts and opts.headers)
  o.headers["Accept"] = o.headers["Accept"] or "application/json"
  if value ~= nil then
    local body, err = cjson.encode(value)
    if not body then error("http.json: cannot encode the body: " .. tostring(err), 2) end
    o.body = body
    o.headers["Content-Type"] = "application/json"
  end
  local res, err, code = M.request(o)
  if not res then return nil, err, code end
  local decoded = res.body ~= "" and cjson.decode(res.body) or nil
  if res.status < 200 or res.status > 299 then
    local msg = type(decoded) == "table" and type(decoded.message) == "string" and decoded.message
      or res.body:sub(1, 200):gsub("%s+", " ")
    return nil, label(url, ("HTTP %d: %s"):format(res.status, msg)), res.status
  end
  if res.body ~= "" and decoded == nil then
    return nil, label(url, "the answer is not JSON"), "protocol"
  end
  return decoded, res
end

-- The validator that makes a resumed range safe (If-Range): a strong
-- ETag, else Last-Modified.
local function validator(headers)
  local etag = headers.etag
  if etag and not etag:match("^W/") then return etag end
  return headers["last-modified"]
end

-- A number of seconds or bytes/s for a message: "600", "2.5".
local function num(x)
  return ("%.1f"):format(x):gsub("%.0$", "")
end

-- A download's own limits, over all its tries: `timeout` seconds of wall
-- time (pauses between tries included), and an average of at least
-- `min_rate` bytes/s once `min_rate_after` seconds have been spent in
-- transfers. The pauses between tries do not count against the rate: a
-- server that refused a connection twice is not a slow one. libcurl's
-- low-speed check cannot see a server that drips just fast enough to pass
-- it; these can.
local function limits(opts)
  local l = { timeout = opts.timeout, min_rate = opts.min_rate or 0,
              after = opts.min_rate_after or 60, spent = 0 }
  l.deadline = l.timeout and now() + l.timeout
  return l
end

-- nil while the download may go on; else its kind ("deadline" or
-- "too_slow") and the cause. `bytes` is what the download holds, and
-- `since` when the running try started (nil between tries).
local function exceeded(l, bytes, since)
  local at = now()
  if l.deadline and at >= l.deadline then
    return "deadline", ("timed out after %s s"):format(num(l.timeout))
  end
  if l.min_rate > 0 and since then
    local spent = l.spent + (at - since)
    if spent >= l.after and bytes < l.min_rate * spent then
      return "too_slow", ("too slow (%d bytes in %s s; the minimum is %s bytes/s on average)")
        :format(bytes, num(spent), num(l.min_rate))
    end
  end
end

-- Misuse of download() raises at its caller.
local function check_download(url, dest, opts)
  if type(url) ~= "string" then error("http.download: url must be a string", 3) end
  if type(dest) ~= "function" and type(dest) ~= "string" then
    error("http.download: dest must be a path or a sink function", 3)
  end
  if opts.progress ~= nil and type(opts.progress) ~= "function" then
    error("http.download: progress must be a function", 3)
  end
end

-- A try that got the whole body: the .part file, synced, becomes dest.
local function land(url, t, part, dest)
  if not part then return true end
  local fok, ferr = t:finish_file()
  if not fok then return nil, label(url, ferr), "file" end
  fok, ferr = sys.replace(part, dest)
  if not fok then return nil, label(url, ferr), "file" end
  return true
end

-- The pause before try n + 1: backoff, or what Retry-After asks, but no
-- pause past the deadline (the next turn reports it).
local function retry_delay(n, opts, info, lim)
  local d = backoff(n, opts.retry_delay or 1, opts.retry_max_delay or 30,
    info.headers["retry-after"])
  if lim.deadline then d = math.max(0, math.min(d, lim.deadline - now())) end
  return d
end

-- The tries of download(): each resumes after the bytes the last one kept.
-- job: url, dest, part (nil for a sink), opts, base (curl options), lim,
-- holder, tries. Returns download()'s results; raises what a callback did.
local function download_tries(job)
  local url, base, lim, holder, opts = job.url, job.base, job.lim, job.holder, job.opts
  local have, valid = 0, nil -- bytes kept from earlier tries; their validator
  local resumed, restarted = 0, 0
  local last -- the cause of the last failed try
  for n = 1, job.tries do
    local kind, cause = exceeded(lim, have)
    if kind then
      return nil, label(url, last and ("%s (the last try: %s)"):format(cause, last) or cause), kind
    end
    local c = copy(base, { resume_from = have })
    if have > 0 and valid then c.headers = copy(base.headers, { ["If-Range"] = valid }) end
    local t <close>, terr = core.new(c)
    if not t then return nil, label(url, terr), "file" end
    local since = now()
    kind, cause = drive(t, holder, opts.progress, function(tr)
      return exceeded(lim, (tr:progress()), since)
    end)
    if kind then return nil, label(url, cause), kind end
    lim.spent = lim.spent + (now() - since)
    local info, raised = t:info()
    if raised ~= nil then error(raised, 0) end
    if have > 0 then
      if info.restarted then restarted = restarted + 1 else resumed = resumed + 1 end
    end
    if not info.error and (info.status < 200 or info.status > 299) then
      info.kind, info.error = "http", "HTTP " .. info.status -- an error with no body at all
    end
    if not info.error then
      local lok, lerr, lkind = land(url, t, job.part, job.dest)
      if not lok then return nil, lerr, lkind end
      return { bytes = info.bytes, status = info.status, url = info.url, headers = info.headers,
               attempts = n, resumed = resumed, restarted = restarted }
    end
    if n == job.tries or not retryable(info) then return failure(url, info, n) end
    -- What this try left behind is kept for the next one, if the answer
    -- was the body (a 5xx wrote nothing, and its headers say nothing
    -- about the file).
    if info.status >= 200 and info.status <= 299 then
      have, valid = info.bytes, validator(info.headers)
    end
    local d = retry_delay(n, opts, info, lim)
    log.info("%s; %s in %.1f s", label(url, info.error),
      have > 0 and ("resuming from byte %d"):format(have) or "retrying", d)
    last = info.error
    t:close()
    stream.pause(holder, d)
  end
end

--- Downloads `url` to the file `dest`, or into `dest` when it is a
-- function (a sink called with each chunk; it runs inside libcurl and must
-- not wait). The file appears at `dest` only complete: the body goes to
-- "dest.part", which is fsync'd and renamed over `dest` at the end; on any
-- failure the .part file is removed and `dest` is untouched. Only 2xx
-- bodies are taken: an error page never lands.
--
-- Options are request()'s (GET only), plus:
-- * `retries` (default 3): further tries after a timeout, a refused or cut
--   connection, a truncated body or a 408/429/5xx, waiting `retry_delay`
--   (default 1 s) doubling up to `retry_max_delay` (30 s), with jitter;
-- * resume: a retry asks for the rest with `Range` (and `If-Range`, when
--   the server gave a validator); a server that sends it all again is
--   taken from byte 0 instead;
-- * `max_size`: the most bytes accepted (default: no limit);
-- * `timeout`: seconds the whole download may take, every try and the
--   pauses between them included (not per try, as in request()); past it
--   the download fails with the kind "deadline" ("<url>: timed out after
--   N s"; default: no limit);
-- * `min_rate` (bytes/s, default 0: no check): the download fails with
--   the kind "too_slow" when, after `min_rate_after` seconds (default 60)
--   spent in transfers, it has averaged less than that since its start;
-- * `progress(done, total)`: at most ten times a second and once at the
--   end, under pcall; an error it raises removes the .part file and is
--   raised again from download().
--
-- Returns `{ bytes = n, status = 200, url = final URL, headers = {...},
-- attempts = n, resumed = n (tries that continued a partial body),
-- restarted = n (tries the server answered in full) }`.
function M.download(url, dest, opts)
  opts = opts or {}
  check_download(url, dest, opts)
  local sink = type(dest) == "function" and dest or nil
  local part = not sink and dest .. ".part" or nil
  local holder = { name = M.redact_url(url) }
  local o = copy(opts, { method = "GET" })
  o.body = nil
  local base = curl_opts(o, url)
  base.file, base.sink = part, sink
  base.timeout = nil -- the whole download's, checked here: libcurl's is per try
  local job = { url = url, dest = dest, part = part, opts = opts, base = base,
                lim = limits(opts), holder = holder, tries = (opts.retries or 3) + 1 }
  local ok, res, err, code = pcall(download_tries, job)
  close_holder(holder)
  if not ok or not res then
    if part then os.remove(part) end
  end
  if not ok then error(res, 0) end
  return res, err, code
end

--- libcurl's version string, e.g. "libcurl/7.88.1 OpenSSL/3.0.15 ...".
M.curl_version = core.version

return M
