--- fotahost.stream: what every byte stream with timeouts shares (serial
-- ports, TCP sockets): waiting on an fd inside or outside the scheduler, and
-- the read / read_line / write methods built on a native object whose
-- read_available / write_available never wait.
--
-- A stream object is a table with `_raw` (the native object, with fd(),
-- read_available(max), write_available(data, i)), `_rbuf` (bytes read past
-- the last line), and `name` or `path` (for messages). Waits are bounded:
--
-- * inside a scheduler task with sched.wait_fd / sched.sleep, so the other
--   tasks run meanwhile;
-- * outside any task in a fotahost.poll poller the object keeps (`_poller`).

local poll = require "fotahost.poll"
local sched = require "fotahost.sched"

local M = {}

local now = sched.now
local concat = table.concat

--- Raises "<what>: timeout required ..." at the caller of the function
-- that checks (level 3), unless `timeout` is a number >= 0.
function M.check_timeout(timeout, what)
  if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then
    error(("%s: timeout required (seconds >= 0, or math.huge to wait for ever), got %s")
      :format(what, tostring(timeout)), 3)
  end
end

local function own_poller(holder)
  local p = holder._poller
  if not p then
    p = assert(poll.new())
    holder._poller = p
  end
  return p
end

-- Takes the fd out of the poller however the wait ends, an interrupt
-- raised in the middle included.
local unwatch_mt = { __close = function(w) w.poller:del(w.fd) end }

--- Waits until `fd` is ready to read ("r") or write ("w"), or until
-- `deadline`: true when ready (or when it may be: a hang-up counts), false
-- when the time is up. Outside a task, `holder` keeps the poller.
function M.wait(holder, fd, mode, deadline)
  local left = deadline - now()
  if left <= 0 then return false end
  if sched.current() then
    return sched.wait_fd(fd, mode, left) == true
  end
  local p = own_poller(holder)
  assert(p:add(fd, mode == "r", mode == "w"))
  local _ <close> = setmetatable({ poller = p, fd = fd }, unwatch_mt)
  repeat
    local ready, why = p:wait(left)
    if ready then return true end
    if why ~= "timeout" and why ~= "signal" then
      error(("%s: %s"):format(holder.name or holder.path, tostring(why)), 0)
    end
    left = deadline - now()
  until left <= 0
  return false
end

