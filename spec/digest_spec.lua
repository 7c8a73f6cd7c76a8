-- MD5, SHA-1 and SHA-256 from libcrypto or mbedTLS: the standards' test
-- vectors, streaming, files. spec/digest_backends_spec.lua runs this file
-- again on the mbedTLS build, with FOTAHOST_SPEC_DIGEST_BACKEND=mbedtls.
local digest = require "fotahost.digest"
local h = require "helper"

-- the library this run must find, if the run says (else either)
local want_backend = os.getenv("FOTAHOST_SPEC_DIGEST_BACKEND")

describe("fotahost.digest", function()
  it("gives the published test vectors", function()
    assert.are.equal("d41d8cd98f00b204e9800998ecf8427e", digest.md5(""))
    assert.are.equal("da39a3ee5e6b4b0d3255bfef95601890afd80709", digest.sha1(""))
    assert.are.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", digest.sha256(""))
    assert.are.equal("900150983cd24fb0d6963f7d28e17f72", digest.md5("abc"))
    assert.are.equal("a9993e364706816aba3e25717850c26c9cd0d89d", digest.sha1("abc"))
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", digest.sha256("abc"))
    assert.are.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
      digest.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
  end)

  it("streams the published million-a vectors in uneven chunks", function()
    local want = {
      md5 = "7707d6ae4e027c70eea2a935c2296f21",
      sha1 = "34aa973cd4c4daa4f61eeb2bdbad27316534016f",
      sha256 = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
    }
    for name, hex in pairs(want) do
      local d, left, n = digest.new(name), 1000000, 1
      while left > 0 do
        n = math.min(n * 3 + 1, left)
        d:update(("a"):rep(n))
        left = left - n
      end
      assert.are.equal(hex, d:hex(), name)
    end
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

  it("gives a file's published digests", function()
    local dir = h.tmpdir()
    h.write(dir .. "/abc", "abc")
    local md5, sha1, sha256 = digest.file(dir .. "/abc", "md5"), digest.file(dir .. "/abc", "sha1"),
      digest.file(dir .. "/abc")
    h.rmdir(dir)
    assert.are.equal("900150983cd24fb0d6963f7d28e17f72", md5)
    assert.are.equal("a9993e364706816aba3e25717850c26c9cd0d89d", sha1)
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", sha256)
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

  it("says which library it runs on, and its version", function()
    local lib = digest.backend:match("^(%a+) %d+%.%d+%.%d+$")
    if want_backend then
      assert.are.equal(want_backend, lib, digest.backend)
    else
      assert.truthy(lib == "libcrypto" or lib == "mbedtls", digest.backend)
    end
  end)

  it("is a plugin: its library is not loaded until required", function()
    local so = digest.backend:match("^mbedtls") and "libmbedcrypto" or "libcrypto"
    local maps = "local f = io.open('/proc/self/maps') local m = f:read('a') f:close() " ..
      "print(m:find('" .. so .. "', 1, true) ~= nil) "
    local r = h.run({ "-e", maps .. "require 'fotahost.digest' " .. maps })
    assert.are.equal("false\ntrue\n", r.out)
  end)
end)
