--- fotahost.fota.signature: what a firmware's minisign signature must say
-- before fotahost.fota lets the image near the MCU (the file format:
-- ../shared/docs/signing.md; the README's "Signed firmware").
--
-- The MCS push (`version,MD5,URL`) has no room for a signature: it is
-- fetched from the URL with ".minisig" added to its path (minisign's own
-- naming), verified over the downloaded bytes with a trusted key (a key
-- rotation: several), and its trusted comment, which the signature covers,
-- binds the image to a version, a part and an anti-rollback counter:
--
--     minisign -S -s fotahost.key -m blink.ino.hex \
--              -t "fotahost version=2.0 part=m32u4 counter=17"
--
-- The comment is read as space-separated words; a word NAME=VALUE is a
-- field, any other word (such as "fotahost") is ignored, as is a field of
-- another name. version=, counter= and part= (or board=, or both) are
-- required, each at most once.
--
-- The highest counter accepted is kept in counter.json in state_dir (by
-- fotahost.fota, written atomically when an update is committed); an image
-- signed with a lower one is refused unless an operator on the board
-- allows a downgrade (`fotahost fota --allow-downgrade`), which then
-- lowers it.

local minisign = require "fotahost.minisign"
local sys = require "fotahost.sys"

local M = {}

-- A counter has at most 12 decimal digits (a date and time such as
-- 202612071530 fits): kept exact in counter.json, whose JSON numbers
-- lua-cjson writes with 14 significant digits.
local COUNTER_DIGITS = 12

-- Whoever can write a trusted key chooses what is flashed: a key file must
-- be a regular file (not a link) that only its owner, this user or root,
-- can write. nil, or why not.
local function unsafe(path, st)
  if st.type ~= "file" then return ("a %s, not a regular file"):format(st.type) end
  if st.mode & tonumber("022", 8) ~= 0 then
    return ("writable by others (mode %o): refused; chmod go-w %s"):format(st.mode, path)
  end
  if st.uid ~= 0 and st.uid ~= sys.geteuid() then
    return ("owned by uid %d, neither root nor this user: refused"):format(st.uid)
  end
end

--- The trusted keys named by the config's trusted_keys (a list of paths to
-- minisign .pub files). @return { key, ... } | nil, "trusted key path: why"
function M.load_keys(paths)
  local keys = {}
  for _, path in ipairs(paths) do
    local st, serr = sys.lstat(path)
    if not st then return nil, "trusted key " .. serr end
    local bad = unsafe(path, st)
    if bad then return nil, ("trusted key %s: %s"):format(path, bad) end
    local text, err = sys.read_file(path, minisign.limits.key_file)
    if not text then return nil, "trusted key " .. err end
    local key, kerr = minisign.public_key(text)
    if not key then return nil, ("trusted key %s: %s"):format(path, kerr) end
    key.path = path
    keys[#keys + 1] = key
  end
  return keys
end

--- The key ids of `keys`, for messages: "4E2F..., 99AB...".
function M.key_ids(keys)
  local ids = {}
  for i, k in ipairs(keys) do ids[i] = k.id end
  return table.concat(ids, ", ")
end

--- Where the signature of the firmware at `url` is: ".minisig" added to
-- its path, before any query or fragment; nil and why for a URL with no
-- file in its path (".minisig" would land on the host's name).
function M.url(url)
  local base, rest = url:match("^([^?#]*)(.*)$")
  local path = base:match("^%a[%w+.-]*://[^/]*(/.*)$")
  if not path or path:sub(-1) == "/" then
    return nil, "the firmware URL names no file to find its .minisig beside"
  end
  return base .. ".minisig" .. rest
end

local FIELDS = { version = true, part = true, board = true, counter = true }

--- The fields of a trusted comment. @return { version=, part=, board=, counter= } | nil, why
function M.fields(comment)
  local f = {}
  for word in comment:gmatch("%S+") do
    local name, value = word:match("^([%w_]+)=(.*)$")
    if name and FIELDS[name] then
      if f[name] then return nil, ("the trusted comment sets %s= twice"):format(name) end
      f[name] = value
    end
  end
  if not f.version then return nil, "the trusted comment has no version=" end
  if not (f.part or f.board) then return nil, "the trusted comment has no part= (or board=)" end
  if not f.counter then return nil, "the trusted comment has no counter=" end
  if not f.counter:match("^%d+$") or #f.counter > COUNTER_DIGITS then
    return nil, ("the trusted comment's counter=%s is not a whole number of at most %d digits")
      :format(f.counter:sub(1, 20), COUNTER_DIGITS)
  end
  f.counter = math.tointeger(tonumber(f.counter))
  return f
end

-- Whether the signed fields fit this update: the pushed version, the
-- board (if signed) and the MCU's part (signed, or the signed board's
-- own), and a counter not below `floor` (unless `allow_downgrade`).
-- @return true | nil, why
local function check_fields(f, want)
  if f.version ~= want.version then
    return nil, ("signed for version %s, the push says %s"):format(f.version:sub(1, 64), want.version)
  end
  if f.board and f.board ~= want.board then
    return nil, ("signed for board %s, this board is %s"):format(f.board:sub(1, 64), want.board)
  end
  -- board= alone means that board's own MCU: a config that sets another part must see part=
  local part = f.part or want.board_part
  if part ~= want.part then
    return nil, ("signed for part %s, this board's MCU is %s"):format(part:sub(1, 32), want.part)
  end
  if want.floor and f.counter < want.floor and not want.allow_downgrade then
    return nil, ("counter %d is below %d, the highest accepted (a downgrade: an operator on the board "
      .. "can allow it with fotahost fota --allow-downgrade)"):format(f.counter, want.floor)
  end
  return true
end

--- Checks `sig_text` (a .minisig file's text) over `data` (the downloaded
-- bytes) against `keys`, then its trusted comment against `want`:
-- { version, part (the MCU's), board, board_part (the board's own MCU),
-- floor (the highest counter accepted, or nil), allow_downgrade }.
-- @return { key_id, counter, version, alg } | nil, why
function M.check(keys, sig_text, data, want)
  local r, err = minisign.verify_data(keys, sig_text, data)
  if not r then
    if err:find("which is not a trusted key", 1, true) then
      err = ("%s (trusted: %s)"):format(err, M.key_ids(keys))
    end
    return nil, err
  end
  local f
  f, err = M.fields(r.comment)
  if not f then return nil, err end
  local ok, why = check_fields(f, want)
  if not ok then return nil, why end
  return { key_id = r.key_id, counter = f.counter, version = f.version, alg = r.alg }
end

return M
