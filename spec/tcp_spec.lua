-- TCP sockets over loopback: fotahost.tcp.core (C, non-blocking) and
-- fotahost.tcp (Lua, waits with timeouts, under the scheduler).
-- Server and client live in this one process.
local tcp_core = require "fotahost.tcp.core"
local tcp = require "fotahost.tcp"
local sched = require "fotahost.sched"
local h = require "helper"
local poll = require "fotahost.poll"
local stream_contract = require "support.stream_contract"

local elapsed = h.elapsed

-- Waits (at most 1 s) until `fd` is ready for `mode`, without touching it.
local function until_ready(fd, mode)
  local p <close> = assert(poll.new())
  assert(p:add(fd, mode == "r", mode == "w"))
  assert(p:wait(1), "fd not ready within 1 s")
end

-- A listening server on 127.0.0.1 with a port of its own, a client
-- connected to it, and the server's side of that connection.
local function pair(host)
  host = host or "127.0.0.1"
  local server = assert(tcp.listen(host, 0))
  local _, port = server:getsockname()
  local client = assert(tcp.connect(host, port, 1))
  local peer = assert(server:accept(1))
  return server, client, peer, port
end

-- A port with nothing listening: bound by us, then closed.
local function free_port()
  local s = assert(tcp_core.listen("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

describe("fotahost.tcp.core", function()
  it("connects without waiting, then finishes once the fd is writable", function()
    local server <close> = assert(tcp_core.listen("127.0.0.1", 0))
    local host, port = server:getsockname()
    assert.are.equal("127.0.0.1", host)
    assert.is_true(port > 0)
    assert.are.equal(("tcp server 127.0.0.1:%d"):format(port), tostring(server))
    assert.are.same({ nil, "wouldblock" }, { server:accept_available() })
    local sock <close> = assert(tcp_core.connect_start("127.0.0.1", port))
    until_ready(sock:fd(), "w")
    assert.is_true(sock:connect_finish())
    assert.is_true(sock:connect_finish()) -- and again: it stays connected
    until_ready(server:fd(), "r")
    local peer <close> = assert(server:accept_available())
    assert.are.same({ "127.0.0.1", port }, { sock:getpeername() })
    local lh, lport = sock:getsockname()
    assert.are.same({ "127.0.0.1", lport }, { peer:getpeername() })
    assert.are.equal("127.0.0.1", lh)
    assert.are.equal(("tcp socket 127.0.0.1:%d"):format(port), tostring(sock))
    assert.are.equal(("tcp socket 127.0.0.1:%d"):format(lport), tostring(peer))
    assert.are.same({ nil, "wouldblock" }, { peer:read_available() })
    assert.are.equal(5, sock:write_available("hello"))
    until_ready(peer:fd(), "r")
    assert.are.equal("hel", peer:read_available(3))
    assert.are.equal("lo", peer:read_available())
    assert.are.equal(2, sock:write_available("hello", 4))
    assert.are.equal(0, sock:write_available("hello", 6))
    assert.has_error(function() sock:write_available("ab", 4) end)
    assert.has_error(function() sock:read_available(0) end)
  end)

  it("names what it cannot parse, resolve or bind", function()
    assert.are.same({ nil, "example.com:80: not a numeric address (names are resolved with "
                      .. "tcp.core.resolve_start or tcp.connect)" },
      { tcp_core.connect_start("example.com", 80) })
    assert.are.same({ nil, "localhost:0: not a numeric address (names are resolved with "
                      .. "tcp.core.resolve_start or tcp.connect)" },
      { tcp_core.listen("localhost", 0) })
    local server <close> = assert(tcp_core.listen("127.0.0.1", 0))
    local _, port = server:getsockname()
    assert.are.same({ nil, ("127.0.0.1:%d: %s"):format(port, h.strerror.EADDRINUSE), h.errno.EADDRINUSE },
      { tcp_core.listen("127.0.0.1", port, 0) })
    assert.has_error(function() tcp_core.listen("127.0.0.1", 70000) end)
    assert.has_error(function() tcp_core.connect_start("127.0.0.1", -1) end)
  end)

  it("resolves names without blocking, numeric addresses at once", function()
    local r <close> = assert(tcp_core.resolve_start("::1", 80))
    assert.are.same({ "::1" }, r:result())
    assert.is_nil(r:fd()) -- nothing to wait for
    local named <close> = assert(tcp_core.resolve_start("localhost", 80))
    -- the lookup's fd turns readable when it is done, not before
    local fd = named:fd()
    local first = { named:result() }
    until_ready(fd, "r")
    if first[1] == nil then assert.are.same({ nil, "wouldblock" }, first) end
    local addrs = named:result()
    assert.is_table(addrs)
    assert.is_true(#addrs >= 1)
    for _, a in ipairs(addrs) do assert.truthy(a == "127.0.0.1" or a == "::1", a) end
    -- closing a lookup still in progress is fine
    local abandoned = assert(tcp_core.resolve_start("nosuch.invalid", 80))
    abandoned:close()
    abandoned:close()
    assert.are.equal("tcp resolver (closed)", tostring(abandoned))
  end)

  it("lets go of lookups closed or collected while their thread runs", function()
    -- their threads finish on their own and free what they hold: ASan
    -- (make check-asan) sees any use after free or leak
    for i = 1, 20 do
      local name = i % 2 == 0 and "localhost" or "nosuch.invalid"
      local r = assert(tcp_core.resolve_start(name, 80))
      if i % 4 < 2 then r:close() end
    end
    collectgarbage()
    collectgarbage()
    -- and later lookups still work
    local r <close> = assert(tcp_core.resolve_start("localhost", 80))
    until_ready(r:fd(), "r")
    assert.is_table(r:result())
  end)

  it("sets and reads back keepalive and nodelay", function()
    local server, client, peer = pair()
    assert.is_false(client:getoption("keepalive"))
    assert.is_true(client:setoption("keepalive", true))
    assert.is_true(client:getoption("keepalive"))
    assert.is_true(client:setoption("nodelay", true))
    assert.is_true(client:getoption("nodelay"))
    assert.is_true(client:setoption("keepalive", false))
    assert.is_false(client:getoption("keepalive"))
    assert.has_error(function() client:setoption("reuse", true) end)
    assert.has_error(function() client:setoption("keepalive", 1) end)
    -- how long unacknowledged data may wait before the connection is dead
    assert.are.equal(0, client:getoption("user_timeout"))
    assert.is_true(client:setoption("user_timeout", 110))
    assert.are.equal(110, client:getoption("user_timeout"))
    assert.has_error(function() client:setoption("user_timeout", -1) end)
    client:close() peer:close() server:close()
  end)

  it("closes idempotently, never raising; a closed socket raises when used", function()
    local server <close> = assert(tcp_core.listen("127.0.0.1", 0))
    local _, port = server:getsockname()
    local sock = assert(tcp_core.connect_start("127.0.0.1", port))
    assert.is_true(sock:close())
    assert.is_true(sock:close())
    assert.are.equal(("tcp socket 127.0.0.1:%d (closed)"):format(port), tostring(sock))
    for _, m in ipairs({ "fd", "read_available", "write_available", "connect_finish",
                         "getpeername", "getsockname" }) do
      assert.has_error(function() sock[m](sock, "x") end, "attempt to use a closed tcp socket")
    end
    assert.is_true(server:close())
    assert.is_true(server:close())
    assert.has_error(function() server:accept_available() end, "attempt to use a closed tcp server")
    do
      local _scoped <close> = assert(tcp_core.listen("127.0.0.1", 0))
    end
    -- dropped without close: __gc closes, so the port can be bound again
    local dropped = assert(tcp_core.listen("127.0.0.1", 0))
    local _, p2 = dropped:getsockname()
    dropped = nil -- luacheck: ignore 311 (dropped so the collector closes it)
    collectgarbage()
    collectgarbage()
    assert(tcp_core.listen("127.0.0.1", p2)):close()
  end)
end)

-- A client connected to a server of its own, and the server's side of it
-- as the other end.
local function stream_pair()
  local server, client, peer, port = pair()
  return { a = client, b = peer, kind = "tcp socket", prefix = "sock",
           closed_name = ("tcp socket 127.0.0.1:%d (closed)"):format(port),
           done = function() client:close() peer:close() server:close() end }
end

describe("fotahost.tcp", function()
  describe("as a stream", function()
    stream_contract(it, assert, stream_pair)
  end)

  local server, client, peer
  before_each(function()
    server, client, peer = pair()
  end)
  after_each(function()
    client:close()
    peer:close()
    server:close()
  end)

  it("connects and accepts over ::1 too", function()
    local srv6, err = tcp.listen("::1", 0)
    if not srv6 then
      -- no IPv6 loopback here: the refusal must say so, clearly
      assert.matches("^%[::1%]:0: ", err)
      return
    end
    local _, port6 = srv6:getsockname()
    local c6 <close> = assert(tcp.connect("::1", port6, 1))
    local p6 <close> = assert(srv6:accept(1))
    assert.are.equal(("[::1]:%d"):format(port6), c6.name)
    assert.are.same({ "::1", port6 }, { c6:getpeername() })
    assert.is_true(c6:write("six\n", 1))
    assert.are.equal("six", p6:read_line(1))
    assert.are.equal(("tcp server [::1]:%d"):format(port6), tostring(srv6))
    srv6:close()
  end)

  it("connects to a name", function()
    local _, port = server:getsockname()
    local c <close> = assert(tcp.connect("localhost", port, 2))
    assert.are.equal(("tcp socket localhost:%d"):format(port), tostring(c))
    local p <close> = assert(server:accept(1))
    assert.is_true(c:write("x", 1))
    assert.are.equal("x", p:read(1, 1))
  end)

  it("says a refused connection names host:port and the cause", function()
    local port = free_port()
    local took, s, err, code = elapsed(function() return tcp.connect("127.0.0.1", port, 1) end)
    assert.are.same({ nil, ("127.0.0.1:%d: %s"):format(port, h.strerror.ECONNREFUSED), h.errno.ECONNREFUSED },
      { s, err, code })
    assert.is_true(took < 0.9, "took " .. took) -- at once, not at the 1 s timeout
    -- a name that cannot exist: the cause is the resolver's (no such name,
    -- or no DNS server to ask in a sandbox)
    local s2, err2 = tcp.connect("nosuch.invalid", 80, 2)
    assert.is_nil(s2)
    assert.matches("^nosuch%.invalid:80: %u[%w ]+$", err2)
  end)

  it("times out a connect that gets no answer, naming it", function()
    -- a listener with a full backlog that never accepts drops new SYNs
    local full <close> = assert(tcp_core.listen("127.0.0.1", 0, 0))
    local _, port = full:getsockname()
    local held, err = {}, nil
    local took = elapsed(function()
      for _ = 1, 8 do
        local s, e = tcp.connect("127.0.0.1", port, 0.2)
        if not s then err = e break end
        held[#held + 1] = s
      end
    end)
    for _, s in ipairs(held) do s:close() end
    assert.are.equal(("127.0.0.1:%d: connect timed out after 0.2 s"):format(port), err)
    assert.is_true(took < 2, "took " .. took)
  end)

  it("accepts with a timeout", function()
    local took, s, why = elapsed(function() return server:accept(0.05) end)
    assert.are.same({ nil, "timeout" }, { s, why })
    assert.is_true(took >= 0.05 and took < 1, "took " .. took)
  end)

  it("serves and connects from two tasks", function()
    local _, port = server:getsockname()
    local reply = sched.run(function()
      sched.spawn("server", function()
        local s <close> = assert(server:accept(2))
        local line = assert(s:read_line(2))
        assert(s:write(line:upper() .. "\n", 2))
      end)
      -- a name, resolved while the server task runs: "localhost" may
      -- give ::1 first, refused here, then 127.0.0.1
      local c <close> = assert(tcp.connect("localhost", port, 2))
      assert(c:write("hello\n", 2))
      return c:read_line(2)
    end)
    assert.are.equal("HELLO", reply)
  end)

  it("never waits to connect or accept without a timeout; a closed server raises", function()
    for _, call in ipairs({
      function() server:accept() end,
      function() tcp.connect("127.0.0.1", 1) end,
      function() tcp.connect("127.0.0.1", 70000, 1) end,
    }) do
      assert.has_error(call)
    end
    server:close()
    assert.is_true(server:close())
    assert.has_error(function() server:accept(1) end, "attempt to use a closed tcp server")
    assert.has_error(function() server:fd() end, "attempt to use a closed tcp server")
  end)
end)

-- Lookups that take as long as the spec wants, with no network: a child
-- fotahost in a mount namespace of its own (unshare -rm) where /etc/hosts
-- is a FIFO and nsswitch asks nothing else, so each getaddrinfo blocks
-- until spec/support/slow_resolver.lua opens the FIFO for writing. The
-- child prints what it saw; it hangs if a lookup blocks the scheduler or
-- a close waits for one: timeout(1) ends it then (with SIGKILL, as the
-- host's SIGTERM handler cannot end a thread stuck in a system call).
describe("a slow name lookup", function()
  local function run_child()
    local dir = h.tmpdir()
    local fifo, nss = dir .. "/hosts", h.write(dir .. "/nsswitch.conf", "hosts: files\n")
    assert(os.execute("mkfifo " .. h.q(fifo)))
    local wrap = ("timeout -k 1 10 unshare -rm sh -c %s sh %s %s"):format(
      h.q('mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/nsswitch.conf && shift 2 && exec "$@"'),
      h.q(fifo), h.q(nss))
    local r = h.run({ "spec/support/slow_resolver.lua", fifo }, { shell_prefix = wrap })
    h.rmdir(dir)
    assert(r.status == 0 and r.out:find("done true\n", 1, true),
      ("the child exited %s (124 or 137: it hung and was stopped after 10 s); it printed:\n%s\nstderr:\n%s")
      :format(r.status, r.out, r.err))
    local seen = {}
    for k, v in r.out:gmatch("(%S+) ([^\n]*)\n") do seen[k] = tonumber(v) or v end
    return seen
  end

  it("blocks neither the scheduler nor a close, and wakes its waiter when it ends", function()
    local seen = run_child()
    -- tcp.connect waits for the lookup under the scheduler: the other
    -- tasks tick (every 0.01 s) meanwhile, and its timeout holds
    assert.are.equal("slow.test:80: name lookup timed out after 0.3 s", seen.connect)
    assert.is_true(seen.connect_took >= 0.3 and seen.connect_took < 1, "took " .. seen.connect_took)
    assert.is_true(seen.connect_ticks >= 10, seen.connect_ticks .. " ticks")
    -- a task cancelled while its lookup runs ends at once
    assert.are.equal("waiting", seen.task_before_cancel)
    assert.are.equal("cancelled", seen.task_after_cancel)
    assert.is_true(seen.cancel_took < 0.1, "took " .. seen.cancel_took)
    -- a resolver closed in flight: nothing to read before, closed at once
    assert.are.equal("nil wouldblock", seen.result_in_flight)
    assert.are.equal("false", seen.fd_readable_in_flight)
    assert.is_true(seen.close_took < 0.1, "took " .. seen.close_took)
    assert.are.equal("tcp resolver (closed)", seen.closed)
    -- a lookup ending 0.2 s late wakes its task then, not before
    assert.are.equal("readable", seen.wait)
    assert.is_true(seen.wait_took >= 0.19 and seen.wait_took < 2, "took " .. seen.wait_took)
    assert.is_true(seen.wait_ticks >= 5, seen.wait_ticks .. " ticks")
    assert.matches("^slow%.test:81: %u", seen.slow_result)
  end)
end)
