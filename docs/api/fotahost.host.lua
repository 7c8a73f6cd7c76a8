---@meta fotahost.host
-- API stub for script authors (LuaLS). The module is C: host/tools.c.
-- Errors: misuse raises; tool() of an unknown name returns nil, "no tool named
-- '<name>'" with no code.

---What the running fotahost is and where it looks (see `fotahost --paths`).
---@class fotahost.host
---@field version string fotahost's version, e.g. "0.1.0"
---@field lua_version string e.g. "Lua 5.4.4"
---@field exe_dir string|nil directory of the running binary
---@field checkout string|nil top of the source checkout the binary runs from
---@field scripts string[] script directories, first match wins (override first)
---@field plugins string[] plugin directories, first match wins (override first)
---@field bundled_scripts string
---@field bundled_plugins string
---@field path string package.path as set at start-up
---@field cpath string package.cpath as set at start-up
local host = {}

---Names of the bundled tools found in the script directories, sorted.
---@return string[]
function host.tools() end

---The file of tool `name` (override directory first).
---@return string|nil path
---@return string? err "no tool named '<name>'"
function host.find_tool(name) end

---The override scripts the host replaced with their bundled twins in this
---process, in order (a copy: editing it changes nothing). A record per
---fallback: the module's name ("app" when the bundled app script ran
---instead of the override's), the override's file, the bundled file that
---ran, and why (`FILE:LINE: cause`, or the failed starts that led to it).
---@return { module: string, file: string, bundled: string, why: string }[]
function host.fallbacks() end

---Asks the host to exec itself again, with the same arguments, once the
---script has ended and the Lua state is closed (every fd and session
---released): the same PID, as a supervisor expects. The app's reload. A
---SIGHUP between the exec and the new app's sys.hangups() is ignored.
function host.reexec() end

return host
