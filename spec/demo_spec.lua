-- `fotahost demo` (the README's main job, `make demo`): the whole tutorial
-- on the virtual board and a local cloud, run as a user runs it, with what
-- it prints checked and nothing left behind.
local h = require "helper"

describe("fotahost demo", function()
  local function lines_of(s)
    local t = {}
    for l in (s or ""):gmatch("[^\n]+") do t[#t + 1] = l end
    return t
  end

  -- The processes whose command line or environment names `work`: this
  -- demo's own (each process it starts is given a path in its work
  -- directory: an argument, or FOTAHOST_CONFIG for the app), never those of
  -- another demo running on the machine at the same time.
  local function processes_naming(work)
    local found = {}
    local p = io.popen("ls /proc")
    local list = p:read("a")
    p:close()
    for pid in list:gmatch("%d+") do
      local cmdline = h.read("/proc/" .. pid .. "/cmdline") or ""
      local environ = h.read("/proc/" .. pid .. "/environ") or ""
      if cmdline:find(work, 1, true) or environ:find(work, 1, true) then
        found[#found + 1] = pid .. ": " .. cmdline:gsub("%z", " ")
      end
    end
    return found
  end

  it("runs the tutorial end to end: blink test, two pushes, D13 at 1 s then 0.25 s", function()
    local r = h.run({ "demo" })
    assert.are.equal(0, r.status, r.out .. r.err)
    local lines = lines_of(r.out)
    local work = lines[1]:match("^fotahost demo: the tutorial on the virtual board and a local cloud "
      .. "%(work directory (/tmp/fotahost%-demo%-%w+)%)$")
    assert.is_truthy(work, lines[1])

    local steps = {}
    for _, l in ipairs(lines) do
      local tag, name = l:match("^(%u+) +([^:|]+):")
      if tag then steps[#steps + 1] = tag .. " " .. name end
    end
    assert.are.same({ "OK firmware", "OK sign", "OK cloud", "OK flash serial-led", "OK virtual board", "OK blink test",
      "OK app", "OK push blink-1000", "OK D13 blink-1000", "OK push blink-250", "OK D13 blink-250",
      "OK cloud status" }, steps)

    local out = r.out
    -- signed as the README shows, and only signed firmware trusted
    assert.matches("OK   sign: minisign made key %x+ and signed blink%-1000 %(counter 1%) and blink%-250 "
      .. "%(counter 2%) in [%d.]+ s\n", out)
    assert.matches("OK   blink test: fotahost blink sent 1,0,1,0 in [%d.]+ s; "
      .. "D13 went on, off, on, off, 0%.3%d s apart", out)
    assert.matches("OK   push blink%-1000: status downloading > verifying > flashing > done in [%d.]+ s; "
      .. "the app reported version blink%-1000\n", out)
    assert.matches("OK   D13 blink%-1000: half%-period 1%.000 s over %d+ intervals "
      .. "%(expected 1%.000 s; simulated time%)", out)
    assert.matches("OK   push blink%-250: status downloading > verifying > flashing > done in [%d.]+ s; "
      .. "the app reported version blink%-250\n", out)
    assert.matches("OK   D13 blink%-250: half%-period 0%.250 s over %d+ intervals "
      .. "%(expected 0%.250 s; simulated time%)", out)
    -- `fotahost cloud status`, shown as it printed it
    assert.matches("\n       | demo7688  yes  +127%.0%.0%.1:%d+ .* blink%-250  fota_status=done\n", out)
    assert.matches("OK   cloud status: device demo7688 runs version blink%-250; 8 status points: downloading, "
      .. "verifying, flashing, done, downloading, verifying, flashing, done\n", out)
    assert.matches("\ndemo: all 12 steps held in [%d.]+ s; every process stopped\n$", out)
    -- where the web console is, and where to find what logs in to it (never the token itself)
    local token_file = out:match("\n     console http://127%.0%.0%.1:%d+/ %(log in with the admin token in (%S+)%)\n")
    assert.is_truthy(token_file, out)

    -- the device key is not shown, the work directory is gone, and so is
    -- every process it started (their command lines name the directory)
    assert.is_nil(out:find("DemoKey7688duo", 1, true))
    assert.is_false(os.execute("test -e " .. h.q(work)) == true, work .. " is still there")
    assert.are.same({}, processes_naming(work))
  end)

  it("--stay keeps the cloud, the board and the app running for the console until Ctrl-C", function()
    local demo = h.start_server({ "demo", "--stay" },
      { ready = "the console is at http://([%d.]+):(%d+)/ %(Ctrl%-C stops them%)\n", timeout = h.wait_limit(120) })
    local work = demo.out:match("%(work directory (/tmp/fotahost%-demo%-%w+)%)")
    local ok, err = pcall(function()
      assert.is_truthy(work, demo.out)
      local page = h.sh("curl -sS " .. h.q(demo.url .. "/"))
      assert.matches("<title>", page)
      assert.is_true(#processes_naming(work) >= 3, table.concat(processes_naming(work), "\n"))
      os.execute("kill -INT " .. demo.pid)
      h.until_true("the demo to stop", h.wait_limit(20), function()
        return (h.read(demo.dir .. "/out") or ""):find("demo: stopped; every process stopped\n", 1, true)
      end)
      assert.are.same({}, processes_naming(work))
    end)
    demo.stop()
    assert(ok, err)
  end)

  it("has --help, and refuses unknown arguments", function()
    local r = h.run({ "demo", "--help" })
    assert.are.equal(0, r.status)
    assert.matches("^usage: fotahost demo %[%-%-keep%] %[%-%-stay%]\n", r.out)
    r = h.run({ "demo", "--nope" })
    assert.are.equal(2, r.status)
    assert.matches("fotahost demo: unknown argument '%-%-nope'", r.err)
  end)
end)
