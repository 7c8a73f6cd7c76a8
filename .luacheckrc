-- luacheck configuration (Debian: lua-check). Run by spec/lint_spec.lua,
-- so part of `make test`: `luacheck .` from the top must print nothing.
-- The host (host/main.c) defines no globals beyond the standard `arg`.
std = "lua54"
max_line_length = 120
exclude_files = { "build/**", "build-*/**", "vendor/**", "examples/firmware/**" }

-- Methods keep the colon form even when a body does not read the object:
-- callers write obj:method() whatever the method needs.
self = false

-- A to-be-closed local held only for its __close is "unused" to luacheck
-- 1.1 (it does not count the close as a use); the leading `_` marks such
-- a local (`local _conn <close> = ...`), and only those are let through.
ignore = { "211/_.*" }

files["spec/**"] = { std = "+busted" }

-- API stubs for LuaLS: signatures without bodies, so the arguments and the
-- class tables they declare are never used by design.
-- A LuaLS annotation (---@field, ---@return) is one line, whatever its length.
files["docs/api/**"] = { ignore = { "211", "212", "241" }, max_comment_line_length = false }
