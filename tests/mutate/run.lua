--- The project's mutation check (make mutate): does the suite notice when
-- a safeguard breaks?
--
--     lua5.4 tests/mutate/run.lua [--only NAME[,NAME...]] [--list] [--keep] [--quick]
--
-- NAME is a mutant's name or an area's (a file in mutants/, e.g. http).
--
-- The mutants are listed in tests/mutate/mutants/*.lua, one file per area.
-- Each is a small, realistic bug in one safeguard, written as a rewrite of
-- one place in one file:
--
--     { name = "curl-verifyhost-off",            -- unique, used by --only
--       file = "plugins/curl.c",
--       from = "insecure ? 0L : 2L",             -- must occur exactly once
--       to   = "0L",
--       specs = { "spec/http_spec.lua" },        -- run first (default: all)
--       filter = "TLS",                          -- busted --filter, optional
--       why = "a man in the middle with any valid certificate is accepted" },
--
-- or, for a mutant no user could tell apart from the real code,
-- `equivalent = "the reason"` (listed, never run).
--
-- The work tree is never touched: the tree (as it is, uncommitted changes
-- included) is copied to a scratch directory and built once; each mutant
-- is written there, built incrementally, and run against the specs it
-- names; one that survives those runs the whole suite before it is called
-- a survivor. The original file goes back before the next mutant.
--
-- Prints "killed NAME (N failed)", "SURVIVED NAME" or "equivalent NAME:
-- reason" per mutant, then a score. Exits 1 if any mutant survived, did
-- not build, or its rewrite no longer matches the code.
--
-- --quick skips that whole-suite run (for working on one area's specs).
--
-- Environment: MUTATE_DIR (scratch directory; default build-mutate),
-- MUTATE_JOBS (make -j, default 2).

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local ok, _, code = os.execute(cmd)
  return ok == true, code
end

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function plain(s) return (s:gsub("%p", "%%%0")) end

local function count(hay, needle)
  local n, at = 0, 1
  while true do
    local s, e = hay:find(needle, at, true)
    if not s then return n end
    n, at = n + 1, e + 1
  end
end

-- the checkout, as an absolute path (the runner cds into the scratch tree)
local top = capture("cd " .. q(arg[0]:match("^(.*)/tests/mutate/run%.lua$") or ".") .. " && pwd"):gsub("\n$", "")
assert(read(top .. "/tests/mutate/run.lua"), "run it from the checkout: lua5.4 tests/mutate/run.lua")

---------------------------------------------------------------- options

local only, list_only, keep, quick = nil, false, false, false
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--only" then
      i = i + 1
      only = {}
      for name in (arg[i] or ""):gmatch("[^,%s]+") do only[name] = true end
    elseif a == "--list" then list_only = true
    elseif a == "--keep" then keep = true
    elseif a == "--quick" then quick = true
    elseif a == "--help" or a == "-h" then
      print("usage: lua5.4 tests/mutate/run.lua [--only NAME[,NAME...]] [--list] [--keep] [--quick]")
      print("  (make mutate [ONLY=NAME[,NAME...]] [QUICK=1])")
      print("  --only   run these mutants (and no others)")
      print("  --list   list the mutants and stop")
      print("  --keep   keep the logs of killed mutants too (build-mutate/logs)")
      print("  --quick  do not run the whole suite on a mutant its own specs miss")
      os.exit(0)
    else
      io.stderr:write("mutate: unknown option ", a, " (try --help)\n")
      os.exit(2)
    end
    i = i + 1
  end
end

---------------------------------------------------------------- the list

local mutants, seen = {}, {}
do
  local files = capture("ls " .. q(top .. "/tests/mutate/mutants") .. "/*.lua 2>/dev/null")
  for path in files:gmatch("[^\n]+") do
    local area = path:match("([^/]+)%.lua$")
    local list = assert(dofile(path))
    for _, m in ipairs(list) do
      assert(type(m.name) == "string", path .. ": a mutant without a name")
      assert(not seen[m.name], path .. ": two mutants named " .. m.name)
      seen[m.name] = true
      assert(m.equivalent or (m.file and m.from and m.to),
        path .. ": " .. m.name .. " needs file, from and to (or equivalent)")
      m.area = area
      seen[area] = true
      mutants[#mutants + 1] = m
    end
  end
end
if only then
  for name in pairs(only) do
    if not seen[name] then
      io.stderr:write("mutate: no mutant or area named ", name, " (--list lists them)\n")
      os.exit(2)
    end
  end
end
local function chosen(m) return not only or only[m.name] or only[m.area] end

if list_only then
  for _, m in ipairs(mutants) do
    print(("%-10s %-40s %s"):format(m.area, m.name, m.equivalent and ("equivalent: " .. m.equivalent)
      or (m.file .. (m.why and (": " .. m.why) or ""))))
  end
  print(#mutants .. " mutants")
  os.exit(0)
end

-- Every rewrite must still match the code, once: a list gone stale is an
-- error before anything is built.
local stale = 0
for _, m in ipairs(mutants) do
  if not m.equivalent and chosen(m) then
    local src = read(top .. "/" .. m.file)
    local n = src and count(src, m.from) or -1
    if n ~= 1 then
      io.stderr:write(("mutate: %s: %s %s\n"):format(m.name, m.file,
        n < 0 and "does not exist" or ("has the text to replace %d times, not once"):format(n)))
      stale = stale + 1
    end
  end
end
if stale > 0 then os.exit(1) end

---------------------------------------------------------------- scratch copy

local scratch = os.getenv("MUTATE_DIR") or (top .. "/build-mutate")
local jobs = os.getenv("MUTATE_JOBS") or "2"
local tree = scratch .. "/tree"
local logdir = scratch .. "/logs"
local make = ("make -C %s -j%s all example-plugin unit-tests > %s/build.log 2>&1")
  :format(q(tree), jobs, q(logdir))

io.write("mutate: copying the tree to ", tree, " and building it ... ")
io.flush()
assert(sh("rm -rf " .. q(tree) .. " && mkdir -p " .. q(tree) .. " " .. q(logdir)))
-- the files git knows or would know, as they are in the work tree
assert(sh(("cd %s && git ls-files -z --cached --others --exclude-standard | " ..
  "xargs -0 tar --ignore-failed-read -cf - | tar -C %s -xf -"):format(q(top), q(tree))))
local t0 = os.time()
if not sh(make) then
  print("FAILED")
  io.stderr:write("mutate: the unmutated tree does not build; see ", logdir, "/build.log\n")
  os.exit(1)
end
print(("done (%d s)"):format(os.time() - t0))

-- Runs the suite in the scratch tree (narrowed by `busted_args`); returns
-- the number of failures, or nil when the run printed no summary.
local function run_suite(busted_args, log)
  local cmd = ("cd %s && BUSTED_ARGS=%s timeout 900 sh tests/run > %s 2>&1")
    :format(q(tree), q(busted_args or ""), q(log))
  sh(cmd)
  local text = read(log) or ""
  local failed
  for p, f in text:gmatch("\n(%d+) passed, (%d+) failed") do failed = tonumber(f) end
  return failed
end

local function spec_args(m)
  local a = {}
  if m.filter then a[#a + 1] = "--filter=" .. m.filter end
  for _, s in ipairs(m.specs or {}) do a[#a + 1] = s end
  return table.concat(a, " ")
end

---------------------------------------------------------------- the run

local score = { killed = 0, survived = 0, equivalent = 0, broken = 0 }
local survivors = {}
local started = os.time()

for _, m in ipairs(mutants) do
  if not chosen(m) then goto continue end
  if m.equivalent then
    score.equivalent = score.equivalent + 1
    print(("equivalent %s: %s"):format(m.name, m.equivalent))
    goto continue
  end
  do
    local path = tree .. "/" .. m.file
    local original = read(path)
    local s, e = original:find(m.from, 1, true)
    write(path, original:sub(1, s - 1) .. m.to .. original:sub(e + 1))
    local t = os.time()
    local log = logdir .. "/" .. m.name .. ".log"
    local verdict
    if not sh(make) then
      score.broken = score.broken + 1
      verdict = ("BROKEN %s (does not build: see %s)"):format(m.name, logdir .. "/build.log")
      sh(("cp %s/build.log %s"):format(q(logdir), q(log)))
    else
      local failed = run_suite(spec_args(m), log)
      local where = "its specs"
      if failed == 0 and (m.specs or m.filter) and not quick then
        log = logdir .. "/" .. m.name .. ".full.log"
        failed = run_suite(nil, log)
        where = "the whole suite"
      end
      if failed == nil and not read(log) then
        error("mutate: the suite did not run: " .. log)
      elseif failed == nil then
        score.killed = score.killed + 1
        verdict = ("killed %s (no summary: crashed or hung; %s)"):format(m.name, log)
      elseif failed > 0 then
        score.killed = score.killed + 1
        verdict = ("killed %s (%d failed%s)"):format(m.name, failed,
          where == "its specs" and "" or ", by the whole suite only")
        if not keep then os.remove(log) end
      else
        score.survived = score.survived + 1
        survivors[#survivors + 1] = m.name
        verdict = ("SURVIVED %s%s: %s (%s)"):format(m.name, where == "its specs" and " its specs" or "",
          m.why or m.file, log)
      end
    end
    write(path, original)
    print(("%s [%d s]"):format(verdict, os.time() - t))
    io.stdout:flush()
  end
  ::continue::
end

-- The tree goes back to unmutated, built, for the next --only run.
sh(make)

local run = score.killed + score.survived + score.broken
print(("mutate: %d mutants: %d killed, %d survived, %d did not build, %d equivalent; score %d/%d in %d s")
  :format(run + score.equivalent, score.killed, score.survived, score.broken, score.equivalent,
    score.killed, run, os.time() - started))
if #survivors > 0 then print("survivors: " .. table.concat(survivors, ", ")) end
os.exit((score.survived == 0 and score.broken == 0) and 0 or 1)
