-- Shared by the specs: run the real fotahost CLI and look at what a user
-- would see (exit status, stdout, stderr), and make scratch files.
local M = {}

M.bin = os.getenv("FOTAHOST_BIN") or "./build/fotahost"
M.top = (M.bin:match("^(.*)/[^/]+/[^/]+$")) or "."

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.q = shell_quote

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  return path
end

function M.tmpdir()
  local p = io.popen("mktemp -d /tmp/fotahost-spec-XXXXXX")
  local dir = p:read("l")
  p:close()
  return dir
end

function M.rmdir(dir)
  assert(dir:match("^/tmp/fotahost%-spec%-"), "refusing to remove " .. dir)
  os.execute("rm -rf " .. shell_quote(dir))
end

--- Runs fotahost with `args` (a list, each quoted, or a string used as it
-- is). opts: stdin (string), env (table), cwd, shell_prefix.
-- Returns { status = n, out = stdout, err = stderr }.
function M.run(args, opts)
  opts = opts or {}
  local dir = M.tmpdir()
  local argv = args
  if type(args) == "table" then
    local parts = {}
    for i, a in ipairs(args) do parts[i] = shell_quote(a) end
    argv = table.concat(parts, " ")
  end
  local env = {}
  for k, v in pairs(opts.env or {}) do
    env[#env + 1] = k .. "=" .. shell_quote(v)
  end
  local cmd = ("%s %s env %s %s %s < %s > %s/out 2> %s/err"):format(
    opts.cwd and ("cd " .. shell_quote(opts.cwd) .. " &&") or "",
    opts.shell_prefix or "",
    table.concat(env, " "), shell_quote(M.bin), argv,
    opts.stdin and M.write(dir .. "/in", opts.stdin) or "/dev/null", dir, dir)
  local _, _, code = os.execute(cmd)
  local r = { status = code, out = M.read(dir .. "/out"), err = M.read(dir .. "/err") }
  M.rmdir(dir)
  return r
end

--- The example firmware (examples/firmware), built once per test run into
-- a scratch directory; returns the path of `name` (e.g. "serial-led.hex").
local fwdir
function M.firmware(name)
  if not fwdir then
    local dir = M.tmpdir()
    local ok = os.execute(("make -s -C %s O=%s >%s/make.log 2>&1")
      :format(shell_quote(M.top .. "/examples/firmware"), shell_quote(dir), shell_quote(dir)))
    local log = M.read(dir .. "/make.log") or ""
    if not ok then
      M.rmdir(dir)
      error("building examples/firmware failed (it needs gcc-avr and avr-libc):\n" .. log)
    end
    fwdir = dir
  end
  return fwdir .. "/" .. name
end

return M
