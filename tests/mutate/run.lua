--- The project's mutation check (make mutate): does the suite notice when
-- a safeguard breaks?
--
--     lua5.4 tests/mutate/run.lua [--only NAME[,NAME...]] [--list] [--keep] [--quick] [--check]
--
-- NAME is a mutant's name or an area's (a file in mutants/, e.g. http).
--
-- The mutants are listed in tests/mutate/mutants/*.lua, one file per area.
-- Each is a small, realistic bug in one safeguard, written as a rewrite of
-- one place in one file:
--
--     { name = "curl-verifyhost-off",            -- unique, used by --only
--       file = "plugins/http.core.c",
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
-- included) is copied to scratch directories, one per worker, and built
-- once; each mutant is written into a worker's copy, built incrementally,
-- and run against the specs it names; one that survives those runs the
-- whole suite before it is called a survivor. The original file goes back
-- before the worker takes the next mutant.
--
-- Prints "killed NAME (N failed)", "SURVIVED NAME" or "equivalent NAME:
-- reason" per mutant, then a score. Exits 1 if any mutant survived, did
-- not build, selects no test, or its rewrite no longer matches the code.
--
-- --quick skips that whole-suite run (for working on one area's specs).
--
-- Environment: MUTATE_DIR (scratch directory; default build-mutate),
-- MUTATE_WORKERS (mutants run at once, default 4).

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

local only, list_only, keep, quick, check_only = nil, false, false, false, false
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
    elseif a == "--check" then check_only = true
    elseif a == "--help" or a == "-h" then
      print("usage: lua5.4 tests/mutate/run.lua [--only NAME[,NAME...]] [--list] [--keep] [--quick] [--check]")
      print("  (make mutate [ONLY=NAME[,NAME...]] [QUICK=1])")
      print("  --only   run these mutants (and no others)")
      print("  --list   list the mutants and stop")
      print("  --keep   keep the logs of killed mutants too (build-mutate/logs)")
      print("  --quick  do not run the whole suite on a mutant its own specs miss")
      print("  --check  check that every rewrite still matches the code once, and stop")
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
      for _, spec in ipairs(m.specs or {}) do
        assert(read(top .. "/" .. spec), path .. ": " .. m.name .. ": no such spec file " .. spec)
      end
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
if check_only then
  print(("mutate: %d mutants; every rewrite matches the code once"):format(#mutants))
  os.exit(0)
end

---------------------------------------------------------------- scratch trees

-- Several mutants run at once, each in a tree of its own: the suite
-- spends most of its time waiting on servers and timers, not computing.
local scratch = os.getenv("MUTATE_DIR") or (top .. "/build-mutate")
local workers = tonumber(os.getenv("MUTATE_WORKERS") or "4")
local logdir = scratch .. "/logs"

local function tree_of(w) return scratch .. "/tree" .. w end

local function make_cmd(w)
  -- browser-deps: the console's browser spec needs playwright-core in the
  -- tree's build/browser (npm's cache has it: no network)
  return ("make -C %s -j2 all example-plugin unit-tests browser-deps > %s/build%d.log 2>&1")
    :format(q(tree_of(w)), q(logdir), w)
end

io.write(("mutate: copying the tree to %s/tree1..%d and building it ... "):format(scratch, workers))
io.flush()
local t0 = os.time()
assert(sh("rm -rf " .. q(scratch) .. " && mkdir -p " .. q(logdir)))
assert(sh("mkdir -p " .. q(tree_of(1))))
-- the files git knows or would know, as they are in the work tree
assert(sh(("cd %s && git ls-files -z --cached --others --exclude-standard | " ..
  "xargs -0 tar --ignore-failed-read -cf - | tar -C %s -xf -"):format(q(top), q(tree_of(1)))))
if not sh(make_cmd(1)) then
  print("FAILED")
  io.stderr:write(("mutate: the unmutated tree does not build; see %s/build1.log\n"):format(logdir))
  os.exit(1)
end
-- the other workers' trees: copies of the built one (times kept, so
-- make finds them up to date)
for w = 2, workers do assert(sh(("cp -a %s %s"):format(q(tree_of(1)), q(tree_of(w))))) end
print(("done (%d s)"):format(os.time() - t0))

-- The job's end ("ran", "build"), or nil while it runs.
local function job_done(w)
  local s = read(logdir .. "/done" .. w)
  return s and s:match("%a+")
end

-- Starts, in the background, worker w's build and a run of the suite
-- (narrowed to mutant m's specs and filter, when m is given). The job
-- writes `done` when it ends: "build" if the build failed, else "ran".
-- A mutant's own run (m given) is narrowed further: the C unit tests only
-- for a mutant outside the Lua scripts (they compile no Lua), and the
-- specs' waits for an event cut to SPEC_WAIT seconds (h.wait_limit): a
-- mutant that stops the event for good is killed sooner, while on this
-- loaded machine an event that comes at all comes within a few seconds.
-- The whole-suite run of a survivor keeps both.
local SPEC_WAIT = 30
-- A mutant's own run also stops at its first failure (tests/mutate/fail_fast.lua):
-- the tests after it would only confirm the kill. A survivor's whole-suite run
-- runs everything.
local FAIL_FAST = "--helper=tests/mutate/fail_fast.lua"

local function start_job(w, m, log)
  local done = logdir .. "/done" .. w
  os.remove(done)
  local narrow = m and ("UNIT_TESTS=%s FOTAHOST_SPEC_WAIT=%d "):format(
    m.file:match("%.lua$") and "no" or "yes", SPEC_WAIT) or ""
  local script = ("echo $$ > %s/sid%d; if %s; then cd %s && %sBUSTED_ARGS=%s BUSTED_FILTER=%s " ..
    "timeout 900 sh tests/run > %s 2>&1; echo ran > %s; else echo build > %s; fi")
    :format(q(logdir), w, make_cmd(w), q(tree_of(w)), narrow,
    q(m and (FAIL_FAST .. " " .. table.concat(m.specs or {}, " ")) or ""), q(m and m.filter or ""),
    q(log), q(done), q(done))
  -- in a session of its own (timeout makes a process group of its own
  -- inside it), so an interrupted run can stop all of it
  assert(sh(("setsid sh -c %s < /dev/null > /dev/null 2>&1 &"):format(q(script))))
end

-- Stops every job still running (the run was interrupted).
local function stop_jobs()
  for w = 1, workers do
    local sid = tonumber(read(logdir .. "/sid" .. w) or "")
    if sid and not job_done(w) then sh("pkill -TERM -s " .. sid) end
  end
end

-- The failures a run's output reports, or nil when it printed no summary.
local function failures(text)
  local failed
  for _, f in text:gmatch("\n(%d+) passed, (%d+) failed") do failed = tonumber(f) end
  return failed
end

---------------------------------------------------------------- the run

local score = { killed = 0, survived = 0, equivalent = 0, broken = 0 }
local survivors = {}
local started = os.time()
local queue = {}
for _, m in ipairs(mutants) do
  if chosen(m) then
    if m.equivalent then
      score.equivalent = score.equivalent + 1
      print(("equivalent %s: %s"):format(m.name, m.equivalent))
    else
      queue[#queue + 1] = m
    end
  end
end

local busy = {} -- worker -> { m, original, phase, log, t }

local function begin(w, m)
  local path = tree_of(w) .. "/" .. m.file
  local original = read(path)
  local s, e = original:find(m.from, 1, true)
  write(path, original:sub(1, s - 1) .. m.to .. original:sub(e + 1))
  local log = logdir .. "/" .. m.name .. ".log"
  busy[w] = { m = m, original = original, path = path, phase = "specs", log = log, t = os.time() }
  start_job(w, m, log)
end

-- Judges a finished job; returns the verdict line, or nil when the
-- mutant goes on to the whole suite.
local function judge(w, ended)
  local b, m = busy[w], busy[w].m
  if ended == "build" then
    score.broken = score.broken + 1
    sh(("cp %s/build%d.log %s"):format(q(logdir), w, q(b.log)))
    return ("BROKEN %s (does not build: see %s)"):format(m.name, b.log)
  end
  local text = read(b.log) or ""
  local failed = failures(text)
  local specs_run = tonumber(text:match("(%d+) successes? / %d+ failures? / %d+ errors?"))
  if failed == 0 and b.phase == "specs" and specs_run == 0 then
    score.broken = score.broken + 1
    return ("BROKEN %s (its specs and filter select no test: %s)"):format(m.name, b.log)
  elseif failed == nil then
    score.killed = score.killed + 1
    return ("killed %s (no summary: crashed or hung; %s)"):format(m.name, b.log)
  elseif failed > 0 then
    score.killed = score.killed + 1
    if not keep then os.remove(b.log) end
    local by = text:match("\nfail%-fast: first failure: ([^\n]*)")
    return ("killed %s (%s%s)"):format(m.name, by and ("by: " .. by) or (failed .. " failed"),
      b.phase == "specs" and "" or ", by the whole suite only")
  elseif b.phase == "specs" and (m.specs or m.filter) and not quick then
    b.phase, b.log = "full", logdir .. "/" .. m.name .. ".full.log"
    start_job(w, nil, b.log)
    return nil
  end
  score.survived = score.survived + 1
  survivors[#survivors + 1] = m.name
  return ("SURVIVED %s%s: %s (%s)"):format(m.name, b.phase == "specs" and " its specs" or "",
    m.why or m.file, b.log)
end

local function interrupted()
  stop_jobs()
  io.stderr:write("mutate: interrupted; the scratch trees may hold a mutant (the next run copies afresh)\n")
  os.exit(130)
end

local next_m = 1
local function step()
  for w = 1, workers do
    if not busy[w] and next_m <= #queue then
      begin(w, queue[next_m])
      next_m = next_m + 1
    end
  end
  if not next(busy) then return false end
  local ok, how = os.execute("sleep 0.2")
  if not ok and how == "signal" then interrupted() end
  for w = 1, workers do
    local ended = busy[w] and job_done(w)
    if ended then
      local verdict = judge(w, ended)
      if verdict then
        write(busy[w].path, busy[w].original)
        print(("%s [%d s]"):format(verdict, os.time() - busy[w].t))
        io.stdout:flush()
        busy[w] = nil
      end
    end
  end
  return true
end

-- lua5.4 turns a SIGINT into an error ("interrupted!"): the jobs stop too.
while true do
  local ok, more = pcall(step)
  if not ok then
    io.stderr:write("mutate: ", tostring(more), "\n")
    interrupted()
  end
  if not more then break end
end

local run = score.killed + score.survived + score.broken
print(("mutate: %d mutants: %d killed, %d survived, %d did not build, %d equivalent; score %d/%d in %d s")
  :format(run + score.equivalent, score.killed, score.survived, score.broken, score.equivalent,
    score.killed, run, os.time() - started))
if #survivors > 0 then print("survivors: " .. table.concat(survivors, ", ")) end
os.exit((score.survived == 0 and score.broken == 0) and 0 or 1)
