-- fotahost hello: the smallest whole program on the scheduler, and the
-- main job of the README until the FOTA demo replaces it.
--
-- Two tasks share one process: a heartbeat ticks on a timer while a reader
-- waits on a pipe that a third task feeds slowly. Neither blocks the other.
--
--   usage: fotahost hello [count]     (count: messages through the pipe, default 5)

local sched = require "fotahost.sched"
local sys = require "fotahost.sys"
local log = require("fotahost.log").get("hello")

local count = tonumber(arg[1] or "5")
if not count or count < 1 or count ~= math.floor(count) then
  io.stderr:write("usage: fotahost hello [count]  (count: messages to send, a whole number >= 1)\n")
  os.exit(2)
end

local START = sched.now()
log.info("fotahost hello: %d messages through a pipe, 0.3 s apart, while a heartbeat ticks every 0.2 s", count)

sched.run(function()
  local rfd, wfd = assert(sys.pipe())

  local reader = sched.spawn("reader", function()
    local got = {}
    while true do
      local ok = sched.wait_fd(rfd, "r", 5)
      if not ok then error("reader: no data for 5 s") end
      local data, why = sys.read(rfd)
      if not data then
        assert(why == "closed", why)
        break
      end
      got[#got + 1] = data
      print(("reader: got %q at %.2f s"):format(data, sched.now() - START))
    end
    sys.close(rfd)
    return table.concat(got)
  end)

  sched.spawn("writer", function()
    for i = 1, count do
      sched.sleep(0.3)
      assert(sys.write(wfd, "msg" .. i))
    end
    sys.close(wfd)
  end)

  local beats = 0
  local heart = sched.every(0.2, function()
    beats = beats + 1
    print(("heartbeat %d at %.2f s"):format(beats, sched.now() - START))
  end, "heartbeat")

  local ok, text = sched.join(reader)
  sched.cancel(heart)
  assert(ok, text)
  print(("done: the reader got %d bytes while %d heartbeats ran"):format(#text, beats))
end)
