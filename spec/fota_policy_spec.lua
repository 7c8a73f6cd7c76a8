-- The update policy in-process, for the cases an end-to-end run cannot
-- reach easily: a rejected image with or without something to roll back
-- to, a bootloader kept across updates, commits and journals that cannot
-- be written, a recovery whose image is gone, pushes that pile up, and
-- commands and downloads refused before anything is downloaded or erased.
-- The simulated chip's directory is what the MCU holds (flash.bin) and
-- whether it was ever erased (erases.log); `said` is every status the
-- cloud would have been sent, in order.
local h = require "helper"
local sched = require "fotahost.sched"
local fota = require "fotahost.fota"
local config = require "fotahost.fota.config"
local ihex = require "fotahost.ihex"
local digest = require "fotahost.digest"
local sys = require "fotahost.sys"
local cjson = require "cjson"

local FLASH_SIZE = 32768 -- the ATmega32U4's
local BOOT_START = 0x7000 -- the 7688 Duo's bootloader section (Caterina)

-- state_dir holds what is flashed next: nobody but this user may plant a
-- file (or a link) in it.
describe("fotahost.fota state_dir", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  local function new(state_dir)
    local cfg = assert(config.check({ device_id = "Dev1", device_key = "Key12345", board = "sim",
      sim_dir = dir .. "/sim", state_dir = state_dir }))
    return pcall(fota.new, cfg)
  end

  it("is made with its parents, mode 0700, without a shell", function()
    local state = dir .. "/var/lib/it's here"   -- a quote a shell command would trip on
    assert.is_true((new(state)))
    local st = sys.lstat(state)
    assert.are.same({ "directory", tonumber("700", 8), sys.geteuid() }, { st.type, st.mode, st.uid })
  end)

  it("is refused when it is a symbolic link or another user's directory", function()
    os.execute("mkdir " .. h.q(dir .. "/elsewhere"))
    assert(os.execute("ln -s elsewhere " .. h.q(dir .. "/state")))
    local ok, err = new(dir .. "/state")
    assert.is_false(ok)
    assert.are.equal("fota.new: state_dir " .. dir .. "/state: a symbolic link (refused: give the real directory)", err)
    ok, err = new(dir .. "/state/")     -- a trailing slash does not hide it
    assert.is_false(ok)
    assert.matches("state/: a symbolic link", err)
    -- as root (CI), a directory given to nobody; otherwise one root owns
    local theirs = dir .. "/theirs"
    if sys.geteuid() == 0 then
      os.execute("mkdir " .. h.q(theirs) .. " && chown 65534 " .. h.q(theirs))
    else
      theirs = "/"
    end
    ok, err = new(theirs)
    assert.is_false(ok)
    assert.matches("state_dir " .. theirs:gsub("%p", "%%%0") .. ": owned by uid %d+, not by this user %(uid "
      .. sys.geteuid() .. "%): refused", err)
  end)
end)

