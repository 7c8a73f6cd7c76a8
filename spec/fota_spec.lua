-- FOTA end to end (issue 7, "Done when"): the app (fotahost app, run
-- as a process, as users run it), the local cloud (`fotahost cloud serve`,
-- a process) and the simulated ATmega32U4 (a directory: flash.bin,
-- fuses.txt, erases.log, faults). Each case checks both the chip and what
-- the cloud received (the fota_status data points, the reported version).
--
-- Each `it` gets a device of its own in the cloud (so its data points and
-- version are its own), a fresh chip directory and state directory, and
-- its own app process; one cloud serves the whole file (case 7 runs one
-- of its own, as it restarts it).
local h = require "helper"
local ihex = require "fotahost.ihex"
local digest = require "fotahost.digest"
local cjson = require "cjson"

local FLASH_SIZE = 32768 -- the ATmega32U4's flash: flash.bin is all of it
local APP_END = 0x6FFF   -- the 7688 Duo's application section ends here (Caterina above)
local WAIT = h.wait_limit(90)          -- seconds for anything to happen (CI is a loaded 2-core machine)


local until_true = h.until_true

local function lines(s)
  local n = 0
  for _ in (s or ""):gmatch("[^\n]*\n") do n = n + 1 end
  return n
end

local start_cloud = h.start_cloud

