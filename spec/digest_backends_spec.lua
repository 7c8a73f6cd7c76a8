-- fotahost.digest on the board's library: built on mbedTLS (make
-- digest-mbedtls, the library OpenWrt's libcurl is built on), it passes the
-- same digest specs as the default build on libcrypto, found first through
-- FOTAHOST_PLUGINS_DIR, and maps no libcrypto.
local h = require "helper"

-- Under make board-test the board's own plugin is the mbedTLS build: the
-- same checks run on it as it is installed, nothing built or overridden.
local board = os.getenv("FOTAHOST_BOARD_ROOT") ~= nil

describe("fotahost.digest on mbedTLS", function()
  local build = h.bin:match("^(.*)/[^/]+$")
  local plugins = board and os.getenv("FOTAHOST_PLUGINS_DIR") or build .. "/digest-mbedtls/plugins"
  local env = { FOTAHOST_PLUGINS_DIR = plugins }

  lazy_setup(function()
    if board then return end
    local dir = h.tmpdir()
    local cmd = ("cd %s && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s BUILD=%s digest-mbedtls > %s 2>&1")
      :format(h.q(h.top), h.q(build), h.q(dir .. "/make.log"))
    local ok = os.execute(cmd)
    local log = h.read(dir .. "/make.log")
    h.rmdir(dir)
    assert(ok, log)
  end)

  it("says so, with its version", function()
    local r = h.run({ "-e", "print(require 'fotahost.digest'.backend)" }, { env = env })
    assert.matches("^mbedtls %d+%.%d+%.%d+\n$", r.out)
  end)

  it("passes spec/digest_spec.lua, every test of it", function()
    local src = h.read(h.top .. "/spec/digest_spec.lua")
    local tests = select(2, src:gsub("\n%s*it%(", ""))
    -- TAP: a failure's report then holds no line shaped like busted's
    -- summary, which tests/run would take for this run's
    local r = h.run({ "/usr/bin/busted", "--output=TAP", "spec/digest_spec.lua" }, {
      cwd = h.top,
      env = { FOTAHOST_PLUGINS_DIR = plugins, FOTAHOST_SPEC_DIGEST_BACKEND = "mbedtls" },
    })
    local ok = select(2, ("\n" .. r.out):gsub("\nok %d+ ", ""))
    local plan = tonumber(r.out:match("\n1%.%.(%d+)\n$"))
    assert.are.same({ tests, tests, 0 }, { plan, ok, r.status }, r.out .. r.err)
  end)

  it("maps libmbedcrypto and no libcrypto: the board has none", function()
    local r = h.run({ "-e", "require 'fotahost.digest' local f = io.open('/proc/self/maps') " ..
      "local m = f:read('a') f:close() print(m:find('libmbedcrypto', 1, true) ~= nil, m:find('libcrypto', 1, true))" },
      { env = env })
    assert.are.equal("true\tnil\n", r.out)
  end)
end)
