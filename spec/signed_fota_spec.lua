-- Signed firmware end to end (issue 15): keys made and images signed with
-- the real `minisign` tool, pushed through the local cloud to the app
-- (`fotahost app`) and its simulated chip. A good signed image is flashed;
-- every image the signature does not vouch for is refused with the reason
-- in its status, and the chip is never erased for it. Signatures no cloud
-- would serve (oversized, malformed) come from the spec's own HTTP server.
local h = require "helper"
local ihex = require "fotahost.ihex"
local cjson = require "cjson"

local WAIT = h.wait_limit(90) -- seconds for anything to happen (CI is a loaded 2-core machine)
local FLASH_SIZE = 32768

local function minisign(args)
  local out, code = h.sh("minisign " .. args)
  assert(code == 0, "minisign " .. args .. ": " .. out)
  return out
end

describe("signed firmware: the app, the local cloud and the simulated chip", function()
  local dir, cloud, web
  local keys = {}       -- name -> { pub = path, key = path, id = key id }
  local cleanups = {}
  local ndev = 0

  local function admin(method, path, value) return h.cloud_admin(cloud.url, method, path, value) end

  -- Signs `file` with key `name` and trusted comment `comment`; `legacy`:
  -- minisign's -l form (Ed). Returns the signature's text.
  local function sign(name, file, comment, legacy)
    local out = file .. ".sig-" .. name
    minisign(("-S %s -s %s -m %s -x %s -t %s"):format(legacy and "-l" or "", h.q(keys[name].key), h.q(file),
      h.q(out), h.q(comment)))
    return h.read(out)
  end

  local function comment(version, counter, extra)
    return ("fotahost version=%s part=m32u4 counter=%d%s"):format(version, counter, extra or "")
  end

  -- Uploads `content` to the cloud as version `version` (file NAME.hex),
  -- with `signature` (text) when given.
  local function upload(version, content, signature)
    return admin("POST", "/firmwares", { version = version, name = version .. ".hex", content = content,
      signature = signature })
  end

  local function firmware_text(name) return h.read(h.firmware(name .. ".hex")) end

  -- A device: an id in the cloud, an empty chip, state, and a config
  -- trusting the keys named in `trusted` (nil: none).
  local function new_device(trusted)
    ndev = ndev + 1
    local d = h.tmpdir()
    cleanups[#cleanups + 1] = function() h.rmdir(d) end
    local t = { id = ("signed%d"):format(ndev), key = ("sigkey%04d"):format(ndev), dir = d,
      chip = d .. "/chip", state = d .. "/state", cfg = d .. "/config.lua" }
    assert(os.execute("mkdir " .. h.q(t.chip)))
    admin("POST", "/devices", { id = t.id, key = t.key })
    local paths = {}
    for i, name in ipairs(trusted or {}) do paths[i] = ("%q"):format(keys[name].pub) end
    h.write(t.cfg, ([[
return {
  device_id = %q, device_key = %q, api = %q,
  board = "sim", sim_dir = %q, state_dir = %q, volatile_state_ok = true,
  heartbeat = 1, backoff_cap = 2, http = { retries = 0 },
  %s
}
]]):format(t.id, t.key, cloud.url, t.chip, t.state,
      trusted and ("trusted_keys = { %s },"):format(table.concat(paths, ", ")) or ""))
    return t
  end

  local function connected(t) return admin("GET", "/devices/" .. t.id).connected end

  local function start_app(t)
    t.app = h.start_app(t.dir, t.cfg, "")
    local app = t.app
    cleanups[#cleanups + 1] = function() h.stop_app(app) end
    h.until_true("the app to connect", WAIT, function()
      if not h.alive(app.pid) then error("the app exited; its log:\n" .. (h.read(t.dir .. "/app.log") or "")) end
      return connected(t)
    end)
    return t
  end

  local function stop_app(t)
    h.stop_app(t.app)
    h.until_true("the cloud to see the app gone", WAIT, function() return not connected(t) end)
  end

  -- The device's fota_status values since its last "idle: ...", in order.
  local function statuses(t)
    local d = admin("GET", "/devices/" .. t.id .. "/datapoints?channel=fota_status")
    local out = {}
    for _, p in ipairs(d.datapoints) do
      local v = p.values.value
      if not v:find("^idle: ") then out[#out + 1] = v end
    end
    return out
  end

  local function terminal(s) return s == "done" or s:find("^failed: ") ~= nil end

  -- Pushes `what` (a registered version, or { version, url, md5 }) and
  -- waits for its final status; returns it and the statuses of this push.
  local function push(t, what)
    local before = #statuses(t)
    admin("POST", "/devices/" .. t.id .. "/fota", type(what) == "table" and what or { version = what })
    local list
    h.until_true("the final status of a push to " .. t.id, WAIT, function()
      list = { table.unpack(statuses(t), before + 1) }
      return #list > 0 and terminal(list[#list])
    end)
    return list[#list], list
  end

  local function erases(t)
    local n = 0
    for _ in (h.read(t.chip .. "/erases.log") or ""):gmatch("\n") do n = n + 1 end
    return n
  end

  local function holds(t, name)
    h.assert_flash_holds(t.chip, assert(ihex.load(h.firmware(name .. ".hex"))):bytes(0, FLASH_SIZE - 1), name)
  end

  local function counter(t)
    local j = h.read(t.state .. "/counter.json")
    return j and cjson.decode(j).counter
  end

  setup(function()
    dir = h.tmpdir()
    for _, name in ipairs({ "old", "new", "other" }) do
      local k = { pub = dir .. "/" .. name .. ".pub", key = dir .. "/" .. name .. ".key" }
      minisign(("-G -W -p %s -s %s"):format(h.q(k.pub), h.q(k.key)))
      k.id = h.read(k.pub):match("minisign public key (%x+)")
      keys[name] = k
    end
    os.execute("mkdir " .. h.q(dir .. "/fw") .. " " .. h.q(dir .. "/www"))
    cloud = h.start_cloud(dir .. "/fw")
    web = h.start_server({ "spec/support/http_test_server.lua", "--root", dir .. "/www" })
    for _, name in ipairs({ "blink-1000", "blink-250" }) do
      assert(os.execute(("cp %s %s"):format(h.q(h.firmware(name .. ".hex")), h.q(dir .. "/" .. name .. ".hex"))))
    end
  end)
  teardown(function()
    if web then web.stop() end
    if cloud then cloud.stop() end
    h.rmdir(dir)
  end)
  after_each(function()
    for i = #cleanups, 1, -1 do pcall(cleanups[i]) end
    cleanups = {}
  end)

  it("flashes a signed image, says each step, and keeps its counter", function()
    local t = start_app(new_device({ "new" }))
    upload("s-2.0", firmware_text("blink-1000"), sign("new", dir .. "/blink-1000.hex", comment("s-2.0", 17)))
    local final, list = push(t, "s-2.0")
    assert.are.same({ "downloading", "verifying", "flashing", "done" }, list)
    assert.are.equal("done", final)
    holds(t, "blink-1000")
    assert.are.equal(17, counter(t))
    assert.are.equal("s-2.0", admin("GET", "/devices/" .. t.id).version)
    local log = h.read(t.dir .. "/app.log")
    assert.matches("s%-2%.0: signed by key " .. keys.new.id .. " %(ED%), counter 17", log)
    assert.is_nil(log:find("unsigned firmware is accepted", 1, true), log)
  end)

  it("takes a legacy (Ed) signature, and a key rotation: old and new keys both trusted", function()
    local t = start_app(new_device({ "old", "new" }))
    upload("r-1", firmware_text("blink-1000"), sign("old", dir .. "/blink-1000.hex", comment("r-1", 1), true))
    upload("r-2", firmware_text("blink-250"), sign("new", dir .. "/blink-250.hex", comment("r-2", 2)))
    assert.are.equal("done", (push(t, "r-1")))
    holds(t, "blink-1000")
    assert.are.equal("done", (push(t, "r-2")))
    holds(t, "blink-250")
    assert.are.equal(2, counter(t))
  end)

  it("refuses every image its signature does not vouch for, naming why, and never erases the chip", function()
    local t = start_app(new_device({ "new" }))
    local b1000, b250 = firmware_text("blink-1000"), firmware_text("blink-250")
    upload("base", b1000, sign("new", dir .. "/blink-1000.hex", comment("base", 17)))
    assert.are.equal("done", (push(t, "base")))
    local n = erases(t)
    local good = sign("new", dir .. "/blink-250.hex", comment("next", 18))
    local l = {}
    for line in good:gmatch("[^\n]+") do l[#l + 1] = line end
    -- one byte of the image changed (a data byte, its record's checksum left wrong:
    -- the signature is checked before the HEX is parsed)
    local tampered = b250:sub(1, 100) .. (b250:sub(101, 101) == "0" and "1" or "0") .. b250:sub(102)
    local cases = {
      { "unsigned", b250, nil, "^failed: unsigned: no signature at " .. cloud.url:gsub("%p", "%%%0")
        .. "/firmwares/unsigned%.hex%.minisig %(HTTP 404%); trusted_keys are set, so unsigned firmware is refused$" },
      { "wrong-key", b250, sign("other", dir .. "/blink-250.hex", comment("wrong-key", 18)),
        ("^failed: signature: signed by key %s, which is not a trusted key %%(trusted: %s%%)$")
          :format(keys.other.id, keys.new.id) },
      { "tampered", tampered, sign("new", dir .. "/blink-250.hex", comment("tampered", 18)),
        "^failed: signature: the signature does not match the file %(signed by key " .. keys.new.id .. "%)$" },
      { "comment", b250, table.concat({ l[1], l[2], (l[3]:gsub("counter=18", "counter=99")), l[4] }, "\n") .. "\n",
        "^failed: signature: the trusted comment does not match its signature$" },
      { "other-file", b250, sign("new", dir .. "/blink-1000.hex", comment("other-file", 18)),
        "^failed: signature: the signature does not match the file" },
      { "version", b250, sign("new", dir .. "/blink-250.hex", comment("9.9", 18)),
        "^failed: signature: signed for version 9%.9, the push says version$" },
      { "part", b250, sign("new", dir .. "/blink-250.hex", "fotahost version=part part=m328p counter=18"),
        "^failed: signature: signed for part m328p, this board's MCU is m32u4$" },
      { "rollback", b250, sign("new", dir .. "/blink-250.hex", comment("rollback", 16)),
        "^failed: signature: counter 16 is below 17, the highest accepted %(a downgrade: an operator on the "
          .. "board can allow it with fotahost fota %-%-allow%-downgrade%)$" },
      { "no-counter", b250, sign("new", dir .. "/blink-250.hex", "fotahost version=no-counter part=m32u4"),
        "^failed: signature: the trusted comment has no counter=$" },
      { "minisign-default", b250, sign("new", dir .. "/blink-250.hex", "timestamp:1\tfile:blink-250.hex\thashed"),
        "^failed: signature: the trusted comment has no version=$" },
    }
    for _, c in ipairs(cases) do
      upload(c[1], c[2], c[3])
      local final, list = push(t, c[1])
      assert.matches(c[4], final, 1, false, c[1])
      assert.is_nil(table.concat(list, "\n"):find("flashing", 1, true), c[1])
      assert.are.equal(n, erases(t), c[1] .. ": the chip was erased")
      holds(t, "blink-1000")
    end
    assert.are.equal(17, counter(t))
    assert.are.equal("base", admin("GET", "/devices/" .. t.id).version)
  end)

  it("refuses a signature file that is missing, oversized or malformed, from any server", function()
    local t = start_app(new_device({ "new" }))
    local www = dir .. "/www"
    local good = sign("new", dir .. "/blink-250.hex", comment("w", 1))
    local l = {}
    for line in good:gmatch("[^\n]+") do l[#l + 1] = line end
    local function with(i, v)
      local c = { l[1], l[2], l[3], l[4] }
      c[i] = v
      return table.concat(c, "\n") .. "\n"
    end
    local raw = h.must("printf %s " .. h.q(l[2]) .. " | base64 -d | od -An -tx1 -v"):gsub("%s", "")
    local function b64(hex)
      return h.must("printf %s " .. h.q(hex) .. " | xxd -r -p | base64 -w0")
    end
    local cases = {
      { "missing", nil, "^failed: unsigned: no signature at .*/files/missing%.hex%.minisig %(HTTP 404%)" },
      { "oversized", good .. ("\n"):rep(13000), "^failed: signature download: .*/files/oversized%.hex%.minisig: "
        .. "body larger than max_size %(12288 bytes%)$" },
      { "base64", with(2, l[2]:sub(1, 10) .. "!" .. l[2]:sub(12)),
        "^failed: signature: malformed signature: line 2 is not base64$" },
      { "length", with(2, b64(raw:sub(1, 146))), "^failed: signature: malformed signature: line 2 decodes to 73 "
        .. "bytes, 74 expected$" },
      { "algorithm", with(2, b64("5858" .. raw:sub(5))),
        '^failed: signature: unsupported signature algorithm "XX" %(ED or Ed expected%)$' },
    }
    for _, c in ipairs(cases) do
      local name = c[1] .. ".hex"
      h.write(www .. "/" .. name, firmware_text("blink-250"))
      if c[2] then h.write(www .. "/" .. name .. ".minisig", c[2]) end
      local final = push(t, { version = "w", url = web.url .. "/files/" .. name, md5 = cjson.null })
      assert.matches(c[3], final, 1, false, c[1])
      assert.are.equal(0, erases(t), c[1] .. ": the chip was erased")
    end
  end)

  it("keeps the counter across restarts; only an operator's fotahost fota --allow-downgrade goes below it", function()
    local t = start_app(new_device({ "new" }))
    upload("c-5", firmware_text("blink-1000"), sign("new", dir .. "/blink-1000.hex", comment("c-5", 5)))
    upload("c-4", firmware_text("blink-250"), sign("new", dir .. "/blink-250.hex", comment("c-4", 4)))
    assert.are.equal("done", (push(t, "c-5")))
    stop_app(t)
    start_app(t)
    assert.matches("counter 4 is below 5", (push(t, "c-4")))
    holds(t, "blink-1000")
    stop_app(t)
    -- on the board, by hand: the same checks, the counter's aside
    local url = cloud.url .. "/firmwares/c-4.hex"
    local r = h.run({ "fota", "--config", t.cfg, "--url", url, "--version", "c-4" })
    assert.are.equal(1, r.status)
    assert.matches("failed: signature: counter 4 is below 5", r.out)
    r = h.run({ "fota", "--config", t.cfg, "--url", url, "--version", "c-4", "--allow-downgrade" })
    assert.are.equal(0, r.status, r.err)
    assert.are.equal("downloading\nverifying\nflashing\ndone\n", r.out)
    holds(t, "blink-250")
    assert.are.equal(4, counter(t))
    -- still signed: a downgrade to an image of another key is refused all the same
    upload("c-3", firmware_text("blink-1000"), sign("other", dir .. "/blink-1000.hex", comment("c-3", 3)))
    r = h.run({ "fota", "--config", t.cfg, "--url", cloud.url .. "/firmwares/c-3.hex", "--version", "c-3",
      "--allow-downgrade" })
    assert.are.equal(1, r.status)
    assert.matches("failed: signature: signed by key " .. keys.other.id, r.out)
  end)

  it("refuses every update while a trusted key cannot be read, staying on the air; warns when no key is set", function()
    local t = new_device({ "new" })
    h.write(t.cfg, h.read(t.cfg):gsub(keys.new.pub:gsub("%p", "%%%0"), dir .. "/none.pub"))
    start_app(t)
    local why = "trusted key " .. dir .. "/none.pub: " .. h.strerror.ENOENT
      .. ": every update is refused until it is fixed"
    assert.matches(why:gsub("%p", "%%%0"), h.read(t.dir .. "/app.log"))
    upload("k-1", firmware_text("blink-1000"), sign("new", dir .. "/blink-1000.hex", comment("k-1", 1)))
    assert.are.same({ "failed: " .. why }, select(2, push(t, "k-1")))
    assert.are.equal(0, erases(t))
    -- a key anyone may write is no trust anchor
    local loose = dir .. "/loose.pub"
    assert(os.execute(("cp %s %s && chmod 666 %s"):format(h.q(keys.new.pub), h.q(loose), h.q(loose))))
    stop_app(t)
    h.write(t.cfg, h.read(t.cfg):gsub((dir .. "/none.pub"):gsub("%p", "%%%0"), loose))
    start_app(t)
    assert.are.equal("failed: trusted key " .. loose .. ": writable by others (mode 666): refused; chmod go-w "
      .. loose .. ": every update is refused until it is fixed", (push(t, "k-1")))
    -- no keys: unsigned firmware goes on, with a warning at start and at every update
    local u = start_app(new_device())
    assert.matches("no trusted_keys configured: unsigned firmware is accepted", h.read(u.dir .. "/app.log"))
    upload("u-1", firmware_text("blink-1000"))
    local final, list = push(u, "u-1")
    assert.are.equal("done", final)
    assert.are.same({ "downloading", "verifying", h.UNSIGNED, "flashing", "done" }, list)
    assert.is_nil(h.read(u.state .. "/counter.json"))
  end)
end)
