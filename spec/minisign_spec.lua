-- fotahost.minisign against the real minisign tool (Debian's package): key
-- pairs and signatures made by `minisign`, verified by the plugin; then
-- every way a hostile or broken key or signature file must be refused,
-- with the message a user reads. The minisign tool runs natively, also
-- under make board-test.
local ms = require "fotahost.minisign"
local h = require "helper"

-- Strict base64, to take signature lines apart and put them back (the
-- spec's own: it checks the plugin, so it must not use it).
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64_encode(s)
  return (s:gsub("..?.?", function(g)
    local a, b, c = g:byte(1, 3)
    local v = a << 16 | (b or 0) << 8 | (c or 0)
    local out = {}
    for k = 1, 4 do
      out[k] = B64:sub((v >> (6 * (4 - k)) & 63) + 1, (v >> (6 * (4 - k)) & 63) + 1)
    end
    if not b then out[3], out[4] = "=", "=" elseif not c then out[4] = "=" end
    return table.concat(out)
  end))
end

local function b64_decode(s)
  local bits = s:gsub("=", ""):gsub(".", function(ch)
    local v = B64:find(ch, 1, true) - 1
    local t = {}
    for k = 5, 0, -1 do t[#t + 1] = (v >> k) & 1 end
    return table.concat(t)
  end)
  return (bits:gsub("%d%d%d%d%d%d%d%d", function(byte) return string.char(tonumber(byte, 2)) end)
    :sub(1, #bits // 8))
end

local function lines(text)
  local t = {}
  for l in text:gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

local function minisign(args)
  local out, code = h.sh("minisign " .. args)
  assert(code == 0, "minisign " .. args .. ": " .. out)
  return out
end

local dir, keys, texts = nil, {}, {}

-- A key pair NAME in dir, without a password (-W); its .pub text.
local function make_key(name)
  minisign(("-G -W -p %s -s %s"):format(h.q(dir .. "/" .. name .. ".pub"), h.q(dir .. "/" .. name .. ".key")))
  texts[name] = h.read(dir .. "/" .. name .. ".pub")
  keys[name] = assert(ms.public_key(texts[name]))
end

-- Signs file (in dir) with key NAME; extra: more options (-l, -t "...").
-- Returns the .minisig's text.
local function sign(name, file, extra)
  local out = dir .. "/" .. file .. "." .. name .. ".minisig"
  minisign(("-S -s %s -m %s -x %s %s"):format(h.q(dir .. "/" .. name .. ".key"), h.q(dir .. "/" .. file),
    h.q(out), extra or ""))
  return h.read(out)
end

local function refused(want, ok, err)
  assert.is_nil(ok)
  assert.are.equal(want, err)
end

describe("fotahost.minisign", function()
  local fw, sig_ed, sig_legacy

  lazy_setup(function()
    dir = h.tmpdir()
    make_key("old")
    make_key("new")
    make_key("other")
    fw = h.write(dir .. "/blink.hex", h.pattern(3000, 7))
    h.write(dir .. "/other.hex", h.pattern(3000, 8))
    sig_ed = sign("new", "blink.hex", '-t "fotahost version=2.0 part=m32u4 counter=17"')
    sig_legacy = sign("new", "blink.hex", '-l -t "fotahost version=1.9 part=m32u4 counter=16"')
  end)

  lazy_teardown(function() h.rmdir(dir) end)

  describe("public_key", function()
    it("reads minisign's .pub file, with the id minisign shows", function()
      local id = texts.new:match("minisign public key (%x+)")
      assert.are.equal(id, keys.new.id)
      assert.are.equal(8, #keys.new.keynum)
      assert.are.equal(32, #keys.new.pk)
    end)

    it("shows the id as minisign does: the key number, little-endian, in hex without leading zeros", function()
      local pk = b64_decode(lines(texts.new)[2]):sub(11)
      assert.are.equal("A07060504030201", assert(ms.public_key(b64_encode("Ed\1\2\3\4\5\6\7\10" .. pk))).id)
      assert.are.equal("0", assert(ms.public_key(b64_encode("Ed" .. ("\0"):rep(8) .. pk))).id)
      assert.are.equal("FF00000000000001", assert(ms.public_key(b64_encode("Ed\1\0\0\0\0\0\0\255" .. pk))).id)
    end)

    it("takes the base64 line alone, as minisign -P does, and CRLF line ends", function()
      local b64 = lines(texts.new)[2]
      assert.are.equal(keys.new.id, assert(ms.public_key(b64)).id)
      assert.are.equal(keys.new.id, assert(ms.public_key(b64 .. "\n")).id)
      assert.are.equal(keys.new.id, assert(ms.public_key(texts.new:gsub("\n", "\r\n"))).id)
    end)

    it("refuses a .pub with a bad line, naming what is wrong", function()
      local comment, b64 = table.unpack(lines(texts.new))
      local raw = b64_decode(b64)
      local cases = {
        { comment .. "\n" .. b64:sub(1, 10) .. "*" .. b64:sub(12) .. "\n",
          "malformed public key: line 2 is not base64" },
        { comment .. "\n" .. b64 .. "=\n", "malformed public key: line 2 is not base64" },
        { comment .. "\n" .. b64_encode(raw:sub(1, 41)) .. "\n",
          "malformed public key: line 2 decodes to 41 bytes, 42 expected" },
        { comment .. "\n" .. b64_encode(raw .. "x") .. "\n",
          "malformed public key: line 2 decodes to 43 bytes, 42 expected" },
        { comment .. "\n" .. b64_encode("ED" .. raw:sub(3)) .. "\n",
          'malformed public key: algorithm "ED", "Ed" expected' },
        { "comment: key\n" .. b64 .. "\n", 'malformed public key: line 1 does not start with "untrusted comment: "' },
        { comment .. "\n", "malformed public key: no base64 line after the comment" },
        { comment .. "\n" .. b64 .. "\n" .. b64 .. "\n", "malformed public key: text after line 2" },
        { "\n\n", "malformed public key: empty" },
        { comment .. "\0\n" .. b64, "malformed public key: it holds a NUL byte" },
        { ("x"):rep(2049), "malformed public key: 2049 bytes, at most 2048" },
        { "untrusted comment: " .. ("x"):rep(1006) .. "\n" .. b64,
          "malformed public key: line 1 is over 1024 bytes" },
      }
      for _, c in ipairs(cases) do refused(c[2], ms.public_key(c[1])) end
    end)

    it("decodes only strict base64 (padding, alphabet, unused bits)", function()
      local comment, b64 = table.unpack(lines(texts.new))
      -- 42 bytes is 56 characters, no padding: any '=' or a short text is refused.
      for _, bad in ipairs({ b64:sub(1, 55), b64:sub(1, 52) .. "====", b64:sub(1, 54) .. "==",
        b64:sub(1, 55) .. "=", b64:sub(1, 20) .. "-" .. b64:sub(22), b64:sub(1, 20) .. "_" .. b64:sub(22),
        b64:sub(1, 20) .. " " .. b64:sub(22), b64:sub(1, 28) .. "=" .. b64:sub(30) }) do
        local ok, err = ms.public_key(comment .. "\n" .. bad .. "\n")
        assert.is_nil(ok, bad)
        assert.matches("^malformed public key: line 2 ", err)
      end
      -- the same 41 bytes with nonzero unused bits in the last character
      local short = b64_encode(b64_decode(b64):sub(1, 41))
      local last = B64:find(short:sub(-2, -2), 1, true)
      local sloppy = short:sub(1, -3) .. B64:sub(last + 1, last + 1) .. "="
      refused("malformed public key: line 2 is not base64", ms.public_key(comment .. "\n" .. sloppy .. "\n"))
    end)
  end)

  describe("verify", function()
    it("verifies minisign's default (ED) signature and returns the trusted comment", function()
      local r = assert(ms.verify({ keys.new }, sig_ed, fw))
      assert.are.same({ key_id = keys.new.id, comment = "fotahost version=2.0 part=m32u4 counter=17", alg = "ED" }, r)
    end)

    it("verifies a legacy (Ed, minisign -l) signature", function()
      local r = assert(ms.verify({ keys.new }, sig_legacy, fw))
      assert.are.same({ key_id = keys.new.id, comment = "fotahost version=1.9 part=m32u4 counter=16", alg = "Ed" }, r)
    end)

    it("verifies with minisign's own trusted comment, and with CRLF line ends", function()
      local sig = sign("old", "blink.hex")
      local r = assert(ms.verify({ keys.old }, sig, fw))
      assert.matches("^timestamp:%d+\tfile:blink.hex\thashed$", r.comment)
      assert.are.equal(r.comment, assert(ms.verify({ keys.old }, sig:gsub("\n", "\r\n"), fw)).comment)
    end)

    it("takes a key rotation: with old and new trusted, either key's signature verifies", function()
      local by_old = sign("old", "blink.hex", '-t "counter=1"')
      for _, trusted in ipairs({ { keys.old, keys.new }, { keys.new, keys.old }, { texts.old, texts.new } }) do
        assert.are.equal(keys.old.id, assert(ms.verify(trusted, by_old, fw)).key_id)
        assert.are.equal(keys.new.id, assert(ms.verify(trusted, sig_ed, fw)).key_id)
      end
      -- the old key retired: its signatures no longer pass
      refused(("signed by key %s, which is not a trusted key"):format(keys.old.id), ms.verify({ keys.new }, by_old, fw))
    end)

    it("refuses a signature by a key it does not trust, naming that key", function()
      local sig = sign("other", "blink.hex")
      refused(("signed by key %s, which is not a trusted key"):format(keys.other.id),
        ms.verify({ keys.old, keys.new }, sig, fw))
    end)

    it("refuses a file with one byte changed, in both forms", function()
      local data = h.read(fw)
      local tampered = h.write(dir .. "/tampered.hex", data:sub(1, 1000) .. string.char(data:byte(1001) ~ 1)
        .. data:sub(1002))
      local want = ("the signature does not match the file (signed by key %s)"):format(keys.new.id)
      refused(want, ms.verify({ keys.new }, sig_ed, tampered))
      refused(want, ms.verify({ keys.new }, sig_legacy, tampered))
    end)

    it("refuses the signature of another file", function()
      local sig = sign("new", "other.hex", '-t "fotahost version=2.0 part=m32u4 counter=17"')
      refused(("the signature does not match the file (signed by key %s)"):format(keys.new.id),
        ms.verify({ keys.new }, sig, fw))
    end)

    it("refuses an edited trusted comment: its global signature fails", function()
      for _, sig in ipairs({ sig_ed, sig_legacy }) do
        local l = lines(sig)
        l[3] = l[3]:gsub("counter=1%d", "counter=99")
        refused("the trusted comment does not match its signature",
          ms.verify({ keys.new }, table.concat(l, "\n") .. "\n", fw))
        -- swapped for another signature's comment, the file's signature intact
        l = lines(sig)
        l[3], l[4] = lines(sig == sig_ed and sig_legacy or sig_ed)[3], lines(sig == sig_ed and sig_legacy or sig_ed)[4]
        refused("the trusted comment does not match its signature",
          ms.verify({ keys.new }, table.concat(l, "\n") .. "\n", fw))
      end
    end)

    it("refuses an ED signature relabelled Ed, over a file holding the image's BLAKE2b-512", function()
      -- sig_alg is signed by nothing: relabelled, the hashed signature
      -- verifies over the 64 bytes of the hash, with the image's comment
      local l = lines(sig_ed)
      local raw = b64_decode(l[2])
      l[2] = b64_encode("Ed" .. raw:sub(3))
      local hex = h.must("b2sum -l 512 " .. h.q(fw)):match("^(%x+)") -- coreutils' BLAKE2b
      local hash = h.write(dir .. "/hash.bin", (hex:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)))
      assert.are.equal(64, #h.read(hash))
      refused("a legacy (Ed) signature over a 64-byte file is refused: it could be a hashed (ED) signature "
        .. "relabelled; sign it again with minisign's default",
        ms.verify({ keys.new }, table.concat(l, "\n") .. "\n", hash))
    end)

    it("refuses a signature made by another key but naming a trusted key's number", function()
      local l, trusted = lines(sign("other", "blink.hex")), b64_decode(lines(sig_ed)[2])
      local raw = b64_decode(l[2])
      l[2] = b64_encode(raw:sub(1, 2) .. trusted:sub(3, 10) .. raw:sub(11))
      refused(("the signature does not match the file (signed by key %s)"):format(keys.new.id),
        ms.verify({ keys.new }, table.concat(l, "\n") .. "\n", fw))
    end)

    it("refuses malformed signature files, naming what is wrong", function()
      local l = lines(sig_ed)
      local raw, global = b64_decode(l[2]), b64_decode(l[4])
      local function with(i, v)
        local t = { l[1], l[2], l[3], l[4] }
        t[i] = v
        return table.concat(t, "\n") .. "\n"
      end
      local cases = {
        { sig_ed:sub(1, #l[1] + 1 + 50), "malformed signature: 2 lines, 4 expected" },
        { table.concat({ l[1], l[2], l[3] }, "\n"), "malformed signature: 3 lines, 4 expected" },
        { "", "malformed signature: 0 lines, 4 expected" },
        { with(2, l[2]:sub(1, 61)), "malformed signature: line 2 is not base64" },
        { with(2, l[2]:sub(1, 10) .. "!" .. l[2]:sub(12)), "malformed signature: line 2 is not base64" },
        { with(4, l[4]:sub(1, 10) .. "\t" .. l[4]:sub(12)), "malformed signature: line 4 is not base64" },
        { with(2, b64_encode(raw:sub(1, 73))), "malformed signature: line 2 decodes to 73 bytes, 74 expected" },
        { with(2, b64_encode(raw .. "\0")), "malformed signature: line 2 decodes to 75 bytes, 74 expected" },
        { with(4, b64_encode(global:sub(1, 63))), "malformed signature: line 4 decodes to 63 bytes, 64 expected" },
        { with(2, b64_encode("XX" .. raw:sub(3))), 'unsupported signature algorithm "XX" (ED or Ed expected)' },
        { with(2, b64_encode("Ee" .. raw:sub(3))), 'unsupported signature algorithm "Ee" (ED or Ed expected)' },
        { with(2, b64_encode("\0\255" .. raw:sub(3))),
          'unsupported signature algorithm "\\x00\\xff" (ED or Ed expected)' },
        { with(1, "comment: x"), 'malformed signature: line 1 does not start with "untrusted comment: "' },
        { with(3, "comment: x"), 'malformed signature: line 3 does not start with "trusted comment: "' },
        { with(3, "trusted comment: " .. ("c"):rep(8193)),
          "malformed signature: the trusted comment is 8193 bytes, at most 8192" },
        { with(1, "untrusted comment: " .. ("u"):rep(1006)), "malformed signature: line 1 is over 1024 bytes" },
        { with(3, l[3] .. "\0"), "malformed signature: it holds a NUL byte" },
        { sig_ed .. "more\n", "malformed signature: text after line 4" },
        { sig_ed .. ("\n"):rep(12288 - #sig_ed + 1), "malformed signature: 12289 bytes, at most 12288" },
      }
      for _, c in ipairs(cases) do refused(c[2], ms.verify({ keys.new }, c[1], fw)) end
      -- empty lines at the end are not text after line 4
      assert.truthy(ms.verify({ keys.new }, sig_ed .. "\n\n", fw))
    end)

    it("takes a long trusted comment (minisign 0.11 writes at most about 4 KiB of it)", function()
      local comment = ("c"):rep(4000) .. " counter=1"
      local sig = sign("new", "blink.hex", '-t "' .. comment .. '"')
      assert.are.equal(comment, assert(ms.verify({ keys.new }, sig, fw)).comment)
    end)

    it("refuses a legacy (Ed) signature over a file past its 16 MiB cap, before reading it", function()
      local big = dir .. "/big.bin"
      assert(h.sh("truncate -s " .. (16 * 1024 * 1024 + 1) .. " " .. h.q(big)))
      refused(big .. ": 16777217 bytes, over the 16 MiB a legacy (Ed) signature can cover "
        .. "(sign it with minisign's default, ED)", ms.verify({ keys.new }, sig_legacy, big))
      assert.are.equal(16 * 1024 * 1024, ms.limits.legacy_file)
    end)

    it("reports a missing file as the system says it", function()
      local ok, err, code = ms.verify({ keys.new }, sig_ed, dir .. "/none.hex")
      assert.is_nil(ok)
      assert.are.equal(dir .. "/none.hex: " .. h.strerror.ENOENT, err)
      assert.are.equal(h.errno.ENOENT, code)
    end)

    it("reports a bad trusted key text by its place in the list", function()
      refused("trusted key #2: malformed public key: empty", ms.verify({ keys.old, "\n" }, sig_ed, fw))
      refused("no trusted key to verify the signature with", ms.verify({}, sig_ed, fw))
    end)

    it("raises on misuse", function()
      assert.has_error(function() ms.verify(keys.new, sig_ed, fw) end,
        "minisign.verify: a list of keys expected, got one key (wrap it in { })")
      assert.has_error(function() ms.verify({ 42 }, sig_ed, fw) end,
        "minisign.verify: trusted key #1 is a number (a key or a key's text expected)")
      assert.has_error(function() ms.verify({ { keynum = keys.new.keynum, pk = "short" } }, sig_ed, fw) end,
        "minisign.verify: trusted key #1 has no 32-byte 'pk' (use minisign.public_key)")
      assert.has_error(function() ms.verify({ keys.new }, nil, fw) end)
    end)

    it("names its library and its limits", function()
      assert.matches("^libsodium %d", ms.backend)
      assert.are.same({ comment = 8192, untrusted_comment = 1024, signature_file = 12288, key_file = 2048,
        legacy_file = 16 * 1024 * 1024 }, ms.limits)
    end)
  end)

  describe("verify_data", function()
    it("verifies bytes in memory as verify does the file holding them, in both forms", function()
      local data = h.read(fw)
      assert.are.same(ms.verify({ keys.new }, sig_ed, fw), ms.verify_data({ keys.new }, sig_ed, data))
      assert.are.same(ms.verify({ keys.new }, sig_legacy, fw), ms.verify_data({ keys.new }, sig_legacy, data))
    end)

    it("refuses changed bytes, another key and a 64-byte legacy message", function()
      local data = h.read(fw)
      local tampered = data:sub(1, 1000) .. string.char(data:byte(1001) ~ 1) .. data:sub(1002)
      local want = ("the signature does not match the file (signed by key %s)"):format(keys.new.id)
      refused(want, ms.verify_data({ keys.new }, sig_ed, tampered))
      refused(want, ms.verify_data({ keys.new }, sig_legacy, tampered))
      refused(("signed by key %s, which is not a trusted key"):format(keys.new.id),
        ms.verify_data({ keys.old }, sig_ed, data))
      refused("a legacy (Ed) signature over a 64-byte file is refused: it could be a hashed (ED) signature "
        .. "relabelled; sign it again with minisign's default", ms.verify_data({ keys.new }, sig_legacy, ("x"):rep(64)))
      assert.has_error(function() ms.verify_data({ keys.new }, sig_ed, nil) end)
    end)
  end)

  describe("signature_info", function()
    it("parses a signature without verifying it: key id, comment and form", function()
      assert.are.same({ key_id = keys.new.id, comment = "fotahost version=2.0 part=m32u4 counter=17", alg = "ED" },
        ms.signature_info(sig_ed))
      assert.are.equal("Ed", ms.signature_info(sig_legacy).alg)
      -- nothing is checked but the form: an edited comment is shown as it is
      local l = lines(sig_ed)
      l[3] = "trusted comment: edited"
      assert.are.equal("edited", ms.signature_info(table.concat(l, "\n") .. "\n").comment)
      refused("malformed signature: 0 lines, 4 expected", ms.signature_info(""))
    end)
  end)
end)
