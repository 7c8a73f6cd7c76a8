--- fotahost.mcs_cloud.token: the admin API's token. A cloud makes one at
-- start and writes it, mode 0600, to a file of this user's own (one per
-- HTTP port); tools read it from there. Its methods are installed by
-- fotahost.mcs_cloud, which also exports the functions.

local sys = require "fotahost.sys"
local logmod = require "fotahost.log"
local C = require "fotahost.mcs_cloud.common"

local log = logmod.get("cloud")
local fmt = string.format

local M = {}
local methods = {}
M.methods = methods

--- Where admin tokens live by default: a directory of this user's own
-- ($XDG_RUNTIME_DIR/fotahost, else ~/.local/state/fotahost).
-- @return dir | nil, err
function M.token_dir()
  local run = os.getenv("XDG_RUNTIME_DIR")
  if run and run:sub(1, 1) == "/" then return run .. "/fotahost" end
  local home = os.getenv("HOME")
  if home and home:sub(1, 1) == "/" then return home .. "/.local/state/fotahost" end
  return nil, "neither XDG_RUNTIME_DIR nor HOME is set: give --token-file"
end

--- The default token file of the cloud whose HTTP port is `port`: one per
-- port, so clouds side by side and the CLI find theirs.
function M.token_path(port)
  local dir, err = M.token_dir()
  if not dir then return nil, err end
  return fmt("%s/cloud-%d.token", dir, port)
end

-- Makes `dir` (mode 0700) and checks nobody else can plant a file there:
-- a link or a directory of another user is refused (as fota.private_dir
-- does for the app's state_dir).
local function private_dir(dir)
  -- parents as usual (~/.local is not ours to close), the directory 0700
  local parent = dir:match("^(.+)/[^/]+/*$")
  if parent then sys.mkdir(parent, tonumber("755", 8)) end
  local ok, err = sys.mkdir(dir, tonumber("700", 8))
  if not ok then return nil, err end
  local st
  st, err = sys.lstat((dir:gsub("(.)/+$", "%1")))
  if not st then return nil, err end
  if st.type == "link" then return nil, dir .. ": a symbolic link: refused" end
  if st.uid ~= sys.geteuid() then
    return nil, fmt("%s: owned by uid %d, not by this user: refused", dir, st.uid)
  end
  return true
end

--- A new secret: 32 random bytes from /dev/urandom, in hex (the admin
-- token; broker-config's passwords). @return text | nil, err
local function new_token()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(C.TOKEN_BYTES)
  if f then f:close() end
  if not bytes or #bytes ~= C.TOKEN_BYTES then return nil, "/dev/urandom: cannot read random bytes" end
  return (bytes:gsub(".", function(c) return fmt("%02x", c:byte()) end))
end

M.new_secret = new_token

--- The admin token kept in `path` (default: the token file of the cloud
-- at `url`). @return token | nil, err
function M.read_token(url, path)
  if not path then
    local port = url:match("^%a[%w+.-]*://[^/?#]-:(%d+)") or (url:match("^https:") and "443" or "80")
    local err
    path, err = M.token_path(math.tointeger(tonumber(port)))
    if not path then return nil, err end
  end
  local data, err = sys.read_file(path, 4096)
  if not data then return nil, "admin token: " .. err end
  local token = data:match("^(%x+)\n?$")
  if not token then return nil, path .. ": not an admin token" end
  return token
end

--- The headers an admin request to the cloud at `url` needs: the token
-- `token`, or the one in `path` (default: the cloud's token file).
-- @return headers | nil, err
function M.admin_headers(url, token, path)
  if not token then
    local err
    token, err = M.read_token(url, path)
    if not token then return nil, err end
  end
  return { Authorization = "Bearer " .. token }
end

-- Makes the admin token and writes it, mode 0600, to the token file
-- (a link there is replaced, never followed).
function methods:write_token()
  local token, err = new_token()
  if not token then return nil, err end
  local path = self.token_file
  if not path then
    path, err = M.token_path(self.port)
    if not path then return nil, err end
    local ok, derr = private_dir(path:match("^(.*)/"))
    if not ok then return nil, "token directory " .. derr end
  end
  log.secret(token)
  local ok, werr = sys.write_file(path, token .. "\n", tonumber("600", 8))
  if not ok then return nil, "admin token: " .. werr end
  self.token, self.token_file = token, path
  return true
end

--- Removes the admin token file, if it still holds this cloud's token
-- (the next cloud on the port may have written its own). Idempotent.
function methods:remove_token_file()
  if self.token and M.read_token(nil, self.token_file) == self.token then os.remove(self.token_file) end
end


return M
