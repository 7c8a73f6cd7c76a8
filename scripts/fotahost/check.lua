--- fotahost.check: what `fotahost check` and `fotahost doctor` check
-- before a script or a config is used: every override script and the app
-- script compile (loaded, never run), the config reads as the app reads it
-- (its keys and types: fotahost.fota.config.load, the UCI file with it),
-- and no override shadows a bundled file that has moved on since the copy.
--
--     local results, nerrors = check.run{ config = PATH_or_nil, files = LIST_or_nil }
--     for _, r in ipairs(results) do print(check.format(r)) end
--
-- Each result: { file =, level = "ok" | "warning" | "error", message =,
-- line = (an error's line, when it has one), override = (the override's
-- state, fotahost.overrides.state) }, one per file, in order: the
-- overrides, the app script in use, the config. An error outranks a
-- warning for the same file.
local host = require "fotahost.host"
local overrides = require "fotahost.overrides"

local M = {}

--- The line printed for a result: "FILE: ok", "FILE:LINE: message" (or
-- "FILE: message" for an error with no line) or "FILE: warning: message".
function M.format(r)
  if r.level == "ok" then return r.file .. ": ok" end
  if r.level == "warning" then return r.file .. ": warning: " .. r.message end
  return r.file .. (r.line and (":" .. r.line) or "") .. ": " .. r.message
end

--- Compiles the Lua file at `path` without running it: nil when it
-- compiles, else its line (or nil) and the message.
function M.compile(path)
  local text, err = overrides.read(path)
  if not text then return nil, (err:gsub("^" .. path:gsub("%p", "%%%0") .. ": ", "")) end
  -- as require and the host read a file: a BOM, and a first line starting
  -- with '#' (kept as an empty line: the numbers stay), are skipped
  text = text:gsub("^\239\187\191", ""):gsub("^#[^\n]*", "")
  -- a short chunk name: Lua cuts a long path to "...tail" in its messages
  local _, cerr = load(text, "=F", "t")
  if not cerr then return end
  local line, msg = cerr:match("^F:(%d+): (.*)$")
  return math.tointeger(tonumber(line)), msg or cerr
end

-- `p` as an absolute path, "." and ".." resolved (links are not).
local function absolute(p)
  if p:sub(1, 1) ~= "/" then p = (os.getenv("PWD") or ".") .. "/" .. p end
  local parts = {}
  for c in p:gmatch("[^/]+") do
    if c == ".." then parts[#parts] = nil
    elseif c ~= "." then parts[#parts + 1] = c end
  end
  return "/" .. table.concat(parts, "/")
end

--- The result for the Lua file at `path`: its compile error, else (for an
-- override) the warning of a stale copy, else ok.
function M.script(path)
  local r = { file = path, level = "ok" }
  local line, msg = M.compile(path)
  local dir, a = absolute(overrides.dir()) .. "/", absolute(path)
  if a:sub(1, #dir) == dir then r.override = overrides.state(a:sub(#dir + 1)) end
  if msg then
    r.level, r.line, r.message = "error", line, msg
  elseif r.override and r.override.state == "stale" then
    r.level, r.message = "warning", "stale: " .. r.override.why
  elseif r.override and r.override.marker and not r.override.bundled then
    r.level, r.message = "warning", overrides.describe(r.override)
  end
  return r
end

-- "path:LINE: message" or "path: message" as a result for one of `files`
-- (the config's: the Lua file and the UCI file), else for `default`.
local function config_error(text, files, default)
  for _, f in ipairs(files) do
    if f ~= "" and text:sub(1, #f + 1) == f .. ":" then
      local line, msg = text:sub(#f + 2):match("^(%d+): (.*)$")
      if not line then msg = text:sub(#f + 3) end
      return { file = f, level = "error", line = math.tointeger(tonumber(line)), message = msg }
    end
  end
  return { file = default, level = "error", message = text }
end

-- package.path without the override directory: the bundled modules only.
local function bundled_path()
  local t = {}
  for i = 2, #host.scripts do t[#t + 1] = host.scripts[i] .. "/?.lua;" .. host.scripts[i] .. "/?/init.lua" end
  return table.concat(t, ";")
end

-- fn(cfgmod) under a pcall, with the config reader the app would use: when
-- an override of it does not load (a result of its own, as a script), the
-- bundled one, as the app falls back to it.
local function with_reader(fn)
  local ok, cfgmod = pcall(require, "fotahost.fota.config")
  if ok then return pcall(fn, cfgmod) end
  local saved = package.path
  package.path = bundled_path()
  local r = table.pack(pcall(function() return fn(require "fotahost.fota.config") end))
  package.path = saved
  return table.unpack(r, 1, r.n)
end

-- The config, read as the app reads it: one result per file read, or one
-- per problem found.
local function config_results(path)
  local ok, t = with_reader(function(cfgmod)
    local lua_path = path or cfgmod.path()
    local cfg, what = cfgmod.load(path)
    local t = {}
    if cfg then
      for f in (what .. " + "):gmatch("(.-) %+ ") do t[#t + 1] = { file = f, level = "ok" } end
      return t
    end
    for l in what:gmatch("[^\n]+") do t[#t + 1] = config_error(l, { cfgmod.UCI_PATH, lua_path }, lua_path) end
    return t
  end)
  if ok then return t end
  local shown = path or os.getenv("FOTAHOST_CONFIG") or ""
  return { { file = shown ~= "" and shown or "config", level = "error",
             message = "not checked: the config reader failed: " .. tostring(t):gsub("\n%s*", " ") } }
end

-- Whether `file` is the config in use (the Lua file or the UCI file).
local function is_config(file, path)
  local a = absolute(file)
  local ok, yes = with_reader(function(cfgmod)
    return a == absolute(path or cfgmod.path()) or (cfgmod.UCI_PATH ~= "" and a == absolute(cfgmod.UCI_PATH))
  end)
  return ok and yes
end

-- The files `fotahost check` looks at with no FILE: every override, the
-- app script in use (an override of it, else the bundled one).
local function default_files()
  local t, seen = {}, {}
  for _, rel in ipairs(overrides.list()) do
    local f = overrides.dir() .. "/" .. rel
    t[#t + 1], seen[f] = f, true
  end
  local app = host.find_tool("app")
  if app and not seen[app] then t[#t + 1] = app end
  return t
end

--- Checks the files named by opts.files (each a .lua file, or the config:
-- the file opts.config names, else $FOTAHOST_CONFIG or the default, or the
-- UCI file), or with none every override, the app script and the config.
-- Returns the results and the number of errors.
function M.run(opts)
  opts = opts or {}
  local results, config_done = {}, false
  local function add_config()
    if config_done then return end
    config_done = true
    for _, r in ipairs(config_results(opts.config)) do results[#results + 1] = r end
  end
  if opts.files then
    for _, f in ipairs(opts.files) do
      local sys = require "fotahost.sys"
      if not sys.exists(f) then
        results[#results + 1] = { file = f, level = "error", message = "no such file" }
      elseif is_config(f, opts.config) then
        add_config()
      elseif f:match("%.lua$") then
        results[#results + 1] = M.script(f)
      else
        results[#results + 1] = { file = f, level = "error",
          message = "neither a Lua script (*.lua) nor the config in use (give it with --config)" }
      end
    end
  else
    for _, f in ipairs(default_files()) do results[#results + 1] = M.script(f) end
    add_config()
  end
  local n = 0
  for _, r in ipairs(results) do
    if r.level == "error" then n = n + 1 end
  end
  return results, n
end

return M
