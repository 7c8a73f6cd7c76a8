--- fotahost.vboard: run a virtual board inside the scheduler.
--
-- The C core `fotahost.vboard.core` (dev/plugins/vboard.core.c) runs the
-- MCU in bounded steps and says how long to wait before the next one;
-- `run` turns that into a scheduler task that shares the process with the
-- others:
--
--     local sched = require "fotahost.sched"
--     local vb = require "fotahost.vboard"
--     sched.run(function()
--       local board <close> = assert(vb.open(dir))
--       vb.run(board, { until_time = 10, on_step = function(b) ... end })
--     end)
--
-- It also re-exports the core's open().

local sched = require "fotahost.sched"

local M = {}

local core
local function load_core()
  if core then return core end
  -- The core is built only where simavr is installed: say so, rather than
  -- leave require's bare "not found".
  local path, why = package.searchpath("fotahost.vboard.core", package.cpath)
  if not path then
    error("fotahost.vboard: the virtual board plugin is not built (it needs simavr: "
      .. "apt-get install libsimavr-dev, then make)\n" .. tostring(why), 3)
  end
  core = require "fotahost.vboard.core"
  return core
end

--- Opens a virtual board on the simulated chip in `dir` (see the plugin).
-- @return board | nil, "dir/...: cause"
function M.open(dir, opts)
  return load_core().open(dir, opts)
end

--- True when the core plugin is available; else false and why.
function M.available()
  local ok, err = pcall(load_core)
  return ok, not ok and err or nil
end

--- Runs `board` as the current task until `opts.until_time` (simulated
-- seconds), `opts.on_step(board)` returns false, or the task is cancelled.
-- Between steps it waits on the board's tty (input for the MCU) or sleeps
-- for as long as the board says nothing is due; with nothing to wait for
-- (unpaced) it still yields, so other tasks run.
-- opts.slice: the most wall time one step may take (default 0.01 s).
function M.run(board, opts)
  opts = opts or {}
  local slice = opts.slice or 0.01
  local until_time, on_step = opts.until_time, opts.on_step
  while true do
    local wait = board:step(slice, until_time)
    if on_step and on_step(board) == false then return board end
    if until_time and board:time() >= until_time then return board end
    if wait > 0 then
      local fd = board:fds()[1]
      if fd then sched.wait_fd(fd, "r", wait) else sched.sleep(wait) end
    else
      sched.yield()
    end
  end
end

return M
