--- fotahost.fota: the update policy. What happens, in order, when the cloud
-- pushes `version,MD5,URL` -- the file a user reads (and edits) to know what
-- the device does with a firmware.
--
--     local fota = require "fotahost.fota"
--     local policy = fota.new(config)    -- a checked config (fotahost.fota.config)
--     policy:recover()                   -- first: finish a flash a power cut interrupted
--     policy:attach(cloud)               -- an fotahost.mcs client, for status and versions
--     cloud:on("FOTA", function(value) policy:push(value) end)
--
-- The rule: nothing touches the MCU until the new image is downloaded in
-- full, its MD5 checked (when the cloud gave one), its signature verified
-- with a trusted key and its signed version, part and counter found right
-- (when trusted_keys are set: fota/signature.lua), parsed as Intel HEX and
-- found to fit the application section (or to carry the configured
-- bootloader above it, or any bootloader when allow_bootloader_update: see
-- carried_bootloader). Then, and only then:
-- board setup, connect, the chip's signature check, erase, write, verify, lock bits,
-- release RESET; then the health check. If the verify or the health check
-- fails, the last-known-good image goes back on.
--
-- A journal in state_dir says what is under way, written atomically before
-- each step that matters. If the process dies while the MCU is being
-- flashed or checked (a power cut, a kill), recover() on the next start
-- finishes the job before anything else. Its states:
--
--   stage "flashing", health "pending"  written before the erase: the image
--       has not passed a health check. recover() flashes it again (if
--       its SHA-256 matches), runs the health check again and commits only
--       if it passes; else (or if the check raises) the last-known-good
--       goes back on and the image is deleted.
--   stage "flashing", health "passed"   the check passed, the commit may
--       have been cut: flashed again and committed, no second check.
--   stage "rollback"   a last-known-good was going back on: it is flashed
--       again.
--   unreadable (not JSON, a field missing or of the wrong type): moved to
--       journal.json.corrupt, reported, and taken as an update cut short:
--       the last-known-good goes back on.
--
-- So no image becomes last-known-good before its health check passed.
-- Nothing is flashed unless state_dir can be written: update() refuses,
-- and a recovery that cannot be recorded (it would run at every start)
-- only puts the last-known-good on when the chip, read back, does not hold
-- it already. State files are checked field by field when read.
--
-- What the cloud is told matches the chip, on every path. state_dir must
-- survive a power cut: on tmpfs or ramfs update() refuses, unless
-- volatile_state_ok. Before the erase, state_dir must have room for every
-- file the install writes (M.room_needed). If the commit still cannot be
-- saved after the flash (the disk filled up meanwhile), the MCU holds the
-- new image: the cloud hears its version, with "done: V installed (state
-- not saved: ...; retrying)", and the commit is retried until it is saved
-- (commit_until_saved). A start that finds the journal of such an update
-- flashes the image again and commits it, or, when it still cannot,
-- puts the last-known-good back (what installed.json says) and says why.
--
-- Files in state_dir: journal.json (what is under way), installed.json (the
-- version on the MCU, verified), counter.json (the highest anti-rollback
-- counter accepted), lkg.hex (the last-known-good image), new.hex (the
-- image being installed), download.hex (the download; .part while it runs)
-- and download.hex.minisig (its signature).
--
-- Status data points on config.status_channel: "downloading", "verifying",
-- (without trusted_keys, M.UNSIGNED: "warning: unsigned firmware accepted
-- ..."), "flashing", then "done" or "failed: <reason>" (or "done: V installed
-- (state not saved: ...; retrying)" then "done"); also "skipped: <version>
-- is already installed", "queued: <version>", after a start that found
-- a journal "recovered: ..." or "failed: recovery after an interruption...",
-- and on every connection while no update runs "idle: <version> installed"
-- (or "idle: no version installed").
--
-- Errors: misuse (an unknown board or part in new()) raises; a state_dir
-- that cannot be used raises from new() too (the app cannot run without
-- it). The steps return nil, "what: why"[, code]: flash_image's code is
-- the step that failed ("setup", "connect", "erase", "write", "verify",
-- "lock"); a download's failure is told in its message alone (the
-- status the cloud shows), without http's code.

local sched = require "fotahost.sched"
local sys = require "fotahost.sys"
local http = require "fotahost.http"
local ihex = require "fotahost.ihex"
local digest = require "fotahost.digest"
local isp = require "fotahost.avr.isp"
local parts = require "fotahost.avr.parts"
local boards = require "fotahost.avr.boards"
local cjson = require "cjson.safe"
local logmod = require "fotahost.log"

local log = logmod.get("fota")

local M = {}

local Policy = {}
local policy_mt = { __name = "fotahost.fota.policy", __index = Policy }

-- A hook or handler that failed because SIGINT/SIGTERM arrived did not
-- fail: the process is stopping. That error must go up to sched.run (and
-- the journal makes the next start finish the job), never be reported as
-- a failed check or trigger a rollback.
local function pass_interrupts(err)
  if sys.interrupted() then error(err, 0) end
end

---------------------------------------------------------------- state files

-- Every state file is checked field by field before anything uses it: a
-- file a crash, a bad disk or a hand edit left malformed must never raise
-- (the app would die before connecting, and a supervisor restart it in a
-- loop) nor be half believed.
local function label(v)
  return type(v) == "string" and v ~= "" and #v <= 64 and not v:find("[%c\"\\/]")
end
local function hexdigits(n)
  return function(v) return type(v) == "string" and #v == n and v:match("^%x+$") ~= nil end
