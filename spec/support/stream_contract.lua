-- What every stream object of fotahost.stream promises (a serial port, a
-- TCP socket): reads and writes with timeouts, partial data handed over,
-- "closed" when the other end goes, lines with a limit, no wait without a
-- timeout, other tasks running meanwhile. Written once, run by
-- serial_spec.lua and tcp_spec.lua, each with its own connected pair:
--
--     require("support.stream_contract")(it, assert, make_pair)
--
-- make_pair() returns { a = the object under test, b = the other end,
-- kind = "serial port", prefix = "port", closed_name = tostring(a) once
-- closed, done = function that closes what the pair holds }.
-- Data goes from b to a, except where one end goes away: then a writes and
-- closes while b reads what is left, or b closes while a writes. Those
-- are the directions a pty allows: its master still reads what the slave
-- wrote before closing, and the slave sees the master's close as a
-- hang-up; TCP allows them all.
local sched = require "fotahost.sched"
local h = require "helper"

local elapsed = h.elapsed

return function(it, assert, make_pair)
  -- Each case gets a fresh pair, closed after it however it ends.
  local function case(title, body)
    it(title, function()
      local p = make_pair()
      local _ <close> = setmetatable({}, { __close = function() p.done() end })
      body(p, p.a, p.b)
    end)
  end

  case("reads and writes in both directions", function(_, a, b)
    assert.is_true(a:write("ping\n", 1))
    assert.are.equal("ping", b:read_line(1))
    assert.is_true(b:write("pong\r\n", 1))
    assert.are.equal("pong", a:read_line(1))
    assert.is_true(b:write("\0\1\2\255", 1))
    assert.are.equal("\0\1\2\255", a:read(4, 1))
  end)

  case("reads n bytes arriving in several pieces, while other tasks run", function(_, a, b)
    local got, pieces = sched.run(function()
      local n = 0
      sched.spawn("writer", function()
        for _, piece in ipairs({ "he", "ll", "o w", "orld" }) do
          sched.sleep(0.02)
          assert(b:write(piece, 1))
          n = n + 1
        end
      end)
      return a:read(11, 2), n
    end)
    assert.are.equal("hello world", got)
    assert.are.equal(4, pieces)
  end)

  case("reads lines split across tiny writes, and several lines from one write", function(_, a, b)
    local lines = sched.run(function()
      sched.spawn("writer", function()
        for _, piece in ipairs({ "h", "e", "l", "lo\r", "\nwor", "ld\n", "a\nb\r\nc\n\nx\ry\n" }) do
          assert(b:write(piece, 1))
          sched.sleep(0.01)
        end
      end)
      local lines = {}
      for _ = 1, 7 do lines[#lines + 1] = assert(a:read_line(2)) end
      return lines
    end)
    assert.are.same({ "hello", "world", "a", "b", "c", "", "x\ry" }, lines)
    assert.are.same({ nil, "timeout", "" }, { a:read_line(0) })
  end)

  case("mixes lines and counted reads on one buffer", function(_, a, b)
    assert(b:write("OK 4\r\nDATAnext\n", 1))
    assert.are.equal("OK 4", a:read_line(1))
    assert.are.equal("DATA", a:read(4, 1))
    assert.are.equal("next", a:read_line(1))
  end)

  case("reads what is there with read_some, buffered bytes first", function(_, a, b)
    assert(b:write("OK\nrest", 1))
    assert.are.equal("OK", a:read_line(1))
    assert.are.equal("re", a:read_some(2, 1)) -- from the buffer
    assert.are.equal("st", a:read_some(100, 1))
    local took, data, why = elapsed(function() return a:read_some(100, 0.05) end)
    assert.are.same({ nil, "timeout" }, { data, why })
    assert.is_true(took >= 0.04, "took " .. took)
    b:close()
    assert.are.same({ nil, "closed" }, { a:read_some(100, 1) })
  end)

  case("returns the partial data when a read times out", function(_, a, b)
    assert(b:write("abc", 1))
    local took, data, why, partial = elapsed(function() return a:read(5, 0.1) end)
    assert.are.same({ nil, "timeout", "abc" }, { data, why, partial })
    assert.is_true(took >= 0.1 and took < 1, "took " .. took)
    -- the partial was handed over: the next read starts after it
    assert(b:write("de", 1))
    assert.are.equal("de", a:read(2, 1))
    took, data, why, partial = elapsed(function() return a:read_line(0.05) end)
    assert.are.same({ nil, "timeout", "" }, { data, why, partial })
    assert.is_true(took >= 0.05 and took < 1, "took " .. took)
    assert(b:write("no newline yet", 1))
    took, data, why, partial = elapsed(function() return a:read_line(0.05) end)
    assert.are.same({ nil, "timeout", "no newline yet" }, { data, why, partial })
    assert.is_true(took >= 0.05 and took < 1, "took " .. took)
  end)

  case("refuses a line longer than max", function(_, a, b)
    assert(b:write(("x"):rep(20) .. "\nok\n0123456789\r\n", 1))
    assert.are.same({ nil, "line too long", ("x"):rep(20) }, { a:read_line(1, 10) })
    assert.are.equal("ok", a:read_line(1, 10))
    assert.are.equal("0123456789", a:read_line(1, 10)) -- exactly max, with its \r\n
    -- no newline at all: it gives up once more than max bytes have come
    assert(b:write(("y"):rep(30), 1))
    local line, why, partial = a:read_line(1, 10)
    assert.are.same({ nil, "line too long" }, { line, why })
    assert.matches("^y+$", partial)
    assert.is_true(#partial > 10)
    -- the default limit is 4096 bytes
    assert(b:write(("z"):rep(5000) .. "\n", 2))
    line, why, partial = a:read_line(2)
    assert.are.same({ nil, "line too long" }, { line, why })
    assert.matches("^z+$", partial)
    assert.is_true(#partial > 4096)
  end)

  case("says closed, with the partial data, when the other end closes", function(_, a, b)
    assert(a:write("bye", 1))
    a:close()
    assert.are.same({ nil, "closed", "bye" }, { b:read(10, 1) })
    assert.are.same({ nil, "closed", "" }, { b:read_line(1) })
  end)

  -- a counted read and a line read, each on a pair of its own
  for _, how in ipairs({ "read", "read_line" }) do
    case("says closed to a " .. how .. " waiting in a task, with what it had", function(_, a, b)
      local r = { sched.run(function()
        sched.spawn("other end", function()
          assert(a:write("par", 1))
          sched.sleep(0.05)
          a:close()
        end)
        if how == "read" then return b:read(10, 2) end
        return b:read_line(2)
      end) }
      assert.are.same({ nil, "closed", "par" }, r)
    end)
  end

  case("returns closed, not a signal, when writing to an end that went away", function(_, a, b)
    b:close()
    -- the first write may be taken before the reset comes back; keep on
    local ok, why, written
    local deadline = sched.now() + 2
    repeat
      ok, why, written = a:write(("x"):rep(65536), 1)
    until not ok or sched.now() > deadline
    assert.is_nil(ok)
    assert.are.equal("closed", why)
    assert.is_number(written)
    assert.are.same({ nil, "closed", 0 }, { a:write("more", 1) })
  end)

  case("stops writing to an end that does not read, when the timeout is up", function(_, a)
    local big = ("w"):rep(16 * 1024 * 1024)
    local took, ok, why, written = elapsed(function() return a:write(big, 0.1) end)
    assert.are.same({ nil, "timeout" }, { ok, why })
    assert.is_true(written > 0 and written < #big, "written " .. written)
    assert.is_true(took >= 0.1 and took < 1, "took " .. took)
    -- in a task too
    local r = { sched.run(function() return a:write(big, 0.05) end) }
    assert.are.same({ nil, "timeout" }, { r[1], r[2] })
    assert.is_true(r[3] >= 0)
  end)

  case("keeps a timer task ticking while a read waits", function(_, a, b)
    local ticks = 0
    local took, got = elapsed(function()
      return sched.run(function()
        local ticker = sched.every(0.01, function() ticks = ticks + 1 end)
        sched.after(0.3, function() assert(b:write("late", 1)) end)
        local data = a:read(4, 2)
        sched.cancel(ticker)
        return data
      end)
    end)
    assert.are.equal("late", got)
    assert.is_true(took >= 0.3 and took < 2, "took " .. took)
    -- some 30 ticks; a read that held the process would leave none (the
    -- ticker is cancelled as soon as it returns), a stall of the machine a few
    assert.is_true(ticks >= 5, "ticks: " .. ticks)
    -- and while a read times out, too
    ticks = 0
    local r = { sched.run(function()
      local ticker = sched.every(0.01, function() ticks = ticks + 1 end)
      local x, y, z = a:read_line(0.3)
      sched.cancel(ticker)
      return x, y, z
    end) }
    assert.are.same({ nil, "timeout", "" }, r)
    assert.is_true(ticks >= 3, "ticks: " .. ticks)
  end)

  case("waits for ever only when asked to with math.huge", function(_, a, b)
    assert(b:write("now", 1))
    assert.are.equal("now", a:read(3, math.huge))
    local got = sched.run(function()
      sched.after(0.02, function() assert(b:write("then\n", 1)) end)
      return a:read_line(math.huge)
    end)
    assert.are.equal("then", got)
  end)

  case("never waits without a timeout; misuse raises at the caller", function(p, a)
    for _, call in ipairs({
      function() a:read(1) end,
      function() a:read_line() end,
      function() a:write("x") end,
      function() a:read(1, -1) end,
      function() a:read(1, 0 / 0) end,
      function() a:write("x", "soon") end,
      function() a:read(-1, 1) end,
      function() a:read_line(1, 0) end,
      function() a:read_some(0, 1) end,
      function() a:write(42, 1) end,
    }) do
      assert.has_error(call)
    end
    assert.has_error(function() a:read(1) end,
      p.prefix .. ":read: timeout required (seconds >= 0, or math.huge to wait for ever), got nil")
    -- a method called with a dot names what it wanted
    local ok, err = pcall(a.read, {}, 1, 1)
    assert.is_false(ok)
    assert.matches(p.prefix .. ":read: " .. p.kind .. " expected", err, 1, true)
    -- timeout 0: one look, no wait (the bound only has to tell "no wait"
    -- from a real one on a loaded machine)
    local took, x, y, z = elapsed(function() return a:read(1, 0) end)
    assert.are.same({ nil, "timeout", "" }, { x, y, z })
    assert.is_true(took < 0.5, "took " .. took)
  end)

  case("closes with <close>, idempotently, and raises when used closed", function(p, a)
    local fd
    do
      local scoped <close> = a
      fd = scoped:fd()
      assert.is_number(fd)
    end
    assert.are.equal(p.closed_name, tostring(a))
    assert.is_true(a:close())
    local closed = "attempt to use a closed " .. p.kind
    assert.has_error(function() a:read(1, 1) end, closed)
    assert.has_error(function() a:read_line(1) end, closed)
    assert.has_error(function() a:read_some(1, 1) end, closed)
    assert.has_error(function() a:write("x", 1) end, closed)
    -- and where nothing would reach the native object, which checks too
    assert.has_error(function() a:read(0, 1) end, closed)
    assert.has_error(function() a:write("", 1) end, closed)
    assert.has_error(function() a:fd() end, closed)
    assert.has_error(function() a.close({}) end, p.prefix .. ":close: " .. p.kind .. " expected")
  end)
end
