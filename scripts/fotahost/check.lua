--- fotahost.check (minimal stand-in, replaced by the full module): compiles
-- the override scripts and loads the config as the app does.
--     local results, nerrors = check.run{ config = PATH_or_nil }
local host = require "fotahost.host"

local M = {}

local function lua_files(dir)
  local p = io.popen(("find '%s' -name '*.lua' -type f 2>/dev/null | sort"):format(dir:gsub("'", "'\\''")))
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

function M.run(opts)
  opts = opts or {}
  local results, nerrors = {}, 0
  local function add(file, err)
    if err then nerrors = nerrors + 1 end
    results[#results + 1] = { file = file, level = err and "error" or "ok", message = err }
  end
  for _, f in ipairs(opts.files or lua_files(host.scripts[1])) do
    local _, err = loadfile(f)
    add(f, err)
  end
  local config = require "fotahost.fota.config"
  local path = opts.config or config.path()
  local ok, err = config.load(opts.config)
  add(path, not ok and err or nil)
  return results, nerrors
end

function M.format(r)
  if r.level == "ok" then return r.file .. ": ok" end
  if r.level == "warning" then return r.file .. ": warning: " .. r.message end
  return r.message:find(r.file, 1, true) == 1 and r.message or (r.file .. ": " .. r.message)
end

return M
