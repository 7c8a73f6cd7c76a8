-- Runs the browser scenarios of tests/browser (node tests/browser/run.js:
-- Debian's chromium, headless, through playwright-core) from a spec, and
-- reads what they print: one JSON line a step, signals, a last "done" line.
local h = require "helper"
local sys = require "fotahost.sys"
local cjson = require "cjson.safe"

local M = {}

M.chromium = os.getenv("CHROMIUM") or "/usr/bin/chromium"
M.modules = os.getenv("BROWSER_NODE_MODULES") or (h.top .. "/build/browser/node_modules")
M.driver = h.top .. "/tests/browser/run.js"

--- What is missing to run a scenario, said with how to get it; nil when
-- node, chromium and playwright-core are all there.
function M.missing()
  local why = {}
  if not h.sh("command -v node"):find("/") then
    why[#why + 1] = "node is missing (sh .ci/install-deps installs Debian's nodejs and npm)"
  end
  if not os.execute("test -x " .. h.q(M.chromium)) then
    why[#why + 1] = M.chromium .. " is missing (sh .ci/install-deps, or apt-get install chromium fonts-dejavu-core)"
  end
  if not h.read(M.modules .. "/playwright-core/package.json") then
    why[#why + 1] = "playwright-core is not in " .. M.modules .. " (make browser-deps)"
  end
  return #why > 0 and table.concat(why, "; ") or nil
end

local Run = {}
Run.__index = Run

--- Starts scenario `name` against `url` with `params` (a table, given to
-- the scenario as ctx.params) in the background. Screenshots of failed
-- steps go to `shots`. The driver's stdin is a pipe only this process
-- writes: closing it (stop(), or this process dying) ends the driver and
-- its browser.
function M.start(name, url, params, shots)
  local missing = M.missing()
  if missing then error("cannot run the browser tests: " .. missing, 2) end
  local dir = h.tmpdir()
  local rfd, wfd = assert(sys.pipe())
  local out, err, pidf, rcf = dir .. "/out", dir .. "/err", dir .. "/pid", dir .. "/rc"
  -- sh runs the driver in the background, so its stdin is named (fd 3, the
  -- pipe, opened through /proc: ours is close-on-exec), and leaves its pid
  -- and then its exit status in files.
  local script = ("exec 3<&0; node %s %s %s --shots %s --watch-stdin <&3 >%s 2>%s 3<&- & c=$!; "
    .. "echo $c >%s.tmp; mv %s.tmp %s; wait $c; echo $? >%s.tmp; mv %s.tmp %s")
    :format(h.q(M.driver), h.q(name), h.q(url), h.q(shots), h.q(out), h.q(err),
      h.q(pidf), h.q(pidf), h.q(pidf), h.q(rcf), h.q(rcf), h.q(rcf))
  os.execute(("cd %s && env BROWSER_PARAMS=%s sh -c %s </proc/%d/fd/%d >/dev/null 2>&1 &"):format(
    h.q(h.top), h.q(cjson.encode(params or {})), h.q(script), sys.getpid(), rfd))
  local run = setmetatable({ name = name, dir = dir, out = out, err = err, rcf = rcf, rfd = rfd, wfd = wfd },
    Run)
  run.pid = h.until_true("the browser driver's pid", 10, function()
    return math.tointeger(tonumber(h.read(pidf) or ""))
  end)
  return run
end

--- The JSON lines the driver has printed so far (whole lines only).
function Run:lines()
  local list = {}
  for l in (h.read(self.out) or ""):gmatch("([^\n]*)\n") do
    list[#list + 1] = cjson.decode(l) or { text = l }
  end
  return list
end

function Run:status() return math.tointeger(tonumber(h.read(self.rcf) or "")) end

-- What the driver said, for a failure's message: its lines, then stderr.
function Run:report()
  local t = { ("browser scenario %s (exit status %s):"):format(self.name, tostring(self:status())) }
  for l in (h.read(self.out) or ""):gmatch("[^\n]+") do t[#t + 1] = "  " .. l end
  local err = h.read(self.err) or ""
  if err ~= "" then t[#t + 1] = "stderr:\n" .. err:sub(-3000) end
  return table.concat(t, "\n")
end

--- Waits up to `timeout` seconds for the scenario to print the signal
-- `name`; raises, with everything it said, if it ends or times out first.
function Run:wait_signal(name, timeout)
  return h.until_true(("the browser scenario %s to signal %q"):format(self.name, name), timeout, function()
    for _, l in ipairs(self:lines()) do
      if l.signal == name then return l end
      if l.done then error(("scenario %s ended before signalling %q\n%s"):format(self.name, name, self:report()), 0) end
    end
  end, 0.05)
end

--- Waits up to `timeout` seconds for the driver to end (stopping it after
-- that); returns { ok, status, steps = { [name] = line }, lines, report }.
function Run:finish(timeout)
  local ended = pcall(h.until_true, "the browser scenario " .. self.name .. " to end", timeout, function()
    return self:status() ~= nil
  end, 0.05)
  if not ended then self:stop() end
  local r = { status = self:status(), lines = self:lines(), steps = {}, report = self:report() }
  if not ended then r.report = ("timed out after %d s\n"):format(timeout) .. r.report end
  for _, l in ipairs(r.lines) do
    if l.step then r.steps[l.step] = l end
    if l.done then r.done = l end
  end
  r.ok = ended and r.status == 0 and r.done and r.done.ok == true or false
  -- BROWSER_VERBOSE=1: every scenario's lines, passed or not
  if os.getenv("BROWSER_VERBOSE") then print(r.report) end
  self:stop()
  return r
end

--- Ends the driver (its stdin closed: it closes the browser and exits;
-- SIGTERM, then SIGKILL, if it does not) and removes its files.
function Run:stop()
  if self.stopped then return end
  self.stopped = true
  sys.close(self.wfd)
  sys.close(self.rfd)
  local function gone() return not h.alive(self.pid) end
  if not pcall(h.until_true, "the driver to end", 5, gone) then
    os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
    if not pcall(h.until_true, "the driver to end", 5, gone) then
      os.execute("kill -KILL " .. self.pid .. " 2>/dev/null")
    end
  end
  h.rmdir(self.dir)
end

--- Runs scenario `name` to its end (at most `timeout` seconds) and asserts
-- every step held; returns the result (see Run:finish).
function M.run(name, url, params, shots, timeout)
  local r = M.start(name, url, params, shots):finish(timeout)
  assert(r.ok, r.report)
  return r
end

return M
