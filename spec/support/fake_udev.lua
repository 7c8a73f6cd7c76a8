-- The kernel and udev behind a fake /sys/class/gpio tree, for
-- spec/gpio_spec.lua:
--
--     fotahost spec/support/fake_udev.lua DIR N...
--
-- DIR/export is a FIFO. For each number N, in order, it waits until N is
-- written there, then lets a moment pass (udev is never instant: the
-- programmer must wait for the files, not expect them) and makes DIR/gpioN
-- appear with all its files at once, as sysfs does: DIR/.udev/gpioN, made
-- beforehand, renamed into place. Each N handled is appended to
-- DIR/exported. It ends after the last N, or when nobody holds the FIFO
-- open for writing any more (so it never outlives its spec for long).
local stream = require "fotahost.stream"

local dir = assert(arg[1], "usage: fake_udev.lua DIR N...")

local function append(path, text)
  local f = assert(io.open(path, "ab"))
  f:write(text)
  f:close()
end

local fifo = assert(io.open(dir .. "/export", "rb"))
for i = 2, #arg do
  local want = arg[i]
  -- Writes to sysfs carry no line end: read exactly the digits expected.
  local got = fifo:read(#want)
  if got == nil then break end -- every writer has gone
  if got ~= want then
    append(dir .. "/exported", ("unexpected export %q\n"):format(got))
    os.exit(1)
  end
  stream.pause(nil, 0.02)
  assert(os.rename(dir .. "/.udev/gpio" .. want, dir .. "/gpio" .. want))
  append(dir .. "/exported", want .. "\n")
end
fifo:close()
