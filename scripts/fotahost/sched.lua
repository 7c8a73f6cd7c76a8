--- fotahost.sched: the cooperative scheduler every long-running script uses.
--
-- Tasks are Lua coroutines. A task runs until it waits: for time
-- (`sleep`), for a file descriptor (`wait_fd`) or for another task
-- (`join`); while it waits, the other tasks run. Underneath is one C
-- primitive, `fotahost.poll`, so the process sleeps in a single
-- epoll_wait whose timeout is the nearest timer.
--
-- The rule every native module follows: nothing blocks the process without
-- a timeout, and anything that waits calls `wait_fd` (or `sleep`), which
-- yields to the other tasks. See docs/scheduler.md for the model and an
-- example with two tasks.
--
--     local sched = require "fotahost.sched"
--     sched.run(function()
--       sched.spawn(function() while true do print("tick") sched.sleep(1) end end)
--       sched.sleep(3.5)
--       sched.stop()
--     end)
--
-- Errors: misuse (a wait outside a task, a bad argument, a task joining
-- itself) raises at the caller. A wait that times out returns nil,
-- "timeout" with no code; wait_fd on a descriptor epoll refuses raises,
-- since the fd came from the caller.

local poll = require "fotahost.poll"
local sys = require "fotahost.sys"

local M = {}

local co_create, co_resume, co_status = coroutine.create, coroutine.resume, coroutine.status
local co_running, co_yield, co_close = coroutine.running, coroutine.yield, coroutine.close
local now = sys.now

-- Scheduler state. One scheduler per process: tasks, timers and fd waiters
-- all live here and are reset when run() returns.
local poller        -- fotahost.poll object while run() is active
local ready = {}     -- FIFO of tasks to resume: { task, ... }
local ready_args = {} -- task -> packed values to resume it with
local timers = {}    -- binary min-heap of { at = time, task = t, seq = n }
local timer_seq = 0
local fd_waiters = {} -- fd -> { r = task|nil, w = task|nil }
local tasks = {}     -- task -> true, every live task
local by_co = {}     -- coroutine -> task
local ntasks = 0
local stopping = false
local main_task     -- the task of run(fn): when it ends, run() ends

--- A task: a coroutine plus what the scheduler knows of it.
-- Fields users may read: `name`, `status` ("ready", "waiting", "done",
-- "failed", "cancelled"), `result` (a packed table of return values when
-- done), `error` (the error value, when failed) and `traceback`.
local Task = {}
local task_mt = { __name = "fotahost.sched.task", __index = Task }
function task_mt.__tostring(self)
  return ("task %s (%s)"):format(self.name, self.status)
end

-- Misuse raises, blaming the caller of the sched function that checks.
local function check(ok, msg)
  if not ok then error(msg, 3) end
end

---------------------------------------------------------------- timers

-- A timer whose wait ended otherwise (an fd became ready first, the task
-- was cancelled) stays in the heap until its time comes and is skipped
-- then. With long timeouts and frequent waits (a socket read with a 50 s
-- timeout, woken by every packet) those would pile up, so when they
-- outnumber the live ones the heap is rebuilt without them.
local stale_timers = 0

local function timer_live(item)
  local task = item.task
  return task.status ~= "done" and tasks[task] ~= nil and task.wait_token == item.token
end

local function heap_less(a, b)
  return a.at < b.at or (a.at == b.at and a.seq < b.seq)
end

