-- The OpenWrt packages (make board-package: dist/board-package and
-- dist/ipkg-build), unpacked with tar as opkg would: OpenWrt's .ipk format,
-- the control fields, conffiles, the generic postinst/prerm, modes (the UCI
-- config 0600: it holds the device key), numeric owner 0:0, one fixed
-- mtime, reproducible bytes, keep.d, the product and the development wing
-- apart, and the file list the feed Makefile's install steps declare.
--
-- Natively the packages are made from a stand-in of the board build (the
-- checkout's scripts, placeholder binaries, and the libraries the package
-- must leave out); under make board-test (FOTAHOST_BOARD_ROOT) the real
-- ones make board-package wrote are checked, and their binary is the board's.
local h = require "helper"

local FEED = h.top .. "/dist/openwrt/fotahost"
local board_root = os.getenv("FOTAHOST_BOARD_ROOT")
local arch = os.getenv("FOTAHOST_BOARD_ARCH") or "mipsel_24kc"

local must = h.must

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

---------------------------------------------------------------- the feed Makefile

-- Its PKG_ variables and its defines (name -> body lines).
local function read_feed()
  local text = assert(h.read(FEED .. "/Makefile"))
  local feed = { vars = {}, defines = {} }
  for k, v in text:gmatch("\n(PKG_[%u_]+):=([^\n]*)") do feed.vars[k] = v end
  for name, body in text:gmatch("\ndefine ([^\n]+)\n(.-)\nendef") do feed.defines[name] = lines(body) end
  return feed
end

local function field(feed, pkg, name)
  for _, l in ipairs(feed.defines["Package/" .. pkg]) do
    local v = l:match("^%s*" .. name .. ":=(.*)$")
    if v then return v end
  end
end

-- The files under `dir` as relative paths -> octal mode strings.
local function tree(dir)
  local t = {}
  for l in must(("cd %s && find . -mindepth 1 -printf '%%y %%m %%P\\n'"):format(h.q(dir))):gmatch("[^\n]+") do
    local kind, mode, path = l:match("^(%a) (%d+) (.+)$")
    t[path .. (kind == "d" and "/" or "")] = ("%04d"):format(tonumber(mode))
  end
  return t
end

-- What Package/<pkg>/install lays out: path ("usr/bin/fotahost", dirs
-- ending in "/") -> mode. $(CP) of a staged install's glob copies that
-- tree with its modes (cp -p); `staged` maps the install's subdirectory
-- (product, dev) to the tree it stands for.
local MODES = { INSTALL_BIN = "0755", INSTALL_DATA = "0644", INSTALL_CONF = "0600" }

local function declared(feed, pkg, staged)
  local list = {}
  local function add_dirs(path)
    local d = ""
    for part in path:gmatch("[^/]+/") do d = d .. part; list[d] = "0755" end
  end
  for _, l in ipairs(feed.defines["Package/" .. pkg .. "/install"]) do
    local cmd, args = l:match("^%s*%$%(([%u_]+)%)%s+(.*)$")
    local words = lines(args:gsub("%s+", "\n"))
    if cmd == "INSTALL_DIR" then
      for _, w in ipairs(words) do add_dirs(assert(w:match("^%$%(1%)/(.+)$")) .. "/") end
    elseif MODES[cmd] then
      local dst = assert(words[2]:match("^%$%(1%)/(.+)$"))
      list[dst] = MODES[cmd]
      add_dirs(dst)
    else
      assert(cmd == "CP", "an install step the spec does not know: " .. l)
      local which, from = words[1]:match("^%$%(PKG_INSTALL_DIR%)/(%a+)/(.+)/%*$")
      local dst = assert(words[2]:match("^%$%(1%)/(.+)/$"))
      for path, mode in pairs(tree(assert(staged[which]) .. "/" .. from)) do list[dst .. "/" .. path] = mode end
    end
  end
  return list
end

---------------------------------------------------------------- an .ipk, unpacked

local function octal(perm)
  local n = 0
  for i = 2, 10 do
    n = n * 2 + (perm:sub(i, i) == "-" and 0 or 1)
  end
  return ("%04o"):format(n)
end

