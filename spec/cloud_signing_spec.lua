-- The local cloud and firmware signatures (issue 15, item 5): a firmware
-- NAME registered with the NAME.minisig the real `minisign` tool wrote
-- beside it, or the file --signature names, is served at its URL with
-- .minisig appended (where devices fetch it) and shown signed with its
-- key id; a malformed signature is refused at upload; an unsigned upload
-- leaves no older signature behind; `cloud push` warns about an unsigned
-- firmware. The cloud runs as a process of its own, driven by the CLI and
-- the admin API as a user does.
local h = require "helper"
local http = require "fotahost.http"
local tcp = require "fotahost.tcp"
local mcs_cloud = require "fotahost.mcs_cloud"

local ID, KEY = "SigDev1x", "q7Vb2LmNw9Xc4RtZ"

local dir, fwdir, cloud, key_id

local function minisign(args)
  local out, code = h.sh("minisign " .. args)
  assert(code == 0, "minisign " .. args .. ": " .. out)
  return out
end

-- A firmware file `name` in dir (deterministic bytes from `seed`).
local function firmware(name, seed)
  return h.write(dir .. "/" .. name, h.pattern(2000, seed))
end

-- Signs dir/name as a user does (minisign writes NAME.minisig beside it,
-- or `out`); returns the signature's text.
local function sign(name, comment, out)
  local file = dir .. "/" .. name
  out = out or file .. ".minisig"
  minisign(("-S -s %s -m %s -x %s -t %s"):format(h.q(dir .. "/k.key"), h.q(file), h.q(out), h.q(comment)))
  return h.read(out)
end

local function cli(...)
  return h.run({ "cloud", (...), "--cloud", cloud.url, select(2, ...) })
end

-- An admin call: its decoded answer, or nil, message, status.
local function admin(method, path, value)
  local headers = assert(mcs_cloud.admin_headers(cloud.url))
  return http.json(method, cloud.url .. "/admin" .. path, value, { retries = 0, timeout = 20, headers = headers })
end

local function firmware_json(version)
  for _, fw in ipairs(assert(admin("GET", "/firmwares")).firmwares) do
    if fw.version == version then return fw end
  end
end

local function get(url)
  return assert(http.request { method = "GET", url = url, retries = 0, timeout = 20 })
end

local function start(...)
  cloud = h.start_cloud(fwdir, 0, { "--device", ID .. ":" .. KEY, ... })
  cloud.tcp_port = math.tointeger(tonumber(cloud.out:match(" tcp [%d.]+:(%d+)\n")))
end

