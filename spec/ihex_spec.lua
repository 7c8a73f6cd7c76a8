local ihex = require "fotahost.ihex"
local h = require "helper"

-- One record, its checksum computed here (independently of the module).
local function rec(rtype, addr, data)
  data = data or ""
  local bytes = { #data, addr >> 8 & 0xFF, addr & 0xFF, rtype }
  for i = 1, #data do bytes[#bytes + 1] = data:byte(i) end
  local sum, hex = 0, { ":" }
  for _, b in ipairs(bytes) do
    sum = sum + b
    hex[#hex + 1] = ("%02X"):format(b)
  end
  hex[#hex + 1] = ("%02X"):format(-sum & 0xFF)
  return table.concat(hex)
end

local EOF = ":00000001FF"

local function lines(...)
  return table.concat({ ... }, "\n") .. "\n"
end

-- A bootloader-sized image like Arduino's Caterina: 4086 bytes at 0x7000,
-- starting with a jmp (0C 94 ...), the rest from a fixed pseudo-random
-- sequence, as objcopy writes it: 16-byte records, CRLF, a type 03 start.
local function caterina()
  local t, x = { "\x0C", "\x94" }, 12345
  for i = 3, 4086 do
    x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    t[i] = string.char(x >> 16 & 0xFF)
  end
  local data = table.concat(t)
  local out = {}
  for off = 0, #data - 1, 16 do
    out[#out + 1] = rec(0, 0x7000 + off, data:sub(off + 1, off + 16))
  end
  out[#out + 1] = rec(3, 0, "\0\0\x70\0")
  out[#out + 1] = EOF
  return data, table.concat(out, "\r\n") .. "\r\n"
end

describe("fotahost.ihex", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  describe("parses", function()
    it("data and end-of-file records (00, 01), CRLF, blanks, blank lines", function()
      local img = assert(ihex.parse(rec(0, 0x10, "\1\2\3\4") .. "  \t\r\n\r\n   \n" .. EOF .. "\r\n\n"))
      assert.are.same({ { addr = 0x10, data = "\1\2\3\4" } }, img:segments())
      assert.are.same({ 0x10, 0x13 }, { img:range() })
      assert.are.equal(4, img:size())
      assert.are.equal(3, img:get(0x12))
      assert.is_nil(img:get(0x14))
      assert.is_nil(img:start())
      assert.are.equal("ihex image: 4 bytes in 1 segment, 0x0010..0x0013", tostring(img))
    end)

    it("extended segment addresses (02), wrapping within the 64 KiB segment", function()
      local img = assert(ihex.parse(lines(rec(2, 0, "\x10\x00"), rec(0, 0xFFFE, "abcd"), EOF)))
      assert.are.same({ { addr = 0x10000, data = "cd" }, { addr = 0x1FFFE, data = "ab" } },
        img:segments())
    end)

    it("extended linear addresses (04), running on across 64 KiB", function()
      local img = assert(ihex.parse(lines(rec(4, 0, "\x00\x01"), rec(0, 0xFFFE, "abcd"),
        rec(4, 0, "\xFF\xFF"), rec(0, 0xFFFF, "z"), EOF)))
      assert.are.same({ { addr = 0x1FFFE, data = "abcd" }, { addr = 0xFFFFFFFF, data = "z" } },
        img:segments())
      assert.are.equal("ihex image: 5 bytes in 2 segments, 0x1FFFE..0xFFFFFFFF", tostring(img))
    end)

    it("start segment (03) and start linear (05) addresses", function()
      local img = assert(ihex.parse(lines(rec(3, 0, "\x01\x00\x00\x10"), EOF)))
      assert.are.equal(0x1010, img:start()) -- CS * 16 + IP
      assert.are.equal(lines(rec(3, 0, "\x01\x00\x00\x10"), EOF), img:to_hex())
      img = assert(ihex.parse(lines(rec(5, 0, "\x00\x01\x23\x45"), EOF)))
      assert.are.equal(0x12345, img:start())
      assert.are.equal("ihex image: empty", tostring(img))
      assert.is_nil(img:range())
      assert.are.same({}, img:segments())
    end)

    it("the same bytes given twice", function()
      local img = assert(ihex.parse(lines(rec(0, 0x100, "\x0C\x94\x34"), rec(0, 0x101, "\x94\x34\x00"), EOF)))
      assert.are.same({ { addr = 0x100, data = "\x0C\x94\x34\x00" } }, img:segments())
    end)

    it("a file read in chunks, to the same image as the text", function()
      local t = {}
      for i = 0, 3999 do t[#t + 1] = rec(0, i * 16 & 0xFFFF, ("%16d"):format(i)) end
      table.insert(t, 1, rec(4, 0, "\x00\x02"))
      t[#t + 1] = EOF
      local text = table.concat(t, "\n")
      local path = h.write(dir .. "/big.hex", text)
      local img = assert(ihex.load(path))
      assert.are.equal(64000, img:size())
      assert.are.equal(img:to_hex(), assert(ihex.parse(text)):to_hex())
      assert.are.equal(("%16d"):format(3999), img:bytes(0x20000 + 3999 * 16, 0x20000 + 3999 * 16 + 15))
    end)
  end)

  describe("reports bad input as name:line: cause", function()
    local cases = {
      { "S00F000068656C6C6F\n", "t:1: missing ':' at line start (found 'S')" },
      { ":0400100001G20304E2\n", "t:1: non-hex character 'G' at column 12" },
      { ":04001000010203\0014\n", "t:1: non-hex character '\\x01' at column 16" },
      { ":00000001F\n", "t:1: line too short: 9 hex digits, a record has at least 10" },
      { ":0400100001020304E\n", "t:1: odd number of hex digits (17)" },
      { ":1000000001020304E2\n" .. EOF,
        "t:1: record length 0x10 (16 data bytes) does not match the line (4 data bytes)" },
      { ":0400100001020304E3\n", "t:1: bad checksum: expected 0xE2, got 0xE3" },
      { ":00000006FA\n", "t:1: unknown record type 0x06" },
      { ":0100000100FE\n", "t:1: end-of-file record (type 01) must have 0 data bytes, not 1" },
      { ":0100000200FD\n",
        "t:1: extended segment address record (type 02) must have 2 data bytes, not 1" },
      { ":020000030000FB\n",
        "t:1: start segment address record (type 03) must have 4 data bytes, not 2" },
      { ":03000004000000F9\n",
        "t:1: extended linear address record (type 04) must have 2 data bytes, not 3" },
      { ":00000005FB\n", "t:1: start linear address record (type 05) must have 4 data bytes, not 0" },
      { lines(rec(0, 0, "ab"), rec(0, 2, "cd"), ""), "t:2: missing end-of-file record" },
      { "", "t: no records (missing end-of-file record)" },
      { lines(EOF, "", rec(0, 0, "ab")), "t:3: data after the end-of-file record" },
      { lines(rec(4, 0, "\xFF\xFF"), rec(0, 0xFFFC, "12345678"), EOF),
        "t:2: address overflow: 8 bytes at 0xFFFFFFFC go past 0xFFFFFFFF" },
      { lines(rec(0, 0x7000, "\x0C\x94"), rec(0, 0x7001, "\x95"), EOF),
        "t:2: address 0x7001 given twice with different data (0x94 earlier, 0x95 here)" },
      { ":0400 100001020304E2\n", "t:1: space inside the record at column 6" },
      { ":0400100001020304E2 # boot\n", "t:1: unexpected character '#' at column 21 after the record" },
      { lines(rec(5, 0, "\0\0\x70\0"), rec(5, 0, "\0\0\x80\0"), EOF),
        "t:2: a second start address (0x7000 earlier, 0x8000 here)" },
    }
    for _, c in ipairs(cases) do
      it(c[2], function()
        assert.are.same({ nil, c[2] }, { ihex.parse(c[1], "t") })
      end)
    end

    it("names a string (string) by default, and a file by its path", function()
      assert.are.same({ nil, "(string):1: unknown record type 0x06" }, { ihex.parse(":00000006FA") })
      local path = h.write(dir .. "/bad.hex", lines(rec(0, 0, "ab"), ":00000001FE"))
      assert.are.same({ nil, path .. ":2: bad checksum: expected 0xFF, got 0xFE" }, { ihex.load(path) })
    end)

    it("gives the system's reason a file cannot be read, with errno", function()
      local path = dir .. "/missing.hex"
      assert.are.same({ nil, path .. ": " .. h.strerror.ENOENT, h.errno.ENOENT }, { ihex.load(path) })
      assert.are.same({ nil, dir .. ": " .. h.strerror.EISDIR, h.errno.EISDIR }, { ihex.load(dir) })
      assert.are.same({ nil, "/dev/null: not a regular file" }, { ihex.load("/dev/null") })
    end)

    it("refuses a 300 MB file from its size, without reading it", function()
      local path = dir .. "/huge.hex"
      assert.is_true(os.execute("truncate -s 300M " .. h.q(path))) -- sparse: no disk used
      assert.are.same({ nil, path .. ": file too large (314572800 bytes, limit 16777216 bytes)" },
        { ihex.load(path) })
      -- allowed, it is read and fails on its first byte (a NUL)
      assert.are.same({ nil, path .. ":1: missing ':' at line start (found '\\x00')" },
        { ihex.load(path, { max_size = 400 * 1024 * 1024 }) })
      local small = h.write(dir .. "/small.hex", EOF .. "\n")
      assert.are.same({ nil, small .. ": file too large (12 bytes, limit 11 bytes)" },
        { ihex.load(small, { max_size = 11 }) })
      assert.truthy(ihex.load(small, { max_size = 12 }))
    end)
  end)

  describe("images", function()
    it("come from binary data at an address", function()
      local img = ihex.from_binary("\1\2\3", 0x100)
      assert.are.same({ { addr = 0x100, data = "\1\2\3" } }, img:segments())
      assert.are.same({ { addr = 0, data = "xy" } }, ihex.from_binary("xy"):segments())
      assert.are.equal(0, ihex.from_binary(""):size())
      assert.are.equal(0xFFFFFFFF, select(2, ihex.from_binary("z", 0xFFFFFFFF):range()))
    end)

    it("give bytes over a range, with a fill byte where there is no data", function()
      local img = assert(ihex.parse(lines(rec(0, 4, "ab"), rec(0, 10, "c"), EOF)))
      assert.are.equal("\xFF\xFFab\xFF\xFF\xFF\xFFc\xFF", img:bytes(2, 11))
      assert.are.equal("\0\0ab\0", img:bytes(2, 6, 0))
      assert.are.equal("b", img:bytes(5, 5))
      assert.has_error(function() img:bytes(6, 5) end, "bad argument #2 to 'bytes' (hi is below lo)")
      assert.has_error(function() img:bytes(0, 256 * 1024 * 1024) end,
        "bad argument #2 to 'bytes' (range over 256 MiB)")
      assert.has_error(function() img:bytes(0, 1, 256) end,
        "bad argument #3 to 'bytes' (fill must be a byte (0..255))")
      assert.has_error(function() img:bytes(-1, 1) end,
        "bad argument #1 to 'bytes' (address out of range (0..0xFFFFFFFF))")
    end)

    it("merge when disjoint, or when overlapping bytes are equal", function()
      local a = ihex.from_binary("\x0C\x94", 0x7000)
      local b = ihex.from_binary("\x0C\x94\x5C", 0)
      local m = assert(a:merge(b))
      assert.are.same({ { addr = 0, data = "\x0C\x94\x5C" }, { addr = 0x7000, data = "\x0C\x94" } },
        m:segments())
      m = assert(m:merge(ihex.from_binary("\x94\x00\x01", 0x7001)))
      assert.are.same({ 0, 0x7003 }, { m:range() })
      assert.are.equal(7, m:size())
      -- the inputs are left as they were
      assert.are.equal(2, a:size())
      assert.are.equal(3, b:size())
    end)

    it("refuse to merge bytes that differ, naming the first address and both bytes", function()
      local a = ihex.from_binary(("\0"):rep(0x10) .. "\x0C\x94", 0x6FF0)
      local b = ihex.from_binary("\x94\x0C", 0x7000)
      assert.are.same({ nil, "overlap at 0x7000: 0x0C in the first image, 0x94 in the second" },
        { a:merge(b) })
      assert.are.same({ nil, "overlap at 0x7000: 0x94 in the first image, 0x0C in the second" },
        { b:merge(a) })
      local s1 = assert(ihex.parse(lines(rec(5, 0, "\0\0\x70\0"), EOF)))
      local s2 = assert(ihex.parse(lines(rec(5, 0, "\0\0\0\0"), EOF)))
      assert.are.same({ nil, "start address 0x7000 in the first image, 0x0000 in the second" },
        { s1:merge(s2) })
      assert.are.equal(0x7000, assert(s1:merge(ihex.from_binary("x"))):start())
    end)

    it("write back as Intel HEX that parses to the same image", function()
      local img = assert(ihex.parse(lines(rec(0, 0xFFF8, ("x"):rep(12)), rec(4, 0, "\x00\x05"),
        rec(0, 0x10, "yz"), rec(5, 0, "\0\5\0\x10"), EOF)))
      local text = img:to_hex()
      assert.are.equal(lines(rec(0, 0xFFF8, ("x"):rep(8)), rec(4, 0, "\0\1"), rec(0, 0, "xxxx"),
        rec(4, 0, "\0\5"), rec(0, 0x10, "yz"), rec(5, 0, "\0\5\0\x10"), EOF), text)
      local back = assert(ihex.parse(text))
      assert.are.same(img:segments(), back:segments())
      assert.are.equal(img:start(), back:start())
      assert.are.equal(text, back:to_hex())
      local long = img:to_hex(255)
      assert.are.same(img:segments(), assert(ihex.parse(long)):segments())
      assert.are.equal(lines(rec(0, 0xFFF8, "xx"), rec(0, 0xFFFA, "xx")),
        img:to_hex(2):sub(1, 2 * (#rec(0, 0, "xx") + 1)))
      assert.are.equal(EOF .. "\n", ihex.from_binary(""):to_hex())
      assert.has_error(function() img:to_hex(0) end,
        "bad argument #1 to 'to_hex' (record length must be 1..255)")
    end)

    it("write to a file atomically", function()
      local img = ihex.from_binary(("\xAA"):rep(100), 0x7000)
      local path = dir .. "/out.hex"
      h.write(path, "old contents")
      assert.is_true(img:write(path))
      assert.are.equal(img:to_hex(), h.read(path))
      assert.are.same(img:segments(), assert(ihex.load(path)):segments())
      -- nothing else in the directory: no temporary file left
      local p = io.popen("ls -A " .. h.q(dir))
      assert.are.equal("out.hex\n", p:read("a"))
      p:close()
    end)

    it("fail to write into a missing directory, leaving nothing behind", function()
      local img = ihex.from_binary("x")
      local path = dir .. "/no/such/out.hex"
      assert.are.same({ nil, path .. ": " .. h.strerror.ENOENT, h.errno.ENOENT }, { img:write(path) })
      local p = io.popen("ls -A " .. h.q(dir))
      assert.are.equal("", p:read("a"))
      p:close()
    end)

    it("raise on misuse", function()
      local img = ihex.from_binary("x")
      assert.has_error(function() ihex.parse() end)
      assert.has_error(function() ihex.load({}) end)
      assert.has_error(function() ihex.load("x", 5) end)
      assert.has_error(function() ihex.load("x", { max_size = -1 }) end,
        "bad argument #2 to 'load' (max_size must be a non-negative integer)")
      assert.has_error(function() ihex.from_binary("xy", 0xFFFFFFFF) end,
        "bad argument #1 to 'from_binary' (data runs past 0xFFFFFFFF)")
      assert.has_error(function() img.get({}, 1) end)
      assert.has_error(function() img:get("a") end)
      assert.has_error(function() img:get(0x100000000) end)
      assert.has_error(function() img:merge("x") end)
      assert.has_error(function() img:write() end)
    end)

    it("are freed by the garbage collector", function()
      -- An image's bytes are C memory that only its __gc frees, and the
      -- collector does not see them. 32 images of 32 MiB (16 made, 16
      -- merged), each dropped and collected, must not leave 1 GiB behind.
      -- (ASan keeps up to 256 MiB of freed memory in quarantine.)
      local function rss_kib()
        return assert(math.tointeger(tonumber(h.read("/proc/self/status"):match("VmRSS:%s*(%d+)"))))
      end
      local data = ("\x0C\x94"):rep(16 * 1024 * 1024)
      local boot = ihex.from_binary("boot", 0x7000000)
      collectgarbage()
      collectgarbage()
      local before = rss_kib()
      for i = 1, 16 do
        local img = ihex.from_binary(data, i * 2)
        local merged = assert(img:merge(boot))
        assert.are.equal(#data + 4, merged:size())
        img, merged = nil, nil -- luacheck: ignore 311 (dropped so the collector may free them)
        collectgarbage()
      end
      collectgarbage()
      local grown = rss_kib() - before
      assert.is_true(grown < 400 * 1024, ("%d KiB still resident after the images were collected"):format(grown))
    end)
  end)

  describe("with a bootloader like Arduino's Caterina", function()
    it("loads it, describes it and writes it back as objcopy did", function()
      local data, text = caterina()
      local path = h.write(dir .. "/Caterina.hex", text)
      local boot = assert(ihex.load(path))
      assert.are.equal("ihex image: 4086 bytes in 1 segment, 0x7000..0x7FF5", tostring(boot))
      assert.are.same({ 0x7000, 0x7FF5 }, { boot:range() })
      assert.are.equal(0x7000, boot:start())
      assert.are.same({ { addr = 0x7000, data = data } }, boot:segments())
      assert.are.equal((text:gsub("\r\n", "\n")), boot:to_hex())
    end)

    it("merges it with an application into one flash image", function()
      local data, text = caterina()
      local boot = assert(ihex.parse(text, "Caterina.hex"))
      local app = ihex.from_binary(("\x0C\x94\x5C\x00"):rep(0x400), 0)
      local flash = assert(app:merge(boot))
      assert.are.equal("ihex image: 8182 bytes in 2 segments, 0x0000..0x7FF5", tostring(flash))
      local bytes = flash:bytes(0, 0x7FFF)
      assert.are.equal(0x8000, #bytes)
      assert.are.equal(app:segments()[1].data, bytes:sub(1, 0x1000))
      assert.are.equal(("\xFF"):rep(0x6000), bytes:sub(0x1001, 0x7000))
      assert.are.equal(data, bytes:sub(0x7001, 0x7FF6))
      assert.are.equal(("\xFF"):rep(10), bytes:sub(0x7FF7))
      -- an application too big for the space below the bootloader
      local big = ihex.from_binary(("\0"):rep(0x7010), 0)
      assert.are.same({ nil, "overlap at 0x7000: 0x00 in the first image, 0x0C in the second" },
        { big:merge(boot) })
    end)
  end)
end)
