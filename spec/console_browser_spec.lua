-- The cloud's web console (issue 17) in a real browser: Debian's chromium,
-- headless, driven by tests/browser/run.js (playwright-core, from make
-- browser-deps), against a real `fotahost cloud serve`, the virtual board
-- (`fotahost board --sim`) and `fotahost app`. Each test runs one scenario
-- of tests/browser/scenarios and asserts every step of it held, then looks
-- at what the user cannot see in the page: the chip, the cloud.
--
-- Without node, chromium or playwright-core every test fails saying what
-- to install; none is skipped. Screenshots of failed steps are kept in
-- build/browser/shots. CONSOLE_SCREENSHOT=docs/console.png also writes
-- the README's picture of the console there.
local h = require "helper"
local browser = require "support.browser"
local ihex = require "fotahost.ihex"
local http = require "fotahost.http"
local digest = require "fotahost.digest"
local cjson = require "cjson"
local tcp = require "fotahost.tcp"

local WAIT = h.wait_limit(120) -- seconds for anything to happen (CI is a loaded 2-core machine)
local FLASH_SIZE = 32768
local ID, KEY = "console7688", "ConsoleKey7688duo"
local VERSION = "blink-1000"
local SHOTS = h.top .. "/build/browser/shots"

local function minisign(args)
  local out, code = h.sh("minisign " .. args)
  assert(code == 0, "minisign " .. args .. ": " .. out)
  return out
end

