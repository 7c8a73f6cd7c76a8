-- The two wings: the product (what `make install` puts on a board) never
-- requires a module of the development wing (dev/: the simulated chip, the
-- sim GPIO backend, the virtual board, the local cloud, the HTTP server).
-- A static walk of every product file's requires, so a board without the
-- dev wing never meets a "module not found" on a path a spec did not run.
local h = require "helper"

local top = h.top
local find = h.find

local function product_files()
  local files = find("scripts/fotahost", "*.lua")
  for _, t in ipairs({ "flash", "fota", "doctor", "blink", "app", "check", "scripts" }) do
    files[#files + 1] = "scripts/tools/" .. t .. ".lua"
  end
  return files
end

-- Every module name the dev wing provides: its Lua modules (by path under
-- dev/scripts) and its C plugins (dev/plugins/NAME.c is fotahost.NAME, and
-- NAME may hold dots: vboard.core.c is fotahost.vboard.core).
local function dev_modules()
  local names = {}
  for _, f in ipairs(find("dev/scripts", "*.lua")) do
    local rel = f:match("^dev/scripts/(.*)%.lua$")
    if not rel:match("^tools/") then names[(rel:gsub("/init$", ""):gsub("/", "."))] = true end
  end
  for _, f in ipairs(find("dev/plugins", "*.c")) do
    local base = f:match("^dev/plugins/([%w_.]+)%.c$")
    if base then names["fotahost." .. base] = true end
  end
  return names
end

-- The requires of one file: literal names, and the expressions of any
-- require whose argument is not a literal. Comments are left out.
local function requires_of(path)
  local text = assert(h.read(top .. "/" .. path), path)
  text = text:gsub("%-%-%[(=*)%[.-%]%1%]", ""):gsub("%-%-[^\n]*", "")
  local literal, dynamic = {}, {}
  for _, name in text:gmatch("require%s*%(?%s*(['\"])(.-)%1") do literal[#literal + 1] = name end
  for arg in text:gmatch("require%s*(%b())") do
    if not arg:match("^%(%s*['\"]") then dynamic[#dynamic + 1] = arg end
  end
  return literal, dynamic
end

describe("the product", function()
  it("has only the product's tools in scripts/tools", function()
    assert.are.same({ "scripts/tools/app.lua", "scripts/tools/blink.lua", "scripts/tools/check.lua",
      "scripts/tools/doctor.lua", "scripts/tools/flash.lua", "scripts/tools/fota.lua", "scripts/tools/scripts.lua" },
      find("scripts/tools", "*.lua"))
  end)

  it("never requires a development module by name", function()
    local dev = dev_modules()
    assert.is_true(dev["fotahost.httpd"] and dev["fotahost.simchip"])   -- the walk sees dev/scripts
    assert.is_true(dev["fotahost.avrsim"] and dev["fotahost.vboard.core"]) -- and dev/plugins
    local files, bad = product_files(), {}
    assert.is_true(#files > 20)
    for _, f in ipairs(files) do
      for _, name in ipairs((requires_of(f))) do
        if dev[name] then bad[#bad + 1] = f .. " requires " .. name end
      end
    end
    assert.are.same({}, bad)
  end)

  it("requires the dev wing only through a board entry's `dev`, for that board alone", function()
    local found = {}
    for _, f in ipairs(product_files()) do
      for _, expr in ipairs(select(2, requires_of(f))) do found[#found + 1] = f .. ": require" .. expr end
    end
    -- the one computed require: boards.dev(board), whose name is board data
    assert.are.same({ "scripts/fotahost/avr/boards.lua: require(board.dev)" }, found)
    local boards = require "fotahost.avr.boards"
    local dev, with_dev = dev_modules(), {}
    for name, b in pairs(boards) do
      if type(b) == "table" and b.dev then
        with_dev[#with_dev + 1] = name
        assert.is_true(dev[b.dev], name .. "'s dev module " .. b.dev .. " is not in the dev wing")
      end
    end
    assert.are.same({ "sim" }, with_dev)
  end)

  it("gives no dev module, and raises nothing, when the dev wing is not installed", function()
    -- the product alone: the bundled scripts without dev/scripts
    local r = h.run({ "-e", [[
      local boards = require "fotahost.avr.boards"
      print(boards.dev(boards.sim))
    ]] }, { env = { FOTAHOST_PATH = h.top .. "/scripts/?.lua" } })
    assert.are.equal(0, r.status, r.err)
    assert.are.equal("nil\n", r.out)
  end)

  it("loads no development module for a real board", function()
    local r = h.run({ "-e", [[
      local boards = require "fotahost.avr.boards"
      require "fotahost.fota"
      require "fotahost.avr.isp"
      for _, name in ipairs({ "linkit-smart-7688-duo", "arduino-yun" }) do
        assert(boards.isp_options({ board = name, backend = "gpiod" }))
      end
      for name in pairs(package.loaded) do print(name) end
    ]] })
    assert.are.equal(0, r.status, r.err)
    local dev = dev_modules()
    for name in r.out:gmatch("[^\n]+") do assert.is_nil(dev[name], name) end
    assert.matches("fotahost.avr.boards", r.out, 1, true)
  end)
end)
