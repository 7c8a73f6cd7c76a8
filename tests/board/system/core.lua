-- busted's clock (`system.core`, Debian's lua-system), for `make board-test`
-- only: busted asks it for the time and for sleeps. lua-system's .orig
-- tarball was missing from the Debian mirror this project builds from (404
-- on 2026-12-07), so the board run takes the same three calls from
-- fotahost's natives, which are built for the board's ABI anyway.
local sys = require "fotahost.sys"
local poll = require "fotahost.poll"

return {
  gettime = sys.time,
  monotime = sys.now,
  sleep = function(seconds)
    local p = poll.new()
    p:wait(seconds)
    p:close()
  end,
}
