-- A fleet over MQTT (issue 16, Scale): `fotahost cloud fleet-sim` runs
-- simulated devices in one process against a real mosquitto and the local
-- cloud; a FOTA published on each device's topic is installed by the real
-- update policy on the record board, and the statuses are read from the
-- broker with mosquitto_sub. And the record board alone: it records what
-- a chip would hold, so a policy that skipped a step fails its verify.
local h = require "helper"
local ihex = require "fotahost.ihex"
local parts = require "fotahost.avr.parts"
local mosquitto = require "support.mosquitto"

local N = 20
local WAIT = h.wait_limit(60)
local FLASH_SIZE = 32768

describe("fotahost cloud fleet-sim", function()
  local dir, broker, cloud, fleet, watcher

  setup(function()
    dir = h.tmpdir()
    os.execute("mkdir " .. h.q(dir .. "/fw"))
    broker = mosquitto.start{ config = { "max_queued_messages 1000" } }
    cloud = h.start_cloud(dir .. "/fw")
    h.cloud_admin(cloud.url, "POST", "/firmwares",
      { version = "blink-1000", name = "blink-1000.hex", content = h.read(h.firmware("blink-1000.hex")) })
  end)
  teardown(function()
    if watcher then os.execute("kill " .. watcher .. " 2>/dev/null") end
    if fleet then fleet.stop() end
    if cloud then cloud.stop() end
    if broker then broker.stop() end
    h.rmdir(dir)
  end)

  -- The final status (done / failed: ...) of each device in mosquitto_sub's output.
  local function finals(file)
    local t, n = {}, 0
    for id, v in (h.read(file) or ""):gmatch("mcs/([^/]+)/[^/]+/fota_status [^,]*,fota_status,([^\n]*)") do
      if (v == "done" or v:find("^failed: ")) and not t[id] then t[id], n = v, n + 1 end
    end
    return t, n
  end

  it("installs a firmware published to each device, on its record board, and sums up at SIGTERM", function()
    -- (the ready pattern's two captures: any text, then the count)
    fleet = h.start_server({ "cloud", "fleet-sim", tostring(N), "--broker", broker.url, "--api", cloud.url,
      "--register", "--dir", dir .. "/fleet", "--prefix", "fs" },
      { ready = "(fleet): (%d+) devices connected in %S+ s\n", timeout = WAIT })
    assert.are.equal(N, fleet.port)
    local file = dir .. "/statuses"
    watcher = broker.sub({ "-t", "mcs/+/+/fota_status", "-v", "-q", "1", "-i", "fleet-watch" }, file)

    local fw = h.cloud_admin(cloud.url, "GET", "/firmwares").firmwares[1]
    for i = 1, N do
      local id = ("fs%04d"):format(i)
      broker.pub{ "-t", ("mcs/%s/%s-key/FOTA"):format(id, id), "-q", "1",
        "-m", ("%d,FOTA,%s,%s,%s"):format(os.time() * 1000, fw.version, fw.md5, fw.url) }
    end
    h.until_true(N .. " final statuses", WAIT, function() return select(2, finals(file)) >= N end)
    local want = {}
    for i = 1, N do want[("fs%04d"):format(i)] = "done" end
    assert.are.same(want, (finals(file)))

    local image = assert(ihex.load(h.firmware("blink-1000.hex"))):bytes(0, FLASH_SIZE - 1)
    for i = 1, N do
      local chip = ("%s/fleet/fs%04d/chip"):format(dir, i)
      h.assert_flash_holds(chip, image, "blink-1000")
      assert.are.equal(1, select(2, h.read(chip .. "/erases.log"):gsub("chip erase\n", "")))
    end
    -- the version report went to the cloud over REST
    h.until_true("the version reports", WAIT, function()
      return h.cloud_admin(cloud.url, "GET", ("/devices/fs%04d"):format(N)).version == "blink-1000"
    end)

    os.execute("kill -TERM " .. fleet.pid)
    -- (the stand-in's erase is recorded with the time, as the simulated chip's)
    assert.matches("^%d+%.%d%d%d chip erase\n$", h.read(dir .. "/fleet/fs0001/chip/erases.log"))
    h.until_true("the summary", WAIT, function()
      return (h.read(fleet.dir .. "/out") or ""):find(
        ("\nfleet: %d devices, %d connected, %d updates done, 0 failed, up "):format(N, N, N), 1, true)
    end)
  end)

  it("says what is missing or wrong on its command line", function()
    local r = h.run({ "cloud", "fleet-sim", "--broker", "mqtt://127.0.0.1:1", "--api", "http://127.0.0.1:1" })
    assert.are.equal(2, r.status)
    assert.matches("fleet%-sim needs N, a number of devices >= 1", r.err)
    r = h.run({ "cloud", "fleet-sim", "3", "--api", "http://127.0.0.1:1" })
    assert.are.equal(2, r.status)
    assert.matches("fleet%-sim needs %-%-broker", r.err)
    r = h.run({ "cloud", "serve", "--max-connections", "0" })
    assert.are.equal(2, r.status)
    assert.matches("%-%-max%-connections 0: an integer >= 1 expected", r.err)
  end)
end)

describe("the record board", function()
  local record = require "fotahost.recordboard"
  local part = assert(parts.get("m32u4"))
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  local function image(byte)
    return ihex.from_binary(("\0"):rep(4) .. string.char(byte) .. ("\0"):rep(123), 0)
  end

  it("holds what was written after an erase, and verifies it by reading flash.bin back", function()
    local s = record.open(dir, part)
    assert.are.same(part.signature, s:connect())
    assert.is_true(s:erase())
    assert.are.equal(1, s:write_flash(image(0x5A)))
    assert.is_true(s:verify_flash(image(0x5A)))
    local flash = h.read(dir .. "/flash.bin")
    assert.are.equal(FLASH_SIZE, #flash)
    assert.are.equal("\x5A\xFF", flash:sub(5, 5) .. flash:sub(129, 129))
  end)

  it("fails the verify of an image written over an unerased page, as a chip would", function()
    local s = record.open(dir, part)
    s:connect()
    s:erase()
    s:write_flash(image(0x0F))
    s:write_flash(image(0xF0)) -- no erase between: 0x0F AND 0xF0
    assert.are.same({ nil, "verification error at 0x0004: file 0xF0, MCU 0x00" }, { s:verify_flash(image(0xF0)) })
  end)

  it("refuses to erase, write or verify before connect", function()
    local s = record.open(dir, part)
    assert.are.same({ nil, "not connected" }, { s:erase() })
    assert.is_nil(h.read(dir .. "/flash.bin"))
  end)
end)
