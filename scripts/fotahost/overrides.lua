--- fotahost.overrides: the user's copies of bundled scripts, in the
-- override directory (host.scripts[1], /etc/fotahost/scripts), and what
-- each was copied from.
--
-- `fotahost scripts edit NAME` copies a bundled file there with a marker
-- put before its first line, on that same line, so every line keeps the
-- number it has in the bundled file (an error's FILE:LINE reads the same in
-- both; after a BOM and a "#!" first line, which Lua skips, the marker
-- starts the next line):
--
--     --[[fotahost override of fotahost/fota.lua, bundled with fotahost 0.1.0, sha256 HEX]] <first line>
--
-- and keeps the file as it was copied in <override dir>/.bundled/NAME
-- (a hidden directory: no require and no tool reaches it), so that the
-- user's change can be shown. A bundled file whose SHA-256 is no longer the
-- marker's has moved on since the copy: the override is stale.
local host = require "fotahost.host"
local sys = require "fotahost.sys"

local M = {}

M.PRISTINE = ".bundled"

local MARKER = "--[[fotahost override of %s, bundled with fotahost %s, sha256 %s]]"
local MARKER_PATTERN = "^%-%-%[%[fotahost override of (%S+), bundled with fotahost (%S+), sha256 (%x+)%]%]"

--- The override directory.
function M.dir()
  return host.scripts[1]
end

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = q

--- `name` as a path relative to a scripts directory: "fotahost/fota.lua"
-- as it is, a module name ("fotahost.fota") as its file, a path inside the
-- override directory without it. nil and why for a name that leaves the
-- directory or names a hidden file.
function M.relpath(name)
  local dir, given = M.dir() .. "/", name
  if name:sub(1, #dir) == dir then name = name:sub(#dir + 1) end
  if name:sub(1, 1) == "/" or ("/" .. name):find("/%.") or name:find("%.%.") then
    return nil, ("%s: not a script name (fotahost/fota.lua, fotahost.fota or tools/app.lua)"):format(given)
  end
  if not name:match("%.lua$") then name = name:gsub("%.", "/") .. ".lua" end
  return name
end

--- The bundled file `rel` would shadow (the bundled directory, then in a
-- checkout the development wing's), or nil.
function M.bundled(rel)
  for i = 2, #host.scripts do
    local p = host.scripts[i] .. "/" .. rel
    if sys.exists(p) then return p end
  end
end

--- Where the copy `rel` was made from is kept.
function M.pristine(rel)
  return M.dir() .. "/" .. M.PRISTINE .. "/" .. rel
end

--- Every *.lua under the override directory (hidden directories left
-- out), as paths relative to it, sorted.
function M.list()
  local dir = M.dir()
  local t = {}
  if not sys.exists(dir) then return t end
  local p = assert(io.popen("find " .. q(dir) .. " -name '*.lua' 2>/dev/null"))
  for l in p:lines() do
    local rel = l:sub(#dir + 2)
    if not ("/" .. rel):find("/%.") then t[#t + 1] = rel end
  end
  p:close()
  table.sort(t)
  return t
end

--- The marker line for a copy of `rel`, whose bundled text has `sha256`.
function M.marker_line(rel, sha256)
  return MARKER:format(rel, host.version, sha256)
end

-- What Lua skips at the top of a file (luaL_loadfile, and so require and
-- fotahost check): a UTF-8 BOM, then a first line starting with '#' (a
-- "#!" line) with its newline. A marker put before that would not compile:
-- it goes after it, at the start of the next line, so that every line
-- still keeps its number.
local function head(text)
  local bom = text:match("^\239\187\191") or ""
  local hash = text:match("^#[^\n]*\n?", #bom + 1) or ""
  return bom .. hash, text:sub(#bom + #hash + 1)
end

--- `text` with the marker put before its first line (after a BOM and a
-- "#!" line: see head()).
function M.mark(text, rel, sha256)
  local skipped, body = head(text)
  local first = body:match("^[^\n]*")
  return skipped .. M.marker_line(rel, sha256) .. (first ~= "" and " " or "") .. body
end

--- The marker of `text`: { name =, version =, sha256 = } and the text
-- without it (as it was copied), or nil for a file without one.
function M.marker(text)
  local skipped, body = head(text)
  local name, version, sha = body:match(MARKER_PATTERN)
  if not name then return nil end
  local rest = body:gsub(MARKER_PATTERN .. " ?", "", 1)
  return { name = name, version = version, sha256 = sha }, skipped .. rest
end

local MAX = 4 * 1024 * 1024 -- far above any script

--- The text of a file, or nil and "path: why".
function M.read(path)
  return sys.read_file(path, MAX)
end

--- What the override `rel` is: { rel, file, bundled (its twin, or nil),
-- marker (or nil), state = "ok" | "stale" | "no marker" | "no bundled twin",
-- edited (true, false, or nil when unknown), why (for stale) }.
function M.state(rel)
  local s = { rel = rel, file = M.dir() .. "/" .. rel, bundled = M.bundled(rel) }
  local text = M.read(s.file)
  local body
  if text then s.marker, body = M.marker(text) end
  if not s.bundled then
    s.state = "no bundled twin"
  elseif not s.marker then
    s.state = "no marker"
  else
    local now = require("fotahost.digest").file(s.bundled)
    if now ~= s.marker.sha256 then
      s.state = "stale"
      s.why = ("the bundled %s changed since this copy was made (from fotahost %s; now %s): "
        .. "see fotahost scripts diff %s"):format(rel, s.marker.version, host.version, rel)
    else
      s.state = "ok"
    end
    local pristine = M.read(M.pristine(rel))
    if pristine then s.edited = pristine ~= body end
  end
  return s
end

--- The state as a user reads it: "ok: from fotahost 0.1.0, edited",
-- "stale: ...", "no marker: ..." or "no bundled twin: ...".
function M.describe(s)
  if s.state == "no bundled twin" then
    return "no bundled twin: " .. (s.marker and ("the bundled %s it was copied from is gone"):format(s.marker.name)
      or "a script of your own")
  end
  if s.state == "no marker" then
    return "no marker: copied by hand, so a change of the bundled file cannot be told "
      .. "(fotahost scripts edit makes copies that can)"
  end
  if s.state == "stale" then return "stale: " .. s.why end
  local edited = s.edited == true and ", edited" or s.edited == false and ", not edited" or ""
  return ("ok: from fotahost %s%s"):format(s.marker.version, edited)
end

return M