-- tar -tv of a .tar.gz: members in order, with mode, owner, mtime (UTC).
local function listing(tgz)
  local t = {}
  for l in must("TZ=UTC tar --numeric-owner --full-time -tvzf " .. h.q(tgz)):gmatch("[^\n]+") do
    local perm, owner, size, time, name = l:match("^(%S+)%s+(%S+)%s+(%d+)%s+(%S+ %S+)%s+(.+)$")
    t[#t + 1] = { name = name, mode = octal(perm), owner = owner, size = tonumber(size), time = time,
      dir = perm:sub(1, 1) == "d" }
  end
  return t
end

local function unpack_ipk(path)
  local dir = h.tmpdir()
  must(("tar -xzf %s -C %s && mkdir %s/control %s/data && tar -xzf %s/control.tar.gz -C %s/control"
    .. " && tar -xzf %s/data.tar.gz -C %s/data"):format(h.q(path), h.q(dir), h.q(dir), h.q(dir),
    h.q(dir), h.q(dir), h.q(dir), h.q(dir)))
  local ipk = { dir = dir, outer = listing(path), control_tar = listing(dir .. "/control.tar.gz"),
    data_tar = listing(dir .. "/data.tar.gz"), fields = {}, files = {} }
  local control = assert(h.read(dir .. "/control/control"))
  for k, v in control:gmatch("([%w-]+): ([^\n]*)") do ipk.fields[k] = ipk.fields[k] or v end
  ipk.description = control:match("\nDescription: (.*)$")
  for _, m in ipairs(ipk.data_tar) do
    if m.name ~= "./" then ipk.files[m.name:sub(3)] = m.mode end
  end
  ipk.installed = tonumber((must("gzip -dc " .. h.q(dir .. "/data.tar.gz") .. " | wc -c"):match("%d+")))
  return ipk
end

local function sha256(path) return must("sha256sum " .. h.q(path)):match("^%x+") end

---------------------------------------------------------------- a stand-in board build

