-- The app (fotahost app, a process of its own) against a hostile or
-- careless command server (issue 11, items 1 and 2): a server that floods
-- commands without a pause, and a first command split by a pause in the
-- middle of the device key.
local h = require "helper"
local sys = require "fotahost.sys"
local http = require "fotahost.http"

local WAIT = h.wait_limit(60) -- seconds for anything to happen (CI is a loaded 2-core machine)

local until_true = h.until_true

local alive = h.alive

-- KiB values of /proc/PID/status (VmRSS, VmHWM...).
local function proc_status(pid)
  local t = {}
  for k, v in (h.read("/proc/" .. pid .. "/status") or ""):gmatch("(%w+):%s+(%d+) kB") do t[k] = tonumber(v) end
  return t
end

-- A device: a state and chip directory and a config for `api`.
local function new_device(id, key, api)
  local dir = h.tmpdir()
  assert(os.execute("mkdir " .. h.q(dir .. "/chip")))
  local t = { id = id, key = key, dir = dir, cfg = dir .. "/config.lua", log = dir .. "/app.log" }
  h.write(t.cfg, ([[
return {
  device_id = %q, device_key = %q,
  api = %q,
  board = "sim", sim_dir = %q, state_dir = %q,
  volatile_state_ok = true, -- scratch state in /tmp, a tmpfs on some machines
  heartbeat = 0.3, backoff_cap = 2,
  http = { retries = 0 },
}
]]):format(id, key, api, dir .. "/chip", dir .. "/state"))
  return t
end

-- Starts `fotahost app`; a watchdog shell holding our pipe
-- SIGKILLs it if this process dies, so it never outlives the specs.
local function start_app(t)
  local rfd, wfd = assert(sys.pipe())
  local pidf = t.dir .. "/app.pid"
  -- Under ASan (make check-asan sets ASAN_OPTIONS) freed memory waits in
  -- a 256 MiB quarantine before reuse: without it, RSS measures the app.
  local asan = os.getenv("ASAN_OPTIONS") and
    ("ASAN_OPTIONS=%s "):format(h.q(os.getenv("ASAN_OPTIONS") .. ":quarantine_size_mb=0")) or ""
  os.execute(("( env %sFOTAHOST_CONFIG=%s FOTAHOST_LOG=stderr %s %s </dev/null >>%s 2>&1 & app=$!; "
    .. "echo $app >%s.tmp && mv %s.tmp %s; "
    .. "(cat >/dev/null; kill -KILL $app 2>/dev/null) </proc/%d/fd/%d >/dev/null 2>&1 & "
    .. "wait $app ) >/dev/null 2>&1 &")
    :format(asan, h.q(t.cfg), h.q(h.bin), "app", h.q(t.log),
      h.q(pidf), h.q(pidf), h.q(pidf), sys.getpid(), rfd))
  t.pid = until_true("the app's pid", 10, function() return math.tointeger(tonumber(h.read(pidf) or "")) end)
  t.rfd, t.wfd = rfd, wfd
  return t
end

local function stop_app(t)
  if not t.pid then return end
  if alive(t.pid) then
    os.execute(("kill -TERM %d 2>/dev/null"):format(t.pid))
    local ok = pcall(until_true, "the app to stop", 5, function() return not alive(t.pid) end)
    if not ok then os.execute(("kill -KILL %d 2>/dev/null"):format(t.pid)) end
    pcall(until_true, "the app to be gone", 5, function() return not alive(t.pid) end)
  end
  sys.close(t.wfd)
  sys.close(t.rfd)
  t.pid = nil
  h.rmdir(t.dir)
end

