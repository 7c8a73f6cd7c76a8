--- A stand-in for OpenWrt's `uci` command, for tests (Debian has none).
-- Run with fotahost: tests/openwrt/uci (a sh wrapper), or from a spec
-- h.run({ h.top .. "/tests/openwrt/uci.lua", "-c", dir, ... }).
--
--     uci [-c CONFDIR] [-t SAVEDIR] COMMAND
--
-- The commands a user types to configure fotahost, as uci does them:
-- changes are staged in SAVEDIR/CONFIG (default /tmp/.uci) until `commit`,
-- which writes CONFDIR/CONFIG (default /etc/config) as uci writes it,
-- through a temporary file and a rename, keeping the file's mode. Files
-- are read with the product's parser (fotahost.uci). Not done: uci's
-- `add`, `rename`, `reorder`, `revert`, `batch`, and -q/-X/-d options.
local uci = require "fotahost.uci"
local sys = require "fotahost.sys"

local USAGE = [[
usage: uci [-c CONFDIR] [-t SAVEDIR] COMMAND
  set CFG.SEC.OPT=VALUE | set CFG.SEC=TYPE | add_list CFG.SEC.OPT=VALUE
  del_list CFG.SEC.OPT=VALUE | delete CFG.SEC[.OPT] | get CFG.SEC[.OPT]
  show [CFG] | export [CFG] | changes [CFG] | commit [CFG]
]]

local function fail(msg)
  io.stderr:write("uci: ", msg, "\n")
  os.exit(1)
end

local function usage()
  io.stderr:write(USAGE)
  os.exit(255)
end

