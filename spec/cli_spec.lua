-- The fotahost command as a user meets it: the `lua` command's behaviour,
-- plus bundled tools, search paths and signals.
local h = require "helper"

describe("fotahost command", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  describe("runs a script like lua does", function()
    it("builds arg with the script at 0, args at 1..n and the interpreter below", function()
      local script = h.write(dir .. "/args.lua", [[
        print(#arg, arg[0], arg[1], arg[2], arg[3])
        print(arg[-1], arg[-2], arg[-3] == os.getenv("FOTAHOST_BIN"))
        print(select("#", ...), ...)
      ]])
      local r = h.run({ "-e", "x=1", script, "one", "two words", "" })
      assert.are.equal(0, r.status)
      local lines = {}
      for l in r.out:gmatch("[^\n]*\n") do lines[#lines + 1] = l end
      assert.are.equal(("3\t%s\tone\ttwo words\t\n"):format(script), lines[1])
      assert.are.equal("x=1\t-e\ttrue\n", lines[2])
      assert.are.equal("3\tone\ttwo words\t\n", lines[3])
      assert.are.equal("", r.err)
    end)

    it("puts the interpreter at 0 and its options after it when there is no script", function()
      local r = h.run({ "-e", "print(arg[0] == os.getenv('FOTAHOST_BIN'), arg[1], arg[2] ~= nil, arg[-1])" })
      assert.are.equal(0, r.status)
      assert.are.equal("true\t-e\ttrue\tnil\n", r.out)
    end)

    it("runs -e and -l in order, and -l g=mod names the global", function()
      h.write(dir .. "/greeting.lua", "return { text = 'hi' }")
      local r = h.run({ "-e", "print(type(greeting))", "-l", "greeting", "-l", "g=greeting",
        "-e", "print(greeting.text, g.text)" }, { env = { FOTAHOST_PATH = dir .. "/?.lua" } })
      assert.are.equal(0, r.status, r.err)
      assert.are.equal("nil\nhi\thi\n", r.out)
    end)

    it("reads the script from stdin with -, with its arguments", function()
      local r = h.run({ "-", "a", "b" }, { stdin = "print(arg[0], ...)" })
      assert.are.equal(0, r.status)
      assert.are.equal("-\ta\tb\n", r.out)
    end)

    it("reads stdin when there is no script and stdin is not a terminal", function()
      local r = h.run({}, { stdin = "print('from stdin')" })
      assert.are.equal(0, r.status)
      assert.are.equal("from stdin\n", r.out)
    end)

    it("stops handling options after --", function()
      local script = h.write(dir .. "/-v", "print('a file named -v', ...)")
      local r = h.run({ "--", "-v", "-e" }, { cwd = dir })
      assert.are.equal(0, r.status, r.err)
      assert.are.equal("a file named -v\t-e\n", r.out)
      assert.truthy(script)
    end)

    it("shows the version with -v and --version, and usage with -h and --help", function()
      for _, opt in ipairs({ "-v", "--version" }) do
        local r = h.run({ opt })
        assert.are.equal(0, r.status)
        assert.matches("^fotahost %d+%.%d+%.%d+ %(Lua 5%.4%.%d+%)\n$", r.out)
      end
      for _, opt in ipairs({ "-h", "--help" }) do
        local r = h.run({ opt })
        assert.are.equal(0, r.status)
        assert.matches("usage: fotahost %[options%]", r.out)
        assert.matches("%-%-paths", r.out)
      end
    end)

    it("rejects an unknown option or a missing argument, with usage", function()
      local r = h.run({ "-x" })
      assert.are.equal(1, r.status)
      assert.matches("^fotahost: unrecognized option '%-x'\nusage:", r.err)
      r = h.run({ "-e" })
      assert.are.equal(1, r.status)
      assert.matches("^fotahost: '%-e' needs argument", r.err)
    end)

    it("reports an uncaught error as 'fotahost: <message>' with a traceback, exit 1", function()
      local script = h.write(dir .. "/fail.lua", "local function f() error('it broke') end\nf()\n")
      local r = h.run({ script })
      assert.are.equal(1, r.status)
      assert.are.equal("", r.out)
      assert.matches("^fotahost: " .. script:gsub("%p", "%%%0") .. ":1: it broke\nstack traceback:\n", r.err)
      assert.matches("in local 'f'", r.err)
    end)

    it("reports a non-string error object and a syntax error", function()
      local r = h.run({ "-e", "error(setmetatable({}, {__tostring = function() return 'custom' end}))" })
      assert.are.equal(1, r.status)
      assert.are.equal("fotahost: custom\n", r.err)
      r = h.run({ "-e", "error({})" })
      assert.matches("^fotahost: %(error object is a table value%)", r.err)
      local script = h.write(dir .. "/bad.lua", "x = = 1")
      r = h.run({ script })
      assert.are.equal(1, r.status)
      assert.matches("^fotahost: .*bad%.lua:1: unexpected symbol near '='", r.err)
    end)

    it("names the file and the cause when a script cannot be opened", function()
      local r = h.run({ dir .. "/missing.lua" })
      assert.are.equal(1, r.status)
      assert.matches("^fotahost: cannot open .*missing%.lua", r.err)
      assert.matches(h.literal(h.strerror.ENOENT), r.err)
    end)

    it("turns warnings on with -W", function()
      local r = h.run({ "-W", "-e", "warn('careful')" })
      assert.are.equal(0, r.status)
      assert.are.equal("Lua warning: careful\n", r.err)
      r = h.run({ "-e", "warn('careful')" })
      assert.are.equal("", r.err)
    end)

    it("lets os.exit set the status", function()
      assert.are.equal(7, h.run({ "-e", "os.exit(7)" }).status)
    end)
  end)

  describe("interactive prompt", function()
    it("starts when there is no script and stdin is a terminal", function()
      -- script(1) gives fotahost a pseudo-terminal; the input is typed into it.
      local input = h.write(dir .. "/typed", '1 + 1\nfor i = 1, 2 do\nprint(i * 10)\nend\nerror("oops")\n')
      local cmd = ("script -qec %s /dev/null < %s"):format(h.q(h.bin), h.q(input))
      local p = io.popen(cmd .. " 2>&1")
      local out = p:read("a")
      p:close()
      assert.matches("fotahost %d+%.%d+%.%d+ %(Lua 5%.4", out)
      assert.matches("> ", out)
      -- The pty may echo the typed lines before or after the prompt appears.
      assert.matches("[>\n] ?2\r?\n", out)    -- the expression's value
      assert.matches(">> ", out)              -- continuation prompt
      assert.matches("10\r?\n20\r?\n", out)   -- the multi-line loop ran
      assert.matches("oops", out)             -- errors are shown, the prompt goes on
    end)
  end)

  describe("bundled tools", function()
    it("runs a tool by name from the scripts path, with its arguments", function()
      local r = h.run({ "hello", "2" })
      assert.are.equal(0, r.status, r.err)
      assert.matches("reader: got \"msg1\"", r.out)
      assert.matches("done: the reader got 8 bytes", r.out)
    end)

    it("says so and lists the tools when there is no such tool", function()
      local r = h.run({ "flsh" }, { cwd = dir })
      assert.are.equal(1, r.status)
      assert.are.equal("", r.out)
      assert.matches("^fotahost: no tool named 'flsh' and no file of that name\navailable tools: .*hello", r.err)
    end)

    it("prefers a tool over a file of the same name; ./name runs the file", function()
      h.write(dir .. "/hello", "print('the file')")
      local r = h.run({ "hello", "1" }, { cwd = dir })
      assert.matches("done: the reader got", r.out)
      r = h.run({ "./hello" }, { cwd = dir })
      assert.are.equal("the file\n", r.out)
    end)

    it("runs a file when no tool has its name", function()
      h.write(dir .. "/myscript", "print('mine', ...)")
      local r = h.run({ "myscript", "x" }, { cwd = dir })
      assert.are.equal(0, r.status)
      assert.are.equal("mine\tx\n", r.out)
    end)

    it("gives the tool's file as arg[0]", function()
      os.execute("mkdir -p " .. h.q(dir .. "/etc/tools"))
      h.write(dir .. "/etc/tools/where.lua", "print(arg[0], ...)")
      local r = h.run({ "where", "a" }, { env = { FOTAHOST_SCRIPTS_DIR = dir .. "/etc" } })
      assert.are.equal(dir .. "/etc/tools/where.lua\ta\n", r.out)
    end)
  end)

  describe("search paths", function()
    it("lets the override directory shadow a bundled tool and a bundled module", function()
      os.execute("mkdir -p " .. h.q(dir .. "/etc/tools") .. " " .. h.q(dir .. "/etc/fotahost"))
      h.write(dir .. "/etc/tools/hello.lua", "print('edited hello', require('fotahost.sched').edited)")
      h.write(dir .. "/etc/fotahost/sched.lua", "return { edited = 'edited sched' }")
      local r = h.run({ "hello" }, { env = { FOTAHOST_SCRIPTS_DIR = dir .. "/etc" } })
      assert.are.equal(0, r.status, r.err)
      assert.are.equal("edited hello\tedited sched\n", r.out)
      -- and -E ignores the variable: the bundled tool runs again
      r = h.run({ "-E", "hello", "1" }, { env = { FOTAHOST_SCRIPTS_DIR = dir .. "/etc" } })
      assert.matches("done: the reader got", r.out)
    end)

    it("does not search relative entries such as ./?.lua", function()
      h.write(dir .. "/localmod.lua", "return 'found'")
      local r = h.run({ "-e", "print(pcall(require, 'localmod'))" }, { cwd = dir })
      assert.matches("^false\tmodule 'localmod' not found", r.out)
      r = h.run({ "-e", "print(package.path:find('./?', 1, true), package.cpath:find('./?', 1, true))" })
      assert.are.equal("nil\tnil\n", r.out)
    end)

    it("shows the version and the paths in effect with --paths", function()
      -- (the default package.path, though the board's test run sets one)
      local r = h.run({ "--paths" }, { env = { FOTAHOST_SCRIPTS_DIR = "/my/scripts" },
        shell_prefix = "env -u FOTAHOST_PATH" })
      assert.are.equal(0, r.status)
      assert.matches("^fotahost %d+%.%d+%.%d+", r.out)
      assert.matches("source checkout: " .. (h.layout.checkout and h.literal(h.layout.checkout) or "%(none%)"), r.out)
      -- the override, then in a checkout the product's scripts and the
      -- development wing's; in an installed tree the one scripts directory
      local scripts = "scripts +/my/scripts\n"
      for _, d in ipairs(h.layout.scripts) do scripts = scripts .. " +" .. h.literal(d) .. "\n" end
      assert.matches(scripts, r.out)
      assert.matches("path +/my/scripts/%?%.lua\n", r.out)
      assert.matches("cpath +", r.out)
    end)

    it("replaces package.path with FOTAHOST_PATH, ';;' standing for the default", function()
      local r = h.run({ "-e", "print(package.path)" }, { env = { FOTAHOST_PATH = "/a/?.lua;;" } })
      assert.matches("^/a/%?%.lua;.*/scripts/%?%.lua", r.out)
      r = h.run({ "-e", "print(package.cpath)" }, { env = { FOTAHOST_CPATH = "/b/?.so" } })
      assert.are.equal("/b/?.so\n", r.out)
    end)
  end)

  describe("signals", function()
    -- Starts a script in the background, waits until it says it is ready
    -- (the file "ready" exists; with `blocked`, until the kernel shows it
    -- asleep in a read from the fifo that is its stdin), sends `sig`, and
    -- returns the exit status, stderr and what it wrote in "closed". A
    -- script still running 5 s after the signal is killed and says so on
    -- stderr: a signal that does not stop it fails the test, not hangs it.
    local function interrupt(script_text, sig, blocked)
      local script = h.write(dir .. "/s.lua", script_text)
      local cmd = ([[
        cd %s || exit 1
        mkfifo in || exit 1
        # stdin: a fifo the script holds open for writing too, so a read
        # from it ends neither with input nor with end of file
        %s %s <> in > out 2> err & pid=$!
        i=0; while [ $i -lt 200 ]; do
          if [ -n "%s" ]; then grep -q pipe /proc/$pid/wchan 2>/dev/null && break
          else [ -e ready ] && break; fi
          sleep 0.05; i=$((i+1))
        done
        kill -%s $pid
        i=0; while kill -0 $pid 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
        kill -KILL $pid 2>/dev/null && echo "still running 5 s after SIG%s" >> err
        wait $pid; echo $? > status
      ]]):format(h.q(dir), h.q(h.bin), h.q(script), blocked and "1" or "", sig, sig)
      os.execute(cmd)
      return tonumber(h.read(dir .. "/status")), h.read(dir .. "/err"), h.read(dir .. "/closed")
    end

    it("SIGTERM stops a busy script with an error, running <close> handlers", function()
      local status, err, closed = interrupt([[
        local c <close> = setmetatable({}, { __close = function()
          local f = io.open("closed", "w") f:write("main closed") f:close()
        end })
        io.open("ready", "w"):close()
        while true do end
      ]], "TERM")
      assert.are.equal(143, status)
      assert.matches("^fotahost: interrupted %(SIGTERM%)\nstack traceback:", err)
      assert.are.equal("main closed", closed)
    end)

    it("SIGTERM during a scheduler wait closes every task's <close> variables", function()
      local status, err, closed = interrupt([[
        local sched = require "fotahost.sched"
        local log = {}
        local function mark(name)
          return setmetatable({}, { __close = function()
            log[#log + 1] = name
            local f = io.open("closed", "w") f:write(table.concat(log, ",")) f:close()
          end })
        end
        sched.run(function()
          sched.spawn(function() local a <close> = mark("sleeper") sched.sleep(60) end)
          sched.spawn(function()
            local b <close> = mark("spinner")
            io.open("ready", "w"):close()
            while true do end  -- never yields: the armed hook stops it
          end)
          local m <close> = mark("main")
          sched.sleep(60)
        end)
      ]], "TERM")
      assert.are.equal(143, status)
      assert.matches("interrupted %(SIGTERM%)", err)
      local names = {}
      for n in closed:gmatch("[^,]+") do names[n] = true end
      assert.are.same({ sleeper = true, spinner = true, main = true }, names)
    end)

    it("SIGTERM stops a script blocked reading its stdin", function()
      local status, err, closed = interrupt([[
        local line, err = io.read("l")
        io.open("closed", "w"):write("read returned: ", tostring(line), " ", tostring(err)):close()
      ]], "TERM", true)
      assert.are.equal(143, status, err)
      assert.matches("^fotahost: interrupted %(SIGTERM%)", err)
      assert.is_nil(closed) -- the script went no further
    end)

    it("SIGINT stops a script waiting in the scheduler", function()
      local status, err, closed = interrupt([[
        local sched = require "fotahost.sched"
        sched.run(function()
          local c <close> = setmetatable({}, { __close = function()
            local f = io.open("closed", "w") f:write("yes") f:close()
          end })
          io.open("ready", "w"):close()
          sched.sleep(60)
        end)
      ]], "INT")
      assert.are.equal(130, status)
      assert.matches("^fotahost: interrupted %(SIGINT%)", err)
      assert.are.equal("yes", closed)
    end)
  end)
end)
