-- vendor/build-deps as a packager meets it: a tarball whose SHA-256 is not
-- the recipe's is refused before anything is extracted or built; a good
-- one is built once, and a second run builds nothing. The "mirror" is a
-- directory of ours (curl reads file:// URLs), the recipe a one-line build.
local h = require "helper"

describe("vendor/build-deps", function()
  local dir, tarball, sha

  local function recipe(sum)
    h.write(dir .. "/vendor/demo.recipe", table.concat({
      "name     = demo", "version  = 1.0", "debian   = pool/demo_1.0.orig.tar.gz",
      "sha256   = " .. sum, "build:", 'echo built > "$SYSROOT/demo.txt"', "" }, "\n"))
  end

  local function build_deps(extra)
    local env = { VENDOR_DIR = dir .. "/vendor", BOARD_BUILD_DIR = dir .. "/board", RECIPES = "demo",
                  DEBIAN_MIRROR = "file://" .. dir .. "/mirror" }
    for k, v in pairs(extra or {}) do env[k] = v end
    local parts = {}
    for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. h.q(v) end
    local _, _, code = os.execute(("env %s sh %s/vendor/build-deps x86_64 > %s/out 2> %s/err"):format(
      table.concat(parts, " "), h.q(h.top), h.q(dir), h.q(dir)))
    return { status = code, out = h.read(dir .. "/out"), err = h.read(dir .. "/err") }
  end

  before_each(function()
    dir = h.tmpdir()
    os.execute(("mkdir -p %s/vendor %s/mirror/pool %s/src/demo-1.0"):format(h.q(dir), h.q(dir), h.q(dir)))
    h.write(dir .. "/src/demo-1.0/README", "a demo source\n")
    tarball = dir .. "/mirror/pool/demo_1.0.orig.tar.gz"
    os.execute(("tar -czf %s -C %s/src demo-1.0"):format(h.q(tarball), h.q(dir)))
    sha = io.popen("sha256sum " .. h.q(tarball)):read("l"):match("^%x+")
  end)

  after_each(function() h.rmdir(dir) end)

  it("refuses a tarball whose SHA-256 is not the recipe's, building nothing", function()
    local wrong = ("0"):rep(64)
    recipe(wrong)
    local r = build_deps()
    assert.are_not.equal(0, r.status)
    assert.matches("demo_1%.0%.orig%.tar%.gz: SHA%-256 is " .. sha .. ", the recipe says " .. wrong, r.err)
    assert.is_nil(h.read(dir .. "/board/x86_64/sysroot/demo.txt"))
    assert.is_nil(h.read(dir .. "/board/x86_64/stamps/demo"))
    assert.is_nil(h.read(dir .. "/board/x86_64/src/demo/README"))
  end)

  it("builds a checked tarball once; a second run builds nothing", function()
    recipe(sha)
    local r = build_deps()
    assert.are.equal(0, r.status, r.err)
    assert.matches("building demo 1%.0", r.out)
    assert.are.equal("built\n", h.read(dir .. "/board/x86_64/sysroot/demo.txt"))
    assert.matches("\noverride BUILD +:= [^\n]*/board/x86_64/obj\n", h.read(dir .. "/board/x86_64/config.mk"))
    os.remove(dir .. "/board/x86_64/sysroot/demo.txt")
    r = build_deps()
    assert.are.equal(0, r.status, r.err)
    assert.is_nil(r.out:match("building"))
    assert.is_nil(h.read(dir .. "/board/x86_64/sysroot/demo.txt"))
  end)

  -- As the OpenWrt feed package runs it: the SDK's compiler and flags, the
  -- tarballs where the SDK downloaded them; no clang wrapper of ours.
  it("builds with an external toolchain, writing a config.mk that uses it", function()
    recipe(sha)
    os.execute(("mkdir -p %s/sdk-dl && mv %s %s/sdk-dl/"):format(h.q(dir), h.q(tarball), h.q(dir)))
    local r = build_deps({ BOARD_CC = "cc", BOARD_TRIPLE = "x86_64-linux-gnu", BOARD_CFLAGS = "-Os -pipe",
      BOARD_CPPFLAGS = "-I/sdk/usr/include", BOARD_LDFLAGS = "-L/sdk/usr/lib", BOARD_DL_DIR = dir .. "/sdk-dl",
      PKG_CONFIG = "/sdk/bin/pkg-config" })
    assert.are.equal(0, r.status, r.err)
    assert.are.equal("built\n", h.read(dir .. "/board/x86_64/sysroot/demo.txt"))
    local mk = h.read(dir .. "/board/x86_64/config.mk")
    assert.matches("\noverride CC +:= cc\n", mk)
    assert.matches("\noverride PKG_CONFIG +:= /sdk/bin/pkg%-config\n", mk)
    assert.matches("\noverride CFLAGS +:= %-Os %-pipe %-I/sdk/usr/include\n", mk)
    assert.matches("\noverride LDFLAGS +:= %-L/sdk/usr/lib\n", mk)
    assert.matches("\noverride GPIOD_LIBS +:= [^\n]*/x86_64/sysroot/usr/lib/libgpiod%.a\n", mk)
    assert.is_nil(h.read(dir .. "/board/x86_64/bin/cc"))
  end)
end)
