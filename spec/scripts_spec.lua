-- `fotahost scripts edit|diff|list`, as a user edits a bundled script on
-- the board: the copy remembers what it came from, the change can be
-- shown, and an upgrade that moved the bundled file on is noticed by
-- list, check and doctor ("stale").
local h = require "helper"

local BUNDLED = h.layout.scripts[1]
local VERSION = require("fotahost.host").version

local function lines_of(out)
  local t = {}
  for l in (out or ""):gmatch("[^\n]*\n") do t[#t + 1] = l:sub(1, -2) end
  return t
end

describe("fotahost scripts", function()
  local dir, ov, file, bundled

  before_each(function()
    dir = h.tmpdir()
    ov = dir .. "/etc/scripts" -- not there yet: edit makes it
    file = ov .. "/fotahost/fota.lua"
    bundled = assert(h.read(BUNDLED .. "/fotahost/fota.lua"))
  end)
  after_each(function() h.rmdir(dir) end)

  local function run(args, editor)
    return h.run(args, { env = { FOTAHOST_SCRIPTS_DIR = ov, EDITOR = editor or "true", VISUAL = "" } })
  end

  -- The editor a test "types" with: sed -i on the file it is given.
  local function sed(expr) return "sed -i -e " .. h.q(expr) end

  it("edit copies the bundled file with a marker on its first line, opens the editor, then checks", function()
    local r = run({ "scripts", "edit", "fotahost.fota" }, sed("s/^local M = {}$/local M = {} -- mine/"))
    assert.are.equal(0, r.status, r.err)
    assert.are.same({ ("copied %s/fotahost/fota.lua to %s (its first line names what it came from: keep it, "
      .. "so that an upgrade of the bundled file is noticed)"):format(BUNDLED, file), file .. ": ok" },
      lines_of(r.out))
    local text = h.read(file)
    local sha = require("fotahost.digest").sha256(bundled)
    local marker = ("--[[fotahost override of fotahost/fota.lua, bundled with fotahost %s, sha256 %s]] ")
      :format(VERSION, sha)
    assert.are.equal(marker, text:sub(1, #marker))
    -- every line keeps its number: the marker shares the first line
    assert.are.equal(bundled:gsub("\nlocal M = {}\n", "\nlocal M = {} -- mine\n"), text:sub(#marker + 1))
    -- what it came from, kept where require does not look
    assert.are.equal(bundled, h.read(ov .. "/.bundled/fotahost/fota.lua"))

    r = run({ "scripts", "list" })
    assert.are.equal(0, r.status, r.err)
    assert.are.same({ file .. ": ok: from fotahost " .. VERSION .. ", edited" }, lines_of(r.out))

    r = run({ "scripts", "diff", "fotahost/fota.lua" })
    assert.are.equal(0, r.status, r.err)
    assert.matches("^your change: against the bundled fotahost/fota.lua of fotahost " .. h.literal(VERSION)
      .. " it was copied from\n%-%-%- bundled fotahost/fota.lua %(fotahost " .. h.literal(VERSION) .. "%)\n%+%+%+ "
      .. h.literal(file) .. "\n@@ ", r.out)
    assert.matches("\n%-local M = {}\n%+local M = {} %-%- mine\n", r.out)
    assert.matches("\nthe bundled fotahost/fota.lua is unchanged since the copy\n$", r.out)
  end)

  it("edit of an existing override only opens it: the user's change stays", function()
    assert.are.equal(0, run({ "scripts", "edit", "fotahost/fota.lua" }, sed("s/^local M = {}$/local M = {} -- 1/"))
      .status)
    local r = run({ "scripts", "edit", file }, sed("s/^local M = {} -- 1$/local M = {} -- 2/"))
    assert.are.equal(0, r.status, r.err)
    assert.are.same({ file .. ": ok" }, lines_of(r.out))
    assert.matches("\nlocal M = {} %-%- 2\n", h.read(file))
  end)

  it("edit says where a saved edit is broken, with the line the bundled file has, and exits 1", function()
    local n = 0
    for l in bundled:gmatch("([^\n]*)\n") do
      n = n + 1
      if l == "local M = {}" then break end
    end
    local r = run({ "scripts", "edit", "fotahost.fota" }, sed("s/^local M = {}$/local M = {/"))
    assert.are.equal(1, r.status, r.err)
    -- (the line after it is blank: the next `local` is where Lua sees the mistake)
    assert.are.equal(("%s:%d: unexpected symbol near 'local'"):format(file, n + 2), lines_of(r.out)[2])
    -- list's "ok" is about where the copy came from: it says the copy is broken too
    r = run({ "scripts", "list" })
    assert.are.same({ ("%s: ok: from fotahost %s, edited; does not compile: line %d: unexpected symbol near "
      .. "'local' (the bundled one runs instead)"):format(file, VERSION, n + 2) }, lines_of(r.out))
  end)

  it("list, diff, check and doctor say stale when the bundled file changed since the copy", function()
    assert.are.equal(0, run({ "scripts", "edit", "fotahost.fota" }, sed("s/^local M = {}$/local M = {} -- mine/"))
      .status)
    -- an upgrade as the copy sees it: the bundled file it was made from had another hash, and another text
    local text = h.read(file)
    h.write(file, (text:gsub("sha256 %x+", "sha256 " .. ("0"):rep(64), 1)))
    local pristine = ov .. "/.bundled/fotahost/fota.lua"
    h.write(pristine, (bundled:gsub("\nlocal log = ", "\nlocal log_old = ", 1)))
    local why = ("stale: the bundled fotahost/fota.lua changed since this copy was made (from fotahost %s; now %s): "
      .. "see fotahost scripts diff fotahost/fota.lua"):format(VERSION, VERSION)

    local r = run({ "scripts", "list" })
    assert.are.same({ file .. ": " .. why }, lines_of(r.out))

    r = run({ "check", file })
    assert.are.equal(0, r.status, r.out) -- a warning, not an error
    assert.are.same({ file .. ": warning: " .. why }, lines_of(r.out))

    r = run({ "scripts", "diff", "fotahost.fota" })
    assert.are.equal(0, r.status, r.err)
    local since, today = r.out:match("^(your change:.-)(the bundled fotahost/fota%.lua moved on since the copy: "
      .. "your file against today's.*)$")
    assert.truthy(since, r.out)
    assert.matches("\n%-local log_old = ", since)
    assert.matches("\n%-local M = {}\n%+local M = {} %-%- mine\n", since)
    assert.matches("^[^\n]*\n%-%-%- bundled fotahost/fota%.lua %(today's%)\n", today)
    assert.is_nil(today:find("log_old", 1, true))
    assert.matches("\n%-local M = {}\n%+local M = {} %-%- mine\n", today)

    -- doctor: the line, and a warning fails nothing of its own
    local cfg = h.write(dir .. "/config.lua", "return {}\n")
    r = h.run({ "doctor", "--config", cfg }, { env = { FOTAHOST_SCRIPTS_DIR = ov } })
    assert.are.equal(("WARN scripts: %s: %s - take today's bundled file: move yours aside, fotahost scripts edit "
      .. "fotahost/fota.lua, and bring your change back"):format(file, why), lines_of(r.out)[2])
  end)

  it("list tells a copy made by hand and a script of the user's own, and says when there is none", function()
    local r = run({ "scripts", "list" })
    assert.are.equal(0, r.status, r.err)
    assert.are.same({ "no overrides in " .. ov .. ": the bundled scripts run" }, lines_of(r.out))
    h.must("mkdir -p " .. h.q(ov .. "/fotahost") .. " " .. h.q(ov .. "/site"))
    h.write(file, bundled)
    h.write(ov .. "/site/hooks.lua", "return {}\n")
    h.write(ov .. "/site/typo.lua", "return {\n")
    r = run({ "scripts", "list" })
    assert.are.same({
      file .. ": no marker: copied by hand, so a change of the bundled file cannot be told (fotahost scripts edit "
        .. "makes copies that can)",
      ov .. "/site/hooks.lua: no bundled twin: a script of your own",
      ov .. "/site/typo.lua: no bundled twin: a script of your own; does not compile: line 2: unexpected symbol "
        .. "near <eof> (it fails to load)" }, lines_of(r.out))
    os.remove(ov .. "/site/typo.lua")
    r = run({ "scripts", "diff", "fotahost.fota" })
    assert.matches("^" .. h.literal(file) .. ": no marker %(copied by hand%): against today's bundled ", r.out)

    -- a copy whose bundled file a later version dropped: a warning, the copy still runs
    local gone = h.write(ov .. "/fotahost/gone.lua", ("--[[fotahost override of fotahost/gone.lua, bundled with "
      .. "fotahost 0.0.9, sha256 %s]] return {}\n"):format(("0"):rep(64)))
    r = run({ "check", gone })
    assert.are.equal(0, r.status)
    assert.are.same({ gone .. ": warning: no bundled twin: the bundled fotahost/gone.lua it was copied from is gone" },
      lines_of(r.out))
  end)

  it("refuses a name outside the scripts directory, one with no bundled file, and a diff with no override",
    function()
      for _, name in ipairs({ "../scripts/tools/app.lua", "/etc/passwd", ".bundled/fotahost/fota.lua" }) do
        local r = run({ "scripts", "edit", name })
        assert.are.equal(1, r.status)
        assert.are.equal(("fotahost scripts: %s: not a script name (fotahost/fota.lua, fotahost.fota or "
          .. "tools/app.lua)\n"):format(name), r.err)
      end
      local r = run({ "scripts", "edit", "fotahost.nothing" })
      assert.are.equal(1, r.status)
      assert.are.equal("fotahost scripts: fotahost/nothing.lua: no bundled file of that name to copy (the bundled "
        .. "scripts: fotahost --paths)\n", r.err)
      r = run({ "scripts", "diff", "fotahost.fota" })
      assert.are.equal(1, r.status)
      assert.are.equal(("fotahost scripts: %s: no such override (fotahost scripts edit fotahost/fota.lua makes "
        .. "one)\n"):format(file), r.err)
      assert.is_nil(h.read(ov .. "/scripts/tools/app.lua"))
      r = run({ "scripts", "move" })
      assert.are.equal(2, r.status)
      assert.matches("^fotahost scripts: unknown command 'move'\nusage:", r.err)
    end)

  it("marks a copy whose first line Lua skips (a BOM, a #! line) after it: it compiles, lines keep their numbers",
    function()
      local overrides = require "fotahost.overrides"
      local sha = require("fotahost.digest").sha256(bundled)
      for what, top in pairs({ ["#!"] = "#!/usr/bin/env lua\n", BOM = "\239\187\191", ["BOM and #!"] =
        "\239\187\191#!/usr/bin/env lua\n" }) do
        local text = top .. bundled
        local marked = overrides.mark(text, "fotahost/fota.lua", sha)
        h.must("mkdir -p " .. h.q(ov .. "/fotahost"))
        h.write(file, marked)
        local _, n1 = text:gsub("\n", "")
        local _, n2 = marked:gsub("\n", "")
        assert.are.equal(n1, n2, what)
        local r = run({ "check", file })
        assert.are.equal(0, r.status, what .. ": " .. r.out .. r.err)
        assert.are.equal(file .. ": ok\n", r.out, what)
        r = run({ "scripts", "list" })
        assert.are.equal(file .. ": ok: from fotahost " .. VERSION .. "\n", r.out, what)
        local m, rest = overrides.marker(marked)
        assert.are.equal(sha, m and m.sha256, what)
        assert.are.equal(text, rest, what)
      end
    end)
end)