local function heap_compact()
  local live = {}
  for _, item in ipairs(timers) do
    if timer_live(item) then live[#live + 1] = item end
  end
  -- any order sorted is a heap
  table.sort(live, heap_less)
  timers = live
  stale_timers = 0
end

local function heap_push(item)
  if stale_timers > 64 and stale_timers * 2 > #timers then heap_compact() end
  local h = timers
  local i = #h + 1
  h[i] = item
  while i > 1 do
    local p = i // 2
    local a, b = h[p], h[i]
    if a.at < b.at or (a.at == b.at and a.seq < b.seq) then break end
    h[p], h[i] = b, a
    i = p
  end
end

local function heap_pop()
  local h = timers
  local n = #h
  local top = h[1]
  h[1] = h[n]
  h[n] = nil
  n = n - 1
  local i = 1
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= n and (h[l].at < h[m].at or (h[l].at == h[m].at and h[l].seq < h[m].seq)) then m = l end
    if r <= n and (h[r].at < h[m].at or (h[r].at == h[m].at and h[r].seq < h[m].seq)) then m = r end
    if m == i then break end
    h[i], h[m] = h[m], h[i]
    i = m
  end
  return top
end

---------------------------------------------------------------- core

local function make_ready(task, ...)
  -- A task that ended (cancelled while it waited on a join, say) stays ended.
  if task.status == "ready" or not tasks[task] then return end
  task.status = "ready"
  task.wait_token = nil
  ready[#ready + 1] = task
  ready_args[task] = table.pack(...)
end

local function current_task()
  local co, main = co_running()
  if main then return nil end
  return by_co[co]
end

local function check_in_task(what)
  local t = current_task()
  if not t then
    error(what .. ": not inside a scheduler task (use sched.run or sched.spawn)", 3)
  end
  return t
end

-- Suspends the current task until something calls make_ready on it.
-- `token` identifies this wait, so a stale timer cannot wake a later one.
local closing = false -- shutdown() is closing the tasks: nothing may wait

local function suspend(task, token)
  if closing then
    error("sched: a task cannot wait while the scheduler stops it (a <close> handler "
      .. "that needs to wait belongs after sched.run returns)", 3)
  end
  task.status = "waiting"
  task.wait_token = token
  return co_yield()
end

local function finish(task, ok, ...)
  tasks[task] = nil
  by_co[task.co] = nil
  ntasks = ntasks - 1
  if ok then
    task.status = "done"
    task.result = table.pack(...)
  else
    task.status = "failed"
    task.error = ...
  end
  for _, waiter in ipairs(task.joiners or {}) do
    make_ready(waiter, task)
  end
  task.joiners = nil
end

local log_task_error -- set below, uses fotahost.log lazily

local function resume(task)
  local args = ready_args[task]
  ready_args[task] = nil
  local co = task.co
  local r = table.pack(co_resume(co, table.unpack(args, 1, args.n)))
  if co_status(co) == "dead" then
    if not r[1] then
      local err = r[2]
      local traceback = debug.traceback(co, tostring(err))
      -- A coroutine that died keeps its pending <close> variables until it
      -- is closed: close it now, so a failed task releases what it held.
      local closed_ok, close_err = co_close(co)
      if not closed_ok and close_err ~= err then err = close_err end
      -- The interrupt error (SIGINT/SIGTERM) is the whole program's, not
      -- the task's: let it stop run().
      if sys.interrupted() and tostring(err):find("interrupted (", 1, true) then
        task.status = "failed"
        error(err, 0)
      end
      task.traceback = traceback
      finish(task, false, err)
      if task == main_task then stopping = true end
      if not task.joiners_seen and task.on_error ~= false then
        log_task_error(task)
      end
    else
      finish(task, true, table.unpack(r, 2, r.n))
      if task == main_task then stopping = true end
    end
  end
end

log_task_error = function(task)
  local ok, log = pcall(require, "fotahost.log")
  if ok then
    log.error("sched", "%s failed: %s", task.name, task.traceback)
  else
    io.stderr:write(("fotahost: %s failed: %s\n"):format(task.name, task.traceback))
  end
end

---------------------------------------------------------------- API

--- Starts `fn(...)` as a new task; it first runs at the next turn of the
-- loop. `opts` may be a string (the task's name) or a table
-- `{ name = "...", log_errors = true|false }`.
-- @return the task object
function M.spawn(opts, fn, ...)
  if type(opts) == "function" then
    return M.spawn(nil, opts, fn, ...)
  end
  if type(opts) ~= "table" then opts = { name = opts } end
  check(type(fn) == "function", "sched.spawn: function expected")
  local co = co_create(fn)
  sys.arm(co)
  ntasks = ntasks + 1
  local task = setmetatable({
    co = co,
    name = opts.name or ("#" .. ntasks),
    status = "new",
    on_error = opts.log_errors,
  }, task_mt)
  tasks[task] = true
  by_co[co] = task
  make_ready(task, ...)
  return task
end

--- Suspends the current task for `seconds` (0 yields to the other tasks).
function M.sleep(seconds)
  local task = check_in_task("sched.sleep")
  check(type(seconds) == "number" and seconds >= 0, "sched.sleep: seconds must be a number >= 0")
  timer_seq = timer_seq + 1
  local token = { kind = "sleep" }
  heap_push({ at = now() + seconds, task = task, token = token, seq = timer_seq })
  suspend(task, token)
end

--- Yields to the other ready tasks, then continues.
function M.yield()
  M.sleep(0)
end

--- Waits until `fd` is readable (`mode` "r") or writable ("w"), at most
-- `timeout` seconds (nil: no limit).
-- @return true | nil, "timeout"
function M.wait_fd(fd, mode, timeout)
  local task = check_in_task("sched.wait_fd")
  check(math.type(fd) == "integer" and fd >= 0, "sched.wait_fd: fd must be a non-negative integer")
  check(mode == "r" or mode == "w", "sched.wait_fd: mode must be \"r\" or \"w\"")
  local w = fd_waiters[fd]
  if w and w[mode] then
    error(("sched.wait_fd: fd %d already has a task waiting to %s"):format(
      fd, mode == "r" and "read" or "write"), 2)
  end
  local registered = w ~= nil
  if not w then
    w = {}
    fd_waiters[fd] = w
  end
  w[mode] = task
  local ok, err
  if registered then
    ok, err = poller:set(fd, w.r ~= nil, w.w ~= nil)
  else
    ok, err = poller:add(fd, w.r ~= nil, w.w ~= nil)
  end
  if not ok then
    w[mode] = nil
    if not registered then fd_waiters[fd] = nil end
    error("sched.wait_fd: " .. err, 2)
  end
  local token = { kind = "fd", fd = fd, mode = mode }
  if timeout then
    timer_seq = timer_seq + 1
    heap_push({ at = now() + timeout, task = task, token = token, seq = timer_seq })
  end
  local why = suspend(task, token)
  if timeout and why ~= "timeout" then stale_timers = stale_timers + 1 end
  -- Deregister this waiter whatever woke us.
  w[mode] = nil
  if w.r == nil and w.w == nil then
    fd_waiters[fd] = nil
    poller:del(fd)
  else
    poller:set(fd, w.r ~= nil, w.w ~= nil)
  end
  if why == "timeout" then return nil, "timeout" end
  return true
end

--- Waits for `task` to end.
-- @return true, results... when it returned; false, error when it failed
-- or was cancelled.
function M.join(task, timeout)
  local me = check_in_task("sched.join")
  check(getmetatable(task) == task_mt, "sched.join: task expected")
  check(task ~= me, "sched.join: a task cannot join itself")
  task.joiners_seen = true
  if task.status ~= "done" and task.status ~= "failed" and task.status ~= "cancelled" then
    task.joiners = task.joiners or {}
    table.insert(task.joiners, me)
    local token = { kind = "join" }
    if timeout then
      timer_seq = timer_seq + 1
      heap_push({ at = now() + timeout, task = me, token = token, seq = timer_seq })
    end
    local why = suspend(me, token)
    if why == "timeout" then
      for i, t in ipairs(task.joiners or {}) do
        if t == me then table.remove(task.joiners, i) break end
      end
      return nil, "timeout"
    end
  end
  if task.status == "done" then
    return true, table.unpack(task.result, 1, task.result.n)
  end
  return false, task.error or "cancelled"
end

--- Stops a task that is not running: its pending <close> variables run.
function M.cancel(task)
  check(getmetatable(task) == task_mt, "sched.cancel: task expected")
  if not tasks[task] then return false end
  check(task.co ~= co_running(), "sched.cancel: a task cannot cancel itself; return instead")
  local w = task.wait_token
  if w and w.kind == "fd" then
    local fw = fd_waiters[w.fd]
    if fw then
      fw[w.mode] = nil
      if fw.r == nil and fw.w == nil then
        fd_waiters[w.fd] = nil
        poller:del(w.fd)
      else
        poller:set(w.fd, fw.r ~= nil, fw.w ~= nil)
      end
    end
  end
  for i, t in ipairs(ready) do
    if t == task then table.remove(ready, i) break end
  end
  ready_args[task] = nil
  local ok, err = co_close(task.co)
  finish(task, false, ok and "cancelled" or err)
  task.status = "cancelled"
  return true
end

--- Calls `fn()` every `interval` seconds in a task of its own, on a fixed
-- schedule (a slow call does not shift the next ones). Returns the task;
-- cancel it to stop.
function M.every(interval, fn, name)
  check(type(interval) == "number" and interval > 0, "sched.every: interval must be > 0")
  return M.spawn(name or "every", function()
    local next_at = now() + interval
    while true do
      local delay = next_at - now()
      if delay > 0 then M.sleep(delay) else M.yield() end
      fn()
      next_at = next_at + interval
      if next_at < now() then next_at = now() + interval end -- we fell behind
    end
  end)
end

--- Calls `fn()` once after `delay` seconds, in a task of its own.
function M.after(delay, fn, name)
  return M.spawn(name or "after", function()
    M.sleep(delay)
    return fn()
  end)
end

--- The current task, or nil when called outside any task.
function M.current()
  return current_task()
end

--- Seconds on the monotonic clock.
M.now = now

--- Asks run() to return after the current turn; pending tasks are cancelled.
function M.stop()
  stopping = true
end

--- The number of live tasks.
function M.count()
  return ntasks
end

-- Closes every remaining task (runs their <close> variables) and resets.
local function shutdown()
  closing = true
  for task in pairs(tasks) do
    if task.co ~= co_running() and co_status(task.co) == "suspended" then
      co_close(task.co)
    end
    task.status = "cancelled"
  end
  closing = false
  tasks, by_co, ready, ready_args, timers, fd_waiters = {}, {}, {}, {}, {}, {}
  ntasks, stale_timers = 0, 0
  stopping = false
  if poller then poller:close() poller = nil end
end

local function expire_timers(t)
  while timers[1] and timers[1].at <= t do
    local item = heap_pop()
    local task = item.task
    if task.status == "waiting" and task.wait_token == item.token then
      make_ready(task, "timeout")
    end
  end
end

local function loop()
  while ntasks > 0 and not stopping do
    -- Run everything that is ready now; tasks made ready meanwhile wait
    -- for the next turn, so a task that yields in a loop cannot starve
    -- the fds and timers.
    local batch = ready
    ready = {}
    for i = 1, #batch do
      local task = batch[i]
      if tasks[task] and task.status == "ready" then
        task.status = "running"
        resume(task)
        if stopping then break end
      end
    end
    if stopping or ntasks == 0 then break end
    local timeout
    if #ready > 0 then
      timeout = 0
    elseif timers[1] then
      timeout = math.max(0, timers[1].at - now())
    elseif next(fd_waiters) then
      timeout = math.huge
    else
      error("sched: deadlock: " .. ntasks .. " task(s) waiting with no timer and no fd", 0)
    end
    -- Take every event of this wake-up. Readiness is level-triggered, so
    -- an fd seen twice means a fresh poll: the batch is done (its task is
    -- already ready, and the event will be reported again if still true).
    local fd, r, w = poller:wait(timeout)
    local seen = {}
    while fd and not seen[fd] do
      seen[fd] = true
      local fw = fd_waiters[fd]
      if fw then
        if r and fw.r then make_ready(fw.r, "ready") end
        if w and fw.w then make_ready(fw.w, "ready") end
      end
      fd, r, w = poller:wait(0)
    end
    if fd then r = "timeout" end
    if r ~= "timeout" and r ~= "signal" then
      error("sched: " .. tostring(r), 0)
    end
    expire_timers(now())
  end
end

--- How many timers the heap holds, stale ones included (for diagnostics
-- and tests: it stays near the number of live waits).
function M.timer_count()
  return #timers
end

--- Runs the scheduler. With `fn`, `fn(...)` becomes the "main" task and
-- run() ends when it ends: it returns what fn returned, or raises fn's
-- error, after closing every task still running (their <close> variables
-- run). Without `fn`, run() ends when no task is left. stop() ends it
-- early either way. An uncaught interrupt (SIGINT/SIGTERM) closes every
-- task, then propagates.
function M.run(fn, ...)
  check(not poller, "sched.run: the scheduler is already running")
  local co, main = co_running()
  if not main then sys.arm(co) end
  poller = assert(poll.new())
  local mt
  if fn then
    mt = M.spawn({ name = "main", log_errors = false }, fn, ...)
    main_task = mt
  end
  local ok, err = pcall(loop)
  main_task = nil
  shutdown()
  if not ok then error(err, 0) end
  if mt then
    if mt.status == "failed" then error(mt.error, 0) end
    if mt.result then
      return table.unpack(mt.result, 1, mt.result.n)
    end
  end
end

return M
