-- The update policy in-process, for the cases an end-to-end run cannot
-- reach easily: a rejected image with nothing to roll back to, and what the
-- next start does then.
local h = require "helper"
local sched = require "fotahost.sched"
local fota = require "fotahost.fota"
local config = require "fotahost.fota.config"

describe("fotahost.fota policy", function()
  local dir, srv
  setup(function()
    dir = h.tmpdir()
    os.execute("mkdir " .. h.q(dir .. "/www"))
    assert(os.execute("cp " .. h.q(h.firmware("blink-250.hex")) .. " " .. h.q(dir .. "/www/v2.hex")))
    srv = h.start_server({ "spec/support/http_test_server.lua", "--root", dir .. "/www" })
  end)
  teardown(function()
    if srv then srv.stop() end
    h.rmdir(dir)
  end)

  local function policy(name, extra)
    local t = { device_id = "Dev1", device_key = "Key12345", board = "sim",
                sim_dir = dir .. "/" .. name .. "-sim", state_dir = dir .. "/" .. name .. "-state",
                http = { retries = 0 } }
    for k, v in pairs(extra or {}) do t[k] = v end
    os.execute("mkdir -p " .. h.q(t.sim_dir))
    local cfg = assert(config.check(t))
    local p = fota.new(cfg)
    local said = {}
    p.on_status = function(s) said[#said + 1] = s end
    return p, said, cfg
  end

  it("never installs an image the health check rejected, even with nothing to roll back to", function()
    local p, said = policy("hc", { health_check = function() return nil, "the sketch is silent" end })
    local ok, err = sched.run(function()
      return p:update(assert(fota.parse_command("v2,null," .. srv.url .. "/files/v2.hex")))
    end)
    assert.is_nil(ok)
    assert.matches("^health check: the sketch is silent; and the rollback failed: no last%-known%-good image", err)
    assert.matches("^failed: health check", said[#said])
    assert.is_nil(p:installed())
    assert.is_nil(h.read(dir .. "/hc-state/journal.json"))
    assert.is_nil(h.read(dir .. "/hc-state/new.hex"))
    -- the next start has nothing to finish, and does not adopt the image
    local p2 = policy("hc")
    assert.is_nil(sched.run(function() return p2:recover() end))
    assert.is_nil(p2:installed())
  end)

  it("still reports done when after_flash fails once the image is committed", function()
    local p, said = policy("af", { after_flash = function() error("notify failed") end })
    local ok = sched.run(function()
      return p:update(assert(fota.parse_command("v2,null," .. srv.url .. "/files/v2.hex")))
    end)
    assert.is_true(ok)
    assert.are.equal("done", said[#said])
    assert.are.equal("v2", p:installed().version)
  end)

  it("folds insecure into the HTTP options every connection uses", function()
    local _, _, cfg = policy("tls", { insecure = true })
    assert.is_true(cfg.http.insecure)
    assert.are.equal(0, cfg.http.retries)
  end)
end)
