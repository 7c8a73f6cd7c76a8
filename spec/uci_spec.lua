-- fotahost.uci reads UCI files as libuci does, and whatever a file holds
-- answers sections or one error naming file and line; tests/openwrt/uci,
-- the stand-in for OpenWrt's uci command, stages changes until commit and
-- writes files as uci does.
local h = require "helper"
local uci = require "fotahost.uci"

describe("fotahost.uci", function()
  it("reads sections, options and lists, with every kind of quoting", function()
    local s = assert(uci.parse(table.concat({
      "# a comment",
      "package fotahost",
      "",
      "config fotahost 'main'   # after a section",
      "\toption plain value",
      "  option single 'two words # not a comment'",
      '\toption double "a \\"quoted\\" \\\\ word"',
      "\toption joined 'it'\\''s'\"\"x",   -- uci's own way to write a quote
      "\toption empty ''",                   -- sets nothing, as in libuci
      "\toption bare",
      "\toption cut a#rest of the line is a comment",
      "\tlist servers 'a'",
      "\tlist servers b",
      "config thing",                      -- anonymous
      "\toption n 1\r",                    -- a file from Windows
      "config fotahost 'main'",            -- named again: the same section
      "\toption plain changed",
      "\toption plain ''",                   -- an empty value leaves the earlier one
      "config wifi-device 'radio0'",       -- a type is any printable word
    }, "\n"), "f"))
    assert.are.equal(3, #s)
    assert.are.same({ type = "fotahost", name = "main", options = {
      plain = "changed", single = "two words # not a comment", double = 'a "quoted" \\ word',
      joined = "it's" .. "x", cut = "a", servers = { "a", "b" } },
      order = { "plain", "single", "double", "joined", "cut", "servers" } }, s[1])
    assert.are.same({ type = "thing", options = { n = "1" }, order = { "n" } }, s[2])
    assert.are.same({ type = "wifi-device", name = "radio0", options = {}, order = {} }, s[3])
  end)

  it("turns an option into a list when a list of its name follows, as libuci does", function()
    local s = assert(uci.parse("config a 'b'\n option x 1\n list x 2\n option y 3\n"))
    assert.are.same({ x = { "1", "2" }, y = "3" }, s[1].options)
  end)

  it("names the file and the line of a mistake", function()
    local cases = {
      { "config a 'b'\n\toption x 'open\n", "f:2: unterminated '" },
      { 'config a\n\n\toption x "open\n', 'f:3: unterminated "' },
      { 'config a\n option x "a\\', 'f:2: unterminated "' },
      { "config a\n option x a\\", "f:2: backslash at the end of the line" },
      { "option x 1\n", "f:1: option before the first config section" },
      { "config a\n option\n", "f:2: option takes a name and a value" },
      { "config a\n option x 1 2\n", "f:2: option takes a name and a value" },
      { "config a\n list x\n", "f:2: list takes a name and a value" },
      { "config a\n list x 1 2\n", "f:2: list takes a name and a value" },
      { "config a\n option 'bad name' 1\n", "f:2: invalid option name 'bad name'" },
      { "config a\127b\n", "f:1: invalid section type 'a\127b'" },
      { "config t\195\169\n", "f:1: invalid section type 't\195\169'" },
      { "config a 'b c'\n", "f:1: invalid section name 'b c'" },
      { "config\n", "f:1: config takes a type and an optional name" },
      { "package\n", "f:1: package takes one name" },
      { "config a\n\n\n  opton x 1\n", "f:4: invalid command 'opton'" },
    }
    for _, c in ipairs(cases) do
      local s, err = uci.parse(c[1], "f")
      assert.is_nil(s, c[2])
      assert.are.equal(c[2], err)
    end
  end)

  it("quotes a value as uci writes it, and reads it back", function()
    for _, v in ipairs({ "", "plain", "it's", "''", "a \"b\" \\ #c", "\t x ", "C:\\" }) do
      local q = uci.quote(v)
      assert.are.same({ "option", "x", v }, uci.words("option x " .. q), q)
    end
    assert.are.equal("'it'\\''s'", uci.quote("it's"))
  end)

  it("reads a missing file as missing, a directory as an error", function()
    local dir = h.tmpdir()
    local s, err, missing = uci.read(dir .. "/none")
    assert.is_nil(s)
    assert.is_string(err)
    assert.are.equal("missing", missing)
    h.rmdir(dir)
  end)

  -- Hostile input: random text, truncations and mangled copies of a good
  -- file. Each must give sections or nil and "f:LINE: ...", never an
  -- error thrown, and never run long (an instruction budget stands for a
  -- hang: a loop that stops advancing trips it).
  it("answers any input with sections or one error, fast (20000 hostile inputs)", function()
    local good = "package p\n\nconfig fotahost 'main'\n\toption device_id 'D1'\n\toption key \"a\\\"b\"\n"
      .. "\tlist l 'x'\\''y'\n# c\nconfig t\n\toption o v#c\n"
    local alphabet = { "'", '"', "\\", "#", " ", "\t", "\n", "\r", "\0", "a", "_", "config ", "option ",
      "list ", "package ", "x", "\255", "=" }
    local rnd = math.random
    math.randomseed(14)
    local function input(i)
      if i <= #good + 1 then return good:sub(1, i - 1) end -- every truncation
      if i % 3 == 0 then                                    -- a mangled copy
        local b = rnd(#good)
        return good:sub(1, b - 1) .. alphabet[rnd(#alphabet)] .. good:sub(b + rnd(0, 3))
      end
      local t = {}
      for j = 1, rnd(0, 60) do t[j] = alphabet[rnd(#alphabet)] end
      if i % 2 == 0 then -- and raw bytes
        for j = 1, rnd(0, 20) do t[#t + 1] = string.char(rnd(0, 255)) .. (j % 7 == 0 and "\n" or "") end
      end
      return table.concat(t)
    end
    local answered = 0
    for i = 1, 20000 do
      local text = input(i)
      debug.sethook(function() error("too long on input " .. ("%q"):format(text)) end, "", 1e6)
      local ok, s, err = pcall(uci.parse, text, "f")
      debug.sethook()
      assert(ok, s)
      if s then
        assert.is_table(s)
      else
        assert(type(err) == "string" and err:match("^f:%d+: %S"), ("%q -> %s"):format(text, tostring(err)))
      end
      answered = answered + 1
    end
    assert.are.equal(20000, answered)
  end)
end)

describe("tests/openwrt/uci (the stand-in for OpenWrt's uci)", function()
  local UCI = h.top .. "/tests/openwrt/uci.lua"
  local dir

  local function uci_cmd(...)
    return h.run({ UCI, "-c", dir, "-t", dir .. "/.uci", ... })
  end
  local function ok(...)
    local r = uci_cmd(...)
    assert.are.equal(0, r.status, r.err)
    return r.out
  end

  before_each(function()
    dir = h.tmpdir()
    h.write(dir .. "/fotahost", "# the package's file\nconfig fotahost 'main'\n\toption enabled '0'\n")
  end)
  after_each(function() h.rmdir(dir) end)

  it("stages set, add_list and delete until commit, then writes the file as uci does", function()
    ok("set", "fotahost.main.device_id=Dbxx9k")
    ok("set", "fotahost.main.device_key=it's \"quoted\"")
    ok("add_list", "fotahost.main.servers=a")
    ok("add_list", "fotahost.main.servers=b b")
    ok("set", "fotahost.extra=thing")
    ok("delete", "fotahost.main.enabled")
    -- staged: uci get sees it, the file does not
    assert.are.equal("# the package's file\nconfig fotahost 'main'\n\toption enabled '0'\n", h.read(dir .. "/fotahost"))
    assert.are.equal("it's \"quoted\"\n", ok("get", "fotahost.main.device_key"))
    assert.are.equal("fotahost.main.device_id='Dbxx9k'\nfotahost.main.device_key='it'\\''s \"quoted\"'\n"
      .. "fotahost.main.servers+='a'\nfotahost.main.servers+='b b'\nfotahost.extra='thing'\n-fotahost.main.enabled\n",
      ok("changes"))
    ok("commit", "fotahost")
    assert.are.equal("\nconfig fotahost 'main'\n\toption device_id 'Dbxx9k'\n"
      .. "\toption device_key 'it'\\''s \"quoted\"'\n\tlist servers 'a'\n\tlist servers 'b b'\n\n"
      .. "config thing 'extra'\n", h.read(dir .. "/fotahost"))
    assert.are.equal("", ok("changes"))
    assert.are.equal("fotahost.main=fotahost\nfotahost.main.device_id='Dbxx9k'\n"
      .. "fotahost.main.device_key='it'\\''s \"quoted\"'\nfotahost.main.servers='a' 'b b'\nfotahost.extra=thing\n",
      ok("show", "fotahost"))
    assert.are.equal("a b b\n", ok("get", "fotahost.main.servers"))
    assert.are.equal("thing\n", ok("get", "fotahost.extra"))
    -- what the stand-in wrote, the product reads back
    local s = assert(uci.read(dir .. "/fotahost"))
    assert.are.same({ device_id = "Dbxx9k", device_key = "it's \"quoted\"", servers = { "a", "b b" } }, s[1].options)
  end)

  it("keeps the file's mode: a 0600 file stays 0600", function()
    local sys = require "fotahost.sys"
    os.execute("chmod 600 " .. h.q(dir .. "/fotahost"))
    ok("set", "fotahost.main.device_key=Key12345")
    ok("commit")
    assert.are.equal(tonumber("600", 8), sys.lstat(dir .. "/fotahost").mode)
    assert.matches("option device_key 'Key12345'", h.read(dir .. "/fotahost"))
  end)

  it("stages changes in a file only its owner reads (0600, as uci), whatever the umask lets", function()
    local sys = require "fotahost.sys"
    local r = h.run({ UCI, "-c", dir, "-t", dir .. "/.uci", "set", "fotahost.main.device_key=Key12345" },
      { shell_prefix = "umask 022;" })
    assert.are.equal(0, r.status, r.err)
    ok("set", "fotahost.main.device_id=Dbxx9k")
    assert.are.equal(tonumber("600", 8), sys.lstat(dir .. "/.uci/fotahost").mode)
    assert.are.equal("fotahost.main.device_key='Key12345'\nfotahost.main.device_id='Dbxx9k'\n", ok("changes"))
  end)

  it("removes from a list with del_list, and exports with the package line", function()
    ok("add_list", "fotahost.main.l=x")
    ok("add_list", "fotahost.main.l=y")
    ok("add_list", "fotahost.main.l=x")
    ok("del_list", "fotahost.main.l=x")
    ok("commit", "fotahost")
    assert.are.equal("package fotahost\n\nconfig fotahost 'main'\n\toption enabled '0'\n\tlist l 'y'\n\n",
      ok("export", "fotahost"))
  end)

  it("fails as uci does: status 1 and one line", function()
    for _, args in ipairs({ { "get", "fotahost.main.nothing" }, { "get", "fotahost.nosection" },
                            { "get", "nosuchconfig.main" }, { "set", "fotahost.nosection.x=1" },
                            { "delete", "fotahost.main.nothing" } }) do
      local r = uci_cmd(table.unpack(args))
      assert.are.same({ 1, "", "uci: Entry not found\n" }, { r.status, r.out, r.err }, args[1] .. " " .. args[2])
    end
    local r = uci_cmd("set", "fotahost.main.bad-name=1")
    assert.are.same({ 1, "uci: Invalid argument\n" }, { r.status, r.err })
    h.write(dir .. "/broken", "config a\n\toption x 'open\n")
    r = uci_cmd("get", "broken.@a[0].x")
    assert.are.same({ 1, "uci: Parse error (unterminated ') at line 2\n" }, { r.status, r.err })
    assert.are.equal("", ok("changes"))
  end)
end)
