--- fotahost.uci: reads OpenWrt's UCI files (/etc/config/*) as libuci does.
--
--     local sections, err = uci.read("/etc/config/fotahost")
--     -- { { type = "fotahost", name = "main", options = { device_id = "Dbxx9k",
--     --     servers = { "a", "b" } }, order = { "device_id", "servers" } }, ... }
--     -- (a `list` gives a list of strings; order: the options as they first came)
--
-- The grammar: `package NAME`, `config TYPE ['NAME']`, `option NAME VALUE`,
-- `list NAME VALUE`; `#` outside quotes ends the line. A word is made of
-- pieces put together as in sh: bare text (a backslash takes the next
-- character as it is), '...' (nothing special inside) and "..." (a
-- backslash takes the next character as it is); so uci's own way of writing
-- a quote, 'a'\''b', reads a'b. A quote must close on its line (libuci's
-- multi-line values and backslash-newline are refused, not guessed at).
-- A section named twice is one section, as in libuci. A section type is
-- any word of printable ASCII (`config wifi-device`), names are letters,
-- digits and _ (libuci's uci_validate_str). An option with no value, or
-- an empty one, sets nothing, an earlier value of it staying: libuci's
-- parser hands it to uci_set, which then does nothing. Left out, refused
-- as an invalid command: libuci's `;` between two commands on one line and
-- its one-letter commands (p, c, o, l), which no file uci writes holds.
--
-- The file is input from anywhere: whatever it holds, the answer is
-- sections or nil and "FILE:LINE: what is wrong", never an error thrown.
local M = {}

local NAME = "^[%w_]+$"  -- libuci's names: sections, options
local TYPE = "^[!-~]+$"  -- libuci's section types: printable ASCII, no space

-- Reads one word of `line` from `i`: returns the word and the index after
-- it, nil at the end of the line (or a comment), or false and a message.
local function word(line, i)
  i = line:find("[^ \t\r]", i)
  if not i or line:sub(i, i) == "#" then return nil end
  local parts = {}
  while i <= #line do
    local c = line:sub(i, i)
    if c == "'" then
      local close = line:find("'", i + 1, true)
      if not close then return false, "unterminated '" end
      parts[#parts + 1] = line:sub(i + 1, close - 1)
      i = close + 1
    elseif c == '"' then
      i = i + 1
      while true do
        local d = line:sub(i, i)
        if d == "" then return false, 'unterminated "' end
        if d == '"' then break end
        if d == "\\" then
          i = i + 1
          d = line:sub(i, i)
          if d == "" then return false, 'unterminated "' end
        end
        parts[#parts + 1] = d
        i = i + 1
      end
      i = i + 1
    elseif c == "\\" then
      if i == #line then return false, "backslash at the end of the line" end
      parts[#parts + 1] = line:sub(i + 1, i + 1)
      i = i + 2
    elseif c == " " or c == "\t" or c == "\r" or c == "#" then
      break
    else
      local stop = line:find("[ \t\r#'\"\\]", i) or #line + 1
      parts[#parts + 1] = line:sub(i, stop - 1)
      i = stop
    end
  end
  return table.concat(parts), i
end

--- Splits one line into its words: a list, or nil and a message.
function M.words(line)
  local out, i = {}, 1
  while true do
    local w, nxt = word(line, i)
    if w == nil then return out end
    if w == false then return nil, nxt end
    out[#out + 1] = w
    i = nxt
  end
end

--- `s` as uci writes a value: in single quotes, a quote as '\''.
function M.quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- One statement (its words `w`) applied to the state `st`; a message if wrong.
local function statement(st, w)
  local cmd, n = w[1], #w
  if cmd == "package" then
    if n ~= 2 then return "package takes one name" end
    return nil
  elseif cmd == "config" then
    if n < 2 or n > 3 then return "config takes a type and an optional name" end
    if not w[2]:match(TYPE) then return "invalid section type '" .. w[2] .. "'" end
    if w[3] and not w[3]:match(NAME) then return "invalid section name '" .. w[3] .. "'" end
    local s = w[3] and st.named[w[3]]
    if s then
      s.type = w[2]
    else
      s = { type = w[2], name = w[3], options = {}, order = {} }
      st.sections[#st.sections + 1] = s
      if w[3] then st.named[w[3]] = s end
    end
    st.current = s
    return nil
  elseif cmd == "option" or cmd == "list" then
    -- (an option's value may be left out: see the top)
    if n > 3 or n < (cmd == "option" and 2 or 3) then return cmd .. " takes a name and a value" end
    if not st.current then return cmd .. " before the first config section" end
    if not w[2]:match(NAME) then return "invalid option name '" .. w[2] .. "'" end
    if cmd == "option" and (w[3] or "") == "" then return nil end -- sets nothing, as in libuci
    local opts = st.current.options
    if opts[w[2]] == nil then table.insert(st.current.order, w[2]) end
    if cmd == "option" then
      opts[w[2]] = w[3]
    else -- a list after an option of that name extends it, as libuci does
      local old = opts[w[2]]
      if type(old) ~= "table" then old = { old } end
      old[#old + 1] = w[3]
      opts[w[2]] = old
    end
    return nil
  end
  return "invalid command '" .. cmd .. "'"
end

--- Parses `text`, naming `file` in errors. Returns the sections in order,
-- or nil and "FILE:LINE: message".
function M.parse(text, file)
  file = file or "uci"
  if type(text) ~= "string" then return nil, file .. ": not text" end
  local st = { sections = {}, named = {} }
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    local w, err = M.words(line)
    if w and #w > 0 then err = statement(st, w) end
    if err then return nil, ("%s:%d: %s"):format(file, n, err) end
  end
  return st.sections
end

--- Reads and parses the file at `path`: sections, or nil and a message
-- (a file that is not there: nil, "PATH: No such file...", "missing").
function M.read(path)
  local f, err, code = io.open(path, "rb")
  if not f then return nil, err, code == 2 and "missing" or nil end -- ENOENT, 2 on every Linux
  local text = f:read("a")
  f:close()
  return M.parse(text or "", path)
end

return M
