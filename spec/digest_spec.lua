-- MD5, SHA-1 and SHA-256 from libcrypto: the standards' test vectors,
-- streaming, files.
local digest = require "fotahost.digest"
local h = require "helper"

describe("fotahost.digest", function()
  it("gives the published test vectors", function()
    assert.are.equal("d41d8cd98f00b204e9800998ecf8427e", digest.md5(""))
    assert.are.equal("900150983cd24fb0d6963f7d28e17f72", digest.md5("abc"))
    assert.are.equal("a9993e364706816aba3e25717850c26c9cd0d89d", digest.sha1("abc"))
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", digest.sha256("abc"))
    assert.are.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
      digest.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
  end)

  it("streams: any split of the input gives the same digest", function()
    local data = ("0123456789abcdef"):rep(10000) .. "\0\255tail"
    for _, name in ipairs({ "md5", "sha1", "sha256" }) do
      local d = digest.new(name)
      local i = 1
      for _, n in ipairs({ 1, 7, 64, 1000, 65536 }) do
        d:update(data:sub(i, i + n - 1))
        i = i + n
      end
      d:update(data:sub(i))
      assert.are.equal(digest[name](data), d:hex(), name)
      assert.are.equal(#d:digest(), ({ md5 = 16, sha1 = 20, sha256 = 32 })[name])
    end
  end)

  it("hashes a file in chunks, and names a missing one", function()
    local dir = h.tmpdir()
    local data = ("x"):rep(1024 * 1024 + 3)
    h.write(dir .. "/f", data)
    assert.are.equal(digest.sha256(data), digest.file(dir .. "/f"))
    assert.are.equal(digest.md5(data), digest.file(dir .. "/f", "md5"))
    local ok, err, code = digest.file(dir .. "/missing")
    h.rmdir(dir)
    assert.is_nil(ok)
    assert.are.equal(dir .. "/missing: " .. h.strerror.ENOENT, err)
    assert.are.equal(h.errno.ENOENT, code)
  end)

  it("names a file it cannot read, never giving the digest of what it got", function()
    local dir = h.tmpdir()
    local ok, err, code = digest.file(dir, "md5")
    h.rmdir(dir)
    assert.is_nil(ok)
    assert.are.equal(dir .. ": " .. h.strerror.EISDIR, err)
    assert.are.equal(h.errno.EISDIR, code)
  end)

  it("rejects misuse", function()
    assert.has_error(function() digest.new("crc32") end, "bad argument #1 to 'new' (invalid option 'crc32')")
    local d = digest.new("md5")
    d:update("a")
    assert.are.equal("0cc175b9c0f1b6a831c399e269772661", d:hex())
    assert.has_error(function() d:update("b") end, "md5: update after the digest was taken")
    assert.are.equal("md5 digest (finished)", tostring(d))
  end)

  it("is a plugin: libcrypto is not loaded until required", function()
    local r = h.run({ "-e", "local f = io.open('/proc/self/maps') local m = f:read('a') f:close() " ..
      "print(m:find('libcrypto', 1, true) ~= nil) require 'fotahost.digest' " ..
      "f = io.open('/proc/self/maps') m = f:read('a') f:close() print(m:find('libcrypto', 1, true) ~= nil)" })
    assert.are.equal("false\ntrue\n", r.out)
  end)
end)
