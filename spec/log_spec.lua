local log = require "fotahost.log"
local h = require "helper"

describe("fotahost.log", function()
  local got
  before_each(function()
    got = {}
    log.configure { level = "info", sink = function(level, comp, msg)
      got[#got + 1] = level .. " " .. comp .. ": " .. msg
    end }
  end)
  after_each(function() log.configure { level = "info", sink = "stderr" } end)

  it("keeps messages at or above the level", function()
    log.debug("t", "hidden")
    log.info("t", "shown %d", 1)
    log.warn("t", "careful")
    log.configure { level = "error" }
    log.notice("t", "hidden too")
    log.error("t", "bad")
    assert.are.same({ "info t: shown 1", "warn t: careful", "error t: bad" }, got)
  end)

  it("binds a component with get(), and leaves % alone without arguments", function()
    local l = log.get("mcs")
    l.info("100% done")
    l.notice("%s:%d", "host", 80)
    l.info("%d", "not a number")
    assert.are.equal("info mcs: 100% done", got[1])
    assert.are.equal("notice mcs: host:80", got[2])
    assert.matches("^info mcs: %%d %(bad log format: ", got[3])
  end)

  it("never prints a registered secret or a deviceKey value", function()
    log.secret("s3cr3tK3y")
    log.info("t", "key is %s, again s3cr3tK3y.", "s3cr3tK3y")
    log.info("t", "GET /x?deviceKey=ABCdef123&y=1")
    log.info("t", 'body {"deviceKey":"QWErty99","a":1}')
    log.info("t", "header deviceKey: ZXCvbn77")
    for _, line in ipairs(got) do
      assert.falsy(line:find("s3cr3tK3y", 1, true), line)
      assert.falsy(line:find("ABCdef123", 1, true), line)
      assert.falsy(line:find("QWErty99", 1, true), line)
      assert.falsy(line:find("ZXCvbn77", 1, true), line)
    end
    assert.are.equal("info t: key is ****, again ****.", got[1])
    assert.are.equal("info t: GET /x?deviceKey=****&y=1", got[2])
    assert.are.equal('info t: body {"deviceKey":"****","a":1}', got[3])
    assert.are.equal("info t: header deviceKey: ****", got[4])
    assert.has_error(function() log.secret("abc") end,
      "log.secret: a secret shorter than 4 characters cannot be masked safely")
  end)

  it("masks a secret with pattern characters in it, as it is", function()
    log.secret("k3y-Of.Dev+9%x")
    log.info("t", "ignored Dev9,k3y-Of.Dev+9%x,1,,on and k3y-Of.Dev+9%x.")
    assert.are.same({ "info t: ignored Dev9,****,1,,on and ****." }, got)
  end)

  it("masks a deviceKey value however the name is written", function()
    log.info("t", "GET /x?devicekey=Aa111111&y=1")
    log.info("t", "config line 3: device_key = \"Bb222222\"")
    log.info("t", 'json {"device-key": "Cc333333"}')
    log.info("t", "header DEVICEKEY: Dd444444")
    assert.are.same({
      "info t: GET /x?devicekey=****&y=1",
      'info t: config line 3: device_key = "****"',
      'info t: json {"device-key": "****"}',
      "info t: header DEVICEKEY: ****",
    }, got)
  end)

  it("rejects an unknown level or sink", function()
    assert.has_error(function() log.configure { level = "loud" } end,
      "log.configure: unknown log level 'loud' (expected debug, info, notice, warn or error)")
    assert.has_error(function() log.configure { sink = "paper" } end,
      "log.configure: unknown sink 'paper'")
  end)

  it("writes to stderr with a time stamp, honouring FOTAHOST_LOG_LEVEL", function()
    local r = h.run({ "-e", "local l = require('fotahost.log') l.debug('x', 'dbg') l.info('x', 'inf')" },
      { env = { FOTAHOST_LOG = "stderr", FOTAHOST_LOG_LEVEL = "debug" } })
    assert.matches("^%d%d:%d%d:%d%d%.%d%d%d debug  x: dbg\n%d%d:%d%d:%d%d%.%d%d%d info   x: inf\n$", r.err)
  end)

  it("goes to syslog, not stderr, when stderr is not a terminal", function()
    local r = h.run({ "-e", "require('fotahost.log').info('x', 'to syslog')" }, { env = { FOTAHOST_LOG = "" } })
    assert.are.equal(0, r.status)
    assert.are.equal("", r.err)
  end)
end)
