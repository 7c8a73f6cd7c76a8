-- `fotahost fota` (scripts/tools/fota.lua), as a user runs it: one update
-- from the command line onto the simulated chip, its statuses on stdout,
-- its exit status saying whether the image is installed.
local h = require "helper"
local ihex = require "fotahost.ihex"
local digest = require "fotahost.digest"
local cjson = require "cjson"

describe("fotahost fota", function()
  local dir, srv
  setup(function()
    dir = h.tmpdir()
    os.execute("mkdir " .. h.q(dir .. "/www"))
    assert(os.execute("cp " .. h.q(h.firmware("blink-1000.hex")) .. " " .. h.q(dir .. "/www/v1.hex")))
    assert(os.execute("cp " .. h.q(h.firmware("blink-250.hex")) .. " " .. h.q(dir .. "/www/v2.hex")))
    srv = h.start_server({ "spec/support/http_test_server.lua", "--root", dir .. "/www" })
  end)
  teardown(function()
    if srv then srv.stop() end
    h.rmdir(dir)
  end)

  local n = 0
  -- a device of its own: a config (`http`: its http table, as Lua text),
  -- an empty chip directory, a state directory
  local function device(http)
    n = n + 1
    local d = { chip = ("%s/chip%d"):format(dir, n), state = ("%s/state%d"):format(dir, n) }
    os.execute("mkdir " .. h.q(d.chip))
    d.cfg = h.write(("%s/config%d.lua"):format(dir, n), ([[
return { device_id = "Dev1", device_key = "Key12345", board = "sim", sim_dir = %q, state_dir = %q,
         volatile_state_ok = true, -- scratch state in /tmp, a tmpfs on some machines
         http = %s }
]]):format(d.chip, d.state, http or "{ retries = 0 }"))
    return d
  end

  local function fota(d, ...)
    return h.run({ "fota", "--config", d.cfg, ... })
  end

  local function erases(d)
    local k = 0
    for _ in (h.read(d.chip .. "/erases.log") or ""):gmatch("\n") do k = k + 1 end
    return k
  end

  local function holds(d, name)
    local want = assert(ihex.load(dir .. "/www/" .. name)):bytes(0, 32767)
    return h.read(d.chip .. "/flash.bin") == want
  end

  it("installs an image, says each step, and skips it the second time unless --force", function()
    local d = device()
    local r = fota(d, "--url", srv.url .. "/files/v2.hex")
    assert.are.equal(0, r.status, r.err)
    assert.are.equal("downloading\nverifying\n" .. h.UNSIGNED .. "\nflashing\ndone\n", r.out)
    assert.is_true(holds(d, "v2.hex"), "flash.bin does not hold v2.hex")
    -- the version label is the file's name
    assert.are.equal("v2", cjson.decode(h.read(d.state .. "/installed.json")).version)
    assert.are.equal(1, erases(d))

    r = fota(d, "--url", srv.url .. "/files/v2.hex")
    assert.are.equal(0, r.status, r.err)
    assert.are.equal("skipped: v2 is already installed\n", r.out)
    assert.are.equal(1, erases(d))

    r = fota(d, "--url", srv.url .. "/files/v2.hex", "--force")
    assert.are.equal(0, r.status, r.err)
    assert.are.equal("downloading\nverifying\n" .. h.UNSIGNED .. "\nflashing\ndone\n", r.out)
    assert.are.equal(2, erases(d))
  end)

  it("stops on SIGTERM with one line and status 143, no traceback", function()
    local stream = require "fotahost.stream"
    local d = device()
    local run = dir .. "/term"
    os.execute("mkdir " .. h.q(run))
    -- a download that lasts 30 s: SIGTERM comes in the middle of it
    os.execute(("(env FOTAHOST_LOG_LEVEL=error %s fota --config %s --url %s </dev/null >%s/out 2>%s/err & "
      .. "echo $! >%s/pid; wait $!; echo $? >%s/status) &"):format(h.q(h.bin), h.q(d.cfg),
      h.q(srv.url .. "/drip?bytes=60&interval=0.5"), h.q(run), h.q(run), h.q(run), h.q(run)))
    local function until_read(name)
      for _ = 1, 1000 do
        local v = h.read(run .. "/" .. name)
        if v and v ~= "" then return v end
        stream.pause(nil, 0.02)
      end
      error("timed out waiting for " .. name)
    end
    local pid = math.tointeger(tonumber(until_read("pid")))
    until_read("out")                                   -- "downloading": it is under way
    os.execute("kill -TERM " .. pid)
    local status = until_read("status")
    local err = h.read(run .. "/err")
    assert.are.equal("143\n", status, err)
    assert.are.equal("fotahost fota: stopped (SIGTERM)\n", err)
    assert.are.equal("downloading\n", h.read(run .. "/out"))
    assert.are.equal(0, erases(d))
  end)

  it("exits 1 with the reason when the image is refused, leaving the chip alone", function()
    local d = device()
    assert.are.equal(0, fota(d, "--url", srv.url .. "/files/v1.hex", "--version", "one").status)
    local md5 = assert(digest.file(dir .. "/www/v2.hex", "md5"))
    local r = fota(d, "--url", srv.url .. "/files/v2.hex", "--md5", ("0"):rep(32))
    assert.are.equal(1, r.status)
    local why = ("MD5 mismatch: expected %s, the file is %s"):format(("0"):rep(32), md5)
    assert.are.equal("downloading\nverifying\nfailed: " .. why .. "\n", r.out)
    -- (the log goes to stderr too: FOTAHOST_LOG=stderr in tests/run)
    assert.are.equal("fotahost fota: " .. why, r.err:match("([^\n]*)\n$"))
    assert.are.equal(1, erases(d))
    assert.is_true(holds(d, "v1.hex"), "flash.bin changed")
    assert.are.equal("one", cjson.decode(h.read(d.state .. "/installed.json")).version)

    r = fota(d, "--url", "file://" .. dir .. "/www/v2.hex")
    assert.are.equal(1, r.status)
    assert.are.equal("", r.out)
    assert.matches("^fotahost fota: the URL must be http:// or https://: file://", r.err)
    assert.are.equal(1, erases(d))
  end)

  it("gives a download up at the config's http.timeout, naming the URL with its key masked", function()
    -- 5 bytes a second: libcurl's own low-speed check never trips, the
    -- default minimum rate is checked only after 60 s (and 60 bytes end in
    -- 12 s, so a deadline that does not work fails here, not hangs)
    local d = device("{ retries = 0, timeout = 2 }")
    assert.are.equal(0, fota(d, "--url", srv.url .. "/files/v1.hex").status)
    local url = srv.url .. "/drip?bytes=60&interval=0.2&deviceKey=Key12345"
    local t0 = os.time()
    local r = fota(d, "--url", url, "--version", "v9")
    assert.are.equal(1, r.status, r.err)
    assert.is_true(os.time() - t0 < 30, "the download outlived its deadline")
    assert.are.equal("downloading\nfailed: download timed out after 2 s: " .. srv.url
      .. "/drip?bytes=60&interval=0.2&deviceKey=****\n", r.out)
    assert.is_nil(r.err:find("Key12345", 1, true), r.err)
    assert.are.equal(1, erases(d))
    assert.is_true(holds(d, "v1.hex"), "flash.bin changed")
  end)

  it("gives a download up under the config's http.min_rate", function()
    local d = device("{ retries = 0, min_rate = 1000, min_rate_after = 1 }")
    local r = fota(d, "--url", srv.url .. "/drip?bytes=300&interval=0.05")
    assert.are.equal(1, r.status, r.err)
    assert.matches("^downloading\nfailed: download too slow %(%d+ bytes in [%d.]+ s; the minimum is 1000 "
      .. "bytes/s on average%): http://127%.0%.0%.1:%d+/drip%?bytes=300&interval=0%.05\n$", r.out)
    assert.is_nil(h.read(d.chip .. "/erases.log"))
  end)

  it("finishes an interrupted update first", function()
    local d = device()
    assert.are.equal(0, fota(d, "--url", srv.url .. "/files/v1.hex").status)
    -- a journal for v2 whose image is complete: a cut mid-flash
    local new = d.state .. "/new.hex"
    assert(os.execute("cp " .. h.q(dir .. "/www/v2.hex") .. " " .. h.q(new)))
    h.write(d.state .. "/journal.json", cjson.encode({ stage = "flashing", version = "v2", image = new,
      sha256 = digest.file(new, "sha256") }))
    local r = fota(d, "--url", srv.url .. "/files/v2.hex")
    assert.are.equal(0, r.status, r.err)
    assert.are.equal("recovered: v2 flashed again after an interruption\nskipped: v2 is already installed\n", r.out)
    assert.is_true(holds(d, "v2.hex"), "flash.bin does not hold v2.hex")
    assert.is_nil(h.read(d.state .. "/journal.json"))
  end)

  it("has --help, and refuses a missing --url", function()
    local r = h.run({ "fota", "--help" })
    assert.are.equal(0, r.status)
    assert.matches("^usage: fotahost fota %-%-url URL", r.out)
    r = h.run({ "fota" })
    assert.are.equal(2, r.status)
    assert.matches("fotahost fota: %-%-url is required", r.err)
  end)
end)