-- root/ as make board lays it out (the product installed with PREFIX=/usr,
-- with musl, libcurl, mbedTLS, libsodium and the docs the package must leave out),
-- and dev-root/ as make install-dev does: the checkout's own scripts,
-- placeholders for the ELF files.
local function stand_in(dir)
  local root, dev = dir .. "/root", dir .. "/dev-root"
  local function put(path, mode, text)
    must(("mkdir -p %s"):format(h.q(path:match("^(.*)/"))))
    h.write(path, text or ("stand-in for " .. path:match("[^/]+$") .. "\n"))
    must(("chmod %s %s"):format(mode, h.q(path)))
  end
  local function scripts(from, to)
    for _, f in ipairs(h.find(from, "*.lua")) do
      put(to .. "/usr/share/fotahost/scripts/" .. f:sub(#from + 2), "0644", h.read(h.top .. "/" .. f))
    end
  end
  put(root .. "/usr/bin/fotahost", "0755")
  for _, lib in ipairs({ "lib/libc.so", "lib/ld-musl-mipsel-sf.so.1", "usr/lib/libcurl.so.4",
                         "usr/lib/libmbedcrypto.so.7", "usr/lib/libsodium.so.23",
                         "usr/lib/fotahost/plugins/fotahost/digest.so",
                         "usr/lib/fotahost/plugins/fotahost/minisign.so",
                         "usr/lib/fotahost/plugins/fotahost/http/core.so" }) do
    put(root .. "/" .. lib, "0755")
  end
  put(root .. "/usr/share/doc/fotahost/README.md", "0644")
  scripts("scripts", root)
  put(dev .. "/usr/lib/fotahost/plugins/fotahost/avrsim.so", "0755")
  put(dev .. "/usr/lib/fotahost/plugins/fotahost/gpio_sim.so", "0755")
  scripts("dev/scripts", dev)
  return root, dev
end

-- Runs dist/board-package. Natively as root, it runs as another user, so
-- the files it lays out are not root's and the packages' 0:0 is the
-- packer's doing, as for a packager who is not root.
local function board_package(root, dev, out, epoch, umask)
  local as = ""
  must("mkdir -p " .. h.q(out))
  if not board_root and must("id -u"):match("^0\n") then
    must(("chmod 0755 %s && chown 1234:1234 %s"):format(h.q(out:match("^(.*)/")), h.q(out)))
    as = "setpriv --reuid=1234 --regid=1234 --clear-groups "
  end
  must(("umask %s && cd %s && SOURCE_DATE_EPOCH=%d %ssh dist/board-package %s %s %s %s"):format(
    umask or "022", h.q(h.top), epoch, as, h.q(root), h.q(dev), arch, h.q(out)))
end

---------------------------------------------------------------- the checks

local function check_format(ipk, epoch)
  assert.same({ "./debian-binary", "./data.tar.gz", "./control.tar.gz" },
    { ipk.outer[1].name, ipk.outer[2].name, ipk.outer[3].name })
  assert.equal(3, #ipk.outer)
  assert.equal("2.0\n", h.read(ipk.dir .. "/debian-binary"))
  local when = os.date("!%Y-%m-%d %H:%M:%S", epoch)
  for _, list in ipairs({ ipk.outer, ipk.control_tar, ipk.data_tar }) do
    local by_parent = {}
    for _, m in ipairs(list) do
      assert.equal("0/0", m.owner, m.name)
      assert.equal(when, m.time, m.name)
      local parent, base = m.name:gsub("/$", ""):match("^(.*/)([^/]+)$")
      if parent then
        local last = by_parent[parent]
        assert.is_true(list == ipk.outer or last == nil or last < base, "not sorted: " .. m.name)
        by_parent[parent] = base
      end
    end
  end
end

local function check_control(ipk, feed, pkg)
  local f = ipk.fields
  for _, k in ipairs({ "Package", "Version", "Depends", "Source", "SourceName", "License", "Section",
                       "Architecture", "Installed-Size", "Description" }) do
    assert.is_not_nil(f[k], k .. " missing from " .. pkg .. "'s control")
  end
  assert.equal(pkg, f.Package)
  assert.equal(feed.vars.PKG_VERSION .. "-" .. feed.vars.PKG_RELEASE, f.Version)
  assert.equal(arch, f.Architecture)
  assert.equal(feed.vars.PKG_LICENSE, f.License)
  assert.equal(field(feed, pkg, "SECTION"), f.Section)
  assert.equal(tostring(ipk.installed), f["Installed-Size"])
  local modes = {}
  for _, m in ipairs(ipk.control_tar) do modes[m.name] = m.mode end
  local generic = {
    postinst = '#!/bin/sh\n[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0\n'
      .. '[ -s "${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0\n. "${IPKG_INSTROOT}/lib/functions.sh"\n'
      .. 'default_postinst "$0" "$@"\n',
    prerm = '#!/bin/sh\n[ -s "${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0\n'
      .. '. "${IPKG_INSTROOT}/lib/functions.sh"\ndefault_prerm "$0" "$@"\n' }
  for name, text in pairs(generic) do
    assert.equal(text, h.read(ipk.dir .. "/control/" .. name))
    assert.equal("0755", modes["./" .. name])
  end
  assert.equal("0644", modes["./control"])
end

describe("the OpenWrt packages (" .. arch .. ")", function()
  local feed = read_feed()
  local work, out, root, dev, epoch, pkgs

  setup(function()
    work = h.tmpdir()
    if board_root then
      root, dev, out = board_root, assert(os.getenv("FOTAHOST_BOARD_DEV_ROOT")), h.top .. "/build/board"
    else
      root, dev = stand_in(work)
      out, epoch = work .. "/out", 1700000000
      board_package(root, dev, out, epoch)
    end
    pkgs = {}
    for _, name in ipairs({ "fotahost", "fotahost-dev" }) do
      local file = ("%s_%s-%s_%s.ipk"):format(name, feed.vars.PKG_VERSION, feed.vars.PKG_RELEASE, arch)
      pkgs[name] = unpack_ipk(out .. "/" .. file)
      pkgs[name].path = out .. "/" .. file
    end
    epoch = epoch or tonumber(pkgs.fotahost.fields.SourceDateEpoch)
  end)

  teardown(function()
    for _, p in pairs(pkgs or {}) do h.rmdir(p.dir) end
    h.rmdir(work)
  end)

  it("has the source's version, and its release from the feed Makefile", function()
    local makefile = assert(h.read(h.top .. "/Makefile"))
    assert.equal(makefile:match("\nVERSION%s*:=%s*(%S+)"), feed.vars.PKG_VERSION)
    assert.matches("^%d+$", feed.vars.PKG_RELEASE)
  end)

  it("are gzipped tars of debian-binary, data and control, owned 0:0, sorted, at one mtime", function()
    for _, p in pairs(pkgs) do check_format(p, epoch) end
    assert.equal(string.char(0x1f, 0x8b), h.read(pkgs.fotahost.path):sub(1, 2))
  end)

  it("carry every control field, the generic postinst and prerm, and the conffiles", function()
    check_control(pkgs.fotahost, feed, "fotahost")
    check_control(pkgs["fotahost-dev"], feed, "fotahost-dev")
    assert.equal("libc, libcurl4, libmbedtls12, libsodium", pkgs.fotahost.fields.Depends)
    assert.equal("libc, fotahost", pkgs["fotahost-dev"].fields.Depends)
    assert.matches("for development, not for production boards", pkgs["fotahost-dev"].description:lower())
    assert.equal("/etc/config/fotahost\n", h.read(pkgs.fotahost.dir .. "/control/conffiles"))
    assert.same(feed.defines["Package/fotahost/conffiles"], { "/etc/config/fotahost" })
    assert.is_nil(h.read(pkgs["fotahost-dev"].dir .. "/control/conffiles"))
  end)

  it("hold exactly what the feed Makefile installs, with its modes", function()
    local staged = { product = root, dev = dev }
    assert.same(declared(feed, "fotahost", staged), pkgs.fotahost.files)
    assert.same(declared(feed, "fotahost-dev", staged), pkgs["fotahost-dev"].files)
    local files = pkgs.fotahost.files
    assert.equal("0755", files["usr/bin/fotahost"])
    assert.equal("0755", files["etc/init.d/fotahost"])
    assert.equal("0600", files["etc/config/fotahost"])
    assert.equal("0644", files["lib/upgrade/keep.d/fotahost"])
    assert.equal("0755", files["etc/fotahost/scripts/"])
    assert.equal("0755", files["usr/lib/fotahost/plugins/fotahost/http/core.so"])
    assert.equal("0644", files["usr/share/fotahost/scripts/tools/app.lua"])
  end)

  it("leave the C library, libcurl, mbedTLS, libsodium and the docs to the board", function()
    for path in pairs(pkgs.fotahost.files) do
      assert.is_nil(path:match("^lib/[^u]") or path:match("^usr/lib/lib") or path:match("^usr/share/doc")
        or path:match("^usr/include"), path)
    end
  end)

  it("keep the development wing out of fotahost and in fotahost-dev only", function()
    local product = pkgs.fotahost.files
    for path in pairs(tree(dev)) do
      if not path:match("/$") then
        assert.is_nil(product[path], path .. " of the development wing is in fotahost")
        assert.is_not_nil(pkgs["fotahost-dev"].files[path], path .. " is missing from fotahost-dev")
      end
    end
    for path in pairs(pkgs["fotahost-dev"].files) do
      assert.is_true(path:match("/$") ~= nil or product[path] == nil, path .. " is in both packages")
    end
  end)

  it("list the state, the user's scripts and the Lua config in keep.d for sysupgrade", function()
    local keep = lines(assert(h.read(pkgs.fotahost.dir .. "/data/lib/upgrade/keep.d/fotahost")))
    table.sort(keep)
    assert.same({ "/etc/fotahost/config.lua", "/etc/fotahost/keys/", "/etc/fotahost/scripts/",
      "/etc/fotahost/state/" }, keep)
    local config = assert(h.read(pkgs.fotahost.dir .. "/data/etc/config/fotahost"))
    assert.equal("/etc/fotahost/state", config:match("\n\t# option state_dir '([^']+)'"))
  end)

  it("are the same bytes when built again, whatever the files' times and the umask", function()
    local again = work .. "/again"
    if not board_root then
      must(("find %s %s -exec touch -d @1 {} +"):format(h.q(root), h.q(dev)))
    end
    board_package(root, dev, again, epoch, "077")
    for name, p in pairs(pkgs) do
      assert.equal(sha256(p.path), sha256(again .. "/" .. p.path:match("[^/]+$")), name)
    end
  end)

  if board_root then
    it("carry the board build's binary, built for the board", function()
      local bin = pkgs.fotahost.dir .. "/data/usr/bin/fotahost"
      assert.equal(sha256(board_root .. "/usr/bin/fotahost"), sha256(bin))
      local header = must("readelf -h " .. h.q(bin))
      assert.matches(arch == "x86_64" and "X86%-64" or "MIPS R3000", header)
    end)
  end
end)