end
local function path_string(v) return type(v) == "string" and v ~= "" and #v <= 4096 end
local function text(v) return type(v) == "string" and #v <= 4096 end
local function number(v) return type(v) == "number" end
-- (JSON's numbers come back as floats: a whole one, exact, is an integer)
local function counter(v) return type(v) == "number" and math.tointeger(v) ~= nil and v >= 0 and v < 2 ^ 53 end
local function key_id(v) return type(v) == "string" and #v >= 1 and #v <= 16 and v:match("^%x+$") ~= nil end
local function one_of(...)
  local set = {}
  for _, k in ipairs({ ... }) do set[k] = true end
  return function(v) return set[v] == true end
end

-- field = { check, required }
local SCHEMA = {
  journal = {
    stage = { one_of("flashing", "rollback"), true },
    version = { label }, image = { path_string }, sha256 = { hexdigits(64) },
    md5 = { hexdigits(32) }, health = { one_of("pending", "passed") }, why = { text },
    counter = { counter }, key_id = { key_id },
  },
  installed = {
    version = { label, true }, sha256 = { hexdigits(64) }, md5 = { hexdigits(32) }, at = { number },
  },
  -- the highest anti-rollback counter accepted (fota/signature.lua)
  counter = {
    counter = { counter, true }, version = { label }, key_id = { key_id }, at = { number },
  },
}

local function validate(kind, v)
  if type(v) ~= "table" then return nil, "not a JSON object" end
  for field, rule in pairs(SCHEMA[kind]) do
    local x = v[field]
    if x == nil then
      if rule[2] then return nil, field .. ": missing" end
    elseif not rule[1](x) then
      return nil, ("%s: a bad %s"):format(field, type(x))
    end
  end
  -- a flashing journal names the image it was writing
  if kind == "journal" and v.stage == "flashing" and not (v.version and v.sha256) then
    return nil, "a flashing journal without version and sha256"
  end
  return v
end

-- The state file at `path`, checked as `kind`: the table, or nil when
-- there is none, or nil and why it cannot be read.
local function read_state(path, kind)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data, rerr = f:read(65536)
  f:close()
  if not data then return nil, rerr and tostring(rerr) or "empty" end
  local v = cjson.decode(data)
  if v == nil then return nil, "not valid JSON" end
  return validate(kind, v)
end

local function write_json(path, value)
  return sys.write_file(path, assert(cjson.encode(value)) .. "\n")
end

local exists = sys.exists

-- Whether a file can be created in `dir` (a read-only mount, a full disk,
-- a file where the directory should be): true, or nil and why.
local function writable(dir)
  local probe = dir .. "/.writable"
  local ok, err = sys.write_file(probe, "")
  if not ok then return nil, err end
  os.remove(probe)
  return true
end

-- Filesystems whose content a power cut loses.
local VOLATILE = { tmpfs = true, ramfs = true }

--- Whether state_dir keeps what is written there through a power cut:
-- the statfs table of `dir` (sys.statfs) and whether it is volatile, or
-- nil and why.
function M.state_fs(dir)
  local st, err = sys.statfs(dir)
  if not st then return nil, err end
  return st, VOLATILE[st.type] == true
end

-- Bytes a file of `n` bytes takes on a filesystem of `bsize` blocks.
local function blocks(n, bsize) return math.max(1, (n + bsize - 1) // bsize) * bsize end

--- The room an install needs in state_dir, once the download is there:
-- new.hex (`hex_bytes` of HEX text, kept as lkg.hex by a rename), the
-- journal written twice (each atomic write holds a temporary beside the
-- old file) and installed.json's temporary; a quarter more for what a
-- filesystem spends on itself (jffs2 and ubifs nodes, metadata).
function M.room_needed(hex_bytes, bsize)
  local need = blocks(hex_bytes, bsize) + 4 * blocks(1, bsize)
  return need + need // 4
end

---------------------------------------------------------------- setup

--- Makes state_dir (mode 0700, parents as needed) and checks that nobody
-- else can plant files in it: a symbolic link, or a directory owned by
-- another user, is refused. true | nil, "state_dir PATH: why".
function M.private_dir(dir)
  local ok, err = sys.mkdir(dir, tonumber("700", 8))
  if not ok then return nil, "state_dir " .. err end
  local st
  st, err = sys.lstat((dir:gsub("(.)/+$", "%1")))   -- "link/" would be the directory it names
  if not st then return nil, "state_dir " .. err end
  if st.type == "link" then
    return nil, ("state_dir %s: a symbolic link (refused: give the real directory)"):format(dir)
  end
  if st.uid ~= sys.geteuid() then
    return nil, ("state_dir %s: owned by uid %d, not by this user (uid %d): refused")
      :format(dir, st.uid, sys.geteuid())
  end
  return true
end

--- A policy for a checked configuration. `opts.cloud`: an fotahost.mcs
-- client (or attach() it later); `opts.isp`: extra options for
-- fotahost.avr.isp.open (tests).
function M.new(config, opts)
  opts = opts or {}
  local board, part, err
  board, err = boards.get(config.board)
  if not board then error("fota.new: " .. err, 2) end
  part, err = parts.get(config.part or board.part)
  if not part then error("fota.new: " .. err, 2) end
  local dir = config.state_dir
  local ok, derr = M.private_dir(dir)
  if not ok then error("fota.new: " .. derr, 0) end
  local self = setmetatable({
    config = config,
    board = board,
    part = part,
    dir = dir,
    cloud = opts.cloud,
    isp_opts = opts.isp or {},
    -- the application section: below the bootloader
    app_end = (board.app_size or part.flash_size) - 1,
    max_download = config.max_download or part.flash_size * 6,
    busy = false,
    pending = nil,
  }, policy_mt)
  self.paths = {
    journal = dir .. "/journal.json",
    installed = dir .. "/installed.json",
    lkg = dir .. "/lkg.hex",
    new = dir .. "/new.hex",
    download = dir .. "/download.hex",
    signature = dir .. "/download.hex.minisig",
    counter = dir .. "/counter.json",
  }
  self:load_keys()
  return self
end

--- Takes state_dir for this process alone (the file `lock` in it, held
-- until the process ends or execs; a crash leaves nothing behind): two
-- processes updating one MCU from one state would interleave their erases
-- and journals. The app and `fotahost fota` take it before recover().
-- true | nil, why (only when another process holds it).
function Policy:lock()
  local fd, err, _, holder = sys.lock(self.dir .. "/lock")
  if fd then return true end
  if holder then
    return nil, ("%s: another fotahost updates this MCU from the same state_dir (stop it first: "
      .. "/etc/init.d/fotahost stop)"):format(err)
  end
  -- a state_dir that cannot take the file (read-only, say): every update
  -- refuses it anyway (writable()), and recover() must still run
  log.warn("state_dir not locked: %s", err)
  return true
end

-- The trusted keys (config.trusted_keys), read once at start. A key that
-- cannot be read refuses every update (key_error: never a fall back to
-- unsigned firmware) but stops nothing else: recover() still finishes a
-- cut flash and the app stays on the air for a fix. Without keys, every
-- start says loudly what that means.
function Policy:load_keys()
  local paths = self.config.trusted_keys
  if not paths then
    log.warn("no trusted_keys configured: unsigned firmware is accepted (see the README: Signed firmware)")
    return
  end
  local signature = require "fotahost.fota.signature" -- loads libsodium: only when keys are set
  local keys, err = signature.load_keys(paths)
  if not keys then
    self.key_error = err .. ": every update is refused until it is fixed"
    log.error("%s", self.key_error)
    return
  end
  self.keys, self.signature = keys, signature
  log.info("firmware must be signed by a trusted key: %s", signature.key_ids(keys))
  local _, volatile = M.state_fs(self.dir)
  if volatile then
    log.warn("state_dir %s is lost at power-off, and with it the anti-rollback counter", self.dir)
  end
end

--- Gives the policy its cloud client: statuses and versions go there.
-- A recovery done before (recover()) is reported now.
-- On every connection of the command channel the installed version is
-- reported, so a report that failed (the cloud was down) is made good at
-- the next one, and so is the state: "idle: <version> installed" (see
-- idle()).
function Policy:attach(cloud)
  self.cloud = cloud
  if self.recovered then cloud:emit(self.config.status_channel, self.recovered) end
  cloud:on_state(function(state)
    if state ~= "connected" then return end
    self:idle()
    sched.spawn({ name = "fota version report" }, function()
      local inst = self:installed()
      if not inst then return end
      local ok, err = cloud:report_version(inst.version)
      if not ok then log.warn("version %s not reported: %s", inst.version, err) end
    end)
  end)
end

--- The version on the MCU (verified), or nil. While a commit could not be
-- saved (commit_until_saved), the image the MCU holds, not installed.json.
function Policy:installed()
  if self.unsaved then return self.unsaved end
  local v, err = read_state(self.paths.installed, "installed")
  if err then log.error("%s: %s; no version is known", self.paths.installed, err) end
  return v
end

--- Tells the cloud that no update runs, and which version is installed:
-- a process killed mid-update (outside the journal's window, or before
-- the journal's recovery could say so) left the cloud's last status at
-- "downloading" or "flashing", and a restarted cloud has none. Not while
-- an update runs: the status then is the update's, and its final one
-- follows.
function Policy:idle()
  if self.busy then return end
  local inst = self:installed()
  self:status(inst and ("idle: %s installed"):format(inst.version) or "idle: no version installed")
end

function Policy:status(msg)
  log.info("status: %s", msg)
  if self.on_status then pcall(self.on_status, msg) end
  if self.cloud then self.cloud:emit(self.config.status_channel, msg) end
end

---------------------------------------------------------------- the MCU

-- One ISP session on the configured board: connect (signature check),
-- erase, write, verify, lock, release. `connected()`, if given, is called
-- once the signature is right, just before the erase. Returns true or nil,
-- why, stage.
-- An ISP session on the configured board (not yet connected), or nil, why.
function Policy:open_isp()
  local o, err = boards.isp_options(self.config, self.isp_opts)
  if not o then return nil, err end
  return isp.open(o)
end

function Policy:flash_image(image, what, connected)
  local c = self.config
  local s <close>, err = self:open_isp()
  if not s then return nil, err, "setup" end
  log.info("flashing %s (%d bytes)", what, image:size())
  local sig
  sig, err = s:connect()
  if not sig then return nil, err, "connect" end
  if connected then connected() end
  -- From here on the MCU's flash is erased: a journal entry already says so.
  local ok
  ok, err = s:erase()
  if not ok then return nil, "erase: " .. err, "erase" end
  ok, err = s:write_flash(image)
  if not ok then return nil, "write: " .. err, "write" end
  ok, err = s:verify_flash(image)
  if not ok then return nil, "verify: " .. err, "verify" end
  if c.lock then
    ok, err = s:write_fuse("lock", c.lock)
    if not ok then return nil, "lock bits: " .. err, "lock" end
  end
  s:close() -- RESET released: the new firmware runs
  return true
end

-- Flashes the last-known-good image back. Returns true, or nil and why.
function Policy:restore_lkg(why)
  if not exists(self.paths.lkg) then
    -- Nothing to go back to (the first update over the air): the journal
    -- has nothing left to finish either.
    os.remove(self.paths.journal)
    return nil, "no last-known-good image to restore"
  end
  local image, err = ihex.load(self.paths.lkg)
  if not image then return nil, err end
  local lkg = self:installed()
  write_json(self.paths.journal, { stage = "rollback", why = tostring(why):sub(1, 1000),
    version = lkg and lkg.version })
  local ok, ferr = self:flash_image(image, "the last-known-good image")
  if not ok then return nil, ferr end
  os.remove(self.paths.journal)
  return true, lkg and lkg.version
end

---------------------------------------------------------------- the steps

--- Checks a FOTA command's value: version, md5 (or nil), url.
function M.parse_command(value)
  if type(value) ~= "string" then return nil, "the command has no value" end
  local version, md5, url = value:match("^([^,]*),([^,]*),(.*)$")
  -- not quoted: a command cut in the wrong place may carry the device key
  if not version then return nil, ("not version,MD5,URL (%d bytes)"):format(#value) end
  version, md5, url = version:match("^%s*(.-)%s*$"), md5:match("^%s*(.-)%s*$"), url:match("^%s*(.-)%s*$")
  if version == "" or #version > 64 or version:find("[%c\"\\/]") then
    return nil, "bad version label: " .. version:sub(1, 64)
  end
  if md5 == "null" or md5 == "" then
    md5 = nil
  elseif not md5:match("^%x+$") or #md5 ~= 32 then
    return nil, "bad MD5 (32 hex digits or null): " .. md5:sub(1, 40)
  end
  if not url:match("^[hH][tT][tT][pP][sS]?://[^%s]+$") then
    return nil, "the URL must be http:// or https://: " .. http.redact_url(url):sub(1, 120)
  end
  return { version = version, md5 = md5 and md5:lower(), url = url }
end

-- Why a download failed, for the status: "download: <url>: <cause>", but
-- one given up for its own limits says so first ("download timed out
-- after 600 s: <url>", "download too slow (...): <url>").
local function download_failure(url, err, code)
  if code == "deadline" or code == "too_slow" then
    local shown = logmod.redact(http.redact_url(url)) .. ": "
    if err:sub(1, #shown) == shown then
      return ("download %s: %s"):format(err:sub(#shown + 1), shown:sub(1, -3))
    end
  end
  return "download: " .. err
end

-- The options of one download: every one of the config's http table (the
-- deadline and the rate above all), not a chosen few, and a size cap.
function Policy:download_options(max_size)
  local c = self.config
  local o = {}
  for k, v in pairs(c.http or {}) do o[k] = v end
  o.max_size = max_size
  o.insecure = c.insecure or o.insecure
  return o
end

-- The signature of the firmware at job.url (URL.minisig): its text, or
-- nil and why. A firmware without one (404) is refused: keys are set.
function Policy:fetch_signature(job)
  local url, uerr = self.signature.url(job.url)
  if not url then return nil, "signature: " .. uerr end
  local limit = require("fotahost.minisign").limits.signature_file
  local res, err, code = http.download(url, self.paths.signature, self:download_options(limit))
  if not res and code == 404 then
    return nil, ("unsigned: no signature at %s (HTTP 404); trusted_keys are set, so unsigned firmware is refused")
      :format(logmod.redact(http.redact_url(url)))
  end
  if not res then return nil, "signature " .. download_failure(url, err, code) end
  return sys.read_file(self.paths.signature, limit)
end

--- The highest anti-rollback counter accepted in `state_dir` (its
-- counter.json) and the version it came with (nil when not recorded):
-- counter, version | nil when none was accepted yet | nil, why it cannot
-- be read. (fotahost doctor shows it too.)
function M.accepted_counter(state_dir)
  local path = state_dir .. "/counter.json"
  local v, err = read_state(path, "counter")
  -- there but not to be opened (its mode, a directory): unknown, not none
  if not v and not err and sys.lstat(path) then
    local _, why = io.open(path, "rb")
    err = why and why:gsub("^.-: ", "") or "cannot be opened"
  end
  if not v then return nil, err end
  return math.tointeger(v.counter), v.version
end

-- The highest counter accepted so far (nil: none yet), or nil and why it
-- is unknown (an unreadable counter.json: signed updates stop until an
-- operator allows a downgrade, which writes it again).
function Policy:accepted_counter()
  local n, err = M.accepted_counter(self.dir)
  if not n and err then
    return nil, ("%s cannot be read (%s): the highest counter accepted is unknown; an operator on the board "
      .. "can allow this update with fotahost fota --allow-downgrade"):format(self.paths.counter, err)
  end
  return n
end

-- Checks the signature `sig_text` over `data`, the downloaded bytes, and
-- what it binds (version, part, counter); notes the counter and key in
-- the job (commit() keeps the counter). true, or nil and why.
function Policy:check_signature(job, sig_text, data)
  local floor, err = self:accepted_counter()
  if err and not job.allow_downgrade then return nil, "signature: " .. err end
  local r
  r, err = self.signature.check(self.keys, sig_text, data, { version = job.version, part = self.part.id,
    board = self.config.board, board_part = self.board.part, floor = floor, allow_downgrade = job.allow_downgrade })
  if not r then return nil, "signature: " .. err end
  job.counter, job.key_id = r.counter, r.key_id
  log.info("%s: signed by key %s (%s), counter %d%s", job.version, r.key_id, r.alg, r.counter,
    floor and r.counter < floor and (", below %d: a downgrade an operator allowed"):format(floor) or "")
  return true
end

-- Downloads, checks and parses; returns the image to flash or nil, reason.
-- Nothing here touches the MCU. The download is read once: the MD5, the
-- signature and the parser all see the same bytes.
function Policy:prepare(job)
  local c = self.config
  self:status("downloading")
  local sig_text, err
  if self.keys then
    sig_text, err = self:fetch_signature(job)
    if not sig_text then return nil, err end
  end
  local res, code
  res, err, code = http.download(job.url, self.paths.download, self:download_options(self.max_download))
  if not res then return nil, download_failure(job.url, err, code) end
  job.bytes = res.bytes
  self:status("verifying")
  local data
  data, err = sys.read_file(self.paths.download, self.max_download)
  if not data then return nil, err end
  local md5 = digest.md5(data)
  job.got_md5 = md5
  if job.md5 and md5 ~= job.md5 then
    return nil, ("MD5 mismatch: expected %s, the file is %s"):format(job.md5, md5)
  end
  if sig_text then
    local ok, serr = self:check_signature(job, sig_text, data)
    if not ok then return nil, serr end
  end
  local image
  image, err = ihex.parse(data, "download.hex")
  if not image then
    -- "line 12: bad checksum", or just the cause when there is no line to name
    local why = err:gsub("^download%.hex:(%d+):", "line %1:"):gsub("^download%.hex: ", "")
    return nil, "not a valid Intel HEX file: " .. why
  end
  local lo, hi = image:range()
  if not lo then return nil, "the HEX file holds no data" end
  local boot
  if c.bootloader then
    boot, err = ihex.load(c.bootloader)
    if not boot then return nil, "bootloader: " .. err end
  end
  local merge = boot ~= nil
  if hi > self.app_end then
    image, merge = self:carried_bootloader(image, hi, boot)
    if not image then return nil, merge end
  end
  if merge then
    image, err = image:merge(boot)
    if not image then return nil, "the image overlaps the bootloader: " .. err end
  end
  if not self.keys then self:status(M.UNSIGNED) end
  return image
end

--- The status said when an image passed every check but a signature, as
-- none is asked for (no trusted_keys): loudly, at every update.
M.UNSIGNED = "warning: unsigned firmware accepted (no trusted_keys configured)"

-- The bytes of `image` below `addr`, as an image of their own (nil: none).
local function below(image, addr)
  local part
  for _, seg in ipairs(image:segments()) do
    if seg.addr < addr then
      local piece = ihex.from_binary(seg.data:sub(1, addr - seg.addr), seg.addr)
      part = part and assert(part:merge(piece)) or piece
    end
  end
  return part
end

-- The lowest address of `image` at or above `addr`.
local function first_from(image, addr)
  for _, seg in ipairs(image:segments()) do
    if seg.addr + #seg.data > addr then return math.max(seg.addr, addr) end
  end
end

--- An image with data above the application section (up to `hi`): the
-- Arduino IDE's "Export compiled Binary" writes sketch.ino.hex and
-- sketch.ino.with_bootloader.hex, the sketch and the bootloader in one file.
-- Such an image whose bootloader section equals the configured bootloader
-- (`boot`, or nil) byte for byte is taken for its application part (the
-- configured bootloader is merged as for any image); any other bootloader is
-- refused, unless allow_bootloader_update: then the whole image is written.
-- A sketch whose code runs on across the boundary is too large, whatever
-- the setting. Nothing here touches the MCU.
-- @return the image to flash, whether to merge `boot` into it | nil, why
function Policy:carried_bootloader(image, hi, boot)
  local c, start, flash_end = self.config, self.app_end + 1, self.part.flash_size - 1
  local too_large = ("image too large: it reaches 0x%04X, the application section ends at 0x%04X")
    :format(hi, self.app_end)
  if hi > flash_end then return nil, too_large end
  local span = ("0x%04X..0x%04X"):format(first_from(image, start), hi)
  if boot and boot:bytes(start, flash_end) == image:bytes(start, flash_end) then
    local app = below(image, start)
    if not app then return nil, ("the image holds the configured bootloader (%s) and no application"):format(span) end
    self:status(("verifying: the image carries the configured bootloader (%s): its application part is flashed")
      :format(span))
    return app, true
  end
  if image:get(self.app_end) and image:get(start) then return nil, too_large end
  if c.allow_bootloader_update then
    log.warn("the image carries a bootloader (%s): written with it (allow_bootloader_update)", span)
    self:status(("verifying: the image carries a bootloader (%s): the whole image is written "
      .. "(allow_bootloader_update = true)"):format(span))
    return image, false
  end
  return nil, ("the image carries a bootloader (%s) %s: upload the Arduino export sketch.ino.hex, "
    .. "not sketch.ino.with_bootloader.hex (to replace the bootloader, set allow_bootloader_update = true)")
    :format(span, boot and "that is not the configured one (" .. c.bootloader .. ")" or "and none is configured")
end

-- Writes the journal and flashes `image`; on a verify failure restores
-- the last-known-good. Returns true or nil, reason.
function Policy:install(job, image)
  local ok, err = self:check_room(image)
  if not ok then return nil, err end
  ok, err = image:write(self.paths.new)
  if not ok then return nil, err end
  job.sha256 = assert(digest.file(self.paths.new, "sha256"))
  -- Before the erase: if we die after it, the next start knows.
  -- health = "pending": no check has passed yet; recover() must not adopt
  -- the image without one.
  local journal = { stage = "flashing", version = job.version, image = self.paths.new, sha256 = job.sha256,
    md5 = job.got_md5, health = "pending", counter = job.counter, key_id = job.key_id }
  ok, err = write_json(self.paths.journal, journal)
  if not ok then return nil, "journal: " .. err end
  local stage
  ok, err, stage = self:flash_image(image, job.version, function() self:status("flashing") end)
  if not ok then
    if stage == "setup" or stage == "connect" then
      -- nothing was erased: the old firmware still runs
      os.remove(self.paths.journal)
      return nil, err
    end
    local rok, rerr = self:restore_lkg(err)
    if rok then return nil, err .. "; rolled back to " .. tostring(rerr or "the last-known-good image") end
    return nil, err .. "; and the rollback failed: " .. rerr
  end
  if self.config.health_check then
    local hok, why = self:health_check(job)
    if not hok then
      -- The image is rejected: recover() must never flash it again.
      os.remove(self.paths.new)
      local rok, rerr = self:restore_lkg(why)
      if rok then return nil, why .. "; rolled back to " .. tostring(rerr or "the last-known-good image") end
      return nil, why .. "; and the rollback failed: " .. rerr
    end
    -- A cut in the commit now finishes it without a second check.
    journal.health = "passed"
    local jok, jerr = write_json(self.paths.journal, journal)
    if not jok then log.warn("journal: %s (a cut now re-runs the health check)", jerr) end
  end
  return self:commit_until_saved(job)
end

-- Whether state_dir has room for every file installing `image` writes
-- (M.room_needed): a disk that fills up after the erase would leave the
-- MCU holding an image nothing records. true, or nil and why.
function Policy:check_room(image)
  local st, err = sys.statfs(self.dir)
  if not st then return nil, "state_dir " .. err end
  local need = M.room_needed(#image:to_hex(), st.bsize)
  if st.free >= need then return true end
  return nil, ("state_dir %s has %d KiB free, the update needs %d KiB")
    :format(self.dir, st.free // 1024, (need + 1023) // 1024)
end

-- The MCU holds the new image, verified and checked: from here on the
-- cloud hears that version, whatever the disk says. A commit that cannot
-- be saved (the disk filled up after all) is retried, backing off up to
-- backoff_cap seconds, until it is; meanwhile installed() names the new
-- image, and the policy stays busy (pushes queue). A kill meanwhile leaves
-- the journal: the next start flashes the image again and commits it, or,
-- if that still cannot be saved, puts the last-known-good back and says so.
function Policy:commit_until_saved(job)
  local ok, err = self:commit(job)
  if ok then job.committed = true return true end
  self.unsaved = { version = job.version, sha256 = job.sha256, md5 = job.got_md5 }
  log.error("%s is on the MCU but not recorded: %s; retrying", job.version, err)
  self:status(("done: %s installed (state not saved: %s; retrying)"):format(job.version, err))
  if self.cloud then
    local rok, rerr = self.cloud:report_version(job.version)
    if not rok then log.warn("version not reported: %s", rerr) end
  end
  local cap = self.config.backoff_cap or 60
  local delay = math.min(1, cap)
  repeat
    sched.sleep(delay)
    delay = math.min(delay * 2, cap)
    ok, err = self:commit(job)
    if not ok then log.warn("%s still not recorded: %s; retrying in %g s", job.version, err, delay) end
  until ok
  self.unsaved = nil
  job.committed = true
  log.info("%s recorded", job.version)
  return true
end

-- The new image is good: the version is recorded, the image becomes the
-- last-known-good, its signature's counter is recorded (the highest
-- accepted now; lower only by an operator's --allow-downgrade), the journal ends -- in that order, so that a power cut
-- between two steps leaves a journal whose image is still there (or is
-- already lkg.hex), and recover() finishes the job.
function Policy:commit(job)
  local ok, err = write_json(self.paths.installed, { version = job.version, sha256 = job.sha256,
    md5 = job.got_md5, at = os.time() })
  if not ok then return nil, err end
  if exists(self.paths.new) then
    ok, err = sys.replace(self.paths.new, self.paths.lkg)
    if not ok then return nil, err end
  end
  if job.counter then -- last: a cut before it leaves the journal, which commits again
    ok, err = write_json(self.paths.counter, { counter = job.counter, version = job.version,
      key_id = job.key_id, at = os.time() })
    if not ok then return nil, err end
  end
  os.remove(self.paths.journal)
  os.remove(self.paths.download)
  os.remove(self.paths.signature)
  return true
end

-- Runs the configured health check: true, or nil and why (an error in
-- the check is a failure, an interrupt is passed on).
function Policy:health_check(job)
  if not self.config.health_check then return true end
  local hok, hres, hwhy = pcall(self.config.health_check, job)
  if not hok then pass_interrupts(hres) end
  if not hok or not hres then
    return nil, "health check: " .. tostring(hok and (hwhy or "failed") or hres)
  end
  return true
end

-- A journal and last-known-good on a RAM disk are gone in the very power
-- cut they are kept for: no update then, unless the config says a
-- volatile state_dir is meant (volatile_state_ok). true, or nil and why.
function Policy:check_persistent()
  local st, volatile = M.state_fs(self.dir)
  if not st then return nil, "state_dir " .. volatile end
  if volatile and not self.config.volatile_state_ok then
    return nil, ("state_dir %s is on %s (lost at power-off); set volatile_state_ok = true to allow")
      :format(self.dir, st.type)
  end
  return true
end

local function hook(self, name, job)
  local fn = self.config[name]
  if not fn then return true end
  local ok, res, why = pcall(fn, job)
  if not ok then
    pass_interrupts(res)
    return nil, name .. ": " .. tostring(res)
  end
  if not res then return nil, name .. ": " .. tostring(why or "refused") end
  return true
end

--- Runs one update to its end; returns true or nil, reason. Does not
-- queue: push() is what the cloud handler calls.
function Policy:update(job)
  local installed = self:installed()
  if installed and installed.version == job.version and not job.force then
    self:status(("skipped: %s is already installed"):format(job.version))
    if self.cloud then self.cloud:report_version(job.version) end
    return true, "already installed"
  end
  -- Nothing is flashed that could not be recorded: a journal that cannot
  -- be written or cleared would make every start flash again.
  local wok, werr = writable(self.dir)
  if not wok then
    local why = ("state_dir %s is not writable: %s"):format(self.dir, werr)
    log.error("update to %s refused: %s", job.version, why)
    self:status("failed: " .. why)
    return nil, why
  end
  local vok, verr = self:check_persistent()
  if not vok or self.key_error then
    verr = verr or self.key_error
    log.error("update to %s refused: %s", job.version, verr)
    self:status("failed: " .. verr)
    return nil, verr
  end
  local t0 = sched.now()
  local ok, err = hook(self, "before_download", job)
  local image
  if ok then
    image, err = self:prepare(job)
    ok = image ~= nil
  end
  if ok then ok, err = hook(self, "before_flash", job) end
  if ok then ok, err = self:install(job, image) end
  if ok then
    -- The image is installed and committed by now: a failing after_flash
    -- hook is worth a warning, not a "failed" that would misinform the cloud.
    local hok, herr = hook(self, "after_flash", job)
    if not hok then log.warn("%s", herr) end
  end
  os.remove(self.paths.download)
  os.remove(self.paths.signature)
  if not ok then
    log.error("update to %s failed: %s", job.version, err)
    self:status("failed: " .. err)
    return nil, err
  end
  job.seconds = sched.now() - t0
  log.info("%s installed and verified in %.2f s", job.version, job.seconds)
  self:status("done")
  if self.cloud then
    local rok, rerr = self.cloud:report_version(job.version)
    if not rok then log.warn("version not reported: %s", rerr) end
  end
  return true
end

--- Handles a FOTA command's value ("version,MD5,URL"). One update at a
-- time: a push during an update waits its turn (only the latest waits; an
-- older waiting one is dropped), never interleaved.
function Policy:push(value)
  local job, err = M.parse_command(value)
  if not job then
    log.warn("FOTA push refused: %s", err)
    self:status("failed: " .. err)
    return nil, err
  end
  if self.busy then
    if self.pending then log.info("dropping queued %s for %s", self.pending.version, job.version) end
    self.pending = job
    self:status(("queued: %s (an update is running)"):format(job.version))
    return true, "queued"
  end
  self.busy = true
  local ok, res, why = pcall(function()
    self.current = job -- how far it got (job.committed): contain() tells the truth
    local r, w = self:update(job)
    while self.pending do
      self.current, self.pending = self.pending, nil
      r, w = self:update(self.current)
    end
    return r, w
  end)
  if not ok then
    pass_interrupts(res)
    -- still busy: no push starts while the chip is put right
    local cok, cerr = pcall(self.contain, self, res)
    if not cok then self:contain_raised(res, cerr) end
  end
  self.current, self.final = nil, nil
  self.busy = false -- whatever contain() did: a policy left busy would queue every push for ever
  if not ok then error(res, 0) end
  return res, why
end

-- contain() raised too (a broken cloud client's emit, say): logged, and the
-- cloud is told the final status once more if it still can be; the policy
-- is freed all the same (push()). A SIGTERM meanwhile is passed on.
function Policy:contain_raised(err, cerr)
  if sys.interrupted() then self.busy = false error(cerr, 0) end
  log.error("putting the update's error right raised too: %s", tostring(cerr))
  local first = self.final or "failed: " .. tostring(err) -- what contain() meant to say, when it got so far
  local sok, serr = pcall(self.status, self, ("%s; putting it right raised too: %s"):format(first, tostring(cerr)))
  if not sok then log.error("the final status could not be given: %s", tostring(serr)) end
end

-- An error raised inside an update (an edited script's function, say,
-- mid-flash) is met as a power cut would be, but at once: a journal left
-- behind is finished by recover() now, not at the next start, so the chip
-- holds a complete image before the cloud hears "failed: <error>; <what
-- the recovery did>" and the version on the chip.
function Policy:contain(err)
  if self.pending then
    -- it was told "queued": it gets a final word too
    self:status(("failed: %s was not started: the update before it failed"):format(self.pending.version))
    self.pending = nil
  end
  local msg = tostring(err)
  local job = self.current
  if job and job.committed then
    -- installed and recorded before the raise: not "failed", and no
    -- journal of its own is left to recover
    log.error("after %s was installed: %s", job.version, msg)
    self.final = ("done: %s installed (then an error: %s)"):format(job.version, msg)
  else
    log.error("update failed: %s", msg)
    self.unsaved = nil
    self.final = "failed: " .. msg .. self:contain_recover()
  end
  self:status(self.final)
  local inst = self:installed()
  if self.cloud and inst then
    local rok, rerr = self.cloud:report_version(inst.version)
    if not rok then log.warn("version %s not reported: %s", inst.version, rerr) end
  end
end

-- The journal an error left behind finished now; "" or "; what was done".
function Policy:contain_recover()
  if not exists(self.paths.journal) then return "" end
  local rok, done = pcall(self.recover, self)
  self.recovered = nil -- said here; attach() is long past
  if rok then return "; " .. (done or "nothing left to recover"):gsub("^failed: ", "") end
  pass_interrupts(done)
  -- the same code would raise again now: a start runs recover() first
  local why = ("the recovery raised too: %s; the MCU may hold an incomplete image until the app's next start "
    .. "(or a reload) recovers it"):format(tostring(done))
  log.error("%s", why)
  return "; " .. why
end

---------------------------------------------------------------- recovery

-- The MCU is left alone when state_dir cannot record a recovery (a
-- read-only or broken disk): flashing then would be repeated at every
-- start, flash wear in a loop. Only the last-known-good image may go on,
-- and only when the chip does not hold it already (read back, no erase):
-- so at most once, whatever the number of starts.
function Policy:recover_unrecorded(why)
  local msg = "failed: recovery after an interruption cannot be recorded: " .. why
  local lkg = self:installed()
  local image = exists(self.paths.lkg) and ihex.load(self.paths.lkg)
  if not image then return msg .. "; the MCU was left as it is" end
  local held
  do
    local s <close> = self:open_isp()
    held = s and s:connect() and s:verify_flash(image)
  end
  local name = ("the last-known-good image (%s)"):format(lkg and lkg.version or "unknown version")
  if held then return msg .. "; the MCU holds " .. name end
  local ok, err = self:flash_image(image, "the last-known-good image")
  if not ok then return msg .. "; and flashing " .. name .. " failed: " .. err end
  return msg .. "; " .. name .. " flashed"
end

local function finish(self, msg)
  self.recovered = msg
  if msg:find("^failed: ") then log.error("%s", msg) else log.warn("%s", msg) end
  return msg
end

-- An unreadable journal: an update may have been cut short, so the
-- last-known-good image goes back on. The file is kept for a human.
-- Returns the status text.
local function recover_corrupt(self, bad)
  local aside = self.paths.journal .. ".corrupt"
  local why = ("journal.json cannot be read (%s); moved to journal.json.corrupt"):format(bad)
  log.error("%s: %s", self.paths.journal, why)
  if not os.rename(self.paths.journal, aside) then
    return self:recover_unrecorded(why .. " failed")
  end
  local ok, err = self:restore_lkg("unreadable journal")
  if ok then
    return ("recovered: %s; the last-known-good image (%s) restored")
      :format(why, tostring(err or "unknown version"))
  end
  return ("failed: recovery after an interruption: %s; %s"):format(why, err)
end

-- The journal's image flashed again, checked (unless it passed already)
-- and committed. It is where the journal says, or already renamed to
-- lkg.hex (a cut inside commit()). Returns the status text when it is on
-- and recorded; else nil and why it was rejected (nil: not tried, or the
-- flash failed).
local function reflash_journaled(self, j)
  local path
  if j.stage == "flashing" and j.sha256 then
    for _, p in ipairs({ j.image, self.paths.lkg }) do
      if p and exists(p) and digest.file(p, "sha256") == j.sha256 then path = p break end
    end
  end
  local image = path and ihex.load(path)
  if not image then return nil end
  local rejected
  local ok, err = self:flash_image(image, j.version .. " (again, after an interruption)")
  if ok and j.health ~= "passed" then
    -- Cut before (or during) its health check: it has not passed one.
    ok, err = self:health_check({ version = j.version, sha256 = j.sha256, md5 = j.md5, recovering = true })
    if not ok then
      rejected = err
      if path == self.paths.new then os.remove(self.paths.new) end
    end
  end
  if ok then
    ok, err = self:commit({ version = j.version, sha256 = j.sha256, got_md5 = j.md5, counter = j.counter,
      key_id = j.key_id })
    -- Unlike an update, a start does not wait for the disk: the
    -- last-known-good goes back on (it is what installed.json names),
    -- and the chip and the report agree again.
    if not ok then rejected = "state not saved: " .. err end
  end
  if ok then
    return ("recovered: %s flashed again after an interruption"):format(j.version)
  end
  log.error("re-flashing %s failed: %s", j.version, err)
  return nil, rejected
end

--- Finishes what a journal says was under way when the process died.
-- Call it first, before connecting to the cloud. Returns a short summary,
-- or nil when there was nothing to do.
function Policy:recover()
  local j, bad = read_state(self.paths.journal, "journal")
  if not j and not bad then return nil end
  local wok, werr = writable(self.dir)
  if not wok then
    return finish(self, self:recover_unrecorded(("state_dir %s is not writable: %s"):format(self.dir, werr)))
  end
  if bad then return finish(self, recover_corrupt(self, bad)) end
  log.warn("an update was interrupted (journal: %s %s); recovering", j.stage, tostring(j.version))
  local done, rejected = reflash_journaled(self, j)
  if done then return finish(self, done) end
  local ok, err = self:restore_lkg("interrupted update")
  if ok then
    local msg = ("recovered: the last-known-good image (%s) restored after an interruption")
      :format(tostring(err or "unknown version"))
    if rejected then msg = msg .. (" (%s rejected: %s)"):format(j.version, rejected) end
    return finish(self, msg)
  end
  if rejected then err = ("%s rejected: %s; %s"):format(j.version, rejected, err) end
  return finish(self, "failed: recovery after an interruption: " .. err)
end

return M