describe("the app and a server that floods commands", function()
  it("keeps its heartbeats at their interval and its memory flat, and logs a burst in a few lines", function()
    local ID, KEY = "Flood1", "FloodKey-77x"
    local dir = h.tmpdir()
    local report = dir .. "/report"
    local srv = h.start_server({ "spec/support/mcs_flood_server.lua", "--device", ID .. ":" .. KEY,
      "--count", "24000", "--watch", "4", "--delay", "1", "--report", report })
    local t = new_device(ID, KEY, srv.url)
    local ok, err = pcall(function()
      start_app(t)
      until_true("the app's first heartbeat", WAIT, function() return (h.read(report) or ""):find("connected") end)
      local before = proc_status(t.pid).VmRSS
      local rep = until_true("the end of the flood", WAIT, function()
        local r = h.read(report) or ""
        return r:find("\nbeats [^\n]*\n") and r
      end)
      assert.is_true(alive(t.pid), "the app died; its log:\n" .. (h.read(t.log) or ""):sub(-2000))
      local peak = proc_status(t.pid).VmHWM
      local sent = tonumber(rep:match("\nsent (%d+)"))
      -- a flood worth the name: far more than the handlers can take
      assert.is_true(sent >= 20000, "only " .. sent .. " commands sent")
      -- heartbeats arrived all through the flood at about their interval
      -- (0.3 s; a gap of a few intervals is a loaded machine, none at all
      -- while the flood lasts is a reader that never yields)
      local beats = {}
      for v in rep:match("\nbeats ([^\n]*)"):gmatch("%S+") do beats[#beats + 1] = tonumber(v) end
      local during, last, widest = 0, nil, 0
      for _, b in ipairs(beats) do
        if b > 0 and b <= 4 then
          during = during + 1
          widest = math.max(widest, b - (last or 0))
        end
        if b <= 4 then last = b end
      end
      widest = math.max(widest, 4 - (last or 0))
      assert.is_true(during >= 5, ("%d heartbeats during a 4 s flood (every 0.3 s asked)"):format(during))
      assert.is_true(widest < 2,
        ("a %.2f s gap between heartbeats during the flood (every 0.3 s asked)"):format(widest))
      -- memory: the peak stays near where it started (it grew by gigabytes)
      assert.is_true(peak - before < 20 * 1024,
        ("RSS grew from %d KiB to a peak of %d KiB during the flood"):format(before, peak))
      -- the commands it had no use for (LED: the app has no handler) are
      -- summed up, not logged one by one
      local log = until_true("the burst's summary", WAIT, function()
        local l = h.read(t.log) or ""
        return l:find("more commands on channels without a handler ignored") and l
      end)
      -- (a burst ends after a quiet second, which a loaded machine can give
      -- the 4 s flood a few times: each burst shows 3, then its sum, which
      -- for the last burst may still be on its way)
      local SUM = "more commands on channels without a handler ignored"
      local bursts = {}
      for burst in (log .. SUM):gmatch("(.-)" .. SUM) do
        bursts[#bursts + 1] = select(2, burst:gsub("no handler for channel LED", ""))
      end
      assert.is_true(#bursts <= 6, #bursts - 1 .. " bursts in a 4 s flood")
      for i, n in ipairs(bursts) do
        assert.is_true(n <= 3, ("%d lines about LED commands in burst %d of %d"):format(n, i, #bursts))
      end
      -- and the app's FOTA handler keeps up (a push during an update only
      -- replaces the one waiting): a reader that yields between commands
      -- hands none of them to a full queue
      assert.is_nil(log:find("commands dropped", 1, true), log:match("[^\n]*commands dropped[^\n]*"))
    end)
    stop_app(t)
    srv.stop()
    h.rmdir(dir)
    assert(ok, err)
  end)
end)

describe("the app and a first command split by a pause inside the device key", function()
  it("logs no fragment of the key and tells the cloud the FOTA push failed", function()
    local ID, KEY = "dev1", "Kq7sSecretKey42X"
    local fwdir = h.tmpdir()
    local cloud = h.start_server({ "cloud", "serve", "--port", "0", "--tcp-port", "0",
      "--device", ID .. ":" .. KEY, "--firmware-dir", fwdir, "--watch-stdin" },
      { ready = "cloud http://(%S+):(%d+) tcp", timeout = 30 })
    local function admin(method, path, value)
      local v, err = http.json(method, cloud.url .. "/admin" .. path, value,
        { retries = 0, headers = assert(require("fotahost.mcs_cloud").admin_headers(cloud.url)) })
      assert(v, err)
      return v
    end
    local function statuses()
      local out = {}
      for i, p in ipairs(admin("GET", "/devices/" .. ID .. "/datapoints?channel=fota_status").datapoints) do
        out[i] = p.values.value
      end
      return out
    end
    local t = new_device(ID, KEY, cloud.url)
    local ok, err = pcall(function()
      start_app(t)
      until_true("the app to connect", WAIT, function() return admin("GET", "/devices/" .. ID).connected end)
      -- the push, cut after "dev1,Kq7sSe" for longer than the quiet gap
      -- that ends an unterminated command
      local push = ID .. "," .. KEY .. ",1700000000000,FOTA,2.0,null,http://127.0.0.1:1/fw.hex"
      admin("POST", "/devices/" .. ID .. "/commands", { raw = push, chunks = { #ID + 7 }, gap_ms = 600 })
      -- both halves are ignored (the first is too short to be a command,
      -- the second looks like one for a device "cretKey42X")
      local log = until_true("both halves ignored", WAIT, function()
        local l = h.read(t.log) or ""
        return select(2, l:gsub("ignored a", "")) >= 2 and l
      end)
      -- no piece of the key of 4 bytes or more in the log
      for i = 1, #KEY - 3 do
        local piece = KEY:sub(i, i + 3)
        assert.is_nil(log:find(piece, 1, true), ("%q (of the key) is in the log:\n%s"):format(piece, log))
      end
      -- what the log says instead: the length and what is wrong
      assert.matches("ignored a command of 11 bytes: not a command", log)
      -- and the cloud hears of the push that was lost, without the key either
      local got = until_true("a failed status", 20, function()
        for _, v in ipairs(statuses()) do
          if v:find("^failed: ") then return v end
        end
      end)
      assert.matches("^failed: a FOTA command of %d+ bytes could not be read", got)
      for i = 1, #KEY - 3 do assert.is_nil(got:find(KEY:sub(i, i + 3), 1, true), got) end
    end)
    stop_app(t)
    cloud.stop()
    h.rmdir(fwdir)
    assert(ok, err)
  end)
end)
