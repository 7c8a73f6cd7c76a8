-- A scratch OpenWrt root for the specs of the init script and of `fotahost
-- doctor` on OpenWrt: the stand-ins of tests/openwrt/ where OpenWrt keeps
-- the real files (/etc/rc.common, /lib/functions.sh,
-- /lib/functions/procd.sh), the package's init script and default UCI
-- config, and `ubus` answering from a state file of procd's services.
local h = require "helper"
local cjson = require "cjson"

local M = {}

M.STANDINS = h.top .. "/tests/openwrt"
M.FILES = h.top .. "/dist/openwrt/fotahost/files"

local q = h.q

--- A new root; root.dir is its path. root:remove() when done.
function M.root()
  local dir = h.tmpdir()
  local r = setmetatable({ dir = dir }, { __index = M })
  assert(os.execute(table.concat({
    ("mkdir -p %s/etc/init.d %s/etc/config %s/etc/fotahost %s/lib/functions"):format(q(dir), q(dir), q(dir), q(dir)),
    ("cp %s/rc.common %s/etc/rc.common"):format(q(M.STANDINS), q(dir)),
    ("cp %s/functions.sh %s/lib/functions.sh"):format(q(M.STANDINS), q(dir)),
    ("cp %s/procd.sh %s/lib/functions/procd.sh"):format(q(M.STANDINS), q(dir)),
    ("cp %s/fotahost.init %s/etc/init.d/fotahost && chmod 0755 %s/etc/init.d/fotahost")
      :format(q(M.FILES), q(dir), q(dir)),
    ("cp %s/fotahost.config %s/etc/config/fotahost"):format(q(M.FILES), q(dir)),
  }, " && ")))
  return r
end

function M:remove() h.rmdir(self.dir) end

-- The environment the stand-ins read: the root, ubus's record and state.
function M:env()
  return { IPKG_INSTROOT = self.dir, UBUS_RECORD = self.dir .. "/ubus.log", UBUS_STATE = self.dir .. "/procd.json" }
end

--- Sets option `key` of fotahost.main to `value` in the root's UCI file,
-- as `uci set; uci commit` leaves it.
function M:set(key, value)
  local path = self.dir .. "/etc/config/fotahost"
  local text = h.read(path)
  local line = ("\toption %s '%s'\n"):format(key, value)
  local n
  text, n = text:gsub("\toption " .. key .. " '[^\n]*'\n", line)
  if n == 0 then text = text:gsub("(config fotahost 'main'\n)", "%1" .. line) end
  h.write(path, text)
end

--- Runs `/etc/init.d/fotahost ACTION` as OpenWrt does (`sh /etc/rc.common
-- /etc/init.d/fotahost ACTION`) under `shell` (default sh): { status, out, err }.
function M:service(action, shell)
  local env = {}
  for k, v in pairs(self:env()) do env[#env + 1] = k .. "=" .. q(v) end
  local d = self.dir
  local _, _, code = os.execute(("env PATH=%s:\"$PATH\" %s %s %s/etc/rc.common %s/etc/init.d/fotahost %s "
    .. ">%s/out 2>%s/err"):format(q(M.STANDINS), table.concat(env, " "), shell or "sh", q(d), q(d), action,
    q(d), q(d)))
  return { status = code, out = h.read(d .. "/out"), err = h.read(d .. "/err") }
end

--- The ubus calls made so far, in order: { method = ..., msg = decoded }.
function M:calls()
  local t = {}
  for l in (h.read(self.dir .. "/ubus.log") or ""):gmatch("[^\n]+") do
    local method, raw = l:match("^(%S+) (.*)$")
    t[#t + 1] = { method = method, msg = cjson.decode(raw), raw = raw }
  end
  return t
end

--- The last `service set` message procd was sent.
function M:last_set()
  local calls = self:calls()
  for i = #calls, 1, -1 do
    if calls[i].method == "set" then return calls[i].msg end
  end
end

--- What procd reports for its services (the ubus stand-in's state), or
--- sets it to `value` (procd's answer to `ubus call service list`).
function M:procd(value)
  local path = self.dir .. "/procd.json"
  if value then return h.write(path, cjson.encode(value)) end
  return cjson.decode(h.read(path) or "{}")
end

return M