--- Lets `seconds` pass: the scheduler's sleep in a task, else a poller's
-- wait (the holder's, or a passing one when there is no holder yet).
function M.pause(holder, seconds)
  if sched.current() then return sched.sleep(seconds) end
  local passing <close> = holder == nil and assert(poll.new()) or nil
  local p = passing or own_poller(holder)
  local deadline = now() + seconds
  repeat p:wait(deadline - now()) until now() >= deadline
end

--- Closes the poller a holder keeps for waits outside a task, if any.
function M.drop_poller(holder)
  if holder._poller then
    holder._poller:close()
    holder._poller = nil
  end
end

--- The façade every object over a native fd shares: a method table and,
-- apart from it, a metatable (`name` as __name, methods as __index,
-- __close and __tostring), with fd() and an idempotent close() in the
-- methods. `kind` names the object in messages ("serial port"), `prefix`
-- its methods ("port"). With `hint`, a method called with a dot says how
-- to call it. `before_close(self, ...)`, if given, runs once, before the
-- native object closes, with close()'s arguments.
-- @return methods, mt, live(self, what): the native object, raising at
--   the caller of the method that called it (level 3) on misuse
function M.class(name, kind, prefix, opts)
  opts = opts or {}
  local methods = {}
  local mt = { __name = name, __index = methods }

  local function live(self, what)
    if getmetatable(self) ~= mt then
      local hint = opts.hint and (" (use %s:%s(...))"):format(prefix, what:match("[%w_]+$")) or ""
      error(("%s: %s expected%s"):format(what, kind, hint), 3)
    end
    if self._closed then error("attempt to use a closed " .. kind, 3) end
    return self._raw
  end

  --- The fd, for a caller's own poll or sched.wait_fd.
  function methods.fd(self)
    return live(self, prefix .. ":fd"):fd()
  end

  --- Closes the object. Idempotent; `<close>` calls it too.
  -- @return true | whatever the native close returns
  function methods.close(self, ...)
    if getmetatable(self) ~= mt then
      error(("%s:close: %s expected"):format(prefix, kind), 2)
    end
    if self._closed then return true end
    if opts.before_close then opts.before_close(self, ...) end
    self._closed = true
    self._rbuf = ""
    M.drop_poller(self)
    return self._raw:close()
  end

  mt.__close = function(self) self:close() end
  mt.__tostring = function(self) return tostring(self._raw) end
  return methods, mt, live
end

--- The waiting methods of a stream class. `prefix` names them in messages
-- ("port", "sock"); `live(self, what)` checks `self` and returns its native
-- object, raising at level 3 (the method's caller) on misuse; `mod.LINE_MAX`
-- is read_line's default limit.
-- @return { read = fn, read_some = fn, read_line = fn, write = fn }
function M.methods(prefix, live, mod)
  local m = {}
  local what_read, what_line, what_write = prefix .. ":read", prefix .. ":read_line", prefix .. ":write"
  local what_some = prefix .. ":read_some"

  --- Reads exactly `n` bytes, waiting at most `timeout` seconds.
  -- @return data | nil, "timeout"|"closed"|err, partial
  function m.read(self, n, timeout)
    local raw = live(self, what_read)
    if math.type(n) ~= "integer" or n < 0 then
      error(what_read .. ": byte count must be an integer >= 0, got " .. tostring(n), 2)
    end
    M.check_timeout(timeout, what_read)
    local deadline = now() + timeout
    local buf = self._rbuf
    if #buf >= n then
      self._rbuf = buf:sub(n + 1)
      return buf:sub(1, n)
    end
    self._rbuf = ""
    local parts, have = { buf }, #buf
    while have < n do
      local data, why = raw:read_available(n - have)
      if data then
        parts[#parts + 1] = data
        have = have + #data
      elseif why ~= "wouldblock" then
        return nil, why, concat(parts)
      elseif not M.wait(self, raw:fd(), "r", deadline) then
        return nil, "timeout", concat(parts)
      end
    end
    return concat(parts)
  end

  --- Reads what is there: 1 to `max` bytes (default 4096), waiting at most
  -- `timeout` seconds for the first of them.
  -- @return data | nil, "timeout"|"closed"|err
  function m.read_some(self, max, timeout)
    local raw = live(self, what_some)
    if max == nil then max = 4096 end
    if math.type(max) ~= "integer" or max < 1 then
      error(what_some .. ": max must be an integer >= 1, got " .. tostring(max), 2)
    end
    M.check_timeout(timeout, what_some)
    local buf = self._rbuf
    if #buf > 0 then
      self._rbuf = buf:sub(max + 1)
      return buf:sub(1, max)
    end
    local deadline = now() + timeout
    while true do
      local data, why = raw:read_available(math.min(max, 65536))
      if data then return data end
      if why ~= "wouldblock" then return nil, why end
      if not M.wait(self, raw:fd(), "r", deadline) then return nil, "timeout" end
    end
  end

  --- Reads one line, waiting at most `timeout` seconds. The line comes back
  -- without its "\n" and without a "\r" just before it. A line longer than
  -- `max` bytes (default mod.LINE_MAX) is an error: the line so far is
  -- returned as partial (all of it, if its "\n" had arrived; else what had
  -- arrived, and the rest of it comes back as the next line).
  -- @return line | nil, "timeout"|"closed"|"line too long"|err, partial
  function m.read_line(self, timeout, max)
    local raw = live(self, what_line)
    M.check_timeout(timeout, what_line)
    if max == nil then max = mod.LINE_MAX end
    if math.type(max) ~= "integer" or max < 1 then
      error(what_line .. ": max must be an integer >= 1, got " .. tostring(max), 2)
    end
    local deadline = now() + timeout
    local buf, from = self._rbuf, 1
    while true do
      local nl = buf:find("\n", from, true)
      if nl then
        self._rbuf = buf:sub(nl + 1)
        local line = buf:sub(1, buf:byte(nl - 1) == 13 and nl - 2 or nl - 1)
        if #line > max then return nil, "line too long", line end
        return line
      end
      -- a "\r" at the end may be the start of "\r\n", so it does not count yet
      if #buf - (buf:byte(-1) == 13 and 1 or 0) > max then
        self._rbuf = ""
        return nil, "line too long", buf
      end
      from = #buf + 1
      local data, why = raw:read_available()
      if data then
        buf = buf .. data
      elseif why ~= "wouldblock" then
        self._rbuf = ""
        return nil, why, buf
      elseif not M.wait(self, raw:fd(), "r", deadline) then
        self._rbuf = ""
        return nil, "timeout", buf
      end
    end
  end

  --- Writes all of `data`, waiting at most `timeout` seconds for the
  -- kernel to take it.
  -- @return true | nil, "timeout"|"closed"|err, bytes_written
  function m.write(self, data, timeout)
    local raw = live(self, what_write)
    if type(data) ~= "string" then
      error(what_write .. ": string expected, got " .. type(data), 2)
    end
    M.check_timeout(timeout, what_write)
    local deadline = now() + timeout
    local i, len = 1, #data
    while i <= len do
      local n, why = raw:write_available(data, i)
      if n and n > 0 then
        i = i + n
      elseif n == nil and why ~= "wouldblock" then
        return nil, why, i - 1
      elseif not M.wait(self, raw:fd(), "w", deadline) then
        return nil, "timeout", i - 1
      end
    end
    return true
  end

  return m
end

return M
