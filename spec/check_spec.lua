-- `fotahost check`, as a user runs it after editing a script or the config
-- on the board (or as an editor runs it on save): one line per file, the
-- file and line of a mistake, and the exit status.
local h = require "helper"

-- The bundled scripts directory (a checkout's scripts/, or the board's).
local BUNDLED = h.layout.scripts[1]

--- `text` with " x x" added to the first line matching `pattern` (a syntax
-- error there), and that line's number.
local function typo(text, pattern)
  local n = 0
  for l in text:gmatch("([^\n]*)\n") do
    n = n + 1
    if l:match(pattern) then
      local lines = {}
      for m in text:gmatch("([^\n]*)\n") do lines[#lines + 1] = m end
      lines[n] = lines[n] .. " x x"
      return table.concat(lines, "\n") .. "\n", n
    end
  end
  error("no line matches " .. pattern)
end

local function lines_of(out)
  local t = {}
  for l in (out or ""):gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

describe("fotahost check", function()
  local dir, ov, cfg

  before_each(function()
    dir = h.tmpdir()
    ov = dir .. "/scripts"
    cfg = h.write(dir .. "/config.lua", ([[
return { device_id = "Dbxx9k", device_key = "TPJVxxxxBxBv", board = "sim", sim_dir = %q, state_dir = %q }
]]):format(dir .. "/chip", dir .. "/state"))
  end)
  after_each(function() h.rmdir(dir) end)

  local function check(args, env)
    local e = { FOTAHOST_SCRIPTS_DIR = ov, FOTAHOST_CONFIG = cfg }
    for k, v in pairs(env or {}) do e[k] = v end
    local all = { "check" }
    for _, a in ipairs(args or {}) do all[#all + 1] = a end
    local r = h.run(all, { env = e })
    r.lines = lines_of(r.out)
    -- reading the config with a broken override of its reader runs the
    -- bundled reader, which the host logs; nothing else reaches stderr
    for _, l in ipairs(lines_of(r.err)) do assert.truthy(l:find("; running the bundled ", 1, true), l) end
    return r
  end

  -- An override of the bundled `rel` with a typo on the first line that
  -- matches `pattern`: its path and the typo's line.
  local function broken_override(rel, pattern)
    local text, n = typo(assert(h.read(BUNDLED .. "/" .. rel)), pattern)
    local file = ov .. "/" .. rel
    h.must("mkdir -p " .. h.q(file:match("^(.*)/")))
    h.write(file, text)
    return file, n
  end

  it("says ok for the app script and the config when there are no overrides", function()
    local r = check()
    assert.are.equal(0, r.status, r.out)
    assert.are.same({ BUNDLED .. "/tools/app.lua: ok", cfg .. ": ok" }, r.lines)
  end)

  it("names the file and line of a typo in an override of the policy, the MCS client and the config loader",
    function()
      local want = {}
      for _, rel in ipairs({ "fotahost/fota.lua", "fotahost/fota/config.lua", "fotahost/mcs.lua" }) do
        local file, n = broken_override(rel, "^local M = {}$")
        want[#want + 1] = ("%s:%d: syntax error near 'x'"):format(file, n)
      end
      local r = check()
      assert.are.equal(1, r.status, r.out)
      assert.are.same({ want[1], want[2], want[3], BUNDLED .. "/tools/app.lua: ok", cfg .. ": ok" }, r.lines)
    end)

  it("checks the app script in use: an override of it, with its line", function()
    local file, n = broken_override("tools/app.lua", "^local sched = require")
    local r = check()
    assert.are.equal(1, r.status, r.out)
    assert.are.same({ ("%s:%d: syntax error near 'x'"):format(file, n), cfg .. ": ok" }, r.lines)
  end)

  it("names the config's unknown key and wrong type, and its line for a syntax error", function()
    h.write(cfg, 'return { device_id = "Dbxx9k", device_key = "TPJVxxxxBxBv", heartbeat = "50", hartbeat = 5 }\n')
    local r = check()
    assert.are.equal(1, r.status, r.out)
    assert.are.same({ BUNDLED .. "/tools/app.lua: ok", cfg .. ": unknown key hartbeat",
      cfg .. ': heartbeat must be seconds between heartbeats, got "50"' }, r.lines)
    h.write(cfg, 'return {\n  device_id = "Dbxx9k"\n  device_key = "TPJVxxxxBxBv",\n}\n')
    r = check({ cfg })
    assert.are.equal(1, r.status, r.out)
    assert.are.same({ cfg .. ":3: '}' expected (to close '{' at line 1)" }, r.lines)
  end)

  it("checks the UCI file as part of the config, naming the option", function()
    local uci = h.write(dir .. "/fotahost", "config fotahost 'main'\n\toption heartbeat 'often'\n")
    local r = check({ uci }, { FOTAHOST_UCI_CONFIG = uci })
    assert.are.equal(1, r.status, r.out)
    assert.are.same({ uci .. ': fotahost.main.heartbeat must be seconds between heartbeats, got "often"' }, r.lines)
  end)

  it("checks only the FILEs given: a script compiled, the config (by --config too) read, a missing one named",
    function()
      local file, n = broken_override("fotahost/fota.lua", "^local M = {}$")
      -- a first line starting with '#' is skipped, as the host and require skip it
      local mine = h.write(dir .. "/mine.lua", "#!/usr/bin/env fotahost\nreturn 1\n")
      local r = check({ mine })
      assert.are.equal(0, r.status, r.out)
      assert.are.same({ mine .. ": ok" }, r.lines)

      local other = h.write(dir .. "/other.lua", "return { device_id = 'D' }\n")
      r = check({ "--config", other, other, file, dir .. "/missing.lua", dir .. "/notes.txt" })
      assert.are.equal(1, r.status, r.out)
      assert.are.same({ other .. ": device_key is missing: the MCS device key (4 or more characters, no commas "
        .. "or spaces)", ("%s:%d: syntax error near 'x'"):format(file, n), dir .. "/missing.lua: no such file",
        dir .. "/notes.txt: no such file" }, r.lines)

      h.write(dir .. "/notes.txt", "x")
      r = check({ dir .. "/notes.txt" })
      assert.are.equal(1, r.status)
      assert.are.same({ dir .. "/notes.txt: neither a Lua script (*.lua) nor the config in use (give it with "
        .. "--config)" }, r.lines)
      -- a path relative to the current directory, as an editor gives it
      r = h.run({ "check", "config.lua" }, { cwd = dir, env = { FOTAHOST_CONFIG = cfg, FOTAHOST_SCRIPTS_DIR = ov,
        PWD = dir } })
      assert.are.same({ cfg .. ": ok" }, lines_of(r.out))
    end)

  it("has --help, and refuses an unknown option", function()
    local r = h.run({ "check", "--help" })
    assert.are.equal(0, r.status)
    assert.matches("^usage: fotahost check %[%-%-config PATH%] %[FILE%.%.%.%]", r.out)
    r = h.run({ "check", "--verbose" })
    assert.are.equal(2, r.status)
    assert.matches("^fotahost check: unknown option '%-%-verbose'\nusage:", r.err)
  end)
end)
