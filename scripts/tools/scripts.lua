-- fotahost scripts: the user's copies of bundled scripts, in the override
-- directory (/etc/fotahost/scripts, or $FOTAHOST_SCRIPTS_DIR). `edit`
-- makes a copy that remembers what it came from (fotahost.overrides: a
-- marker on its first line, the bundled file kept under .bundled/), so
-- that `diff` shows the user's change and `list`, `check` and `doctor`
-- tell when an upgrade moved the bundled file on (the copy is stale).

local USAGE = [[
usage: fotahost scripts edit NAME    copy the bundled NAME into the override directory
                                     (once), open it in $VISUAL, $EDITOR or vi, then check it
       fotahost scripts diff NAME    your change, against the bundled file it was copied
                                     from and, when that moved on, against today's
       fotahost scripts list         every override and its state: ok, stale (the bundled
                                     file changed since the copy), no marker (copied by
                                     hand), no bundled twin (a script of your own); and
                                     where one does not compile
  NAME   a path in the scripts directory (fotahost/fota.lua, tools/app.lua) or a
         module name (fotahost.fota)
  -h, --help   this help
]]

local cli = require("fotahost.cli").new("scripts", USAGE)
local overrides = require "fotahost.overrides"
local sys = require "fotahost.sys"
local q = overrides.quote

local words = {}
for a in cli:each(arg) do
  if a:match("^%-.") then cli:fail("unknown option '%s'", a) end
  words[#words + 1] = a
end
local cmd, name = words[1], words[2]
if cmd == nil then cli:fail("which command: edit, diff or list?") end
local want = ({ edit = 2, diff = 2, list = 1 })[cmd]
if not want then cli:fail("unknown command '%s'", cmd) end
if #words ~= want then cli:fail(want == 2 and "%s needs one NAME" or "%s takes no NAME", cmd) end

local function die(fmt, ...)
  io.stderr:write("fotahost scripts: ", fmt:format(...), "\n")
  os.exit(1)
end

local function dirname(p) return (p:gsub("/[^/]*$", "")) end

local function must(ok, err) if not ok then die("%s", err) end end

-- Copies the bundled `rel` to the override directory, marked, and keeps
-- the bundled text as it was for `diff`.
local function copy(rel, file)
  local bundled = overrides.bundled(rel)
  if not bundled then
    die("%s: no bundled file of that name to copy (the bundled scripts: fotahost --paths)", rel)
  end
  local text = assert(overrides.read(bundled))
  local sha = require("fotahost.digest").sha256(text)
  local pristine = overrides.pristine(rel)
  must(sys.mkdir(dirname(pristine)))
  must(sys.write_file(pristine, text))
  must(sys.mkdir(dirname(file)))
  must(sys.write_file(file, overrides.mark(text, rel, sha)))
  print(("copied %s to %s (its first line names what it came from: keep it, so that an upgrade "
    .. "of the bundled file is noticed)"):format(bundled, file))
end

local function edit(rel)
  local file = overrides.dir() .. "/" .. rel
  -- an existing override is the user's work: it is opened, never replaced
  if not sys.exists(file) then copy(rel, file) end
  local editor = "vi"
  for _, var in ipairs({ "EDITOR", "VISUAL" }) do -- VISUAL first: it wins
    local e = os.getenv(var)
    if e and e ~= "" then editor = e end
  end
  -- (the editor is a command line: "code -w" keeps its word)
  local ok, how, code = os.execute(editor .. " " .. q(file))
  if not ok then die("%s: the editor (%s) %s %s: the file is as it left it", file, editor, how, code) end
  local check = require "fotahost.check"
  local results, nerrors = check.run{ files = { file } }
  for _, r in ipairs(results) do print(check.format(r)) end
  os.exit(nerrors > 0 and 1 or 0)
end

-- diff -u of `a` against `b`, labelled (busybox's diff has -L too).
local function diff(a, la, b, lb)
  io.stdout:flush()
  os.execute(("diff -u -L %s -L %s %s %s"):format(q(la), q(lb), q(a), q(b)))
end

local function show_diff(rel)
  local file = overrides.dir() .. "/" .. rel
  local text = overrides.read(file)
  if not text then die("%s: no such override (fotahost scripts edit %s makes one)", file, rel) end
  local s = overrides.state(rel)
  local _, body = overrides.marker(text)
  local tmp = os.tmpname()
  assert(sys.write_file(tmp, body or text))
  local pristine = overrides.pristine(rel)
  if s.state == "no bundled twin" then
    print(("%s: no bundled twin: a script of your own, nothing to compare it with"):format(file))
  elseif not s.marker then
    print(("%s: no marker (copied by hand): against today's bundled %s"):format(file, s.bundled))
    diff(s.bundled, "bundled " .. rel, tmp, file)
  else
    if sys.exists(pristine) then
      print(("your change: against the bundled %s of fotahost %s it was copied from"):format(rel, s.marker.version))
      diff(pristine, ("bundled %s (fotahost %s)"):format(rel, s.marker.version), tmp, file)
    else
      print(("%s: the bundled file it was copied from is not kept (%s is missing)"):format(file, pristine))
    end
    if s.state == "stale" then
      print(("the bundled %s moved on since the copy: your file against today's (fotahost %s)")
        :format(rel, require("fotahost.host").version))
      diff(s.bundled, ("bundled %s (today's)"):format(rel), tmp, file)
    else
      print(("the bundled %s is unchanged since the copy"):format(rel))
    end
  end
  os.remove(tmp)
end

-- One line per override: where it came from and, when it does not
-- compile, where and what runs instead ("ok" is about the copy's source,
-- so it must not be read as "it works").
local function list()
  local rels = overrides.list()
  if #rels == 0 then print(("no overrides in %s: the bundled scripts run"):format(overrides.dir())) end
  for _, rel in ipairs(rels) do
    local file, state = overrides.dir() .. "/" .. rel, overrides.state(rel)
    local line, msg = require("fotahost.check").compile(file)
    local broken = msg and ("; does not compile: %s%s (%s)"):format(line and ("line " .. line .. ": ") or "",
      msg, state.bundled and "the bundled one runs instead" or "it fails to load") or ""
    print(("%s: %s%s"):format(file, overrides.describe(state), broken))
  end
end

if cmd == "list" then return list() end
local rel, err = overrides.relpath(name)
if not rel then die("%s", err) end
if cmd == "edit" then edit(rel) else show_diff(rel) end