describe("the cloud's web console in chromium", function()
  local dir, cloud, board, app, token, fw
  local chip, cfg

  -- Runs scenario `name` to its end with the console's URL, the token and
  -- the device, plus `params`; asserts every step held.
  local function scenario(name, params)
    local p = { token = token, device = ID, timeout = WAIT }
    for k, v in pairs(params or {}) do p[k] = v end
    return browser.run(name, cloud.url, p, SHOTS, WAIT * 2)
  end

  local function admin(method, path, value) return h.cloud_admin(cloud.url, method, path, value) end

  setup(function()
    local missing = browser.missing()
    if missing then error("the browser tests cannot run: " .. missing, 0) end
    dir = h.tmpdir()
    chip, cfg = dir .. "/chip", dir .. "/config.lua"
    -- the firmware the browser uploads, signed as a user signs it
    minisign(("-G -W -p %s -s %s"):format(h.q(dir .. "/key.pub"), h.q(dir .. "/key.sec")))
    fw = { hex = dir .. "/" .. VERSION .. ".hex" }
    fw.sig = fw.hex .. ".minisig"
    h.write(fw.hex, h.read(h.firmware(VERSION .. ".hex")))
    minisign(("-S -s %s -m %s -x %s -t %s"):format(h.q(dir .. "/key.sec"), h.q(fw.hex), h.q(fw.sig),
      h.q(("fotahost version=%s part=m32u4 counter=1"):format(VERSION))))
    fw.key_id = h.read(dir .. "/key.pub"):match("minisign public key (%x+)")
    fw.size = #h.read(fw.hex)
    fw.md5 = assert(digest.file(fw.hex, "md5"))
    -- the board runs the tutorial's sketch until the push
    assert(os.execute("mkdir " .. h.q(chip)))
    local r = h.run({ "flash", "-q", "-c", "sim", "-P", chip, "-p", "m32u4", "-U",
      "flash:w:" .. h.firmware("serial-led.hex") })
    assert(r.status == 0, r.err)
    cloud = h.start_cloud(dir .. "/cloud-firmware", 0, { "--device", ID .. ":" .. KEY })
    token = assert(require("fotahost.mcs_cloud").read_token(cloud.url))
    -- ready once Serial1 is there (start_server's "host" and "port": the
    -- tty's path and its pseudo-terminal's number)
    board = h.start_server({ "board", "--sim", chip }, { ready = "Serial1 on (%S+) %(/dev/pts/(%d+)%)", timeout = 30 })
    h.write(cfg, ([[
return {
  device_id = %q, device_key = %q, api = %q,
  board = "sim", sim_dir = %q, state_dir = %q, volatile_state_ok = true,
  heartbeat = 2, backoff_cap = 2, status_channel = "fota_status",
  trusted_keys = %q,
}
]]):format(ID, KEY, cloud.url, chip, dir .. "/state", dir .. "/key.pub"))
  end)

  teardown(function()
    if app then h.stop_app(app) end
    if board then board.stop() end
    if cloud then cloud.stop() end
    if dir then h.rmdir(dir) end
  end)

  it("asks for the admin token: a wrong one is refused, the right one shows the devices", function()
    local r = scenario("login")
    -- the form shows what the cloud says to that token
    local res = assert(http.request({ url = cloud.url .. "/admin/devices",
      headers = { Authorization = "Bearer " .. ("0"):rep(#token) } }))
    assert.are.equal(401, res.status)
    local shown = r.steps["a wrong token is refused with the server's message"].detail
    assert.are.equal(cjson.decode(res.body).message, shown)
  end)

  it("shows the device go green, live, when the app starts", function()
    local run = browser.start("online", cloud.url, { token = token, device = ID, timeout = WAIT }, SHOTS)
    local ok, err = pcall(function()
      run:wait_signal("page open", WAIT)
      app = h.start_app(dir, cfg, "")
    end)
    local r = run:finish(WAIT * 2)
    assert(ok, err)
    assert(r.ok, r.report)
    assert.is_true(admin("GET", "/devices/" .. ID).connected)
  end)

  it("uploads a .hex and its .minisig from the browser: size, MD5, signed, key id", function()
    scenario("upload", { version = VERSION, hex = fw.hex, sig = fw.sig, size = fw.size, md5 = fw.md5,
      key_id = fw.key_id })
    -- what the cloud holds is what was picked in the browser
    local found
    for _, f in ipairs(admin("GET", "/firmwares").firmwares) do
      if f.version == VERSION then found = f end
    end
    assert.is_table(found, "the cloud has no firmware " .. VERSION)
    assert.are.equal(fw.md5, found.md5)
    assert.is_true(found.signed)
    assert.are.equal(fw.key_id:upper(), tostring(found.key_id):upper())
  end)

  it("pushes from the keyboard: the statuses arrive live, the version changes, the chip holds the image", function()
    local r = scenario("push", { version = VERSION })
    local feed = {}
    local live = r.steps["downloading, verifying, flashing, done arrive live, in order, in the feed and the status "
      .. "cell"]
    for _, l in ipairs(live.detail.feed) do
      feed[#feed + 1] = l.value
    end
    assert.are.same({ "downloading", "verifying", "flashing", "done" }, feed)
    h.assert_flash_holds(chip, assert(ihex.load(fw.hex)):bytes(0, FLASH_SIZE - 1), VERSION)
    assert.are.equal(VERSION, admin("GET", "/devices/" .. ID).version)
    -- the virtual board restarted on the new image
    h.until_true("the virtual board to restart from the new flash", WAIT, function()
      return (h.read(board.dir .. "/out") or ""):find("MCU restarted from new flash", 1, true)
    end)
  end)

  it("takes the README's picture after the push: 1280x800, a small PNG", function()
    local out = dir .. "/console.png"
    local r = scenario("screenshot", { version = VERSION, out = out, max_bytes = 100 * 1024 })
    local png = assert(h.read(out))
    assert.are.equal("\137PNG", png:sub(1, 4))
    assert.is_true(#png <= 100 * 1024, #png .. " bytes")
    local want = os.getenv("CONSOLE_SCREENSHOT")
    if want and want ~= "" then
      local path = want:sub(1, 1) == "/" and want or h.top .. "/" .. want
      h.write(path, png)
      print(("console screenshot: %s (%d bytes)"):format(path, r.steps["a PNG of 1280x800, small enough"].detail.bytes))
    end
  end)

  it("shows what a device sends as text: <script>, \"onerror=\" and <img onerror> run nothing", function()
    local payloads = { "<script>window.__xss=1</script>", '"onerror="window.__xss=2',
      "<img src=x onerror=window.__xss=3>" }
    local run = browser.start("xss", cloud.url, { token = token, device = ID, payloads = payloads }, SHOTS)
    local ok, err = pcall(function()
      run:wait_signal("page open", WAIT)
      -- sent as the device sends them: the REST data-point API, with its key
      for i, p in ipairs(payloads) do
        local res = assert(http.request({ method = "POST", url = cloud.url .. "/mcs/v2/devices/" .. ID .. "/datapoints",
          headers = { deviceKey = KEY, ["Content-Type"] = "application/json" },
          body = cjson.encode({ datapoints = { { dataChnId = "fota_status", values = { value = p } },
            { dataChnId = "xss" .. i, values = { value = p } } } }) }))
        assert(res.status == 200, res.status .. ": " .. res.body)
      end
    end)
    local r = run:finish(WAIT * 2)
    assert(ok, err)
    assert(r.ok, r.report)
    -- the cloud keeps them as sent: the page had the raw markup to show
    local points = admin("GET", "/devices/" .. ID .. "/datapoints?channel=fota_status").datapoints
    local last = {}
    for i = #points - #payloads + 1, #points do last[#last + 1] = points[i].values.value end
    assert.are.same(payloads, last)
  end)

  it("refuses another origin, a request without the token, and another host name", function()
    scenario("refused", { port = cloud.port })
  end)

  it("fits a phone's 390 px: no horizontal scroll", function()
    scenario("phone")
  end)

  it("keeps the user logged in when the cloud answers 503, 500 or nothing for a while", function()
    scenario("outage")
  end)

  it("shows a status the device sent while the console was logging in", function()
    scenario("late", { key = KEY })
    -- what the row shows is what the cloud holds
    local points = admin("GET", "/devices/" .. ID .. "/datapoints?channel=fota_status").datapoints
    assert.matches("^standby%-", points[#points].values.value)
  end)

  it("keeps the activity feed readable through a flood of heartbeats", function()
    local id, key, beats = "flood1", "FloodKey1234", 900
    admin("POST", "/devices", { id = id, key = key })
    local function point(value)
      local res = assert(http.request({ method = "POST", url = cloud.url .. "/mcs/v2/devices/" .. id .. "/datapoints",
        headers = { deviceKey = key, ["Content-Type"] = "application/json" },
        body = cjson.encode({ datapoints = { { dataChnId = "flood", values = { value = value } } } }) }))
      assert(res.status == 200, res.status .. ": " .. res.body)
    end
    point("before")
    local run = browser.start("flood", cloud.url, { token = token, device = id, first = "flood before",
      last = "flood after", timeout = WAIT }, SHOTS)
    local ok, err = pcall(function()
      run:wait_signal("page open", WAIT)
      -- the heartbeats as a device sends them, on the TCP command channel
      local port = math.tointeger(tonumber(cloud.out:match(" tcp [%d.]+:(%d+)")))
      local sock <close> = assert(tcp.connect("127.0.0.1", port, 5))
      local lines = {}
      for i = 1, beats do lines[i] = ("%s,%s,%d\n"):format(id, key, i) end
      assert(sock:write(table.concat(lines), 10))
      h.until_true("the cloud to count the heartbeats", WAIT, function()
        return admin("GET", "/devices/" .. id).heartbeats.count >= beats
      end)
      point("after")
    end)
    local r = run:finish(WAIT * 2)
    assert(ok, err)
    assert(r.ok, r.report)
  end)
end)
