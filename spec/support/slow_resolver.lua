-- Name lookups that take as long as this script wants, for
-- spec/tcp_spec.lua ("a slow name lookup"), run as a process of its own:
--
--   unshare -rm sh -c '<bind FIFO on /etc/hosts, "hosts: files" on
--     /etc/nsswitch.conf>' ... fotahost spec/support/slow_resolver.lua FIFO
--
-- In that mount namespace getaddrinfo reads only /etc/hosts, and opening
-- it (a FIFO) blocks the lookup's thread until someone opens the FIFO for
-- writing: release() below. The lookup then reads an end of file (glibc
-- cannot seek a FIFO and gives up: the name is not found), so a released
-- lookup ends with a failure, never with the network.
--
-- Each step leaves one lookup blocked at most, and releases it before the
-- next: release() waits (in this thread) for that lookup's open, so the
-- two meet and no other lookup can take its end of file.
--
-- Prints "key value" lines; the spec reads them. A lookup that blocked
-- the scheduler (or a close that waited for one) hangs this script: the
-- spec runs it under timeout(1).
local sched = require "fotahost.sched"
local tcp = require "fotahost.tcp"
local core = require "fotahost.tcp.core"
local poll = require "fotahost.poll"

local fifo = assert(arg[1], "usage: slow_resolver.lua FIFO")
local NAME = "slow.test"

local function say(key, value)
  io.stdout:write(key, " ", tostring(value), "\n")
  io.stdout:flush()
end

-- Lets the one lookup blocked on /etc/hosts go on (waiting for it to
-- open the FIFO if it has not yet).
local function release()
  assert(io.open(fifo, "w")):close()
end

local function readable(fd)
  local p <close> = assert(poll.new())
  assert(p:add(fd, true, false))
  return p:wait(0) ~= nil
end

local ticks = 0

sched.run(function()
  local ticker = sched.every(0.01, function() ticks = ticks + 1 end, "ticker")

  -- tcp.connect to a name whose lookup never ends: the other tasks run
  -- meanwhile, and the connect gives up at its timeout (closing its
  -- lookup, still in flight)
  local t0, ticks0 = sched.now(), ticks
  local sock, err = tcp.connect(NAME, 80, 0.3)
  say("connect", sock or err)
  say("connect_took", sched.now() - t0)
  say("connect_ticks", ticks - ticks0)
  release()

  -- a task cancelled while it waits for its lookup
  local task = sched.spawn("connecting", function() return tcp.connect(NAME, 80, 60) end)
  sched.yield() -- it runs until it waits for the lookup's fd
  say("task_before_cancel", task.status)
  t0 = sched.now()
  sched.cancel(task)
  say("cancel_took", sched.now() - t0)
  say("task_after_cancel", task.status)
  release()

  -- the core's resolver, closed while its lookup runs
  local r = assert(core.resolve_start(NAME, 80))
  say("result_in_flight", table.concat({ tostring(select(1, r:result())), tostring(select(2, r:result())) }, " "))
  say("fd_readable_in_flight", readable(r:fd()))
  t0 = sched.now()
  r:close()
  say("close_took", sched.now() - t0)
  say("closed", tostring(r))
  release()

  -- a lookup that ends late: its waiter wakes then, the ticks ran meanwhile
  local slow = assert(core.resolve_start(NAME, 81))
  sched.after(0.2, release, "releaser")
  t0, ticks0 = sched.now(), ticks
  say("wait", sched.wait_fd(slow:fd(), "r", 5) and "readable" or "timeout")
  say("wait_took", sched.now() - t0)
  say("wait_ticks", ticks - ticks0)
  say("slow_result", select(2, slow:result()))
  slow:close()

  sched.cancel(ticker)
  say("done", true)
end)