describe("fotahost cloud and minisign signatures", function()
  lazy_setup(function()
    dir = h.tmpdir()
    fwdir = dir .. "/fw"
    minisign(("-G -W -p %s -s %s"):format(h.q(dir .. "/k.pub"), h.q(dir .. "/k.key")))
    key_id = h.read(dir .. "/k.pub"):match("minisign public key (%x+)")
    start()
  end)

  lazy_teardown(function()
    if cloud then cloud.stop() end
    h.rmdir(dir)
  end)

  it("uploads the FILE.minisig minisign wrote beside the firmware, and serves it at URL.minisig", function()
    firmware("blink-2.0.hex", 1)
    local sig = sign("blink-2.0.hex", "fotahost version=2.0 part=m32u4 counter=2")
    local r = cli("register", "--version", "2.0", "--file", dir .. "/blink-2.0.hex")
    assert.are.equal(0, r.status, r.err)
    assert.matches("registered 2%.0 as fw%d+: md5 %x+, %S+, signed by key " .. key_id .. "\n$", r.out)
    local fw = firmware_json("2.0")
    assert.are.same({ true, key_id, "fotahost version=2.0 part=m32u4 counter=2" },
                    { fw.signed, fw.key_id, fw.trusted_comment })
    local got = get(fw.url .. ".minisig")
    assert.are.equal(200, got.status)
    assert.are.equal(sig, got.body)
    assert.are.equal(tostring(#sig), got.headers["content-length"])
    r = cli("status")
    assert.are.equal(0, r.status, r.err)
    assert.matches("FIRMWARE%s+FWID%s+MD5%s+SIGNED%s+URL\n", r.out)
    assert.matches("\n2%.0%s+fw%d+%s+%x+%s+" .. key_id .. "%s+http", r.out)
  end)

  it("uploads the file --signature names instead, and refuses a --signature that is not there", function()
    firmware("blink-2.1.hex", 2)
    local sig = sign("blink-2.1.hex", "fotahost version=2.1 part=m32u4 counter=3", dir .. "/elsewhere.sig")
    local r = cli("register", "--version", "2.1", "--file", dir .. "/blink-2.1.hex",
                  "--signature", dir .. "/elsewhere.sig")
    assert.are.equal(0, r.status, r.err)
    local fw = firmware_json("2.1")
    assert.are.same({ true, "fotahost version=2.1 part=m32u4 counter=3" }, { fw.signed, fw.trusted_comment })
    assert.are.equal(sig, get(fw.url .. ".minisig").body)
    r = cli("register", "--version", "2.2", "--file", dir .. "/blink-2.1.hex", "--signature", dir .. "/nothing.sig")
    assert.are.equal(1, r.status)
    assert.matches("signature: " .. h.literal(dir) .. "/nothing%.sig: No such file", r.err)
    assert.is_nil(firmware_json("2.2"))
  end)

  it("shows a firmware without a signature as unsigned, and answers 404 for its URL.minisig", function()
    firmware("plain.hex", 3)
    local r = cli("register", "--version", "1.0", "--file", dir .. "/plain.hex")
    assert.are.equal(0, r.status, r.err)
    assert.matches(", no signature\n$", r.out)
    local fw = firmware_json("1.0")
    assert.are.same({ false }, { fw.signed, fw.key_id, fw.trusted_comment })
    assert.are.equal(404, get(fw.url .. ".minisig").status)
    assert.are.equal(200, get(fw.url).status)
    r = cli("status")
    assert.matches("\n1%.0%s+fw%d+%s+%x+%s+no%s+http", r.out)
  end)

  it("refuses a malformed or oversized signature at upload, saying what is wrong, and stores nothing", function()
    local content = h.pattern(500, 4)
    local good = sign("blink-2.0.hex", "fotahost version=2.0 part=m32u4 counter=2", dir .. "/good.sig")
    local lines = {}
    for l in good:gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
    local cases = {
      { "not a signature\n", "malformed signature" },
      { ("%s\n%s\n%s\n%s\n"):format(lines[1], lines[2]:sub(1, -5), lines[3], lines[4]),
        "malformed signature: line 2" },
      { ("%s\n%s*\n%s\n%s\n"):format(lines[1], lines[2]:sub(1, -2), lines[3], lines[4]),
        "malformed signature: line 2" },
      { good .. ("x"):rep(13000), ("malformed signature: %d bytes, at most %d"):format(#good + 13000,
        require("fotahost.minisign").limits.signature_file) },
    }
    for i, case in ipairs(cases) do
      local v, err, code = admin("POST", "/firmwares", { version = "bad" .. i, name = "bad.hex", content = content,
                                                          signature = case[1] })
      assert.is_nil(v, case[2])
      assert.are.equal(400, code, err)
      assert.matches("firmware bad" .. i .. ": [^\n]*" .. h.literal(case[2]), err)
      assert.is_nil(firmware_json("bad" .. i))
    end
    assert.is_nil(h.read(fwdir .. "/bad.hex"))
    assert.is_nil(h.read(fwdir .. "/bad.hex.minisig"))
    -- a file of the firmware directory with a broken signature beside it
    h.write(fwdir .. "/placed.hex", content)
    h.write(fwdir .. "/placed.hex.minisig", "untrusted comment: x\nnot base64!\n")
    local v, err, code = admin("POST", "/firmwares", { version = "placed", file = "placed.hex" })
    assert.is_nil(v)
    assert.are.equal(400, code)
    assert.matches("placed%.hex%.minisig: malformed signature", err)
    -- a .minisig is no firmware: it would clobber another one's signature
    v, err, code = admin("POST", "/firmwares", { version = "sig", name = "blink-2.0.hex.minisig", content = content })
    assert.is_nil(v)
    assert.are.equal(400, code)
    assert.matches("signature of the firmware it extends", err)
    assert.are.equal(h.read(dir .. "/blink-2.0.hex.minisig"), get(firmware_json("2.0").url .. ".minisig").body)
  end)

  it("removes a signature when the same firmware comes again without one: never served for other bytes", function()
    firmware("again.hex", 5)
    sign("again.hex", "fotahost version=3.0 part=m32u4 counter=4")
    assert.are.equal(0, cli("register", "--version", "3.0", "--file", dir .. "/again.hex").status)
    local url = firmware_json("3.0").url
    assert.are.equal(200, get(url .. ".minisig").status)
    -- new bytes for 3.0, as a user rebuilds and uploads without signing
    local v = assert(admin("POST", "/firmwares", { version = "3.0", name = "again.hex", content = h.pattern(2000, 6) }))
    assert.is_false(v.signed)
    assert.are.equal(404, get(url .. ".minisig").status)
    assert.is_nil(h.read(fwdir .. "/again.hex.minisig"))
    assert.matches("firmware 3%.0: " .. h.literal(fwdir) .. "/again%.hex%.minisig removed", cloud.stderr())
  end)

  it("keeps a signature with its firmware when the upload is stored as VERSION-NAME", function()
    -- blink-2.0.hex is 2.0's: 2.5 with the same name is stored as 2.5-blink-2.0.hex
    local sig = sign("blink-2.1.hex", "fotahost version=2.5 part=m32u4 counter=5", dir .. "/v25.sig")
    local v = assert(admin("POST", "/firmwares", { version = "2.5", name = "blink-2.0.hex",
                                                   content = h.read(dir .. "/blink-2.1.hex"), signature = sig }))
    assert.are.same({ "2.5-blink-2.0.hex", true }, { v.name, v.signed })
    assert.are.equal(sig, get(v.url .. ".minisig").body)
    assert.are.equal(h.read(dir .. "/blink-2.0.hex.minisig"), get(firmware_json("2.0").url .. ".minisig").body)
  end)

  it("warns on push when the firmware has no signature, and not when it has one", function()
    local s <close> = assert(tcp.connect("127.0.0.1", cloud.tcp_port, 5))
    assert(s:write(ID .. "," .. KEY .. ",0\n", 5))
    h.until_true("the device connected", 10, function()
      for _, d in ipairs(assert(admin("GET", "/devices")).devices) do
        if d.id == ID and d.connected then return true end
      end
    end)
    local got = ""
    local function received(pattern)
      return h.until_true("a push matching " .. pattern, 10, function()
        got = got .. (s:read_some(4096, 0.05) or "")
        return got:find(pattern)
      end)
    end
    local r = cli("push", "--device", ID, "--version", "1.0")
    assert.are.equal(0, r.status, r.err)
    assert.are.equal("fotahost cloud: warning: firmware 1.0 has no signature (plain.hex.minisig): a device with"
      .. " trusted_keys refuses it\n", r.err)
    received(",FOTA,1%.0,")
    r = cli("push", "--device", ID, "--version", "2.0")
    assert.are.equal(0, r.status, r.err)
    assert.are.equal("", r.err)
    received(",FOTA,2%.0,")
    -- push --file: the .minisig beside it goes up too
    firmware("pushed.hex", 7)
    sign("pushed.hex", "fotahost version=4.0 part=m32u4 counter=6")
    r = cli("push", "--device", ID, "--version", "4.0", "--file", dir .. "/pushed.hex")
    assert.are.equal(0, r.status, r.err)
    assert.are.equal("", r.err)
    received(",FOTA,4%.0,")
    assert.is_true(firmware_json("4.0").signed)
  end)

  it("knows which firmwares are signed again after a restart; serve --firmware takes PATH.minisig", function()
    local before = assert(admin("GET", "/firmwares")).firmwares
    cloud.stop()
    start("--firmware", "5.0=" .. dir .. "/pushed.hex")
    local after = {}
    for _, fw in ipairs(assert(admin("GET", "/firmwares")).firmwares) do after[fw.version] = fw end
    for _, fw in ipairs(before) do
      local again = after[fw.version]
      assert.truthy(again, fw.version)
      assert.are.same({ fw.version, fw.signed, fw.key_id, fw.trusted_comment },
                      { again.version, again.signed, again.key_id, again.trusted_comment })
    end
    assert.is_true(after["2.0"].signed)
    assert.is_false(after["1.0"].signed)
    assert.are.same({ true, "fotahost version=4.0 part=m32u4 counter=6" },
                    { after["5.0"].signed, after["5.0"].trusted_comment })
    assert.are.equal(h.read(dir .. "/blink-2.0.hex.minisig"), get(after["2.0"].url .. ".minisig").body)
  end)
end)
