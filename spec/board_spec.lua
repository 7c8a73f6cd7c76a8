-- The board build's ABI (make board-test gives FOTAHOST_BOARD_ROOT, the
-- tree make board laid out): every ELF in it is built for the board's CPU
-- and C library, every library one needs is in the tree, and the
-- emulator it is tested under refuses what the board's CPU refuses.
local h = require "helper"

local root = os.getenv("FOTAHOST_BOARD_ROOT")
local arch = os.getenv("FOTAHOST_BOARD_ARCH") or "mipsel_24kc"

-- What readelf must say of each ELF, per board architecture.
local ABI = {
  mipsel_24kc = {
    class = "ELF32", machine = "MIPS R3000", loader = "/lib/ld-musl-mipsel-sf.so.1",
    flags = { "mips32r2", "o32" }, attributes = { "ISA: MIPS32r2", "FP ABI: Soft float" },
    qemu = "qemu-mipsel -cpu 24KEc",
  },
  x86_64 = {
    class = "ELF64", machine = "Advanced Micro Devices X86-64",
    loader = "/lib/ld-musl-x86_64.so.1", flags = {}, attributes = {}, qemu = "qemu-x86_64",
  },
}

local sh = h.sh

local function elves()
  local list = {}
  for path in sh(("find %s -type f | sort"):format(h.q(root))):gmatch("[^\n]+") do
    local f = io.open(path, "rb")
    if f and f:read(4) == "\127ELF" then list[#list + 1] = path end
    if f then f:close() end
  end
  return list
end

local function needed(path)
  local libs = {}
  for lib in sh("readelf -d " .. h.q(path)):gmatch("Shared library: %[([^%]]+)%]") do
    libs[#libs + 1] = lib
  end
  return libs
end

if not root then
  describe("the board build", function()
    pending("runs under make board-test, against the tree make board lays out")
  end)
  return
end

describe("the board build (" .. arch .. ")", function()
  local abi = assert(ABI[arch], "no ABI expectations for " .. arch)
  local exe = root .. "/usr/bin/fotahost"

  it("is a dynamically linked executable loading through musl's loader", function()
    local header = sh("readelf -h -l " .. h.q(exe))
    assert.matches("Class:%s+" .. abi.class, header)
    assert.matches("little endian", header)
    assert.matches("Machine:%s+" .. h.literal(abi.machine), header)
    assert.matches("Requesting program interpreter: " .. h.literal(abi.loader), header)
    assert.matches("Type:%s+DYN %(Position%-Independent Executable file%)", header)
    assert.same({ "libc.so" }, needed(exe))
    for _, flag in ipairs(abi.flags) do assert.matches(flag, header:match("Flags:[^\n]*")) end
  end)

  it("holds only ELF files of the board's ABI, each finding its libraries in the tree", function()
    local list = elves()
    assert.is_true(#list >= 8, "too few ELF files in " .. root .. ": " .. #list)
    for _, path in ipairs(list) do
      local info = sh("readelf -h -A " .. h.q(path))
      assert.matches("Class:%s+" .. abi.class, info, path)
      assert.matches("Machine:%s+" .. h.literal(abi.machine), info, path)
      for _, a in ipairs(abi.attributes) do assert.matches(h.literal(a), info, path) end
      for _, lib in ipairs(needed(path)) do
        assert.is_true(h.read(root .. "/lib/" .. lib) ~= nil or h.read(root .. "/usr/lib/" .. lib) ~= nil,
          path .. " needs " .. lib .. ", which the tree lacks")
      end
    end
  end)

  it("has its plugins as shared objects a user can add to", function()
    local plugins = root .. "/usr/lib/fotahost/plugins/fotahost"
    assert.same({ "libcurl.so.4", "libc.so" }, needed(plugins .. "/http/core.so"))
    assert.same({ "libmbedcrypto.so.7", "libc.so" }, needed(plugins .. "/digest.so"))
    assert.matches("Type:%s+DYN", sh("readelf -h " .. h.q(plugins .. "/digest.so")))
  end)

  it("runs Lua 5.4 under the emulator, its digests on mbedTLS", function()
    local out, code = sh(("%s -L %s %s -e %s"):format(abi.qemu, h.q(root), h.q(exe),
      h.q('print(_VERSION, require("fotahost.digest").backend)')))
    assert.equal(0, code, out)
    assert.matches("^Lua 5%.4\tmbedtls 2%.28%.%d+\n$", out)
  end)

  if arch == "mipsel_24kc" then
    it("is tested on a CPU without an FPU, as the MT7688's 24KEc", function()
      -- One FPU instruction and the exit system call, built hard-float:
      -- a 24Kf runs it, a 24KEc (the board's) stops it with SIGILL.
      local dir = h.tmpdir()
      local bin = dir .. "/fpu"
      h.write(dir .. "/fpu.c", 'void __start(void) { __asm__ volatile('
        .. '"mtc1 $zero, $f0\\n\\tli $v0, 4001\\n\\tli $a0, 0\\n\\tsyscall"); }\n')
      local out, code = sh(("clang --target=mipsel-linux-gnu -march=mips32r2 -mhard-float "
        .. "-mno-abicalls -fno-pic -static -nostdlib -fuse-ld=lld -o %s %s/fpu.c"):format(h.q(bin), h.q(dir)))
      assert.equal(0, code, out)
      local _, with_fpu = sh("qemu-mipsel -cpu 24Kf " .. h.q(bin))
      local _, without = sh("qemu-mipsel -cpu 24KEc " .. h.q(bin))
      h.rmdir(dir)
      assert.equal(0, with_fpu)
      assert.equal(128 + 4, without) -- SIGILL
    end)
  end
end)