local confdir, savedir = "/etc/config", "/tmp/.uci"
local args = {}
do
  local i = 1
  while i <= #arg do
    if arg[i] == "-c" or arg[i] == "-t" then
      if not arg[i + 1] then usage() end
      if arg[i] == "-c" then confdir = arg[i + 1] else savedir = arg[i + 1] end
      i = i + 2
    else
      args[#args + 1] = arg[i]
      i = i + 1
    end
  end
end

---------------------------------------------------------------- the model

-- A config: its sections in order (fotahost.uci's shape).
local function load_file(cfg)
  local sections, err, missing = uci.read(confdir .. "/" .. cfg)
  if sections then return sections end
  if missing then fail("Entry not found") end
  local line, msg = err:match(":(%d+): (.*)$")
  if not line then fail(err) end
  fail(("Parse error (%s) at line %s"):format(msg, line))
end

-- The section `sec` names: a name, or @TYPE[N] (N from 0, or -1 the last).
local function find(sections, sec)
  local t, n = sec:match("^@([%w_]+)%[(%-?%d+)%]$")
  if not t then
    for _, s in ipairs(sections) do if s.name == sec then return s end end
    return nil
  end
  local of = {}
  for _, s in ipairs(sections) do if s.type == t then of[#of + 1] = s end end
  n = tonumber(n)
  return of[n < 0 and #of + n + 1 or n + 1]
end

local function split(path)
  local cfg, sec, opt = path:match("^([%w_]+)%.([^.]+)%.([%w_]+)$")
  if not cfg then cfg, sec = path:match("^([%w_]+)%.([^.]+)$") end
  if not cfg then cfg = path:match("^([%w_]+)$") end
  if not cfg or (sec and not (sec:match("^[%w_]+$") or sec:match("^@[%w_]+%[%-?%d+%]$"))) then
    fail("Invalid argument")
  end
  return cfg, sec, opt
end

local function drop(s, opt)
  s.options[opt] = nil
  for i, o in ipairs(s.order) do if o == opt then table.remove(s.order, i) break end end
end

local function put(s, opt, v)
  if s.options[opt] == nil then s.order[#s.order + 1] = opt end
  s.options[opt] = v
end

-- Applies one change to `sections`; false when its entry is not there.
local function apply(sections, op, path, value)
  local _, sec, opt = split(path)
  local s = sec and find(sections, sec)
  if op == "set" and not opt then
    if not value:match("^[!-~]+$") then fail("Invalid argument") end -- a type: printable ASCII, as libuci
    if s then s.type = value return true end
    if sec:sub(1, 1) == "@" then return false end
    sections[#sections + 1] = { type = value, name = sec, options = {}, order = {} }
    return true
  end
  if not s then return false end
  if op == "delete" then
    if not opt then
      for i, x in ipairs(sections) do if x == s then table.remove(sections, i) end end
      return true
    end
    if s.options[opt] == nil then return false end
    drop(s, opt)
  elseif not opt then
    fail("Invalid argument")
  elseif op == "set" then
    put(s, opt, value)
  elseif op == "add_list" then
    local old = s.options[opt]
    if type(old) ~= "table" then old = { old } end
    old[#old + 1] = value
    put(s, opt, old)
  elseif op == "del_list" then
    local old = s.options[opt]
    if type(old) == "table" then
      for i = #old, 1, -1 do if old[i] == value then table.remove(old, i) end end
    end
  end
  return true
end

---------------------------------------------------------------- staged changes

-- How each change is kept in SAVEDIR/CFG, and shown by `changes` (as uci).
local MARK = { set = "", delete = "-", add_list = "|", del_list = "~" }
local OP = { [""] = "set", ["-"] = "delete", ["|"] = "add_list", ["~"] = "del_list" }

local function staged(cfg)
  local out = {}
  local f = io.open(savedir .. "/" .. cfg, "r")
  if not f then return out end
  for line in f:lines() do
    local mark, path, rest = line:match("^([-|~]?)([^=]+)=?(.*)$")
    local w = rest ~= "" and uci.words(rest)
    out[#out + 1] = { op = OP[mark], path = path, value = w and w[1] }
  end
  f:close()
  return out
end

local function current(cfg)
  local sections = load_file(cfg)
  for _, c in ipairs(staged(cfg)) do apply(sections, c.op, c.path, c.value) end
  return sections
end

local function stage(op, spec)
  local path, value = spec:match("^([^=]+)=(.*)$")
  if op == "delete" then path = spec elseif not path then fail("Invalid argument") end
  local cfg = split(path)
  if not apply(current(cfg), op, path, value) then fail("Entry not found") end
  assert(sys.mkdir(savedir, 448)) -- 0700, as uci makes it
  -- 0600 as uci makes its files (UCI_FILEMODE): a staged device key is not
  -- for other users to read
  local file = savedir .. "/" .. cfg
  local f = io.open(file, "r")
  local old = f and f:read("a") or ""
  if f then f:close() end
  assert(sys.write_file(file, old .. MARK[op] .. path .. (value and ("=" .. uci.quote(value)) or "") .. "\n", 384))
end

---------------------------------------------------------------- output

-- The configs a command without one acts on: those in `dir`.
local function configs(cfg, dir)
  if cfg then return { cfg } end
  local list = {}
  local p = io.popen("ls -1 " .. uci.quote(dir or confdir) .. " 2>/dev/null")
  for name in p:lines() do list[#list + 1] = name end
  p:close()
  return list
end

-- Each section's name in `show`: its own, or @TYPE[N].
local function shown_names(sections)
  local names, count = {}, {}
  for i, s in ipairs(sections) do
    count[s.type] = (count[s.type] or -1) + 1
    names[i] = s.name or ("@%s[%d]"):format(s.type, count[s.type])
  end
  return names
end

local function values(v)
  if type(v) ~= "table" then return uci.quote(v) end
  local q = {}
  for i, x in ipairs(v) do q[i] = uci.quote(x) end
  return table.concat(q, " ")
end

-- The file uci writes: each section after a blank line, its options tabbed.
local function export(sections)
  local out = {}
  for _, s in ipairs(sections) do
    out[#out + 1] = "\nconfig " .. s.type .. (s.name and (" " .. uci.quote(s.name)) or "") .. "\n"
    for _, o in ipairs(s.order) do
      local v = s.options[o]
      if type(v) == "table" then
        for _, x in ipairs(v) do out[#out + 1] = ("\tlist %s %s\n"):format(o, uci.quote(x)) end
      else
        out[#out + 1] = ("\toption %s %s\n"):format(o, uci.quote(v))
      end
    end
  end
  return table.concat(out)
end

local function commit(cfg)
  local changes = staged(cfg)
  if #changes == 0 then return end
  local path = confdir .. "/" .. cfg
  local st = sys.lstat(path)
  local ok, err = sys.write_file(path, export(current(cfg)), st and st.mode or 384) -- new: 0600, as uci
  if not ok then fail(err) end
  os.remove(savedir .. "/" .. cfg)
end

---------------------------------------------------------------- commands

local cmd, a = args[1], args[2]
if cmd == "set" or cmd == "add_list" or cmd == "del_list" or cmd == "delete" then
  if not a or args[3] then usage() end
  stage(cmd, a)
elseif cmd == "get" then
  if not a then usage() end
  local cfg, sec, opt = split(a)
  local s = sec and find(current(cfg), sec)
  if not s or (opt and s.options[opt] == nil) then fail("Entry not found") end
  local v = opt and s.options[opt] or s.type
  io.write(type(v) == "table" and table.concat(v, " ") or v, "\n")
elseif cmd == "show" then
  for _, cfg in ipairs(configs(a)) do
    local sections = current(cfg)
    local names = shown_names(sections)
    for i, s in ipairs(sections) do
      io.write(("%s.%s=%s\n"):format(cfg, names[i], s.type))
      for _, o in ipairs(s.order) do io.write(("%s.%s.%s=%s\n"):format(cfg, names[i], o, values(s.options[o]))) end
    end
  end
elseif cmd == "export" then
  for _, cfg in ipairs(configs(a)) do io.write("package ", cfg, "\n", export(current(cfg)), "\n") end
elseif cmd == "changes" then
  for _, cfg in ipairs(configs(a, savedir)) do
    for _, c in ipairs(staged(cfg)) do
      local v = c.value and ("=" .. uci.quote(c.value)) or ""
      if c.op == "add_list" then v = "+" .. v elseif c.op == "del_list" then v = "-" .. v end
      io.write(c.op == "delete" and "-" or "", c.path, v, "\n")
    end
  end
elseif cmd == "commit" then
  for _, cfg in ipairs(configs(a, savedir)) do commit(cfg) end
else
  usage()
end
