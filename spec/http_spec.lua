-- fotahost.http against loopback servers started here: the project's own
-- fault-injecting test server (spec/support/http_test_server.lua, a
-- separate fotahost process) for HTTP, and `openssl s_server` for HTTPS
-- with a self-signed certificate.
local h = require "helper"
local http = require "fotahost.http"
local sched = require "fotahost.sched"
local digest = require "fotahost.digest"
local tcp_core = require "fotahost.tcp.core"
local tcp = require "fotahost.tcp"
local sys = require "fotahost.sys"

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local v = line:match("^VmRSS:%s+(%d+)")
    if v then return tonumber(v) end
  end
end

-- A file of `size` pseudo-random bytes (from /dev/urandom, by dd).
local function make_file(path, size)
  local bs = math.min(size, 1 << 20)
  assert(os.execute(("dd if=/dev/urandom of=%s bs=%d count=%d iflag=fullblock status=none")
    :format(h.q(path), bs, size // bs)))
  if size % bs ~= 0 then
    assert(os.execute(("head -c %d /dev/urandom >> %s"):format(size % bs, h.q(path))))
  end
end

-- A port nothing listens on: bound, then let go.
local function closed_port()
  local s = assert(tcp_core.listen("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

local function elapsed(fn)
  local t0 = sched.now()
  local r = table.pack(fn())
  return sched.now() - t0, table.unpack(r, 1, r.n)
end

-- Runs fn() in a scheduler task and gives up on it after `limit` seconds,
-- so a deadline that broke fails the test instead of holding the suite
-- for minutes. Returns fn's results.
local function bounded(limit, fn)
  local r, failed
  sched.run(function()
    local task = sched.spawn(function() r = table.pack(fn()) end)
    local ok, err = sched.join(task, limit)
    if ok == nil then sched.cancel(task) elseif not ok then failed = err end
  end)
  if failed then error(failed, 0) end
  assert(r, ("still waiting after %g s"):format(limit))
  return table.unpack(r, 1, r.n)
end

describe("fotahost.http", function()
  local dir, root, srv, logf, base
  local QUIET = { retries = 0 }

  setup(function()
    dir = h.tmpdir()
    root = dir .. "/root"
    os.execute("mkdir " .. h.q(root))
    make_file(root .. "/1k.bin", 1024)
    make_file(root .. "/1m.bin", 1 << 20)
    make_file(root .. "/100m.bin", 100 << 20)
    make_file(root .. "/600k.bin", 600 * 1024)
    make_file(root .. "/600k-v2.bin", 600 * 1024) -- 600k.bin, as replaced on the server
    make_file(root .. "/300k.bin", 300000)
    make_file(root .. "/500k.bin", 500000)
    logf = dir .. "/requests.log"
    srv = h.start_server({ "spec/support/http_test_server.lua", "--root", root, "--log", logf })
    base = srv.url
  end)

  teardown(function()
    if srv then srv.stop() end
    h.rmdir(dir)
  end)

  local function sha(path) return assert(digest.file(path, "sha256")) end

  local function requests_log()
    return h.read(logf) or ""
  end

  describe("downloads", function()
    for _, name in ipairs({ "1k.bin", "1m.bin" }) do
      it("fetches " .. name .. " equal by SHA-256, and leaves no .part", function()
        local dest = dir .. "/" .. name
        local res, err = http.download(base .. "/files/" .. name, dest, QUIET)
        assert.is_nil(err)
        assert.are.equal(sha(root .. "/" .. name), sha(dest))
        assert.are.equal(200, res.status)
        assert.are.equal(#h.read(root .. "/" .. name), res.bytes)
        assert.is_false(exists(dest .. ".part"))
        os.remove(dest)
      end)
    end

    it("fetches 100 MB equal by SHA-256 with the RSS constant", function()
      local dest = dir .. "/100m.out"
      -- The baseline: RSS right after a small download (libcurl and the
      -- TLS library are mapped and warm).
      assert(http.download(base .. "/files/1m.bin", dir .. "/warm.bin", QUIET))
      os.remove(dir .. "/warm.bin")
      collectgarbage()
      local idle = rss_kib()
      local peak, calls, last = idle, 0, -1
      local res, err = http.download(base .. "/files/100m.bin", dest, {
        retries = 0,
        progress = function(done, total)
          calls = calls + 1
          assert.is_true(done >= last)
          last = done
          assert.is_true(total == nil or total == 100 << 20) -- nil until the headers are in
          peak = math.max(peak, rss_kib())
        end,
      })
      assert.is_nil(err)
      assert.are.equal(100 << 20, res.bytes)
      assert.are.equal(100 << 20, last) -- the last call says "all of it"
      assert.is_true(calls >= 2)
      assert.is_true(peak - idle < 2048, ("RSS grew %d KiB during the download"):format(peak - idle))
      assert.are.equal(sha(root .. "/100m.bin"), sha(dest))
      os.remove(dest)
    end)

    -- A link planted at dest.part (by whoever can write to the directory)
    -- must never turn a download into a write to the file it points to.
    it("replaces a symbolic link planted at dest.part instead of writing through it", function()
      local outside, dest = dir .. "/outside-1.txt", dir .. "/planted.bin"
      h.write(outside, "not firmware: keep me")
      assert(os.execute("ln -s " .. h.q(outside) .. " " .. h.q(dest .. ".part")))
      local res, err = http.download(base .. "/files/1k.bin", dest, QUIET)
      assert.is_nil(err)
      assert.are.equal(1024, res.bytes)
      assert.are.equal("not firmware: keep me", h.read(outside))
      assert.are.equal(sha(root .. "/1k.bin"), sha(dest))
      assert.are.equal("file", sys.lstat(dest).type)    -- the link is gone, not renamed into place
      assert.is_false(exists(dest .. ".part"))
    end)

    it("refuses to resume into a .part swapped for a symbolic link after a cut", function()
      local outside, dest = dir .. "/outside-2.txt", dir .. "/swapped.bin"
      h.write(outside, "not firmware: keep me")
      local planted = false
      -- (a target of its own: the server cuts the first request for each)
      local res, err, code = http.download(base .. "/cut/600k.bin?after=100000", dest,
        { retries = 2, retry_delay = 0.01, progress = function()
          if planted then return end
          planted = true   -- while the first try runs: its file is open, its name is taken
          assert(os.execute(("rm -f %s && ln -s %s %s"):format(h.q(dest .. ".part"), h.q(outside),
            h.q(dest .. ".part"))))
        end })
      assert.is_nil(res)
      assert.are.equal("file", code)
      assert.matches("swapped%.bin%.part: " .. h.literal(h.strerror.ELOOP), err)
      assert.are.equal("not firmware: keep me", h.read(outside))
      assert.is_false(exists(dest))
    end)

    it("resumes with Range after the server cuts the connection mid-body", function()
      local dest = dir .. "/cut.bin"
      local res, err = http.download(base .. "/cut/600k.bin?after=200000", dest,
        { retries = 2, retry_delay = 0.01 })
      assert.is_nil(err)
      assert.are.equal(2, res.attempts)
      assert.are.equal(1, res.resumed)
      assert.are.equal(0, res.restarted)
      assert.are.equal(206, res.status)
      assert.are.equal(sha(root .. "/600k.bin"), sha(dest))
      -- the retry asks for the rest, valid only for the file it has the start of
      assert.matches('GET /cut/600k%.bin%?after=200000 range=bytes=200000%- if%-range="size%-614400" status=206',
        requests_log())
    end)

    it("starts again from byte 0 when the server ignores the Range", function()
      local dest = dir .. "/norange.bin"
      local res, err = http.download(base .. "/cut/600k.bin?after=100000&range=0", dest,
        { retries = 2, retry_delay = 0.01 })
      assert.is_nil(err)
      assert.are.equal(2, res.attempts)
      assert.are.equal(1, res.restarted)
      assert.are.equal(200, res.status)
      assert.are.equal(sha(root .. "/600k.bin"), sha(dest))
    end)

    it("takes a file replaced between a cut and a resume whole, not spliced (If-Range)", function()
      local dest = dir .. "/changed.bin"
      local res, err = http.download(base .. "/changing/600k.bin/600k-v2.bin?after=200000", dest,
        { retries = 2, retry_delay = 0.01 })
      assert.is_nil(err)
      assert.are.equal(sha(root .. "/600k-v2.bin"), sha(dest))
      assert.are.same({ 2, 1, 0, 200 }, { res.attempts, res.restarted, res.resumed, res.status })
      assert.matches('GET /changing/600k%.bin/600k%-v2%.bin%?after=200000 range=bytes=200000%- '
        .. 'if%-range="v1" status=200', requests_log())
      os.remove(dest)
    end)

    it("resumes with the Last-Modified as the validator when the ETag is weak", function()
      local dest = dir .. "/weak.bin"
      local res, err = http.download(base .. "/weak/600k.bin?after=200000", dest, { retries = 2, retry_delay = 0.01 })
      assert.is_nil(err)
      assert.are.equal(sha(root .. "/600k.bin"), sha(dest))
      -- a weak ETag in If-Range never matches: the server would send it all again
      assert.are.same({ 2, 1, 0, 206 }, { res.attempts, res.resumed, res.restarted, res.status })
      local date = require("fotahost.httpd").http_date(1700000000)
      assert.is_truthy(requests_log():find("GET /weak/600k.bin?after=200000 range=bytes=200000- if-range="
        .. date .. " status=206", 1, true), requests_log())
      os.remove(dest)
    end)

    it("refuses a resumed answer that starts at another byte, leaving nothing", function()
      local dest = dir .. "/badrange.bin"
      h.write(dest, "the old firmware")
      local res, err, code = http.download(base .. "/partial/600k.bin?start=1000&after=200000", dest,
        { retries = 2, retry_delay = 0.01 })
      assert.is_nil(res)
      assert.are.equal("protocol", code)
      assert.matches("206 answer does not start at byte 200000 %(Content%-Range: bytes 1000%-614399/614400%)", err)
      assert.are.equal("the old firmware", h.read(dest))
      assert.is_false(exists(dest .. ".part"))
    end)

    it("refuses a 206 to a request without a range: part of a file is not the file", function()
      local dest = dir .. "/unasked.bin"
      local res, err, code = http.download(base .. "/partial/600k.bin?start=1000", dest, QUIET)
      assert.is_nil(res)
      assert.are.equal("protocol", code)
      assert.matches("HTTP 206 to a request without a range", err)
      assert.is_false(exists(dest))
      assert.is_false(exists(dest .. ".part"))
    end)

    it("holds max_size across a resume, counting the bytes kept", function()
      -- a server without validators whose file grew between the cut and the
      -- resume: each try alone is under the cap, the file is not
      local dest = dir .. "/grown.bin"
      local res, err, code = http.download(base .. "/grow/300k.bin/500k.bin?after=200000", dest,
        { retries = 2, retry_delay = 0.01, max_size = 400000 })
      assert.is_nil(res)
      assert.are.equal("too_large", code)
      assert.matches("body larger than max_size %(400000 bytes%)", err)
      assert.is_false(exists(dest))
      assert.is_false(exists(dest .. ".part"))
    end)

    it("says so when the finished file cannot be put in place", function()
      local dest = dir .. "/adir"
      os.execute("mkdir " .. h.q(dest) .. " && touch " .. h.q(dest .. "/keep"))
      local res, err, code = http.download(base .. "/files/1k.bin", dest, QUIET)
      assert.is_nil(res)
      assert.are.equal("file", code)
      assert.matches("adir%.part %-> .*adir: " .. h.literal(h.strerror.EISDIR), err)
      assert.is_true(exists(dest .. "/keep"))
      assert.is_false(exists(dest .. ".part"))
    end)

    it("gives up after the retries, removing the partial file", function()
      local dest = dir .. "/cut3.bin"
      local t, res, err, code = elapsed(function()
        return http.download(base .. "/cut/600k.bin?after=1000&times=5", dest,
          { retries = 2, retry_delay = 0.05 })
      end)
      assert.is_nil(res)
      assert.are.equal("truncated", code)
      assert.matches("/cut/600k%.bin%?after=1000&times=5: .* %(after 3 attempts%)$", err)
      assert.is_false(exists(dest))
      assert.is_false(exists(dest .. ".part"))
      assert.is_true(t >= 0.05 * 1.5 * 0.5, "backoff waits: " .. t)
    end)

    for _, code in ipairs({ 404, 500 }) do
      it("never lands a " .. code .. " body, and leaves an existing file alone", function()
        local dest = dir .. "/err" .. code .. ".bin"
        h.write(dest, "the old firmware")
        local res, err, c = http.download(base .. "/status/" .. code, dest,
          { retries = 1, retry_delay = 0.01 })
        assert.is_nil(res)
        assert.are.equal(code, c)
        assert.matches("^" .. base:gsub("%p", "%%%0") .. "/status/" .. code .. ": HTTP " .. code, err)
        assert.are.equal("the old firmware", h.read(dest))
        assert.is_false(exists(dest .. ".part"))
      end)
    end

    it("never takes an error status with an empty body for a download", function()
      for _, code in ipairs({ 500, 404 }) do
        local dest = dir .. "/empty" .. code .. ".bin"
        h.write(dest, "the old firmware")
        local res, err, c = http.download(base .. "/status/" .. code .. "?empty=1", dest,
          { retries = 1, retry_delay = 0.01 })
        assert.is_nil(res)
        assert.are.equal(code, c)
        assert.matches("/status/" .. code .. "%?empty=1: HTTP " .. code, err)
        assert.are.equal("the old firmware", h.read(dest))
        assert.is_false(exists(dest .. ".part"))
      end
    end)

    it("never hands an error page to a sink", function()
      local got = {}
      local res, err, c = http.download(base .. "/status/404", function(chunk) got[#got + 1] = chunk end, QUIET)
      assert.is_nil(res)
      assert.are.equal(404, c)
      assert.matches("HTTP 404", err)
      assert.are.equal("", table.concat(got))
    end)

    it("retries a 500 but not a 404", function()
      local _, _, c1 = http.download(base .. "/status/500?n=1", dir .. "/r500", { retries = 2, retry_delay = 0.01 })
      local _, _, c2 = http.download(base .. "/status/404?n=1", dir .. "/r404", { retries = 2, retry_delay = 0.01 })
      assert.are.same({ 500, 404 }, { c1, c2 })
      local log = requests_log()
      local n500 = select(2, log:gsub("GET /status/500%?n=1 ", ""))
      local n404 = select(2, log:gsub("GET /status/404%?n=1 ", ""))
      assert.are.same({ 3, 1 }, { n500, n404 })
    end)

    it("treats a body shorter than its Content-Length as an error, leaving nothing", function()
      local dest = dir .. "/trunc.bin"
      local res, err, code = http.download(base .. "/truncate/600k.bin?send=5000", dest,
        { retries = 1, retry_delay = 0.01 })
      assert.is_nil(res)
      assert.are.equal("truncated", code)
      assert.matches("/truncate/600k%.bin%?send=5000: .*", err)
      assert.is_false(exists(dest))
      assert.is_false(exists(dest .. ".part"))
    end)

    it("aborts past max_size, whether the length is announced or not", function()
      local dest = dir .. "/big.bin"
      local res, err, code = http.download(base .. "/files/600k.bin", dest, { max_size = 1000 })
      assert.is_nil(res)
      assert.are.equal("too_large", code)
      assert.matches("body larger than max_size %(1000 bytes%)", err)
      assert.is_false(exists(dest))
      assert.is_false(exists(dest .. ".part"))
      -- no Content-Length: counted as it arrives
      local res2, _, code2 = http.download(base .. "/nolength/600k.bin", dest, { max_size = 100000 })
      assert.are.same({ nil, "too_large" }, { res2, code2 })
      assert.is_false(exists(dest .. ".part"))
    end)

    it("trips the low-speed timeout on a slow-drip server", function()
      local dest = dir .. "/drip.bin"
      local t, res, err, code = bounded(10, function()
        return elapsed(function()
          return http.download(base .. "/drip?bytes=1000&interval=0.5", dest,
            { retries = 0, low_speed_limit = 100, low_speed_time = 1 })
        end)
      end)
      assert.is_nil(res)
      assert.are.equal("timeout", code)
      assert.matches("Operation too slow", err)
      assert.is_true(t >= 1 and t < 5, "took " .. t)
      assert.is_false(exists(dest .. ".part"))
    end)

    -- 5 bytes a second: libcurl's low-speed check (1 B/s) never trips
    it("gives up a dripping download at its deadline, leaving nothing", function()
      local dest = dir .. "/drip-deadline.bin"
      local t, res, err, code = bounded(15, function()
        return elapsed(function()
          return http.download(base .. "/drip?bytes=1000&interval=0.2&deviceKey=Dk7s9q2w", dest,
            { retries = 0, timeout = 1.5 })
        end)
      end)
      assert.are.same({ nil, "deadline" }, { res, code })
      assert.are.equal(base .. "/drip?bytes=1000&interval=0.2&deviceKey=****: timed out after 1.5 s", err)
      assert.is_true(t >= 1.5 and t < 5, "took " .. t)
      assert.is_false(exists(dest))
      assert.is_false(exists(dest .. ".part"))
    end)

    it("counts the deadline over every try and the pauses between them", function()
      -- the first pause alone would be 5 to 10 s: it is cut at the deadline
      local t, res, err, code = bounded(20, function()
        return elapsed(function()
          return http.download(base .. "/status/503", dir .. "/503.bin",
            { retries = 10, retry_delay = 10, retry_max_delay = 10, timeout = 1.2 })
        end)
      end)
      assert.are.same({ nil, "deadline" }, { res, code })
      assert.are.equal(base .. "/status/503: timed out after 1.2 s (the last try: HTTP 503)", err)
      assert.is_true(t >= 1.2 and t < 4, "took " .. t)
    end)

    it("gives up a download that averages under min_rate once min_rate_after has passed", function()
      local dest = dir .. "/drip-slow.bin"
      local t, res, err, code = bounded(15, function()
        return elapsed(function()
          return http.download(base .. "/drip?bytes=1000&interval=0.05", dest,
            { retries = 0, min_rate = 100, min_rate_after = 1 })
        end)
      end)
      assert.are.same({ nil, "too_slow" }, { res, code })
      local bytes, secs = err:match("^" .. base:gsub("%p", "%%%0")
        .. "/drip%?bytes=1000&interval=0%.05: too slow %((%d+) bytes in ([%d.]+) s; "
        .. "the minimum is 100 bytes/s on average%)$")
      assert.is_truthy(bytes, err)
      assert.is_true(tonumber(bytes) < 100 * tonumber(secs) and tonumber(secs) >= 1, err)
      assert.is_true(t >= 1 and t < 5, "took " .. t)
      assert.is_false(exists(dest .. ".part"))
      -- a download that keeps the rate is not stopped
      err = select(2, http.download(base .. "/throttle/1k.bin?rate=1000", dest,
        { retries = 0, min_rate = 50, min_rate_after = 0.5, timeout = 30 }))
      assert.is_nil(err)
      assert.are.equal(sha(root .. "/1k.bin"), sha(dest))
    end)

    it("refuses redirects to file:// and ftp://, and bounds redirect chains", function()
      local dest = dir .. "/redir.bin"
      for _, target in ipairs({ "file:///etc/passwd", "ftp://127.0.0.1/x" }) do
        local res, err, code = http.download(base .. "/redirect?to=" .. target, dest, QUIET)
        assert.is_nil(res)
        assert.are.equal("protocol", code)
        assert.matches("not supported", err)
        assert.is_false(exists(dest))
      end
      local res, err = http.download(base .. "/chain/3/1k.bin", dest, QUIET)
      assert.is_nil(err)
      assert.are.equal(base .. "/files/1k.bin", res.url)
      assert.are.equal(sha(root .. "/1k.bin"), sha(dest))
      os.remove(dest)
      local _, err2, code2 = http.download(base .. "/chain/3/1k.bin", dest, { retries = 0, max_redirects = 2 })
      assert.are.equal("redirects", code2)
      assert.matches("Maximum %(2%) redirects followed", err2)
      assert.is_false(exists(dest))
    end)

    it("follows no redirect when max_redirects is 0: the redirect is the answer", function()
      local res, err = http.get(base .. "/redirect?to=/echo%3Fnot_followed=1", { max_redirects = 0 })
      assert.is_nil(err)
      assert.are.equal(302, res.status)
      assert.are.equal("/echo?not_followed=1", res.headers.location)
      assert.is_nil(requests_log():find("GET /echo?not_followed=1", 1, true))
    end)

    it("refuses a first URL that is not http or https", function()
      for _, url in ipairs({ "file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://x/" }) do
        local res, err, code = http.download(url, dir .. "/x", QUIET)
        assert.is_nil(res)
        assert.are.equal("protocol", code)
        assert.matches("^" .. url:gsub("%p", "%%%0") .. ": ", err)
      end
    end)

    it("calls progress under pcall: an error aborts, cleans up, and is raised again", function()
      local dest = dir .. "/abort.bin"
      local err = { "a table error survives" }
      local ok, got = pcall(http.download, base .. "/files/100m.bin", dest, {
        progress = function(done) if done > 0 then error(err) end end,
      })
      assert.is_false(ok)
      assert.are.equal(err, got)
      assert.is_false(exists(dest))
      assert.is_false(exists(dest .. ".part"))
    end)

    it("streams into a sink function, and re-raises a sink's error", function()
      local d = digest.new("sha256")
      local res, err = http.download(base .. "/files/600k.bin", function(chunk) d:update(chunk) end, QUIET)
      assert.is_nil(err)
      assert.are.equal(600 * 1024, res.bytes)
      assert.are.equal(sha(root .. "/600k.bin"), d:hex())
      local ok, got = pcall(http.download, base .. "/files/600k.bin", function() error("full", 0) end)
      assert.are.same({ false, "full" }, { ok, got })
    end)

    it("keeps a timer task on schedule during a throttled 10 s download", function()
      local late, ticks, took = 0, 0, nil
      local res, err
      sched.run(function()
        local t0 = sched.now()
        local timer = sched.spawn("timer", function()
          local next_at = t0 + 0.1
          while true do
            sched.sleep(math.max(0, next_at - sched.now()))
            late = math.max(late, sched.now() - next_at)
            ticks = ticks + 1
            next_at = next_at + 0.1
          end
        end)
        -- 600 KiB at 60 KiB/s: about 10 s
        res, err = http.download(base .. "/throttle/600k.bin?rate=61440", dir .. "/slow.bin", QUIET)
        took = sched.now() - t0
        sched.cancel(timer)
      end)
      assert.is_nil(err)
      assert.are.equal(600 * 1024, res.bytes)
      -- What a user would notice is a timer that stalls (a download that
      -- blocked the process would hold it for the whole 10 s), not a
      -- tick a few scheduling slices late on a loaded machine: no tick
      -- more than 0.5 s late, and as many ticks as the time allowed.
      assert.is_true(took >= 8, ("the throttled download took only %.1f s"):format(took))
      assert.is_true(late < 0.5, ("a tick was %.0f ms late"):format(late * 1000))
      assert.is_true(ticks >= math.floor((took - 0.5) / 0.1),
        ("%d ticks in %.1f s"):format(ticks, took))
      assert.are.equal(sha(root .. "/600k.bin"), sha(dir .. "/slow.bin"))
    end)

    it("lets other tasks run during a fast download", function()
      local ticks, gap, res, err = 0, 0, nil, nil
      sched.run(function()
        local last = sched.now()
        local ticker = sched.every(0.01, function()
          ticks = ticks + 1
          gap = math.max(gap, sched.now() - last)
          last = sched.now()
        end)
        res, err = http.download(base .. "/files/100m.bin", function() end, QUIET)
        sched.cancel(ticker)
      end)
      assert.is_nil(err)
      assert.are.equal(100 << 20, res.bytes)
      -- a 10 ms timer keeps ticking: libcurl reads up to a few MB per call
      -- on loopback, so the bound is loose (ASan builds are slow)
      assert.is_true(ticks >= 2, "ticks: " .. ticks)
      assert.is_true(gap < 0.5, ("the timer stalled for %.0f ms"):format(gap * 1000))
    end)

    it("runs two downloads at once in two tasks", function()
      sched.run(function()
        local a = sched.spawn(function() http.download(base .. "/files/1m.bin", dir .. "/a.bin", QUIET) end)
        local b = sched.spawn(function() http.download(base .. "/files/600k.bin", dir .. "/b.bin", QUIET) end)
        sched.join(a) sched.join(b)
      end)
      assert.are.equal(sha(root .. "/1m.bin"), sha(dir .. "/a.bin"))
      assert.are.equal(sha(root .. "/600k.bin"), sha(dir .. "/b.bin"))
    end)
  end)

  describe("requests", function()
    it("sends GET, POST, PUT and DELETE with headers and a body", function()
      local cjson = require "cjson"
      local res = assert(http.get(base .. "/echo?a=1", { headers = { ["X-Test"] = "yes" } }))
      assert.are.equal(200, res.status)
      assert.matches("application/json", res.headers["content-type"])
      local e = cjson.decode(res.body)
      assert.are.same({ "GET", "/echo", "a=1", "yes" }, { e.method, e.path, e.query, e.headers["x-test"] })
      for _, m in ipairs({ "post", "put" }) do
        res = assert(http[m](base .. "/echo", "a,b\n1,2", { headers = { ["Content-Type"] = "text/csv" } }))
        e = cjson.decode(res.body)
        assert.are.same({ m:upper(), "a,b\n1,2", "text/csv" }, { e.method, e.body, e.headers["content-type"] })
      end
      res = assert(http.delete(base .. "/echo"))
      assert.are.equal("DELETE", cjson.decode(res.body).method)
    end)

    it("returns error statuses as responses", function()
      local res = assert(http.get(base .. "/status/404"))
      assert.are.equal(404, res.status)
      assert.are.equal("<html>error 404</html>", res.body)
    end)

    it("decodes JSON and makes a non-2xx an error with the server's message", function()
      local v, res = http.json("POST", base .. "/echo", { version = "2" })
      assert.are.equal("POST", v.method)
      assert.are.same({ version = "2" }, require("cjson").decode(v.body))
      assert.are.equal(200, res.status)
      local nv, err, code = http.json("GET", base .. "/status/401", nil)
      assert.is_nil(nv)
      assert.are.equal(401, code)
      assert.matches("/status/401: HTTP 401: <html>error 401</html>", err)
    end)

    it("never prints a deviceKey, in a header or in the URL", function()
      local log = require "fotahost.log"
      -- keys of this run only: a key registered by an earlier spec would be
      -- masked whatever http does
      local function fresh_key() return ("k%08x%08x"):format(math.random(0, 0x7fffffff), math.random(0, 0x7fffffff)) end
      local key, url_key = fresh_key(), fresh_key()
      -- in the URL alone: masked in the message
      local _, err = http.get(("http://127.0.0.1:%d/mcs?deviceKey=%s&a=1"):format(closed_port(), url_key))
      assert.is_nil(err:find(url_key, 1, true), err)
      assert.matches("/mcs%?deviceKey=%*%*%*%*&a=1: ", err)
      -- in a header: registered as a log secret, masked wherever it appears later
      assert.are.equal("the key is " .. key, log.redact("the key is " .. key))
      _, err = http.get(("http://127.0.0.1:%d/mcs?deviceKey=%s"):format(closed_port(), key),
        { headers = { deviceKey = key } })
      assert.is_nil(err:find(key, 1, true), err)
      assert.matches("deviceKey=%*%*%*%*", err)
      assert.is_nil(log.redact("the key is " .. key):find(key, 1, true))
      -- the key last in the URL, and an error status: the colon before the
      -- cause stays, in the message and in the log line
      local res, code
      res, err, code = http.download(("%s/status/404?deviceKey=%s"):format(base, url_key), dir .. "/404.bin", QUIET)
      assert.are.same({ nil, 404 }, { res, code })
      assert.are.equal(base .. "/status/404?deviceKey=****: HTTP 404", err)
      assert.are.equal(err, log.redact(err))
      -- user:password and secret-looking query values
      assert.are.equal("https://****@h/x?a=1&token=****&b=2",
        http.redact_url("https://user:pw@h/x?a=1&token=abc&b=2"))
      _, err = http.get(("http://127.0.0.1:%d/fw.hex?api_key=s3cr3t&X-Amz-Signature=f00d&v=2"):format(closed_port()))
      assert.matches("/fw%.hex%?api_key=%*%*%*%*&X%-Amz%-Signature=%*%*%*%*&v=2: ", err)
      _, err = http.get(("http://fw:hunter2@127.0.0.1:%d/fw.hex"):format(closed_port()))
      assert.is_nil(err:find("hunter2", 1, true), err)
      assert.matches("^http://%*%*%*%*@127%.0%.0%.1:%d+/fw%.hex: ", err)
    end)

    it("refuses header names or values with line breaks, sending nothing", function()
      local before = requests_log()
      for _, hdr in ipairs({ { ["X-A"] = "1\r\nX-Injected: 1" }, { ["X-A\r\nX-Injected"] = "1" },
                             { ["X-A"] = "1\nX-Injected: 1" } }) do
        local ok, err = pcall(http.get, base .. "/echo", { headers = hdr, retries = 0 })
        assert.is_false(ok)
        assert.matches("http%.core%.new: header X%-A.* has a line break, a colon or is empty", err)
      end
      local ok, err = pcall(http.get, base .. "/echo", { user_agent = "fw/1\r\nX-Injected: 1", retries = 0 })
      assert.is_false(ok)
      assert.matches("http%.core%.new: user_agent has a line break", err)
      assert.are.equal(before, requests_log())
    end)

    it("reports a refused connection and a connect timeout, naming the URL", function()
      local url = ("http://127.0.0.1:%d/x"):format(closed_port())
      local t, res, err, code = elapsed(function() return http.get(url) end)
      assert.are.same({ nil, "connect" }, { res, code })
      assert.are.equal(1, err:find(url .. ": ", 1, true))
      assert.matches("Couldn't connect to server", err)
      assert.is_true(t < 1)
      -- a listener with a full backlog that never accepts drops new SYNs
      local full <close> = assert(tcp_core.listen("127.0.0.1", 0, 0))
      local _, port = full:getsockname()
      local held = {}
      for _ = 1, 8 do
        local s = tcp.connect("127.0.0.1", port, 0.2)
        if not s then break end
        held[#held + 1] = s
      end
      t, res, err, code = bounded(10, function()
        return elapsed(function()
          return http.get(("http://127.0.0.1:%d/x"):format(port), { connect_timeout = 0.3 })
        end)
      end)
      for _, s in ipairs(held) do s:close() end
      assert.are.same({ nil, "timeout" }, { res, code })
      -- libcurl words it "Connection timeout after 300 ms" or "Failed to
      -- connect to ... after 300 ms: Timeout was reached", by timing
      assert.is_truthy(err:match("^http://127%.0%.0%.1:%d+/x: Connection timeout after %d+ ms")
        or err:match("^http://127%.0%.0%.1:%d+/x: Failed to connect .* after %d+ ms: Timeout was reached"), err)
      assert.is_true(t >= 0.25 and t < 3, "took " .. t)
    end)

    it("takes timeouts past a 32-bit long's milliseconds as for ever", function()
      -- 1e12 s is 1e15 ms: more than a 32-bit long (the board's) holds;
      -- libcurl gets LONG_MAX ms there (24.8 days), and the transfer runs
      local huge = { retries = 0, timeout = 1e12, connect_timeout = 1e12, low_speed_time = 1e12 }
      local t, res, err = bounded(10, function()
        return elapsed(function() return http.get(base .. "/files/1k.bin", huge) end)
      end)
      assert.is_nil(err)
      assert.are.same({ 200, 1024 }, { res.status, #res.body })
      assert.is_true(t < 3, "took " .. t)
      local dest = dir .. "/huge-timeout.bin"
      res, err = bounded(10, function() return http.download(base .. "/files/1k.bin", dest, huge) end)
      assert.is_nil(err)
      assert.are.equal(1024, res.bytes)
      assert.are.equal(sha(root .. "/1k.bin"), sha(dest))
      os.remove(dest)
      -- 1e15 s is the limit; past it the option is refused, not cut
      assert.is_truthy(http.get(base .. "/files/1k.bin", { retries = 0, timeout = 1e15 }))
      local ok, why = pcall(http.get, base .. "/files/1k.bin", { retries = 0, timeout = 1e16 })
      assert.is_false(ok)
      assert.matches("http%.core%.new: timeout out of range", why)
    end)

    it("times out a server that never answers", function()
      local t, res, _, code = bounded(10, function()
        return elapsed(function() return http.get(base .. "/hang", { timeout = 0.5 }) end)
      end)
      assert.are.same({ nil, "timeout" }, { res, code })
      assert.is_true(t >= 0.45 and t < 3, "took " .. t)
    end)
  end)

  describe("over HTTPS", function()
    -- Certificates made here, each served by its own `openssl s_server`
    -- (spec/support/tls_server.lua): a self-signed one for 127.0.0.1 and
    -- localhost, and one a CA of ours signed for "otherhost", so that
    -- against localhost only the host name check can fail. The servers are
    -- reached by name: libcurl on mbedTLS 2.28 (the board's) matches no
    -- IP-address subjectAltName, and says so differently than on OpenSSL.
    local tls, cert, ca, port, other
    local servers = {}
    -- (libcurl's version string asked in a process of its own: under
    -- check-asan, curl_version() leaves allocations LeakSanitizer reports
    -- once the plugin is unloaded, which would cost this run its summary)
    local mbedtls = h.run({ "-e", "io.write(require('fotahost.http').curl_version()) io.stdout:flush()" })
      .out:find("mbedTLS/", 1, true) ~= nil

    local function openssl(args)
      assert(os.execute("cd " .. h.q(tls) .. " && openssl " .. args .. " 2>/dev/null"), "openssl " .. args)
    end
    local EC = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

    local function serve(certfile, keyfile)
      local tls_srv = h.start_server({ "spec/support/tls_server.lua", "--dir", tls, "--cert", certfile,
        "--key", keyfile }, { timeout = 10 })
      servers[#servers + 1] = tls_srv
      return tls_srv.port
    end

    setup(function()
      tls = dir .. "/tls"
      os.execute("mkdir " .. h.q(tls))
      cert = tls .. "/cert.pem"
      openssl("req -x509 " .. EC .. " -keyout key.pem -out cert.pem -days 2 -subj /CN=localhost"
        .. " -addext subjectAltName=IP:127.0.0.1,DNS:localhost")
      ca = tls .. "/ca.pem"
      openssl("req -x509 " .. EC .. " -keyout ca.key -out ca.pem -days 2 -subj /CN=fotahost-spec-CA")
      openssl("req " .. EC .. " -keyout other.key -out other.csr -subj /CN=otherhost")
      h.write(tls .. "/other.ext", "subjectAltName=DNS:otherhost\n")
      openssl("x509 -req -in other.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
        .. " -extfile other.ext -out other.pem")
      h.write(tls .. "/fw.hex", ":00000001FF\n")
      port = serve(cert, tls .. "/key.pem")
      other = serve(tls .. "/other.pem", tls .. "/other.key")
    end)
    teardown(function()
      for _, s in ipairs(servers) do s.stop() end
    end)

    it("refuses a self-signed server by default, at once (not retried)", function()
      local dest = tls .. "/out.hex"
      local res, err, code = http.download(("https://localhost:%d/fw.hex"):format(port), dest,
        { retries = 3, retry_delay = 0.01 })
      assert.is_nil(res)
      assert.are.equal("tls", code)
      assert.matches(mbedtls and "Cert verify failed: BADCERT_NOT_TRUSTED" or "self%-signed certificate", err)
      assert.is_nil(err:find("attempts", 1, true), err)
      assert.is_false(exists(dest))
    end)

    it("refuses a certificate for another host name, though a trusted CA signed it", function()
      for _, host in ipairs({ "127.0.0.1", "localhost" }) do
        local dest = tls .. "/other-" .. host .. ".hex"
        local res, err, code = http.download(("https://%s:%d/fw.hex"):format(host, other), dest,
          { retries = 0, cainfo = ca })
        assert.is_nil(res)
        assert.are.equal("tls", code)
        -- libcurl: "SSL: no alternative certificate subject name matches target host name '...'"
        assert.matches(mbedtls and "Cert verify failed: BADCERT_CN_MISMATCH"
          or "subject name matches target host name '" .. h.literal(host) .. "'", err)
        assert.is_false(exists(dest))
      end
    end)

    it("trusts the certificates of a CA directory (capath)", function()
      local cadir = tls .. "/cadir"
      os.execute("mkdir " .. h.q(cadir) .. " && cp " .. h.q(cert) .. " " .. h.q(cadir))
      openssl("rehash " .. h.q(cadir))
      local dest = tls .. "/capath.hex"
      local res, err = http.download(("https://localhost:%d/fw.hex"):format(port), dest,
        { retries = 0, capath = cadir })
      assert.is_nil(err)
      assert.are.equal(200, res.status)
      assert.are.equal(":00000001FF\n", h.read(dest))
    end)

    it("accepts it with its CA configured, by name, and by address but on mbedTLS", function()
      for _, host in ipairs({ "localhost", "127.0.0.1" }) do
        local dest = tls .. "/out-" .. host .. ".hex"
        local res, err, code = http.download(("https://%s:%d/fw.hex"):format(host, port), dest,
          { retries = 0, cainfo = cert })
        if mbedtls and host == "127.0.0.1" then
          -- mbedTLS 2.28 checks the name against DNS subjectAltNames only
          assert.are.same({ nil, "tls" }, { res, code })
          assert.matches("Cert verify failed: BADCERT_CN_MISMATCH", err)
        else
          assert.is_nil(err)
          assert.are.equal(200, res.status)
          assert.are.equal(":00000001FF\n", h.read(dest))
        end
      end
    end)

    it("runs s_server for as long as the spec holds its stdin", function()
      local tls_srv = h.start_server({ "spec/support/tls_server.lua", "--dir", tls, "--cert", cert,
        "--key", tls .. "/key.pem" }, { timeout = 10 })
      local s = assert(tcp.connect("127.0.0.1", tls_srv.port, 2))
      s:close()
      assert.are.equal("exited", (tls_srv.stop()))
      -- s_server went with it: nothing listens there any more
      local res, _, code = http.get(("https://127.0.0.1:%d/fw.hex"):format(tls_srv.port),
        { cainfo = cert, connect_timeout = 2 })
      assert.are.same({ nil, "connect" }, { res, code })
    end)

    it("accepts it with verification off, and says so in the log", function()
      local log = require "fotahost.log"
      local lines = {}
      log.configure({ sink = function(level, component, msg)
        lines[#lines + 1] = level .. " " .. component .. " " .. msg
      end })
      local res, err = http.get(("https://127.0.0.1:%d/fw.hex"):format(port), { insecure = true })
      log.configure({ sink = "stderr" })
      assert.is_nil(err)
      assert.are.equal(200, res.status)
      assert.matches("^warn http TLS certificate and host verification are OFF", lines[1])
    end)
  end)
end)