describe("FOTA end to end: the app, the local cloud and the simulated chip", function()
  local cloud          -- the file's cloud (h.start_server)
  local fwdir          -- its firmware directory
  local files          -- a scratch directory for fixtures
  local web            -- spec/support/http_test_server.lua, serving `files`
  local template       -- a chip with blink-1000 on it (made with `fotahost flash`)
  local fw = {}        -- version -> { path, image }
  local cleanups = {}  -- run after each case, last first
  local ndev = 0

  ---------------------------------------------------------------- the cloud

  local function admin(method, path, value, base)
    return h.cloud_admin(base or cloud.url, method, path, value)
  end

  local function device(t) return admin("GET", "/devices/" .. t.id, nil, t.cloud_url) end

  --- The fota_status values the cloud received from the device, in order;
  -- without the "idle: ..." each connection brings, unless `all`.
  local function statuses(t, all)
    local d = admin("GET", "/devices/" .. t.id .. "/datapoints?channel=fota_status", nil, t.cloud_url)
    local out = {}
    for _, p in ipairs(d.datapoints) do
      local v = p.values.value
      if all or not v:find("^idle: ") then out[#out + 1] = v end
    end
    return out
  end

  local function terminal(s)
    return s == "done" or s:find("^failed: ") ~= nil or s:find("^skipped: ") ~= nil
  end

  --- Waits until the cloud holds at least `n` terminal statuses for the
  -- device; returns the n-th and the whole list.
  local function wait_status(t, n, timeout)
    n = n or 1
    local final, list
    until_true(n .. " final status(es) from " .. t.id, timeout or WAIT, function()
      list = statuses(t)
      local k = 0
      for _, s in ipairs(list) do
        if terminal(s) then
          k = k + 1
          if k == n then final = s return true end
        end
      end
    end)
    return final, list
  end

  --- A FOTA push: `what` is a registered version, or { version =, url =, md5 = }.
  local function push(t, what)
    local body = type(what) == "table" and what or { version = what }
    return admin("POST", "/devices/" .. t.id .. "/fota", body, t.cloud_url)
  end

  --- Waits until the device is done with every push so far (the n-th
  -- terminal status is in): one more push, of a file the cloud does not
  -- have, waits its turn behind an update still running ("queued") and
  -- fails at its download. Once its final status is in, nothing of the
  -- pushes before it can still be touching the chip. Returns the statuses
  -- it added.
  local function barrier(t, n)
    local before = #statuses(t)
    push(t, { version = "barrier", url = t.cloud_url .. "/firmwares/no-such-barrier.hex", md5 = cjson.null })
    local final, list = wait_status(t, n + 1)
    assert.matches("^failed: download: .*/no%-such%-barrier%.hex: HTTP 404$", final)
    return { table.unpack(list, before + 1) }
  end

  ---------------------------------------------------------------- the chip

  local function flash_bytes(t) return h.read(t.chip .. "/flash.bin") end
  local function erases(t) return lines(h.read(t.chip .. "/erases.log")) end
  local function lock_byte(t)
    local v = (h.read(t.chip .. "/fuses.txt") or ""):match("lock=(0x%x+)")
    return v and tonumber(v)
  end
  --- What flash.bin holds after `version` was flashed on an erased chip.
  local function expected_flash(version) return fw[version].image:bytes(0, FLASH_SIZE - 1) end
  local function set_faults(t, text)
    if text then h.write(t.chip .. "/faults", text .. "\n") else os.remove(t.chip .. "/faults") end
  end

  -- Asserts flash.bin holds `version` (compared byte by byte, with the
  -- first difference named: a 32 KB string in a message helps nobody).
  local function assert_flash(t, version)
    h.assert_flash_holds(t.chip, expected_flash(version), version)
  end

  ---------------------------------------------------------------- the app

  -- A device of its own: an id in the cloud, a chip directory (a copy of
  -- `template`, or empty), a state directory and a config file (its
  -- `http` table: opts.http, as Lua text).
  local function new_device(opts)
    opts = opts or {}
    ndev = ndev + 1
    local dir = h.tmpdir()
    cleanups[#cleanups + 1] = function() h.rmdir(dir) end
    local t = {
      id = opts.id or ("fota%d"):format(ndev), key = opts.key or ("key%05d"):format(ndev),
      dir = dir, chip = dir .. "/chip", state = dir .. "/state", cfg = dir .. "/config.lua",
      cloud_url = opts.cloud_url or cloud.url,
    }
    if opts.chip then
      assert(os.execute(("cp -a %s %s"):format(h.q(opts.chip), h.q(t.chip))))
    else
      assert(os.execute("mkdir " .. h.q(t.chip)))
    end
    if not opts.no_register then
      admin("POST", "/devices", { id = t.id, key = t.key }, t.cloud_url)
    end
    h.write(t.cfg, ([[
return {
  device_id = %q, device_key = %q,
  api = %q,
  board = "sim", sim_dir = %q, state_dir = %q,
  heartbeat = 1, backoff_cap = 2,
  http = %s,
  volatile_state_ok = %s,
%s}
]]):format(t.id, t.key, t.cloud_url, t.chip, t.state, opts.http or "{ retries = 0 }",
    -- scratch state in /tmp, a tmpfs on some machines: allowed, but in
    -- the cases that refuse a RAM disk
    tostring(opts.volatile_state_ok ~= false), opts.extra_config and opts.extra_config(t) or ""))
    return t
  end

  local alive = h.alive

  -- What a kill during an update to `version` leaves in t.state: its image
  -- as new.hex and a "flashing" journal naming it (with `fields` over it;
  -- md5 = true: the image's MD5). Returns new.hex's path.
  local function plant_journal(t, version, fields)
    local new = t.state .. "/new.hex"
    assert(fw[version].image:write(new))
    local j = { stage = "flashing", version = version, image = new, sha256 = assert(digest.file(new, "sha256")) }
    for k, v in pairs(fields) do j[k] = v end
    if j.md5 == true then j.md5 = assert(digest.file(new, "md5")) end
    h.write(t.state .. "/journal.json", cjson.encode(j))
    return new
  end

  local function stop_app(t, signal)
    local app = t.app
    if not app then return end
    t.app = nil
    h.stop_app(app, signal)
  end

  --- Starts `fotahost app` with the device's config
  -- (h.start_app), and (unless wait == false) waits until the cloud shows
  -- it connected.
  local function start_app(t, wait)
    -- t.ro_state: state_dir read-only for the app, even as root: a
    -- read-only bind mount in a mount namespace of its own (unshare -rm),
    -- gone with the app
    local wrap = t.ro_state and ("unshare -rm sh -c %s sh %s "):format(
      h.q('mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1" && shift && exec "$@"'), h.q(t.state))
      or t.wrap or ""
    t.app = h.start_app(t.dir, t.cfg, wrap)
    local pid = t.app.pid
    cleanups[#cleanups + 1] = function() stop_app(t) end
    if wait ~= false then
      local ok, err = pcall(until_true, "the app to connect", WAIT, function()
        if not alive(pid) then error("the app exited") end
        return device(t).connected
      end)
      if not ok then error(tostring(err) .. "; its log:\n" .. (h.read(t.dir .. "/app.log") or ""), 2) end
    end
    return t
  end

  --- state_dir on a tmpfs of `kib` KiB (h.tmpfs): mounted for the case,
  -- or, without the right to mount, one of the app's own (then the spec
  -- sees it through /proc/PID/root while the app runs). t.sv(name): the
  -- path of state file `name` as this process sees it.
  local function tmpfs_state(t, kib)
    local fs = h.tmpfs(t.state, kib)
    cleanups[#cleanups + 1] = fs.umount
    t.wrap = fs.wrap
    function t.sv(name)
      return (fs.mounted and "" or ("/proc/%d/root"):format(t.app.pid)) .. t.state .. "/" .. name
    end
    return t
  end

  --- The app's exit status (a string), once it has exited.
  local function app_rc(t)
    return until_true("the app's exit status", 10, function()
      local s = h.read(t.dir .. "/app.rc")
      return s and s:match("%d+")
    end)
  end

  local function app_log(t) return h.read(t.dir .. "/app.log") or "" end

  -- Stops the app and waits until the cloud has seen the connection go.
  local function kill_app(t, signal)
    stop_app(t, signal)
    until_true("the cloud to see the app gone", WAIT, function() return not device(t).connected end)
  end

  --- A cloud of its own for a case that stops and restarts it (the
  -- file's cloud keeps serving the others): stopped after the case.
  local function own_cloud(port, dir, extra)
    local c = start_cloud(dir, port, extra)
    cleanups[#cleanups + 1] = function() c.stop() end
    return c
  end

  ---------------------------------------------------------------- fixtures

  local function register(version, path)
    local img = assert(ihex.load(path))
    fw[version] = { path = path, image = img }
  end

  local pattern = h.pattern

  setup(function()
    fwdir = h.tmpdir()
    files = h.tmpdir()
    register("blink-1000", h.firmware("blink-1000.hex"))
    register("blink-250", h.firmware("blink-250.hex"))
    assert(ihex.from_binary(pattern(28 * 1024, 1), 0):write(files .. "/app-28k-a.hex"))
    assert(ihex.from_binary(pattern(28 * 1024, 2), 0):write(files .. "/app-28k-b.hex"))
    assert(ihex.from_binary(pattern(4 * 1024, 3), 0):write(files .. "/sketch-4k.hex"))
    register("app-28k-a", files .. "/app-28k-a.hex")
    register("app-28k-b", files .. "/app-28k-b.hex")
    register("sketch-4k", files .. "/sketch-4k.hex")
    local args = {}
    for _, v in ipairs({ "blink-1000", "blink-250", "app-28k-a", "app-28k-b", "sketch-4k" }) do
      args[#args + 1] = "--firmware"
      args[#args + 1] = v .. "=" .. fw[v].path
    end
    cloud = start_cloud(fwdir, 0, args)
    web = h.start_server({ "spec/support/http_test_server.lua", "--root", files })
    assert(os.execute(("cp %s %s/blink-250.hex"):format(h.q(fw["blink-250"].path), h.q(files))))
    -- The chip the failure cases start from: blink-1000 on it, flashed
    -- with `fotahost flash` (its erases.log has that erase).
    template = h.tmpdir()
    local r = h.run({ "flash", "-c", "sim", "-P", template, "-e", "-U", "flash:w:" .. fw["blink-1000"].path })
    assert(r.status == 0, r.err)
  end)

  teardown(function()
    if web then web.stop() end
    if cloud then cloud.stop() end
    for _, d in ipairs({ fwdir, files, template }) do if d then h.rmdir(d) end end
  end)

  after_each(function()
    for i = #cleanups, 1, -1 do pcall(cleanups[i]) end
    cleanups = {}
  end)

  ---------------------------------------------------------------- 1, 2

  it("flashes a good push: verified image, lock 0xCF, version reported, statuses in order", function()
    local t = start_app(new_device())
    push(t, "blink-1000")
    local final, list = wait_status(t)
    assert.are.equal("done", final, app_log(t))
    assert.are.same({ "downloading", "verifying", h.UNSIGNED, "flashing", "done" }, list)
    assert_flash(t, "blink-1000")
    assert.are.equal(0xCF, lock_byte(t))
    assert.are.equal(1, erases(t))
    until_true("the version report", WAIT, function() return device(t).version == "blink-1000" end)
    -- the state directory: installed, last-known-good kept, no journal
    assert.matches('"version":"blink%-1000"', h.read(t.state .. "/installed.json"))
    assert.is_not_nil(h.read(t.state .. "/lkg.hex"))
    assert.is_nil(h.read(t.state .. "/journal.json"))
  end)

  it("does not flash the version already installed again", function()
    local t = start_app(new_device())
    push(t, "blink-250")
    assert.are.equal("done", (wait_status(t, 1)), app_log(t))
    local before, n = flash_bytes(t), erases(t)
    push(t, "blink-250")
    local final, list = wait_status(t, 2)
    assert.are.equal("skipped: blink-250 is already installed", final)
    assert.are.same({ "downloading", "verifying", h.UNSIGNED, "flashing", "done", final }, list)
    assert.are.equal(n, erases(t))
    assert.is_true(before == flash_bytes(t), "flash.bin changed")
    assert.are.equal("blink-250", device(t).version)
  end)

  it("stops on SIGTERM (a service stop) with one log line and status 143, no traceback", function()
    local t = start_app(new_device())
    -- the cloud sees the connection before the app has logged it and its
    -- idle status (the last of its start-up lines): wait for them
    until_true("the app's idle status", WAIT, function() return app_log(t):find("fota: status: idle") end)
    local before = #app_log(t)
    os.execute(("kill -TERM %d"):format(t.app.pid))
    local rc = until_true("the app to exit", WAIT, function() return h.read(t.dir .. "/app.rc") end)
    local said = app_log(t):sub(before + 1)
    assert.are.equal("143\n", rc, said)
    assert.matches("^%d%d:%d%d:%d%d%.%d%d%d info%s+app: stopped %(SIGTERM%)\n$", said)
  end)

  ---------------------------------------------------------------- 3

  describe("refuses before touching the MCU, reporting failed: <reason>,", function()
    -- Each case: a device whose chip holds blink-1000; a push that must
    -- fail; flash.bin byte-identical after it, erases.log unchanged, no
    -- "flashing" status, the reported version not changed.
    local function refused(what, reason)
      local t = start_app(new_device({ chip = template }))
      local before, n = flash_bytes(t), erases(t)
      assert.is_not_nil(before)
      push(t, what)
      local final, list = wait_status(t)
      assert.matches("^failed: ", final)
      assert.matches(reason, final)
      for _, s in ipairs(list) do assert.are_not.equal("flashing", s) end
      -- the device has finished with the push: no status came after its final one
      local after = barrier(t, 1)
      assert.is_truthy(after[1] == "downloading" or after[1] == "queued: barrier (an update is running)",
        "a status after the final one: " .. tostring(after[1]))
      assert.are.equal(n, erases(t), "the chip was erased")
      assert.is_true(before == flash_bytes(t), "flash.bin changed")
      assert.are.equal(cjson.null, device(t).version)
      assert.is_nil(h.read(t.state .. "/journal.json"))
      return final, list, t
    end

    local function md5_of(path) return assert(digest.file(path, "md5")) end
    -- A file the cloud serves (unregistered): its URL and its true MD5, so
    -- that what refuses it is not the MD5 check.
    local function file_url(name, data)
      local path = h.write(fwdir .. "/" .. name, data)
      return cloud.url .. "/firmwares/" .. name, md5_of(path)
    end

    it("an MD5 mismatch", function()
      local _, list = refused({ version = "blink-250", md5 = ("0123456789abcdef"):rep(2) },
        "MD5 mismatch: expected 0123456789abcdef0123456789abcdef, the file is " .. md5_of(fw["blink-250"].path))
      assert.are.same({ "downloading", "verifying" }, { list[1], list[2] })
    end)

    it("HTTP 404", function()
      refused({ version = "x404", url = cloud.url .. "/firmwares/no-such-file.hex", md5 = cjson.null },
        "^failed: download: .*/firmwares/no%-such%-file%.hex: HTTP 404")
    end)

    it("HTTP 500", function()
      refused({ version = "x500", url = web.url .. "/status/500", md5 = cjson.null },
        "^failed: download: .*/status/500: HTTP 500")
    end)

    it("a truncated body", function()
      local final = refused({ version = "xcut", url = web.url .. "/truncate/blink-250.hex?send=100",
        md5 = cjson.null }, "^failed: download: .*/truncate/blink%-250%.hex")
      -- libcurl's words for it, or http's kind
      assert.is_truthy(final:find("bytes remaining", 1, true) or final:find("truncated", 1, true), final)
    end)

    it("an unreachable server", function()
      -- a port that was free a moment ago: nothing listens there
      local srv = assert(require("fotahost.tcp.core").listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      srv:close()
      refused({ version = "xdown", url = ("http://127.0.0.1:%d/fw.hex"):format(port), md5 = cjson.null },
        ("^failed: download: http://127%%.0%%.0%%.1:%d/fw%%.hex: "):format(port))
    end)

    it("a file:// URL", function()
      local final, list = refused({ version = "xfile", url = "file://" .. fw["blink-250"].path, md5 = cjson.null },
        "the URL must be http:// or https://: file://")
      assert.are.same({ final }, list) -- refused at once: no download started
    end)

    it("a HEX file with a bad checksum", function()
      -- the second record's checksum (its last two hex digits) plus one
      local n = 0
      local bad = h.read(fw["blink-250"].path):gsub("(:%x*)(%x%x)(\r?\n)", function(rec, cs, eol)
        n = n + 1
        if n ~= 2 then return nil end
        return rec .. ("%02X"):format((tonumber(cs, 16) + 1) % 256) .. eol
      end)
      local url, md5 = file_url("bad-checksum.hex", bad)
      refused({ version = "xsum", url = url, md5 = md5 }, "not a valid Intel HEX file: line 2: bad checksum")
    end)

    it("a HEX file larger than the application section", function()
      -- 4 KB from 0x6800: its last 2 KB over the bootloader section
      local url, md5 = file_url("too-large.hex", ihex.from_binary(("\x0C\x94"):rep(2048), APP_END + 1 - 0x800):to_hex())
      refused({ version = "xbig", url = url, md5 = md5 },
        "image too large: it reaches 0x77FF, the application section ends at 0x6FFF")
    end)

    it("the Arduino IDE's with_bootloader export, with no bootloader configured", function()
      local url, md5 = file_url("sketch.ino.with_bootloader.hex", h.read(h.firmware("blink-250.with_bootloader.hex")))
      refused({ version = "xwithboot", url = url, md5 = md5 },
        "^failed: the image carries a bootloader %(0x7000%.%.0x%x+%) and none is configured: upload the "
        .. "Arduino export sketch%.ino%.hex, not sketch%.ino%.with_bootloader%.hex")
    end)

    it("an HTML page", function()
      local url, md5 = file_url("page.hex", "<html><body><h1>502 Bad Gateway</h1></body></html>\n")
      refused({ version = "xhtml", url = url, md5 = md5 }, "not a valid Intel HEX file")
    end)

    it("random bytes", function()
      local url, md5 = file_url("noise.hex", pattern(3000, 7))
      refused({ version = "xnoise", url = url, md5 = md5 }, "not a valid Intel HEX file")
    end)

    it("a HEX file that holds no data", function()
      -- valid Intel HEX: only the end-of-file record
      local url, md5 = file_url("empty.hex", ":00000001FF\n")
      refused({ version = "xempty", url = url, md5 = md5 }, "^failed: the HEX file holds no data$")
    end)
  end)

  ---------------------------------------------------------------- a server that drips
  -- Issue 11, item 4: a server sending a byte now and then held an update,
  -- and every push after it, for hours. The config's http.timeout bounds
  -- the whole download and http.min_rate its average rate; the push fails
  -- with the URL masked, and the device takes the next one.

  describe("gives up a download that drips", function()
    -- The drip URL with a password and the device key in it, as the push
    -- carries it, and as the status must show it.
    local function drip_url(t, query)
      local url = web.url:gsub("^http://", "http://fw:pa55word@") .. "/drip?" .. query .. "&deviceKey=" .. t.key
      local shown = web.url:gsub("^http://", "http://****@") .. "/drip?" .. query .. "&deviceKey=****"
      return url, shown
    end

    local function no_secrets(t)
      local log = app_log(t)
      assert.is_nil(log:find(t.key, 1, true), "the device key is in the log")
      assert.is_nil(log:find("pa55word", 1, true), "the URL's password is in the log")
    end

    it("at http.timeout, with the chip never touched, then takes the next push", function()
      local t = start_app(new_device({ chip = template, http = "{ retries = 0, timeout = 3 }" }))
      local before, n = flash_bytes(t), erases(t)
      -- 5 bytes a second: over libcurl's low-speed limit, and the default
      -- minimum rate waits 60 s (the 100 bytes end in 20 s: a deadline
      -- that does not work fails the case, not hangs it)
      local url, shown = drip_url(t, "bytes=100&interval=0.2")
      push(t, { version = "drip", url = url, md5 = cjson.null })
      local final, list = wait_status(t)
      assert.are.equal("failed: download timed out after 3 s: " .. shown, final, app_log(t))
      assert.are.same({ "downloading", final }, list)
      assert.are.equal(n, erases(t), "the chip was erased")
      assert.is_true(before == flash_bytes(t), "flash.bin changed")
      assert.is_nil(h.read(t.state .. "/download.hex.part"))
      -- the device is free: a good push goes through in the same run
      push(t, "blink-250")
      final = wait_status(t, 2)
      assert.are.equal("done", final, app_log(t))
      assert_flash(t, "blink-250")
      assert.are.equal(n + 1, erases(t))
      no_secrets(t)
    end)

    it("under http.min_rate, and the push queued behind it goes through", function()
      local t = start_app(new_device({ chip = template,
        http = "{ retries = 0, min_rate = 2000, min_rate_after = 2 }" }))
      local n = erases(t)
      local url, shown = drip_url(t, "bytes=1500&interval=0.01")
      push(t, { version = "drip", url = url, md5 = cjson.null })
      until_true("downloading", WAIT, function() return statuses(t)[1] == "downloading" end)
      push(t, "blink-250")
      local final, list = wait_status(t, 2)
      assert.are.equal("done", final, app_log(t))
      assert.are.equal("queued: blink-250 (an update is running)", list[2])
      local bytes, secs = list[3]:match("^failed: download too slow %((%d+) bytes in ([%d.]+) s; the minimum "
        .. "is 2000 bytes/s on average%): (.*)$")
      assert.is_truthy(bytes, list[3])
      assert.are.equal("failed: download too slow (" .. bytes .. " bytes in " .. secs
        .. " s; the minimum is 2000 bytes/s on average): " .. shown, list[3])
      assert.is_true(tonumber(secs) >= 2 and tonumber(bytes) < 2000 * tonumber(secs), list[3])
      assert.are.same({ "downloading", "verifying", h.UNSIGNED, "flashing", "done" }, { table.unpack(list, 4) })
      -- one erase: blink-250's; the drip never reached the chip
      assert.are.equal(n + 1, erases(t))
      assert_flash(t, "blink-250")
      no_secrets(t)
    end)
  end)

  ---------------------------------------------------------------- 4, 5

  it("refuses a chip with the wrong signature before the erase", function()
    local t = new_device()
    -- an ATmega328P where the 32U4 should be
    local r = h.run({ "flash", "-c", "sim", "-p", "m328p", "-P", t.chip, "-e", "-U",
      "flash:w:" .. fw["blink-1000"].path })
    assert(r.status == 0, r.err)
    assert.matches("part=m328p", h.read(t.chip .. "/fuses.txt"))
    start_app(t)
    local before, n = flash_bytes(t), erases(t)
    push(t, "blink-250")
    local final, list = wait_status(t)
    -- nothing was erased: no rollback is tried (it would fail the same way)
    assert.matches("^failed: [^;]*signature 1E 95 0F[^;]*$", final)
    -- "flashing" is said only once the signature is right
    assert.are.same({ "downloading", "verifying", h.UNSIGNED, final }, list)
    assert.are.same({ "downloading",
      "failed: download: " .. t.cloud_url .. "/firmwares/no-such-barrier.hex: HTTP 404" }, barrier(t, 1))
    assert.are.equal(n, erases(t))
    assert.is_true(before == flash_bytes(t), "flash.bin changed")
    assert.are.equal(cjson.null, device(t).version)
    assert.is_nil(h.read(t.state .. "/journal.json"))
  end)

  it("rolls back to the last-known-good image when the verify fails", function()
    local t = start_app(new_device())
    push(t, "blink-1000")
    assert.are.equal("done", (wait_status(t, 1)), app_log(t))
    until_true("the version report", WAIT, function() return device(t).version == "blink-1000" end)
    -- One MISO bit flipped in the 57001st ISP instruction of a session, in
    -- its data byte: in the verify of a 28 KB image (instructions ~42.6k to
    -- ~71.3k, measured: 4 to connect, ~42.5k to erase and write with its
    -- RDY/BSY polls, 28,672 reads), far beyond the whole session that
    -- flashes the 286-byte blink-1000 back (~1k instructions).
    set_faults(t, ("bit_error %d"):format(57000 * 32 + 28))
    local n = erases(t)
    push(t, "app-28k-a")
    local final, list = wait_status(t, 2)
    set_faults(t, nil)
    assert.matches("^failed: verify: verification error at 0x%x+.*; rolled back to blink%-1000$", final)
    assert.are.same({ "downloading", "verifying", h.UNSIGNED, "flashing", "done",
      "downloading", "verifying", h.UNSIGNED, "flashing", final }, list)
    assert.are.equal(n + 2, erases(t)) -- the new image's, then the rollback's
    assert_flash(t, "blink-1000")
    assert.are.equal(0xCF, lock_byte(t))
    assert.are.equal("blink-1000", device(t).version)
    assert.matches('"version":"blink%-1000"', h.read(t.state .. "/installed.json"))
    assert.is_nil(h.read(t.state .. "/journal.json"))
  end)

  ---------------------------------------------------------------- 6

  it("completes the image after a SIGKILL mid-flash, before connecting again", function()
    local t = start_app(new_device())
    push(t, "blink-1000")
    assert.are.equal("done", (wait_status(t, 1)), app_log(t))
    -- busy periods 4x longer: the 224 page writes take seconds
    set_faults(t, "slow_write 4")
    local n = erases(t)
    push(t, "app-28k-a")
    -- Killed once the chip is erased (the journal was written before) and
    -- the cloud has "flashing": the simulated chip saves flash.bin only
    -- when a session ends, so what a kill from here on leaves is the same
    -- as a power cut mid-write.
    until_true("the erase of the chip, and flashing at the cloud", WAIT, function()
      return erases(t) > n and statuses(t)[9] == "flashing"
    end)
    kill_app(t, "KILL")
    local list = statuses(t)
    assert.are.same({ "downloading", "verifying", h.UNSIGNED, "flashing", "done",
      "downloading", "verifying", h.UNSIGNED, "flashing" }, list)
    assert.matches('"stage":"flashing"', h.read(t.state .. "/journal.json"))
    set_faults(t, nil)
    local logged = #app_log(t)
    start_app(t)
    -- connected: the recovery ran before, so the image is there already
    assert_flash(t, "app-28k-a")
    local log = app_log(t):sub(logged + 1)
    local flashed = log:find("flashing app-28k-a (again, after an interruption)", 1, true)
    local connected = log:find("connected to the command server", 1, true)
    assert.is_truthy(flashed and connected and flashed < connected, "the recovery comes first; the log:\n" .. log)
    assert.are.equal(0xCF, lock_byte(t))
    assert.are.equal(n + 2, erases(t))
    assert.is_nil(h.read(t.state .. "/journal.json"))
    assert.matches('"version":"app%-28k%-a"', h.read(t.state .. "/installed.json"))
    until_true("the recovery status", WAIT, function() return #statuses(t) > #list end)
    assert.are.equal("recovered: app-28k-a flashed again after an interruption", statuses(t)[#list + 1])
    until_true("the version report", WAIT, function() return device(t).version == "app-28k-a" end)
  end)

  ---------------------------------------------------------------- 7

  it("reconnects after the cloud restarts, and a later push succeeds", function()
    -- a cloud of its own, restarted on the same port with the same firmware dir
    local dir = h.tmpdir()
    cleanups[#cleanups + 1] = function() h.rmdir(dir) end
    local dev, key = "fotarestart", "keyrestart"
    local own = own_cloud(0, dir, { "--device", dev .. ":" .. key,
      "--firmware", "blink-1000=" .. fw["blink-1000"].path, "--firmware", "blink-250=" .. fw["blink-250"].path })
    local t = new_device({ cloud_url = own.url, id = dev, key = key, no_register = true })
    start_app(t)
    push(t, "blink-1000")
    assert.are.equal("done", (wait_status(t, 1)), app_log(t))
    local port = own.port
    own.stop()
    own_cloud(port, dir, { "--device", dev .. ":" .. key })
    assert.are.equal(port, own.port)
    until_true("the app to reconnect", WAIT, function() return device(t).connected end)
    -- the data points went with the old process; the registrations did not
    push(t, "blink-250")
    local final, list = wait_status(t, 1)
    assert.are.equal("done", final, app_log(t))
    assert.are.same({ "downloading", "verifying", h.UNSIGNED, "flashing", "done" }, list)
    assert_flash(t, "blink-250")
    until_true("the version report", WAIT, function() return device(t).version == "blink-250" end)
  end)

  ---------------------------------------------------------------- 8

  it("queues a push that arrives during an update, never interleaving the two", function()
    local t = start_app(new_device())
    set_faults(t, "slow_write 3")
    local n = erases(t)
    push(t, "app-28k-b")
    until_true("flashing", WAIT, function()
      local l = statuses(t)
      return l[#l] == "flashing"
    end)
    push(t, "sketch-4k")
    local final, list = wait_status(t, 2)
    set_faults(t, nil)
    assert.are.equal("done", final, app_log(t))
    assert.are.same({ "downloading", "verifying", h.UNSIGNED, "flashing", "queued: sketch-4k (an update is running)",
      "done", "downloading", "verifying", h.UNSIGNED, "flashing", "done" }, list)
    assert.are.equal(n + 2, erases(t))
    assert_flash(t, "sketch-4k")
    until_true("the version report", WAIT, function() return device(t).version == "sketch-4k" end)
    assert.matches('"version":"sketch%-4k"', h.read(t.state .. "/installed.json"))
  end)

  ---------------------------------------------------------------- stops, cuts and lost reports
  -- Each of these was a bug found by these specs, and is fixed.

  -- SIGTERM (a service stop, a reboot) during an update stops the app:
  -- the pcalls on the way (hooks, the health check, push, the handler's
  -- xpcall in fotahost.mcs) pass an interrupt on instead of reporting it as
  -- a failure (which would roll back, or leave a half-written MCU running
  -- while the app went on). The journal stays and the next start completes
  -- the update. A health check that computes (never yields) makes the
  -- handler the task running Lua when the signal comes.
  it("exits on SIGTERM during an update (here in a computing health check), then completes it", function()
    local t = new_device({ extra_config = function(d) return ([[
  health_check = function(job)
    io.open(%q, "w"):close()
    local t0 = os.clock()
    while os.clock() - t0 < 4 do end -- e.g. a checksum of what the sketch sent
    return true
  end,
]]):format(d.dir .. "/health-check-running") end })
    local marker = t.dir .. "/health-check-running"
    start_app(t)
    push(t, "blink-250")
    until_true("the health check", WAIT, function() return h.read(marker) end)
    local pid = t.app.pid
    os.execute("kill -TERM " .. pid)
    local exited = pcall(until_true, "the app to exit", 15, function() return not alive(pid) end)
    assert.is_true(exited, "the app still runs 15 s after a SIGTERM during the update; its log:\n" .. app_log(t))
    assert.are.equal("143", app_rc(t))
    kill_app(t)
    assert.matches('"stage":"flashing"', h.read(t.state .. "/journal.json"))
    -- (recover() runs the health check again: the cut came before it passed)
    start_app(t)
    assert_flash(t, "blink-250")
    assert.is_nil(h.read(t.state .. "/journal.json"))
    assert.matches('"version":"blink%-250"', h.read(t.state .. "/installed.json"))
  end)

  -- A power cut while the new image's health check runs: the next start
  -- checks it again before adopting it, and here the check fails, so the
  -- last-known-good goes back on. No image is kept (installed.json,
  -- lkg.hex) or reported before its check passed.
  it("checks an image again after a SIGKILL during its health check, and rolls back when it fails", function()
    local t = new_device({ extra_config = function(d) return ([[
  health_check = function(job)
    if job.version == "blink-1000" then return true end
    io.open(%q, "w"):close()
    local verdict = io.open(%q)
    if verdict then
      local v = verdict:read("a")
      verdict:close()
      return v == "ok", "the sketch said " .. v
    end
    require("fotahost.sched").sleep(300) -- no verdict yet: the kill comes
    return true
  end,
]]):format(d.dir .. "/health-check-running", d.dir .. "/verdict") end })
    local marker = t.dir .. "/health-check-running"
    start_app(t)
    push(t, "blink-1000")
    assert.are.equal("done", (wait_status(t, 1)), app_log(t))
    push(t, "blink-250")
    until_true("the health check", WAIT, function() return h.read(marker) end)
    kill_app(t, "KILL")
    assert_flash(t, "blink-250")
    local n = erases(t)
    assert.matches('"health":"pending"', h.read(t.state .. "/journal.json"))
    h.write(t.dir .. "/verdict", "no heartbeat")
    local before = #statuses(t)
    start_app(t)
    assert_flash(t, "blink-1000")
    assert.are.equal(n + 2, erases(t)) -- blink-250 again (checked again), then blink-1000
    assert.is_nil(h.read(t.state .. "/journal.json"))
    assert.is_nil(h.read(t.state .. "/new.hex"))
    assert.matches('"version":"blink%-1000"', h.read(t.state .. "/installed.json"))
    assert.is_true(fw["blink-1000"].image:bytes(0, FLASH_SIZE - 1)
      == assert(ihex.load(t.state .. "/lkg.hex")):bytes(0, FLASH_SIZE - 1), "lkg.hex is not blink-1000")
    until_true("the recovery status", WAIT, function() return #statuses(t) > before end)
    assert.are.equal("recovered: the last-known-good image (blink-1000) restored after an interruption"
      .. " (blink-250 rejected: health check: the sketch said no heartbeat)", statuses(t)[before + 1])
    until_true("the version report", WAIT, function() return device(t).version == "blink-1000" end)
    assert.is_true(alive(t.app.pid))
  end)

  -- A read-only state_dir (a filesystem remounted read-only after an
  -- error) with a journal in it: a recovery could never be recorded, so
  -- it would run at every start. The app leaves a chip that holds the
  -- last-known-good image alone, tells the cloud, and refuses pushes.
  it("never re-flashes at each start when state_dir is read-only, and refuses pushes", function()
    local t = start_app(new_device())
    push(t, "blink-1000")
    assert.are.equal("done", (wait_status(t, 1)), app_log(t))
    kill_app(t, "TERM")
    -- what a kill right before the erase of an update to blink-250 leaves
    plant_journal(t, "blink-250", { health = "pending" })
    local n = erases(t)
    t.ro_state = true
    for start = 1, 2 do
      local before = #statuses(t)
      start_app(t)
      until_true("the recovery status", WAIT, function() return #statuses(t) > before end)
      local said = statuses(t)[before + 1]
      assert.matches("^failed: recovery after an interruption cannot be recorded: state_dir .* is not "
        .. "writable: .*Read%-only file system; the MCU holds the last%-known%-good image %(blink%-1000%)$",
        said, "start " .. start)
      assert.are.equal(n, erases(t), "start " .. start .. " erased the chip")
      assert_flash(t, "blink-1000")
      until_true("the version report", WAIT, function() return device(t).version == "blink-1000" end)
      if start == 2 then
        local k = #statuses(t)
        push(t, "blink-250")
        until_true("the push's status", WAIT, function() return #statuses(t) > k end)
        local final = statuses(t)[k + 1]
        assert.matches("^failed: state_dir .* is not writable: .*Read%-only file system$", final)
        assert.are.equal(n, erases(t))
        assert_flash(t, "blink-1000")
        assert.is_true(alive(t.app.pid))
      end
      kill_app(t, "TERM")
    end
    assert.matches('"stage":"flashing"', h.read(t.state .. "/journal.json"))
  end)

  -- Item 12: on a RAM disk the journal and the last-known-good image are
  -- gone in the very power cut they are kept for. An update is refused
  -- before anything is downloaded, unless volatile_state_ok says so.
  it("refuses an update when state_dir is on a tmpfs, and allows it with volatile_state_ok = true", function()
    local t = tmpfs_state(new_device({ chip = template, volatile_state_ok = false }), 1024)
    start_app(t)
    local n = erases(t)
    push(t, "blink-250")
    local _, list = wait_status(t)
    assert.are.same({ "failed: state_dir " .. t.state .. " is on tmpfs (lost at power-off); set "
      .. "volatile_state_ok = true to allow" }, list, app_log(t))
    assert.are.equal(n, erases(t))
    assert_flash(t, "blink-1000")
    assert.is_nil(h.read(t.sv("journal.json")))
    local ok = tmpfs_state(new_device({ chip = template }), 1024)
    start_app(ok)
    push(ok, "blink-250")
    local final = wait_status(ok)
    assert.are.equal("done", final, app_log(ok))
    assert_flash(ok, "blink-250")
  end)

  -- Item 5: the room every file of the install needs (new.hex, the
  -- journal, installed.json) is checked before the erase. Here a 32 KiB
  -- tmpfs takes the download (12 KiB) and not the rest.
  it("refuses an update state_dir has no room for, before the erase", function()
    local t = tmpfs_state(new_device({ chip = template }), 32)
    start_app(t)
    local n = erases(t)
    push(t, "sketch-4k")
    local final, list = wait_status(t)
    assert.matches("^failed: state_dir " .. t.state:gsub("%p", "%%%0") .. " has %d+ KiB free, the update needs "
      .. "%d+ KiB$", final, app_log(t))
    assert.are.same({ "downloading", "verifying", h.UNSIGNED, final }, list)
    local free, need = final:match("has (%d+) KiB free, the update needs (%d+) KiB")
    assert.is_true(tonumber(free) < tonumber(need), final)
    assert.are.equal(n, erases(t))
    assert_flash(t, "blink-1000")
    assert.is_nil(h.read(t.sv("journal.json")))
    assert.is_nil(h.read(t.sv("new.hex")))
  end)

  -- Item 5: the disk fills up after the pre-check (here the health check
  -- fills it): the MCU holds blink-250, so the cloud is told blink-250 --
  -- never "failed" with blink-1000 kept -- and the commit is retried until
  -- there is room again.
  it("tells the cloud the version on the chip when the disk fills before the commit, and saves it later", function()
    local t = tmpfs_state(new_device({ extra_config = function(d) return ([[
  health_check = function(job)
    if job.version ~= "blink-250" then return true end
    local f = assert(io.open(%q, "wb"))
    f:setvbuf("no")
    local chunk = ("x"):rep(4096)
    repeat until not f:write(chunk)
    f:close()
    io.open(%q, "w"):close()
    return true
  end,
]]):format(d.state .. "/filler", d.dir .. "/disk-full") end }), 256)
    start_app(t)
    push(t, "blink-1000")
    assert.are.equal("done", (wait_status(t)), app_log(t))
    push(t, "blink-250")
    until_true("the disk to fill up", WAIT, function() return h.read(t.dir .. "/disk-full") end)
    local said = until_true("the retried commit's status", WAIT, function()
      local l = statuses(t)
      return l[#l]:find("retrying", 1, true) and l[#l]
    end)
    assert.matches("^done: blink%-250 installed %(state not saved: .*installed%.json: "
      .. h.literal(h.strerror.ENOSPC) .. "; retrying%)$", said)
    assert_flash(t, "blink-250")
    until_true("the version report", WAIT, function() return device(t).version == "blink-250" end)
    assert.matches('"stage":"flashing"', h.read(t.sv("journal.json")))
    assert.matches('"version":"blink%-1000"', h.read(t.sv("installed.json")))
    assert(os.remove(t.sv("filler"))) -- room again
    local final, list = wait_status(t, 2)
    assert.are.equal("done", final, app_log(t))
    assert.are.same({ "downloading", "verifying", h.UNSIGNED, "flashing", "done",
      "downloading", "verifying", h.UNSIGNED, "flashing", said, "done" }, list)
    until_true("the journal to clear", WAIT, function() return h.read(t.sv("journal.json")) == nil end)
    assert.matches('"version":"blink%-250"', h.read(t.sv("installed.json")))
    assert.are.equal("blink-250", device(t).version)
    assert_flash(t, "blink-250")
  end)

  -- The same in a hook before the flash: the app stops, the chip is
  -- never touched, and the cloud is not told the update failed.
  it("exits on SIGTERM in a before_flash hook, leaving the chip as it was", function()
    local t = new_device({ chip = template, extra_config = function(d) return ([[
  before_flash = function(job)
    io.open(%q, "w"):close()
    local t0 = os.clock()
    while os.clock() - t0 < 4 do end -- e.g. a checksum of the image
    return true
  end,
]]):format(d.dir .. "/before-flash-running") end })
    local marker = t.dir .. "/before-flash-running"
    start_app(t)
    local before, n = flash_bytes(t), erases(t)
    push(t, "blink-250")
    until_true("the before_flash hook", WAIT, function() return h.read(marker) end)
    local pid = t.app.pid
    os.execute("kill -TERM " .. pid)
    local exited = pcall(until_true, "the app to exit", 15, function() return not alive(pid) end)
    assert.is_true(exited, "the app still runs 15 s after a SIGTERM in before_flash; its log:\n" .. app_log(t))
    assert.are.equal("143", app_rc(t))
    kill_app(t)
    -- (a hook that computes holds up the status sender too: "verifying"
    -- may not have gone out)
    for _, s in ipairs(statuses(t)) do
      assert.is_truthy(s == "downloading" or s == "verifying", "the cloud was told " .. s)
    end
    assert.are.equal(n, erases(t))
    assert.is_true(before == flash_bytes(t), "flash.bin changed")
    assert.is_nil(h.read(t.state .. "/journal.json"))
  end)

  -- A power cut inside commit(): recover() finds the journal's image as
  -- new.hex, or already renamed to lkg.hex (checked by SHA-256), and
  -- finishes the commit with the new version, never the old one.
  it("finishes a commit a power cut interrupted between lkg.hex and installed.json", function()
    local t = start_app(new_device())
    push(t, "blink-1000")
    assert.are.equal("done", (wait_status(t, 1)), app_log(t))
    kill_app(t, "TERM")
    -- The state a power cut inside commit() leaves after blink-250 was
    -- flashed and verified: the journal, the chip holding blink-250 (and
    -- locked), new.hex already renamed over lkg.hex, installed.json not
    -- yet rewritten.
    local new = plant_journal(t, "blink-250", { md5 = true })
    local r = h.run({ "flash", "-c", "sim", "-P", t.chip, "-e", "-U", "flash:w:" .. fw["blink-250"].path,
      "-U", "lock:w:0x0f:m" })
    assert(r.status == 0, r.err)
    assert(os.rename(new, t.state .. "/lkg.hex"))
    local before = #statuses(t)
    start_app(t)
    assert_flash(t, "blink-250")
    assert.is_nil(h.read(t.state .. "/journal.json"))
    until_true("the recovery status", WAIT, function() return #statuses(t) > before end)
    local recovered = statuses(t)[before + 1]
    assert.matches("^recovered: ", recovered)
    assert.matches('"version":"blink%-250"', h.read(t.state .. "/installed.json"),
      "installed.json names the wrong version; the cloud was told: " .. recovered)
    push(t, "blink-1000")
    assert.are.equal("done", (wait_status(t, 2)))
    assert_flash(t, "blink-1000")
  end)

  -- The installed version is reported on every connection, so a report
  -- that could not be made (the cloud unreachable right after a recovery)
  -- is made at the next one.
  it("reports the version of a recovery done while the cloud was unreachable", function()
    local dir = h.tmpdir()
    cleanups[#cleanups + 1] = function() h.rmdir(dir) end
    local dev, key = "fotaoffline", "keyoffline"
    local args = { "--device", dev .. ":" .. key, "--firmware", "app-28k-a=" .. fw["app-28k-a"].path }
    local own = own_cloud(0, dir, args)
    local t = new_device({ cloud_url = own.url, id = dev, key = key, no_register = true })
    start_app(t)
    set_faults(t, "slow_write 4")
    push(t, "app-28k-a")
    until_true("the erase of the chip", WAIT, function() return erases(t) > 0 end)
    kill_app(t, "KILL")
    set_faults(t, nil)
    local port = own.port
    own.stop()
    -- the app starts while the cloud is down: the recovery runs, the
    -- version report fails
    local logged = #app_log(t)
    start_app(t, false)
    until_true("the recovery", WAIT, function()
      return h.read(t.state .. "/journal.json") == nil
        and (h.read(t.state .. "/installed.json") or ""):find("app-28k-a", 1, true)
    end)
    -- the app has found the cloud down (and will retry) before it comes back
    until_true("a failed connection", WAIT, function()
      return app_log(t):find("retrying in", logged + 1, true)
    end)
    own_cloud(port, dir, { "--device", dev .. ":" .. key })
    until_true("the app to reconnect", WAIT, function() return device(t).connected end)
    until_true("the recovery status", WAIT, function() return statuses(t)[1] ~= nil end)
    assert.matches("^recovered: app%-28k%-a ", statuses(t)[1])
    assert_flash(t, "app-28k-a")
    -- a few heartbeats and reconnect delays (backoff_cap = 2) are plenty
    local ok = pcall(until_true, "the version report", 10, function() return device(t).version == "app-28k-a" end)
    local v = device(t).version
    assert.is_true(ok, "the cloud shows version " .. (v == cjson.null and "null" or tostring(v))
      .. " for a device running app-28k-a")
  end)

  -- A kill outside the journal's window (here mid-download) used to
  -- leave the cloud's last status at "downloading" for ever: the app
  -- now says where it stands on every connection of the command channel.
  it("tells the cloud it is idle and which version is installed at every connection", function()
    local dir = h.tmpdir()
    cleanups[#cleanups + 1] = function() h.rmdir(dir) end
    local dev, key = "fotaidle", "keyidle"
    local own = own_cloud(0, dir,
      { "--device", dev .. ":" .. key, "--firmware", "blink-1000=" .. fw["blink-1000"].path })
    local t = new_device({ cloud_url = own.url, id = dev, key = key, no_register = true })
    start_app(t)
    until_true("the first idle status", WAIT, function() return statuses(t, true)[1] end)
    assert.are.same({ "idle: no version installed" }, statuses(t, true))
    push(t, "blink-1000")
    assert.are.equal("done", (wait_status(t, 1)), app_log(t))
    -- 819 bytes at 50 bytes/s: still downloading when the kill comes
    push(t, { version = "blink-250", url = web.url .. "/throttle/blink-250.hex?rate=50", md5 = cjson.null })
    until_true("downloading", WAIT, function() return statuses(t, true)[#statuses(t, true)] == "downloading" end)
    kill_app(t, "KILL")
    local n = #statuses(t, true)
    start_app(t)
    until_true("a status after the restart", WAIT, function() return #statuses(t, true) > n end)
    assert.are.same({ "idle: blink-1000 installed" }, { table.unpack(statuses(t, true), n + 1) })
    assert_flash(t, "blink-1000")
    -- a new cloud process (its data points gone): told again
    local port = own.port
    own.stop()
    own_cloud(port, dir, { "--device", dev .. ":" .. key })
    until_true("the app to reconnect", WAIT, function() return device(t).connected end)
    until_true("a status at the new cloud", WAIT, function() return statuses(t, true)[1] end)
    assert.are.same({ "idle: blink-1000 installed" }, statuses(t, true))
  end)

  -- ... but not while an update runs (a reconnection during its health
  -- check): the update's own final status is the next word.
  it("sends no idle status while an update runs, across a reconnection", function()
    local dir = h.tmpdir()
    cleanups[#cleanups + 1] = function() h.rmdir(dir) end
    local dev, key = "fotabusy", "keybusy"
    local own = own_cloud(0, dir, { "--device", dev .. ":" .. key, "--firmware", "blink-250=" .. fw["blink-250"].path })
    local t = new_device({ cloud_url = own.url, id = dev, key = key, no_register = true,
      extra_config = function(d) return ([[
  health_check = function(job)
    io.open(%q, "w"):close()
    while not io.open(%q) do require("fotahost.sched").sleep(0.05) end -- the spec's go
    return true
  end,
]]):format(d.dir .. "/health-check-running", d.dir .. "/go") end })
    start_app(t)
    push(t, "blink-250")
    until_true("the health check", WAIT, function() return h.read(t.dir .. "/health-check-running") end)
    local port = own.port
    own.stop()
    own_cloud(port, dir, { "--device", dev .. ":" .. key })
    -- the app's side of the reconnection (where an idle status would go out)
    until_true("the reconnection in the app's log", WAIT, function()
      local _, k = app_log(t):gsub("connected to the command server", "")
      return k >= 2
    end)
    h.write(t.dir .. "/go", "")
    until_true("the final status", WAIT, function() return statuses(t, true)[1] end)
    assert.are.same({ "done" }, statuses(t, true))
    assert_flash(t, "blink-250")
  end)
end)
