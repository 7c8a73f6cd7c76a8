-- busted's clock (`system.core`, Debian's lua-system), for `make board-test`
-- only: busted asks it for the time and for sleeps. lua-system's own C
-- source is not in this network's reach of Debian's archive, so the board
-- run takes the same three calls from fotahost's natives, which are built
-- for the board's ABI anyway.
local sys = require "fotahost.sys"
local poll = require "fotahost.poll"

return {
  gettime = sys.time,
  monotime = sys.now,
  sleep = function(seconds) poll.new():wait(seconds) end,
}
