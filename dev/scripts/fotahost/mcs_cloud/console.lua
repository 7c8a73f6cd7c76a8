--- fotahost.mcs_cloud.console: the local cloud's web console: the page
-- (GET /) and its script and style sheet (GET /console/NAME), plain files
-- in the console/ directory beside this module, and what keeps a browser
-- page honest for the console and the admin API:
--
-- * every answer under /, /console/ and /admin/ carries HEADERS: a
--   Content-Security-Policy that runs no script but the console's own
--   file (no inline script, no innerHTML: trusted types 'none'), and no
--   framing, sniffing, referrer or caching;
-- * the Host header must name the cloud (421 otherwise): a page of
--   another site whose name was made to resolve to 127.0.0.1 (DNS
--   rebinding) reaches the port but not the console nor the admin API.
--   Devices (/mcs/v2, /firmwares) may use any name.
--
-- Its functions are methods of the cloud object (fotahost.mcs_cloud
-- installs them); the routes are installed with the others.

local C = require "fotahost.mcs_cloud.common"

local fmt = string.format
local fail = C.fail

local CO = {}
local methods = {}
CO.methods = methods

CO.HEADERS = {
  ["Content-Security-Policy"] = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    .. "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; "
    .. "require-trusted-types-for 'script'; trusted-types 'none'",
  ["X-Content-Type-Options"] = "nosniff",
  ["Referrer-Policy"] = "no-referrer",
  ["Cache-Control"] = "no-store",
  ["X-Frame-Options"] = "DENY",
}

-- The console's files, by the name in its URL: file name, Content-Type.
local FILES = {
  ["/"] = { "index.html", "text/html; charset=utf-8" },
  ["/console/console.js"] = { "console.js", "text/javascript; charset=utf-8" },
  ["/console/console.css"] = { "console.css", "text/css; charset=utf-8" },
}

--- True for the paths a browser is shown: the console's and the admin API's.
function CO.guarded(path)
  return path == "/" or path:find("^/console") ~= nil or path:find("^/admin") ~= nil
end

--- The console's directory: fotahost/mcs_cloud/console/ on the scripts
-- path (the checkout's dev/scripts, an installed development wing, an
-- override directory), or nil.
function CO.find_dir(path)
  local html = (path or package.path):gsub("%.lua", ".html")
  local index = package.searchpath("fotahost.mcs_cloud.console.index", html)
  return index and index:match("^(.*/)index%.html$")
end

---------------------------------------------------------------- the Host check

-- A Host header or URL authority split: lower-case name (an IPv6 address
-- without its brackets), port (nil when none), bracketed.
-- @return name, port, bracketed | nil when malformed
function CO.split_host(authority)
  authority = authority:lower()
  local name, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
  local bracketed = name ~= nil
  if not name then name, port = authority:match("^([%w.%-_]+):?(%d*)$") end
  if not name then return nil end
  return name, math.tointeger(tonumber(port)), bracketed
end

local function ip_literal(name, bracketed)
  return bracketed or name:find("^%d+%.%d+%.%d+%.%d+$") ~= nil
end

local LOOPBACK = { ["127.0.0.1"] = true, ["::1"] = true }
local DEFAULT_PORT = { http = 80, https = 443 }

-- The public URL's name and port (its scheme's when it gives none).
local function public_host(self)
  local scheme, authority = (self.public_url or ""):match("^(%a[%w+.-]*)://([^/?#]+)")
  if not scheme then return nil end
  local name, port = CO.split_host(authority:gsub("^.*@", ""))
  return name, port or DEFAULT_PORT[scheme:lower()], DEFAULT_PORT[scheme:lower()]
end

--- Whether the Host header `value` names this cloud: the address and
-- port it listens on (any address when it listens on all of them),
-- localhost on its port when that is loopback or all, or the public
-- URL's host. A browser always sends one; a request without (an
-- HTTP/1.0 tool) passes.
function methods:host_allowed(value)
  if value == nil then return true end
  local name, port, bracketed = CO.split_host(value)
  if not name then return false end
  local pub_name, pub_port, pub_default = public_host(self)
  if self.public_url_given and name == pub_name and (port or pub_default) == pub_port then return true end
  if (port or 80) ~= self.port then return false end
  local listen = self.host:lower()
  if C.WILDCARD[listen] then return name == "localhost" or ip_literal(name, bracketed) end
  return name == listen or name == "localhost" and LOOPBACK[listen] ~= nil
end

--- Why a browser request is refused before anything else (status,
-- message), or nil.
function methods:host_refusal(req)
  local host = req.headers.host
  if self:host_allowed(host) then return nil end
  return 421, fmt("this cloud does not answer to the name %s: use %s (the address it listens on"
    .. "%s, or --public-url)", host, self.url, LOOPBACK[self.host] and " or localhost" or "")
end

---------------------------------------------------------------- clear text

-- Whether `host` (a numeric address) is this machine's loopback.
local function loopback(host)
  host = host:lower()
  return host:find("^127%.%d+%.%d+%.%d+$") ~= nil or host == "::1" or host:find("^::ffff:127%.") ~= nil
end

--- What start() warns of when the admin token (and device keys, and
-- commands) would cross a network in clear text: the cloud listens
-- beyond loopback, and no https --public-url says a TLS proxy fronts it.
-- nil when neither.
function methods:cleartext_warning()
  if loopback(self.host) then return nil end
  local scheme = self.public_url_given and self.public_url:match("^(%a[%w+.-]*)://")
  if scheme and scheme:lower() == "https" then return nil end
  return fmt("%s is plain HTTP beyond loopback: the console's admin token, device keys and commands cross "
    .. "the network in clear text, and whoever sees the token can push firmware; listen on 127.0.0.1, or "
    .. "serve it through a TLS proxy and give its https:// address as --public-url", self.url)
end

---------------------------------------------------------------- the files

local function serve_file(self, req, res)
  local f = FILES[req.path]
  if not self.console_dir then
    return fail(res, 404, "the console's files are not installed (fotahost/mcs_cloud/console/ on the "
      .. "scripts path: make install-dev)")
  end
  return res:send_file(self.console_dir .. f[1], { ["Content-Type"] = f[2] }, { range = false })
end

CO.ROUTES = {
  { "GET", "^/$", serve_file },
  { "GET", "^/console/console%.js$", serve_file },
  { "GET", "^/console/console%.css$", serve_file },
}

return CO