describe("fotahost.fota policy", function()
  local dir, srv, v1, v2, full
  setup(function()
    dir = h.tmpdir()
    os.execute("mkdir " .. h.q(dir .. "/www"))
    assert(os.execute("cp " .. h.q(h.firmware("blink-1000.hex")) .. " " .. h.q(dir .. "/www/v1.hex")))
    assert(os.execute("cp " .. h.q(h.firmware("blink-250.hex")) .. " " .. h.q(dir .. "/www/v2.hex")))
    v1 = assert(ihex.load(dir .. "/www/v1.hex"))
    v2 = assert(ihex.load(dir .. "/www/v2.hex"))
    -- 28 KB: the whole application section, no byte 0xFF (every page written)
    local t = {}
    for i = 1, BOOT_START do t[i] = string.char(i % 251) end
    full = assert(ihex.from_binary(table.concat(t), 0))
    assert(full:write(dir .. "/www/full.hex"))
    srv = h.start_server({ "spec/support/http_test_server.lua", "--root", dir .. "/www" })
  end)
  teardown(function()
    if srv then srv.stop() end
    h.rmdir(dir)
  end)

  local function url(name) return srv.url .. "/files/" .. name end
  local function cmd(version, file, md5) return ("%s,%s,%s"):format(version, md5 or "null", url(file)) end

  local function policy(name, extra)
    local t = { device_id = "Dev1", device_key = "Key12345", board = "sim",
                sim_dir = dir .. "/" .. name .. "-sim", state_dir = dir .. "/" .. name .. "-state",
                volatile_state_ok = true, -- scratch state in /tmp, a tmpfs on some machines
                http = { retries = 0 } }
    for k, v in pairs(extra or {}) do t[k] = v end
    os.execute("mkdir -p " .. h.q(t.sim_dir))
    local cfg = assert(config.check(t))
    -- a stand-in for the MCS client: what the cloud would be told
    local cloud = { reported = {}, sent = {} }
    function cloud.emit(_, channel, text) cloud.sent[#cloud.sent + 1] = channel .. "=" .. text end
    function cloud.report_version(_, v)
      cloud.reported[#cloud.reported + 1] = v
      return true
    end
    local p = fota.new(cfg, { cloud = cloud })
    local said = {}
    p.on_status = function(s) said[#said + 1] = s end
    return p, said, cfg
  end

  -- the versions reported to the cloud (only ever after an install, or a
  -- push of the version already installed), and every status on fota_status
  local function reported(p) return p.cloud.reported end
  local function assert_sent(p, said)
    local want = {}
    for i, s in ipairs(said) do want[i] = "fota_status=" .. s end
    assert.are.same(want, p.cloud.sent)
  end

  local function update(p, command)
    return sched.run(function() return p:update(assert(fota.parse_command(command))) end)
  end

  local function state(p, name) return h.read(p.dir .. "/" .. name) end
  local function flash_bin(p) return h.read(p.config.sim_dir .. "/flash.bin") end
  local function erases(p)
    local n = 0
    for _ in (h.read(p.config.sim_dir .. "/erases.log") or ""):gmatch("\n") do n = n + 1 end
    return n
  end

  local function lock_byte(p)
    local v = (h.read(p.config.sim_dir .. "/fuses.txt") or ""):match("lock=(0x%x+)")
    return v and tonumber(v)
  end

  -- flash.bin holds `image` (on an erased chip), with the first difference named
  local function assert_chip(p, image, what)
    h.assert_flash_holds(p.config.sim_dir, image:bytes(0, FLASH_SIZE - 1), what)
  end

  -- the HEX file at `path` holds the same bytes as `image`
  local function assert_hex(path, image, what)
    local got = assert(ihex.load(path))
    assert.is_true(got:bytes(0, FLASH_SIZE - 1) == image:bytes(0, FLASH_SIZE - 1), path .. " is not " .. what)
  end

  local function wait_for(what, pred)
    local deadline = sched.now() + 60
    while not pred() do
      if sched.now() > deadline then error("timed out waiting for " .. what, 2) end
      sched.sleep(0.01)
    end
  end

  local FLASHED = { "downloading", "verifying", h.UNSIGNED, "flashing" }
  local function seq(...)
    local t = {}
    for _, part in ipairs({ ... }) do
      if type(part) == "table" then
        for _, s in ipairs(part) do t[#t + 1] = s end
      else
        t[#t + 1] = part
      end
    end
    return t
  end

  ---------------------------------------------------------------- health check

  it("never installs an image the health check rejected, even with nothing to roll back to", function()
    local p, said = policy("hc", { health_check = function() return nil, "the sketch is silent" end })
    local ok, err = update(p, cmd("v2", "v2.hex"))
    assert.is_nil(ok)
    local why = "health check: the sketch is silent; and the rollback failed: no last-known-good image to restore"
    assert.are.equal(why, err)
    assert.are.same(seq(FLASHED, "failed: " .. why), said)
    assert_sent(p, said)
    assert.are.same({}, reported(p))
    assert.is_nil(p:installed())
    assert.is_nil(state(p, "journal.json"))
    assert.is_nil(state(p, "new.hex"))
    assert.is_nil(state(p, "lkg.hex"))
    -- the next start has nothing to finish, and does not adopt the image
    local p2 = policy("hc")
    assert.is_nil(sched.run(function() return p2:recover() end))
    assert.is_nil(p2:installed())
  end)

  it("puts the last-known-good image back when the health check rejects the new one", function()
    local p, said = policy("hcrb", { health_check = function(job)
      if job.version == "v2" then return nil, "no heartbeat from the sketch" end
      return true
    end })
    assert.is_true(update(p, cmd("v1", "v1.hex")))
    local ok, err = update(p, cmd("v2", "v2.hex"))
    assert.is_nil(ok)
    local why = "health check: no heartbeat from the sketch; rolled back to v1"
    assert.are.equal(why, err)
    assert.are.same(seq(FLASHED, "done", FLASHED, "failed: " .. why), said)
    assert.are.same({ "v1" }, reported(p))
    -- v1, then v2, then v1 again
    assert.are.equal(3, erases(p))
    assert_chip(p, v1, "v1")
    assert.are.equal("v1", p:installed().version)
    assert_hex(p.dir .. "/lkg.hex", v1, "v1")
    assert.is_nil(state(p, "new.hex"))
    assert.is_nil(state(p, "journal.json"))
  end)

  it("refuses a chip with the wrong signature without erasing it or trying a rollback", function()
    local p, said = policy("wrongchip")
    -- an ATmega328P where the 32U4 should be
    local r = h.run({ "flash", "-q", "-c", "sim", "-p", "m328p", "-P", p.config.sim_dir, "-e",
      "-U", "flash:w:" .. dir .. "/www/v1.hex" })
    assert.are.equal(0, r.status, r.err)
    local before = flash_bin(p)
    local ok, err = update(p, cmd("v2", "v2.hex"))
    assert.is_nil(ok)
    assert.matches("signature 1E 95 0F", err)
    assert.is_nil(err:find("roll", 1, true), err)
    -- "flashing" is said only once the signature is right
    assert.are.same({ "downloading", "verifying", h.UNSIGNED, "failed: " .. err }, said)
    assert.are.same({}, reported(p))
    assert.are.equal(1, erases(p))
    assert.is_true(before == flash_bin(p), "flash.bin changed")
    assert.is_nil(state(p, "journal.json"))
  end)

  it("puts the last-known-good image back when the verify fails", function()
    local p, said = policy("verify")
    assert.is_true(update(p, cmd("v1", "v1.hex")))
    -- One MISO bit flipped in the 57001st ISP instruction of a session:
    -- inside the verify of the 28 KB image (instructions ~42.6k to ~71.3k),
    -- far beyond the whole session that flashes v1 back (~1k).
    h.write(p.config.sim_dir .. "/faults", ("bit_error %d\n"):format(57000 * 32 + 28))
    local ok, err = update(p, cmd("full", "full.hex"))
    assert.is_nil(ok)
    assert.matches("^verify: verification error at 0x%x+.*; rolled back to v1$", err)
    assert.are.same(seq(FLASHED, "done", FLASHED, "failed: " .. err), said)
    assert.are.same({ "v1" }, reported(p))
    assert.are.equal(3, erases(p)) -- v1, the new image, v1 again
    assert_chip(p, v1, "v1")
    assert.are.equal(0xCF, lock_byte(p))
    assert.are.equal("v1", p:installed().version)
    assert_hex(p.dir .. "/lkg.hex", v1, "v1")
    assert.is_nil(state(p, "journal.json"))
  end)

  it("still reports done when after_flash fails once the image is committed", function()
    local p, said = policy("af", { after_flash = function() error("notify failed") end })
    local ok = update(p, cmd("v2", "v2.hex"))
    assert.is_true(ok)
    assert.are.same(seq(FLASHED, "done"), said)
    assert.are.equal("v2", p:installed().version)
    assert_chip(p, v2, "v2")
  end)

  ---------------------------------------------------------------- errors raised mid-update

  -- An edited script's function that raises once, half-way through the
  -- flash: the session writes the first pages of the image, then raises.
  local function raise_mid_flash(p, message)
    local open_isp, raised = p.open_isp, false
    p.open_isp = function(self)
      local s, err = open_isp(self)
      if s and not raised then
        s.write_flash = function(session, image)
          raised = true
          local lo = image:range()
          getmetatable(session).__index.write_flash(session, ihex.from_binary(image:bytes(lo, lo + 4095), lo))
          error(message, 0)
        end
      end
      return s, err
    end
  end

  it("finishes at once an update an error interrupted mid-flash, and tells the cloud what the chip holds", function()
    local p, said = policy("raise")
    assert.is_true(update(p, cmd("v1", "v1.hex")))
    raise_mid_flash(p, "isp.lua:290: an edit gone wrong")
    local ok, err = pcall(function() return sched.run(function() return p:push(cmd("v2", "v2.hex")) end) end)
    assert.is_false(ok)
    assert.are.equal("isp.lua:290: an edit gone wrong", err) -- the handler's runner logs it, with its traceback
    -- the journal's recovery ran before the status: v2 whole on the chip, committed
    local final = "failed: isp.lua:290: an edit gone wrong; recovered: v2 flashed again after an interruption"
    assert.are.same(seq(FLASHED, "done", FLASHED, final), said)
    assert_sent(p, said)
    assert_chip(p, v2, "v2")
    assert.are.equal("v2", p:installed().version)
    assert.are.same({ "v1", "v2" }, reported(p))
    assert.is_nil(state(p, "journal.json"))
    assert.is_false(p.busy)
    -- and the next push goes through as any other
    assert.is_true(sched.run(function() return p:push(cmd("v1b", "v1.hex")) end))
    assert_chip(p, v1, "v1")
    assert.are.equal("done", said[#said])
  end)

  it("frees the policy and says so when putting an error right raises too (a broken cloud client)", function()
    local p, said = policy("raisecontain")
    assert.is_true(update(p, cmd("v1", "v1.hex")))
    raise_mid_flash(p, "edited: boom")
    local emit = p.cloud.emit
    p.cloud.emit = function(c, channel, text)
      if text:find("^failed: ") then error("mcs.lua:12: emit: typo", 0) end
      return emit(c, channel, text)
    end
    local ok, err = pcall(function() return sched.run(function() return p:push(cmd("v2", "v2.hex")) end) end)
    assert.is_false(ok)
    assert.are.equal("edited: boom", err)
    -- the recovery ran, the status was tried once more with what went wrong
    assert.are.equal("failed: edited: boom; recovered: v2 flashed again after an interruption; putting it right "
      .. "raised too: mcs.lua:12: emit: typo", said[#said])
    assert_chip(p, v2, "v2")
    assert.is_false(p.busy) -- not every later push "queued" for ever
    p.cloud.emit = emit
    assert.is_true(sched.run(function() return p:push(cmd("v1b", "v1.hex")) end))
    assert_chip(p, v1, "v1")
    assert.are.equal("done", said[#said])
  end)

  it("says done, not failed, when the error comes after the commit", function()
    local p, said = policy("raiseaftercommit")
    assert.is_true(update(p, cmd("v1", "v1.hex")))
    local report = p.cloud.report_version
    p.cloud.report_version = function(c, v)
      if v == "v2" and not p.cloud.raised then p.cloud.raised = true error("mcs.lua:40: report: typo", 0) end
      return report(c, v)
    end
    assert.is_false((pcall(function() return sched.run(function() return p:push(cmd("v2", "v2.hex")) end) end)))
    assert.are.same(seq(FLASHED, "done", FLASHED, "done", "done: v2 installed (then an error: mcs.lua:40: report: "
      .. "typo)"), said)
    assert_chip(p, v2, "v2")
    assert.are.equal("v2", p:installed().version)
    assert.is_false(p.busy)
  end)

  it("says plainly when the recovery of an error raises too", function()
    local p, said = policy("raiserecover")
    assert.is_true(update(p, cmd("v1", "v1.hex")))
    raise_mid_flash(p, "edited: boom")
    p.recover = function() error("fota.lua:990: recover: typo", 0) end
    assert.is_false((pcall(function() return sched.run(function() return p:push(cmd("v2", "v2.hex")) end) end)))
    assert.are.equal("failed: edited: boom; the recovery raised too: fota.lua:990: recover: typo; the MCU may hold "
      .. "an incomplete image until the app's next start (or a reload) recovers it", said[#said])
    assert.is_false(p.busy)
  end)

  it("puts the last-known-good back when the health check rejects the image an error cut short", function()
    local p, said = policy("raisehc", { health_check = function(job)
      if job.recovering then return nil, "the sketch is silent" end
      return true
    end })
    assert.is_true(update(p, cmd("v1", "v1.hex")))
    raise_mid_flash(p, "edited: boom")
    assert.is_false((pcall(function() return sched.run(function() return p:push(cmd("v2", "v2.hex")) end) end)))
    assert.are.equal("failed: edited: boom; recovered: the last-known-good image (v1) restored after an "
      .. "interruption (v2 rejected: health check: the sketch is silent)", said[#said])
    assert_chip(p, v1, "v1")
    assert.are.equal("v1", p:installed().version)
    assert.are.same({ "v1", "v1" }, reported(p))
    assert.is_nil(state(p, "journal.json"))
  end)

  it("fails an update cleanly when a hook, the health check or a status callback raises", function()
    local p, said = policy("raisehooks", { before_flash = function(job)
      if job.version == "v2" then error("before_flash: typo") end
      return true
    end, health_check = function(job)
      if job.version == "v3" then error("health: typo") end
      return true
    end })
    local calls = 0
    p.on_status = function(s)
      said[#said + 1] = s
      calls = calls + 1
      error("on_status: typo")
    end
    assert.is_true(update(p, cmd("v1", "v1.hex")))
    local ok, err = update(p, cmd("v2", "v2.hex"))
    assert.is_nil(ok)
    assert.matches("^before_flash: .*before_flash: typo$", err)
    assert.are.equal(1, erases(p)) -- refused before the erase
    ok, err = update(p, cmd("v3", "v2.hex"))
    assert.is_nil(ok)
    assert.matches("^health check: .*health: typo; rolled back to v1$", err)
    assert_chip(p, v1, "v1")
    assert.are.equal("v1", p:installed().version)
    assert.are.equal(#said, calls)
    assert_sent(p, said)
  end)

  ---------------------------------------------------------------- journal

  it("writes the journal before the erase and keeps it until the commit", function()
    local p, said
    local seen = {}
    p, said = policy("journal", { health_check = function()
      seen.health = h.read(p.dir .. "/journal.json")
      return true
    end })
    -- "flashing" is said once the signature is right, just before the erase
    p.on_status = function(s)
      said[#said + 1] = s
      if s == "flashing" then
        seen.flashing, seen.erases = h.read(p.dir .. "/journal.json"), erases(p)
      end
    end
    assert.is_true(update(p, cmd("v2", "v2.hex")))
    assert.are.same(seq(FLASHED, "done"), said)
    assert_sent(p, said)
    assert.are.same({ "v2" }, reported(p))
    assert.are.equal(0, seen.erases)
    assert.is_not_nil(seen.flashing, "no journal when the erase came")
    local j = cjson.decode(seen.flashing)
    -- health = "pending": a cut from here until the check passes makes the
    -- next start check again before adopting the image
    assert.are.same({ stage = "flashing", version = "v2", image = p.dir .. "/new.hex",
      sha256 = assert(digest.file(p.dir .. "/lkg.hex", "sha256")), -- new.hex, renamed by the commit
      md5 = assert(digest.file(dir .. "/www/v2.hex", "md5")), health = "pending" }, j)
    assert.are.equal(seen.flashing, seen.health, "the journal changed or went before the health check")
    assert.is_nil(state(p, "journal.json"))
    assert.are.equal(1, erases(p))
    assert_chip(p, v2, "v2")
    -- the lock bits written after the verify: 0x0F, read back with the unused bits set
    assert.are.equal(0xCF, lock_byte(p))
  end)

  it("refuses a file that is not an image that fits, before anything is erased", function()
    local www = dir .. "/www/"
    -- the second record's checksum plus one
    local k = 0
    local text = h.read(www .. "v2.hex"):gsub("(:%x*)(%x%x)(\r?\n)", function(rec, cs, eol)
      k = k + 1
      if k ~= 2 then return nil end
      return rec .. ("%02X"):format((tonumber(cs, 16) + 1) % 256) .. eol
    end)
    h.write(www .. "bad-sum.hex", text)
    h.write(www .. "empty.hex", ":00000001FF\n")
    h.write(www .. "blank.hex", "\n\n")
    -- 4 KB from 0x6800: its last 2 KB in the bootloader section
    assert(ihex.from_binary(("\x0C\x94"):rep(2048), BOOT_START - 0x800):write(www .. "too-large.hex"))
    local p, said = policy("unfit")
    local expected = {}
    for _, c in ipairs({
      { "bad-sum.hex", "not a valid Intel HEX file: line 2: bad checksum" },
      { "empty.hex", "the HEX file holds no data" },
      { "blank.hex", "not a valid Intel HEX file: no records (missing end-of-file record)" },
      { "too-large.hex", "image too large: it reaches 0x77FF, the application section ends at 0x6FFF" },
    }) do
      local ok, err = update(p, cmd("x", c[1]))
      assert.is_nil(ok)
      assert.are.equal(c[2], err:sub(1, #c[2]), err)
      for _, s in ipairs({ "downloading", "verifying", "failed: " .. err }) do expected[#expected + 1] = s end
    end
    assert.are.same(expected, said)
    assert.are.same({}, reported(p))
    assert.are.equal(0, erases(p))
    assert.is_nil(flash_bin(p))
    assert.is_nil(state(p, "journal.json"))
  end)

  it("takes an image that fills the application section exactly", function()
    local p, said = policy("full")
    assert.is_true(update(p, cmd("full", "full.hex")))
    assert.are.same(seq(FLASHED, "done"), said)
    assert_chip(p, full, "full.hex")
  end)

  ---------------------------------------------------------------- bootloader

  it("keeps the configured bootloader: the chip read back holds it after an update", function()
    -- 4 KB in the bootloader section, every byte written (none 0xFF)
    local t = {}
    for i = 1, 4096 do t[i] = string.char((i * 7 + 3) % 251) end
    local boot_bytes = table.concat(t)
    local boot = assert(ihex.from_binary(boot_bytes, BOOT_START))
    local boot_path = dir .. "/caterina.hex"
    assert(boot:write(boot_path))
    local p, said = policy("boot", { bootloader = boot_path })
    assert.is_true(update(p, cmd("v2", "v2.hex")))
    assert.are.same(seq(FLASHED, "done"), said)
    local chip = flash_bin(p)
    assert.are.equal(FLASH_SIZE, #chip)
    assert.is_true(chip:sub(BOOT_START + 1) == boot_bytes, "the bootloader section of flash.bin is not the bootloader")
    assert.is_true(chip:sub(1, BOOT_START) == v2:bytes(0, BOOT_START - 1), "the application section is not v2")
    -- the last-known-good carries it too: a rollback keeps it
    local lkg = assert(ihex.load(p.dir .. "/lkg.hex"))
    assert.is_true(lkg:bytes(BOOT_START, FLASH_SIZE - 1) == boot_bytes, "lkg.hex has no bootloader")
  end)

  it("refuses an image that overlaps the configured bootloader, before the erase", function()
    local boot_path = dir .. "/low-boot.hex"
    assert(ihex.from_binary(("\x0C\x94"):rep(8), 0x0100):write(boot_path))
    local p, said = policy("overlap", { bootloader = boot_path })
    local ok, err = update(p, cmd("v2", "v2.hex"))
    assert.is_nil(ok)
    assert.matches("^the image overlaps the bootloader: ", err)
    assert.are.same({ "downloading", "verifying", "failed: " .. err }, said)
    assert.are.equal(0, erases(p))
    assert.is_nil(flash_bin(p))
    assert.is_nil(state(p, "journal.json"))
  end)

  ---------------------------------------------------------------- images that carry a bootloader
  -- The Arduino IDE exports sketch.ino.hex and sketch.ino.with_bootloader.hex;
  -- here blink-250 with the stand-in bootloader of examples/firmware, joined
  -- as the IDE joins them, and blink-250 with another "bootloader" (a loop).

  describe("an image that carries a bootloader", function()
    local boot_path, with_boot, other, extra
    setup(function()
      boot_path = h.firmware("bootloader.hex")
      assert(os.execute("cp " .. h.q(h.firmware("blink-250.with_bootloader.hex")) .. " "
        .. h.q(dir .. "/www/wb.hex")))
      with_boot = assert(ihex.load(dir .. "/www/wb.hex"))
      other = assert(v2:merge(ihex.from_binary("\xFF\xCF", BOOT_START)))
      assert(other:write(dir .. "/www/other.hex"))
      -- the configured bootloader, and one byte more past its end
      extra = assert(with_boot:merge(ihex.from_binary("\x00", 0x7F00)))
      assert(extra:write(dir .. "/www/extra.hex"))
    end)

    local function span(image)
      local _, hi = image:range()
      return ("0x%04X..0x%04X"):format(BOOT_START, hi)
    end

    it("is flashed for its application part when its bootloader is the configured one, and says so", function()
      local p, said = policy("wb", { bootloader = boot_path })
      assert.is_true(update(p, cmd("v2", "wb.hex")))
      local note = ("verifying: the image carries the configured bootloader (%s): its application part is flashed")
        :format(span(with_boot))
      assert.are.same({ "downloading", "verifying", note, h.UNSIGNED, "flashing", "done" }, said)
      assert_sent(p, said)
      assert.are.equal(1, erases(p))
      -- the application part, with the configured bootloader merged as for any image
      local want = assert(v2:merge(assert(ihex.load(boot_path))))
      assert_chip(p, want, "v2 and the configured bootloader")
      assert_hex(p.dir .. "/lkg.hex", want, "v2 and the configured bootloader")
      assert.are.equal("v2", p:installed().version)
    end)

    it("is refused before the erase when its bootloader is another, naming the export to upload", function()
      for _, c in ipairs({
        { "wbother", { bootloader = boot_path }, "other.hex", other,
          "that is not the configured one (" .. boot_path .. ")" },
        { "wbnone", {}, "wb.hex", with_boot, "and none is configured" },
        { "wbextra", { bootloader = boot_path }, "extra.hex", extra,
          "that is not the configured one (" .. boot_path .. ")" },
      }) do
        local p, said = policy(c[1], c[2])
        local ok, err = update(p, cmd("v2", c[3]))
        assert.is_nil(ok)
        assert.are.equal(("the image carries a bootloader (%s) %s: upload the Arduino export sketch.ino.hex, "
          .. "not sketch.ino.with_bootloader.hex (to replace the bootloader, set allow_bootloader_update = true)")
          :format(span(c[4]), c[5]), err)
        assert.are.same({ "downloading", "verifying", "failed: " .. err }, said)
        assert_sent(p, said)
        assert.are.same({}, reported(p))
        assert.are.equal(0, erases(p))
        assert.is_nil(flash_bin(p))
        assert.is_nil(state(p, "journal.json"))
      end
    end)

    it("is written whole, bootloader and all, and verified when allow_bootloader_update is set", function()
      local p, said = policy("wballow", { bootloader = boot_path, allow_bootloader_update = true })
      assert.is_true(update(p, cmd("v2", "other.hex")))
      local note = ("verifying: the image carries a bootloader (%s): the whole image is written "
        .. "(allow_bootloader_update = true)"):format(span(other))
      assert.are.same({ "downloading", "verifying", note, h.UNSIGNED, "flashing", "done" }, said)
      assert.are.equal(1, erases(p))
      assert_chip(p, other, "the whole image")
      assert_hex(p.dir .. "/lkg.hex", other, "the whole image")
      -- a sketch that runs on into the bootloader section is still too large
      assert(ihex.from_binary(("\x0C\x94"):rep(2048), BOOT_START - 0x800):write(dir .. "/www/too-large-for-boot.hex"))
      local ok, err = update(p, cmd("big", "too-large-for-boot.hex"))
      assert.is_nil(ok)
      assert.are.equal("image too large: it reaches 0x77FF, the application section ends at 0x6FFF", err)
      assert.are.equal(1, erases(p))
    end)
  end)

  ---------------------------------------------------------------- commit and journal

  -- A commit that cannot be saved (here a directory where installed.json's
  -- temporary goes, as binding as a full disk and leaving installed.json
  -- readable): the MCU holds v2, so the cloud hears v2, never "failed".
  local function block_commit(p)
    assert(os.execute("mkdir " .. h.q(p.dir .. "/installed.json.tmp-" .. sys.getpid())))
  end
  local function unblock_commit(p) assert(os.remove(p.dir .. "/installed.json.tmp-" .. sys.getpid())) end
  local RETRYING = "^done: v2 installed %(state not saved: .*/installed%.json: "
    .. h.literal(h.strerror.EISDIR) .. "; retrying%)$"

  -- Runs the update to v2 in a task until its commit is being retried;
  -- then `during()`; then, unless `kill`, lets it finish and returns what
  -- it returned. With `kill`, run() returns there: the task is cancelled
  -- as a kill -9 would stop it.
  local function update_retrying(p, said, during, kill)
    local res
    local n = #said + 4 -- downloading, verifying, unsigned, flashing: then what the commit's failure says
    sched.run(function()
      local task = sched.spawn(function() res = { p:update(assert(fota.parse_command(cmd("v2", "v2.hex")))) } end)
      wait_for("the status after the flash", function() return res or #said > n end)
      assert.matches("; retrying%)$", said[n + 1] or "", nil, false,
        "the commit was not retried; the statuses: " .. table.concat(said, ", "))
      during()
      if not kill then sched.join(task, 60) end
    end)
    return res
  end

  it("reports the version on the MCU when its commit cannot be saved, and retries until it is", function()
    local p, said = policy("commit", { backoff_cap = 0.05 })
    assert.is_true(update(p, cmd("v1", "v1.hex")))
    block_commit(p)
    local res = update_retrying(p, said, function()
      assert_chip(p, v2, "v2")
      assert.are.same({ "v1", "v2" }, reported(p))
      assert.are.equal("v2", p:installed().version)
      assert.matches('"version":"v1"', state(p, "installed.json"))
      assert.matches('"stage":"flashing"', state(p, "journal.json"))
      unblock_commit(p) -- the disk has room again
    end)
    assert.are.same({ true }, res)
    assert.matches(RETRYING, said[#said - 1])
    assert.are.same(seq(FLASHED, "done", FLASHED, said[#said - 1], "done"), said)
    assert_sent(p, said)
    assert.are.same({ "v1", "v2", "v2" }, reported(p))
    assert.matches('"version":"v2"', state(p, "installed.json"))
    assert_hex(p.dir .. "/lkg.hex", v2, "v2")
    assert.is_nil(state(p, "journal.json"))
    assert.is_nil(state(p, "new.hex"))
  end)

  it("retries a commit whose last-known-good image cannot be replaced, reporting the new version", function()
    local p, said = policy("lkgdir", { backoff_cap = 0.05 })
    assert.is_true(update(p, cmd("v1", "v1.hex")))
    assert(os.remove(p.dir .. "/lkg.hex"))
    assert(os.execute("mkdir " .. h.q(p.dir .. "/lkg.hex")))
    h.write(p.dir .. "/lkg.hex/in-the-way", "x")
    local res = update_retrying(p, said, function()
      assert.matches("^done: v2 installed %(state not saved: .*lkg%.hex.*; retrying%)$", said[#said])
      assert.are.same({ "v1", "v2" }, reported(p))
      assert.matches('"stage":"flashing"', state(p, "journal.json"))
      assert_hex(p.dir .. "/new.hex", v2, "v2")
      os.execute("rm -r " .. h.q(p.dir .. "/lkg.hex"))
    end)
    assert.are.same({ true }, res)
    assert.are.equal("done", said[#said])
    assert_hex(p.dir .. "/lkg.hex", v2, "v2")
    assert.is_nil(state(p, "journal.json"))
  end)

  -- Killed while the commit is retried, the next start flashes v2 again;
  -- if it still cannot be saved, v1 goes back on (what installed.json
  -- says): the chip and the report agree either way.
  it("puts v1 back at the next start when a commit killed while retried still cannot be saved", function()
    local p, said = policy("commitkill", { backoff_cap = 0.05 })
    assert.is_true(update(p, cmd("v1", "v1.hex")))
    block_commit(p)
    update_retrying(p, said, function() end, true)
    assert_chip(p, v2, "v2")
    local p2, said2 = policy("commitkill")
    local rec = sched.run(function() return p2:recover() end)
    assert.matches("^recovered: the last%-known%-good image %(v1%) restored after an interruption %(v2 rejected: "
      .. "state not saved: .*/installed%.json: " .. h.literal(h.strerror.EISDIR) .. "%)$", rec)
    assert.are.same({}, said2)
    assert_chip(p2, v1, "v1")
    assert.are.equal("v1", p2:installed().version)
    assert.is_nil(state(p2, "journal.json"))
  end)

  it("does not erase the MCU when the journal cannot be written", function()
    local p, said = policy("nojournal")
    assert.is_true(update(p, cmd("v1", "v1.hex")))
    assert(os.execute("mkdir " .. h.q(p.dir .. "/journal.json")))
    local ok, err = update(p, cmd("v2", "v2.hex"))
    assert.is_nil(ok)
    assert.matches("^journal: .*journal%.json", err)
    assert.are.same(seq(FLASHED, "done", "downloading", "verifying", h.UNSIGNED, "failed: " .. err), said)
    assert.are.equal(1, erases(p))
    assert_chip(p, v1, "v1")
    assert.are.equal("v1", p:installed().version)
  end)

  ---------------------------------------------------------------- recovery

  it("puts the last-known-good image back when the interrupted update's image is gone", function()
    local p = policy("lost")
    assert.is_true(update(p, cmd("v1", "v1.hex")))
    -- What a stop between removing a rejected new.hex and the rollback's
    -- journal leaves: a journal for v2, no new.hex, an erased MCU.
    local tmp = dir .. "/lost-v2.hex"
    assert(v2:write(tmp))
    h.write(p.dir .. "/journal.json", cjson.encode({ stage = "flashing", version = "v2",
      image = p.dir .. "/new.hex", sha256 = assert(digest.file(tmp, "sha256")) }))
    h.write(p.config.sim_dir .. "/flash.bin", ("\xFF"):rep(FLASH_SIZE))
    local p2, said2 = policy("lost")
    local rec = sched.run(function() return p2:recover() end)
    assert.are.equal("recovered: the last-known-good image (v1) restored after an interruption", rec)
    assert.are.same({}, said2)
    assert.are.equal(2, erases(p2))
    assert_chip(p2, v1, "v1")
    assert.are.equal("v1", p2:installed().version)
    assert.is_nil(state(p2, "journal.json"))
  end)

  it("does not re-flash an image whose SHA-256 is not the journal's", function()
    local p = policy("swapped")
    assert.is_true(update(p, cmd("v1", "v1.hex")))
    -- the journal is for v2, new.hex holds something else (v1's bytes)
    local tmp = dir .. "/swapped-v2.hex"
    assert(v2:write(tmp))
    h.write(p.dir .. "/journal.json", cjson.encode({ stage = "flashing", version = "v2",
      image = p.dir .. "/new.hex", sha256 = assert(digest.file(tmp, "sha256")) }))
    assert(os.execute("cp " .. h.q(dir .. "/www/v1.hex") .. " " .. h.q(p.dir .. "/new.hex")))
    local p2 = policy("swapped")
    local rec = sched.run(function() return p2:recover() end)
    assert.are.equal("recovered: the last-known-good image (v1) restored after an interruption", rec)
    assert.are.equal("v1", p2:installed().version)
    assert_chip(p2, v1, "v1")
  end)

  -- What a power cut while v2's health check ran leaves: v2 on the chip
  -- (verified), new.hex, and the journal install() wrote, whose health
  -- check has not passed. `lkg`: v1 was installed before.
  local function cut_in_health_check(name, lkg)
    local p = policy(name)
    if lkg then assert.is_true(update(p, cmd("v1", "v1.hex"))) end
    assert(v2:write(p.dir .. "/new.hex"))
    h.write(p.dir .. "/journal.json", cjson.encode({ stage = "flashing", version = "v2",
      image = p.dir .. "/new.hex", sha256 = assert(digest.file(p.dir .. "/new.hex", "sha256")),
      health = "pending" }))
    assert(sched.run(function() return p:flash_image(v2, "v2") end))
    return p
  end

  it("runs the health check again after a cut during it, and puts v1 back when it fails", function()
    cut_in_health_check("hccut", true)
    local jobs = {}
    local p2, said2 = policy("hccut", { health_check = function(job)
      jobs[#jobs + 1] = job
      return nil, "still no heartbeat"
    end })
    local rec = sched.run(function() return p2:recover() end)
    assert.are.equal("recovered: the last-known-good image (v1) restored after an interruption"
      .. " (v2 rejected: health check: still no heartbeat)", rec)
    assert.are.equal(1, #jobs)
    assert.are.equal("v2", jobs[1].version)
    assert.is_true(jobs[1].recovering)
    assert.are.same({}, said2)
    assert_chip(p2, v1, "v1")
    assert.are.equal("v1", p2:installed().version)
    assert_hex(p2.dir .. "/lkg.hex", v1, "v1")
    assert.is_nil(state(p2, "new.hex"))
    assert.is_nil(state(p2, "journal.json"))
    -- v1, v2, v2 again, v1 again: and nothing more at the next start
    assert.are.equal(4, erases(p2))
    local p3 = policy("hccut")
    assert.is_nil(sched.run(function() return p3:recover() end))
    assert.are.equal(4, erases(p3))
  end)

  it("puts v1 back when the health check cannot run after a cut during it", function()
    cut_in_health_check("hccrash", true)
    local p2 = policy("hccrash", { health_check = function() error("no such sensor") end })
    local rec = sched.run(function() return p2:recover() end)
    assert.matches("^recovered: the last%-known%-good image %(v1%) restored after an interruption "
      .. "%(v2 rejected: health check: .*no such sensor%)$", rec)
    assert_chip(p2, v1, "v1")
    assert.are.equal("v1", p2:installed().version)
    assert_hex(p2.dir .. "/lkg.hex", v1, "v1")
  end)

  it("adopts the image cut during its health check only once the check passes", function()
    cut_in_health_check("hcpass", true)
    local checked = 0
    local p2 = policy("hcpass", { health_check = function()
      checked = checked + 1
      return true
    end })
    local rec = sched.run(function() return p2:recover() end)
    assert.are.equal("recovered: v2 flashed again after an interruption", rec)
    assert.are.equal(1, checked)
    assert_chip(p2, v2, "v2")
    assert.are.equal("v2", p2:installed().version)
    assert_hex(p2.dir .. "/lkg.hex", v2, "v2")
    assert.is_nil(state(p2, "journal.json"))
  end)

  it("says so when the image cut during its health check fails it with nothing to roll back to", function()
    cut_in_health_check("hcnolkg", false)
    local p2 = policy("hcnolkg", { health_check = function() return nil, "silent" end })
    local rec = sched.run(function() return p2:recover() end)
    assert.are.equal("failed: recovery after an interruption: v2 rejected: health check: silent; "
      .. "no last-known-good image to restore", rec)
    assert.is_nil(p2:installed())
    assert.is_nil(state(p2, "lkg.hex"))
    assert.is_nil(state(p2, "new.hex"))
    assert.is_nil(state(p2, "journal.json"))
  end)

  it("finishes a commit cut short after the health check passed without checking again", function()
    local p, said = policy("hcdone", { health_check = function() return true end, backoff_cap = 0.05 })
    assert.is_true(update(p, cmd("v1", "v1.hex")))
    -- the commit cannot be saved after the check passed, and a kill comes
    block_commit(p)
    update_retrying(p, said, function() end, true)
    assert.matches('"health":"passed"', state(p, "journal.json"))
    unblock_commit(p)
    local checked = 0
    local p2 = policy("hcdone", { health_check = function()
      checked = checked + 1
      return nil, "would fail now"
    end })
    local rec = sched.run(function() return p2:recover() end)
    assert.are.equal("recovered: v2 flashed again after an interruption", rec)
    assert.are.equal(0, checked)
    assert_chip(p2, v2, "v2")
    assert.are.equal("v2", p2:installed().version)
  end)

  ---------------------------------------------------------------- malformed state files

  -- a journal for v2 that a cut mid-flash would leave, but for `fields`,
  -- over an erased chip; v1 installed before
  local function bad_journal(name, text_of)
    local p = policy(name)
    assert.is_true(update(p, cmd("v1", "v1.hex")))
    assert(v2:write(p.dir .. "/new.hex"))
    local text = text_of({ stage = "flashing", version = "v2", image = p.dir .. "/new.hex",
      sha256 = assert(digest.file(p.dir .. "/new.hex", "sha256")), health = "pending" })
    h.write(p.dir .. "/journal.json", text)
    h.write(p.config.sim_dir .. "/flash.bin", ("\xFF"):rep(FLASH_SIZE))
    return p, text
  end

  it("moves aside a journal with a field of the wrong type and puts v1 back, without raising", function()
    local p, text = bad_journal("jtable", function(j)
      j.version = { "v2" }
      return cjson.encode(j)
    end)
    local p2 = policy("jtable")
    local ok, rec = pcall(sched.run, function() return p2:recover() end)
    assert.is_true(ok, rec)
    assert.are.equal("recovered: journal.json cannot be read (version: a bad table); moved to "
      .. "journal.json.corrupt; the last-known-good image (v1) restored", rec)
    assert.are.equal(text, state(p, "journal.json.corrupt"))
    assert.is_nil(state(p, "journal.json"))
    assert_chip(p2, v1, "v1")
    assert.are.equal("v1", p2:installed().version)
    assert.is_nil(sched.run(function() return policy("jtable"):recover() end))
  end)

  it("treats a journal that is not JSON as an update cut short: v1 goes back on", function()
    local p, text = bad_journal("jtrunc", function(j) return cjson.encode(j):sub(1, 30) end)
    local p2 = policy("jtrunc")
    local rec = sched.run(function() return p2:recover() end)
    assert.are.equal("recovered: journal.json cannot be read (not valid JSON); moved to "
      .. "journal.json.corrupt; the last-known-good image (v1) restored", rec)
    assert.are.equal(text, state(p, "journal.json.corrupt"))
    assert_chip(p2, v1, "v1")
    assert.are.equal(2, erases(p2)) -- v1, then v1 again: nothing else
  end)

  it("checks every field of a journal: a bad stage, SHA-256 or health is unreadable", function()
    for i, change in ipairs({
      function(j) j.stage = "flashed" end,
      function(j) j.sha256 = "abc" end,
      function(j) j.health = "ok" end,
      function(j) j.md5 = 5 end,
      function(j) j.image = false end,
      function(j) j.version = nil end,
      function(j) j.version = "../v2" end,
    }) do
      local name = "jfield" .. i
      bad_journal(name, function(j)
        change(j)
        return cjson.encode(j)
      end)
      local p2 = policy(name)
      local rec = sched.run(function() return p2:recover() end)
      assert.matches("^recovered: journal%.json cannot be read %(.*%); moved to journal%.json%.corrupt; "
        .. "the last%-known%-good image %(v1%) restored$", rec)
      assert_chip(p2, v1, "v1")
    end
  end)

  it("checks installed.json field by field: a version that is not a label is no version", function()
    local p = policy("instbad")
    assert.is_true(update(p, cmd("v1", "v1.hex")))
    for _, bad in ipairs({ '{"version":{"v":1}}', '{"at":5}', '{"version":"v1","at":"now"}',
      '{"version":"v1","sha256":7}', "[1,2]", '{"version":"v1"' }) do
      h.write(p.dir .. "/installed.json", bad)
      assert.is_nil(p:installed(), bad)
    end
    -- not taken for v1: the push installs it again
    local ok = update(p, cmd("v1", "v1.hex"))
    assert.is_true(ok)
    assert.are.equal("v1", p:installed().version)
  end)

  it("refuses an update when state_dir cannot be written, before anything is downloaded or erased", function()
    local p, said = policy("rostate")
    assert.is_true(update(p, cmd("v1", "v1.hex")))
    -- a file where the directory should be: as binding as a read-only
    -- mount, even for root
    h.rmdir(p.dir)
    h.write(p.dir, "not a directory\n")
    local ok, err = update(p, cmd("v2", "v2.hex"))
    assert.is_nil(ok)
    assert.matches("^state_dir .*rostate%-state is not writable: .*" .. h.literal(h.strerror.ENOTDIR), err)
    assert.are.same(seq(FLASHED, "done", "failed: " .. err), said)
    assert_sent(p, said)
    assert.are.equal(1, erases(p))
    assert_chip(p, v1, "v1")
  end)

  ---------------------------------------------------------------- queueing

  it("installs only the latest of the pushes that come during an update, one at a time", function()
    -- before_download holds v1 and v3 until the spec lets them go
    local gates = { v1 = {}, v3 = {} }
    local r = {}
    local p, said = policy("queue", { before_download = function(job)
      local g = gates[job.version]
      -- the spec's own task never runs an update: a push during one queues
      if g and sched.current() == r.main then error(job.version .. " did not wait its turn") end
      if g then
        g.reached = true
        wait_for(job.version .. "'s gate to open", function() return g.open end)
      end
      return true
    end })
    sched.run(function()
      r.main = sched.current()
      local first = sched.spawn(function()
        local res = { p:push(cmd("v1", "v1.hex")) }
        r.ended = true
        return table.unpack(res)
      end)
      wait_for("v1's update to start", function() return gates.v1.reached end)
      r.v2 = { p:push(cmd("v2", "v2.hex")) }
      r.v3 = { p:push(cmd("v3", "v1.hex")) } -- v2 is dropped: only the latest waits
      gates.v1.open = true
      wait_for("v3's update to start", function() return gates.v3.reached or r.ended end)
      assert.is_true(gates.v3.reached, "v3 never started; the statuses: " .. table.concat(said, ", "))
      r.v4 = { p:push(cmd("v4", "v2.hex")) } -- during the queued update: it waits too
      gates.v3.open = true
      r.first = { sched.join(first, 60) }
    end)
    assert.are.same({ true, "queued" }, r.v2)
    assert.are.same({ true, "queued" }, r.v3)
    assert.are.same({ true, "queued" }, r.v4)
    assert.are.same({ true, true }, r.first)
    assert.are.same(seq("queued: v2 (an update is running)", "queued: v3 (an update is running)",
      FLASHED, "done", "queued: v4 (an update is running)", FLASHED, "done", FLASHED, "done"), said)
    assert.are.same({ "v1", "v3", "v4" }, reported(p))
    assert.are.equal(3, erases(p))
    assert.are.equal("v4", p:installed().version)
    assert_chip(p, v2, "v2.hex (v4)")
  end)

  ---------------------------------------------------------------- refused at once

  it("refuses a malformed command before downloading anything", function()
    local p, said = policy("cmd")
    local good_md5 = assert(digest.file(dir .. "/www/v2.hex", "md5"))
    local cases = {
      { "../v2," .. "null," .. url("v2.hex"), "bad version label: ../v2" },
      { 'v"2,null,' .. url("v2.hex"), 'bad version label: v"2' },
      { "v\t2,null," .. url("v2.hex"), "bad version label: v\t2" },
      { ("v"):rep(65) .. ",null," .. url("v2.hex"), "bad version label: " .. ("v"):rep(64) },
      { "v2," .. good_md5:sub(2) .. "," .. url("v2.hex"), "bad MD5 (32 hex digits or null): " .. good_md5:sub(2) },
      { "v2," .. good_md5 .. "0," .. url("v2.hex"), "bad MD5 (32 hex digits or null): " .. good_md5 .. "0" },
      { "v2," .. good_md5:sub(2) .. "g," .. url("v2.hex"),
        "bad MD5 (32 hex digits or null): " .. good_md5:sub(2) .. "g" },
      { "v2,null,file://" .. dir .. "/www/v2.hex",
        "the URL must be http:// or https://: file://" .. dir .. "/www/v2.hex" },
      { "v2,null,ftp://127.0.0.1/v2.hex", "the URL must be http:// or https://: ftp://127.0.0.1/v2.hex" },
      { "v2,null", "not version,MD5,URL (7 bytes)" },
    }
    local expected = {}
    sched.run(function()
      for _, c in ipairs(cases) do
        local ok, err = p:push(c[1])
        assert.is_nil(ok, c[1])
        assert.are.equal(c[2], err)
        expected[#expected + 1] = "failed: " .. c[2]
      end
    end)
    assert.are.same(expected, said) -- one status each: nothing was downloaded
    assert.are.same({}, reported(p))
    assert.is_nil(state(p, "download.hex"))
    assert.is_nil(flash_bin(p))
    assert.are.equal(0, erases(p))
  end)

  it("takes an MD5 in capitals", function()
    local p, said = policy("md5caps")
    local md5 = assert(digest.file(dir .. "/www/v2.hex", "md5")):upper()
    local ok = sched.run(function() return p:push(cmd("v2", "v2.hex", md5)) end)
    assert.is_true(ok)
    assert.are.same(seq(FLASHED, "done"), said)
    assert_chip(p, v2, "v2")
  end)

  it("stops a download larger than max_download, before the MCU is touched", function()
    -- v2.hex is 819 bytes
    local p, said = policy("cap", { max_download = 400 })
    local ok, err = update(p, cmd("v2", "v2.hex"))
    assert.is_nil(ok)
    assert.matches("^download: .*/files/v2%.hex: .*400 bytes", err)
    assert.are.same({ "downloading", "failed: " .. err }, said)
    assert.are.same({}, reported(p))
    assert.are.equal(0, erases(p))
    assert.is_nil(state(p, "download.hex"))
    assert.is_nil(state(p, "download.hex.part"))
  end)

  it("folds insecure into the HTTP options every connection uses", function()
    local _, _, cfg = policy("tls", { insecure = true })
    assert.is_true(cfg.http.insecure)
    assert.are.equal(0, cfg.http.retries)
  end)

  describe("with trusted_keys", function()
    local pub
    -- Signs www/FILE with the spec's key as minisign does (NAME.minisig beside it).
    local function sign(file, comment)
      assert(h.sh(("minisign -S -s %s -m %s -t %s"):format(h.q(dir .. "/k.key"), h.q(dir .. "/www/" .. file),
        h.q(comment))))
    end
    setup(function()
      pub = dir .. "/k.pub"
      assert(h.sh(("minisign -G -W -p %s -s %s"):format(h.q(pub), h.q(dir .. "/k.key"))))
    end)
    local function signed_policy(name, extra)
      extra = extra or {}
      extra.trusted_keys = pub
      return policy(name, extra)
    end
    local function counter(p)
      local j = state(p, "counter.json")
      return j and cjson.decode(j).counter
    end

    it("keeps the counter of an image the health check rejected out of counter.json", function()
      sign("v1.hex", "version=v1 part=m32u4 counter=1")
      sign("v2.hex", "version=v2 part=m32u4 counter=2")
      local p = signed_policy("sighc", { health_check = function(job) return job.version ~= "v2", "silent" end })
      assert.is_true(update(p, cmd("v1", "v1.hex")))
      assert.are.equal(1, counter(p))
      local ok, err = update(p, cmd("v2", "v2.hex"))
      assert.is_nil(ok)
      assert.are.equal("health check: silent; rolled back to v1", err)
      assert.are.equal(1, counter(p))
      assert_chip(p, v1, "v1")
    end)

    it("journals the counter before the erase, and installs again an image of the accepted counter", function()
      sign("v1.hex", "version=v1 part=m32u4 counter=4")
      local journalled, p
      p = signed_policy("sigjournal", { health_check = function()
        journalled = cjson.decode((assert(state(p, "journal.json"))))
        return true
      end })
      assert.is_true(update(p, cmd("v1", "v1.hex")))
      -- what a cut during the check would leave: the counter goes with the image
      assert.are.equal(4, journalled.counter)
      local job = assert(fota.parse_command(cmd("v1", "v1.hex")))
      job.force = true
      assert.is_true(sched.run(function() return p:update(job) end))
      assert.are.equal(4, counter(p))
      assert.are.equal(2, erases(p))
    end)

    it("commits the journalled counter when it finishes an update a cut interrupted", function()
      local p = signed_policy("sigcut")
      assert(v2:write(p.dir .. "/new.hex"))
      h.write(p.dir .. "/journal.json", cjson.encode({ stage = "flashing", version = "v2",
        image = p.dir .. "/new.hex", sha256 = assert(digest.file(p.dir .. "/new.hex", "sha256")),
        health = "pending", counter = 7, key_id = "ABCDEF" }))
      local rec = sched.run(function() return p:recover() end)
      assert.are.equal("recovered: v2 flashed again after an interruption", rec)
      assert.are.same({ counter = 7, version = "v2", key_id = "ABCDEF" },
        (function(j) j.at = nil return j end)(cjson.decode(state(p, "counter.json"))))
    end)

    it("stops signed updates while counter.json cannot be read, until an operator allows one", function()
      sign("v1.hex", "version=v1 part=m32u4 counter=3")
      local p, said = signed_policy("sigcorrupt")
      h.write(p.dir .. "/counter.json", "{\"counter\": \"3\"}")
      local ok, err = update(p, cmd("v1", "v1.hex"))
      assert.is_nil(ok)
      assert.are.equal("signature: " .. p.dir .. "/counter.json cannot be read (counter: a bad string): the highest "
        .. "counter accepted is unknown; an operator on the board can allow this update with fotahost fota "
        .. "--allow-downgrade", err)
      assert.are.same({ "downloading", "verifying", "failed: " .. err }, said)
      assert.are.equal(0, erases(p))
      -- there but not to be opened is unknown too, never "none yet"
      os.remove(p.dir .. "/counter.json")
      assert(os.execute("ln -s nowhere " .. h.q(p.dir .. "/counter.json")))
      err = select(2, update(p, cmd("v1", "v1.hex")))
      assert.are.equal("signature: " .. p.dir .. "/counter.json cannot be read (" .. h.strerror.ENOENT .. "): the "
        .. "highest counter accepted is unknown; an operator on the board can allow this update with fotahost fota "
        .. "--allow-downgrade", err)
      os.remove(p.dir .. "/counter.json")
      h.write(p.dir .. "/counter.json", "{\"counter\": \"3\"}")
      local job = assert(fota.parse_command(cmd("v1", "v1.hex")))
      job.allow_downgrade = true
      assert.is_true(sched.run(function() return p:update(job) end))
      assert.are.equal(3, counter(p))
    end)

    it("fetches the signature beside the file, before its query, and masks the query's secrets", function()
      local p = signed_policy("sigquery")
      local _, err = update(p, "v9,null," .. url("v9.hex") .. "?token=hunter2&x=1")
      assert.are.equal("unsigned: no signature at " .. url("v9.hex") .. ".minisig?token=****&x=1 (HTTP 404); "
        .. "trusted_keys are set, so unsigned firmware is refused", err)
    end)

    it("reads a trusted comment's fields strictly", function()
      local signature = require "fotahost.fota.signature"
      assert.are.same({ version = "2.0", part = "m32u4", counter = 17 },
        signature.fields("fotahost version=2.0 part=m32u4 counter=17"))
      assert.are.same({ version = "2", board = "sim", counter = 0 },
        signature.fields("board=sim  version=2\tcounter=0 x=y"))
      for comment, why in pairs({
        ["version=1 version=2 part=m32u4 counter=1"] = "the trusted comment sets version= twice",
        ["part=m32u4 counter=1"] = "the trusted comment has no version=",
        ["version=1 counter=1"] = "the trusted comment has no part= (or board=)",
        ["version=1 part=m32u4"] = "the trusted comment has no counter=",
        ["version=1 part=m32u4 counter=-1"] =
          "the trusted comment's counter=-1 is not a whole number of at most 12 digits",
        ["version=1 part=m32u4 counter=1e3"] =
          "the trusted comment's counter=1e3 is not a whole number of at most 12 digits",
        ["version=1 part=m32u4 counter=1234567890123"] =
          "the trusted comment's counter=1234567890123 is not a whole number of at most 12 digits",
      }) do
        local f, err = signature.fields(comment)
        assert.is_nil(f, comment)
        assert.are.equal(why, err)
      end
      assert.are.equal("http://h/f.hex.minisig?a=1#x", signature.url("http://h/f.hex?a=1#x"))
      for _, u in ipairs({ "https://u:pw@host?token=T", "http://host", "http://host/dir/", "http://h#/x" }) do
        assert.are.same({ nil, "the firmware URL names no file to find its .minisig beside" }, { signature.url(u) }, u)
      end
    end)

    it("checks a signed board= as it checks part=, and takes it for that board's own MCU", function()
      sign("v1.hex", "version=v1 board=linkit-smart-7688-duo counter=1")
      local p = signed_policy("sigboard")
      local _, err = update(p, cmd("v1", "v1.hex"))
      assert.are.equal("signature: signed for board linkit-smart-7688-duo, this board is sim", err)
      -- signed for the board alone, on that board configured with another MCU
      sign("v1.hex", "version=v1 board=sim counter=1")
      _, err = update(signed_policy("sigboardpart", { part = "m328p" }), cmd("v1", "v1.hex"))
      assert.are.equal("signature: signed for part m32u4, this board's MCU is m328p", err)
      assert.are.equal(0, erases(p))
    end)
  end)
end)
