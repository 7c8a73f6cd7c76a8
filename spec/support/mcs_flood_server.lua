-- A hostile MCS cloud for specs: it answers the device's REST calls like a
-- cloud (connections.csv points at its TCP port; data points and version
-- reports are taken and logged), and once a device's first heartbeat comes
-- in on the command channel, it sends commands back to back without a
-- pause for --seconds (or --count N commands, a multiple of 2000), as fast
-- as the device reads them.
--
--   fotahost spec/support/mcs_flood_server.lua --device ID:KEY (--seconds S | --count N [--watch S]) [--delay S]
--     --report FILE
--
-- --watch S: with --count, heartbeats are timed (and the report written)
-- until S seconds after the flood began, though the kernel's buffers took
-- the N commands long before: the device is still reading them then.
--
-- Prints "listening HOST:PORT" (the REST side) when ready; exits at the end
-- of its stdin. FILE gets, once the flood is over, one line per fact:
--   connected         the first heartbeat came (the flood starts --delay s later)
--   sent N            commands written during the flood
--   beats T1 T2 ...   heartbeat arrival times, seconds since the flood began
--                     (negative: before it)
--   status TEXT       each value the device posted on its "status" channel
-- Data points arriving at any time are appended to FILE as "point ..." lines.
local sched = require "fotahost.sched"
local httpd = require "fotahost.httpd"
local tcp = require "fotahost.tcp"
local sys = require "fotahost.sys"

local opts = { seconds = 3 }
local i = 1
while arg[i] do
  local k = arg[i]:match("^%-%-(.+)$")
  if not k then error("unexpected argument " .. arg[i]) end
  opts[k] = arg[i + 1]
  i = i + 2
end
local id, key = assert(opts.device, "--device ID:KEY"):match("^([^:]+):(.+)$")
local seconds = assert(tonumber(opts.seconds))
local report = assert(opts.report, "--report FILE")

local function append(line)
  local f = assert(io.open(report, "a"))
  f:write(line, "\n")
  f:close()
end

sched.run(function()
  local listener = assert(tcp.listen("127.0.0.1", 0))
  local _, tport = listener:getsockname()
  local srv = assert(httpd.listen({ host = "127.0.0.1", port = 0, handler = function(req, res)
    if req.path:match("/connections%.csv$") then
      res:send(200, { ["Content-Type"] = "text/csv" }, "127.0.0.1," .. tport)
    else
      local body = req.body or ""
      for line in body:gmatch("[^\n]+") do append("point " .. line) end
      res:send(200, { ["Content-Type"] = "text/plain" }, "Success.")
    end
  end }))
  io.stdout:write(("listening 127.0.0.1:%d\n"):format(srv.port))
  io.stdout:flush()

  sched.spawn({ name = "accept" }, function()
    while true do
      local sock = listener:accept(math.huge)
      if sock then
        sched.spawn({ name = "flood" }, function()
          local beats, t0 = {}
          local reader = sched.spawn({ name = "beats" }, function()
            while true do
              local data = sock:read_some(4096, math.huge)
              if not data then return end
              local beat, at = id .. "," .. key .. ",0", 1
              while true do
                local s, e = data:find(beat, at, true)
                if not s then break end
                beats[#beats + 1] = sched.now()
                at = e + 1
              end
            end
          end)
          while #beats == 0 do sched.sleep(0.01) end
          append("connected")
          sched.sleep(tonumber(opts.delay or 1))
          -- FOTA pushes and switch commands, no terminator, no pause
          local prefix = id .. "," .. key .. ","
          local parts = {}
          for n = 1, 2000 do
            parts[#parts + 1] = n % 2 == 0
              and prefix .. "1700000000000,FOTA,9." .. n .. ",null,http://127.0.0.1:1/fw.hex"
              or prefix .. "1700000000000,LED," .. (n % 4 == 1 and "1" or "0")
          end
          local block = table.concat(parts)
          t0 = sched.now()
          local sent = 0
          local count = tonumber(opts.count)
          while (count and sent < count) or (not count and sched.now() - t0 < seconds) do
            if not sock:write(block, 30) then break end
            sent = sent + #parts
            sched.yield() -- the heartbeat reader's turn: arrival times are taken there
          end
          while count and opts.watch and sched.now() - t0 < tonumber(opts.watch) do sched.sleep(0.05) end
          local times = {}
          for k, t in ipairs(beats) do times[k] = ("%.3f"):format(t - t0) end
          append("sent " .. sent)
          append("beats " .. table.concat(times, " "))
          sched.cancel(reader)
        end)
      end
    end
  end)
  -- ends with its stdin: a spec that dies never leaves it behind
  while true do
    if sched.wait_fd(0, "r", 3600) ~= "timeout" then
      local data, why = sys.read(0, 4096)
      if not data and why ~= "wouldblock" then os.exit(0) end
    end
  end
end)
