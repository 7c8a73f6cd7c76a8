--- fotahost.avr.avrdude_conf: reads the `programmer` entries of an
-- avrdude.conf, so a board's existing /etc/avrdude.conf (or a file given
-- with -C / -C +file) keeps working with `fotahost flash`.
--
-- The grammar is avrdude's: blocks `programmer ... ;`, `part ... ;` and
-- `memory "name" ... ;` holding `key = value[, value...];` statements, a
-- block ending at a `;` that follows no statement; `#` comments. Only
-- programmer entries are kept (fotahost has its own part table); parts are
-- skipped whole. Pins may be written `~N` for an inverted line, and
-- avrdude 7's sdo/sdi are accepted for mosi/miso.

local M = {}

-- Splits the text into tokens: { kind = "word"|"string"|"number"|"punct", value, line }.
local function tokenize(text, name)
  local toks, i, line, n = {}, 1, 1, #text
  while i <= n do
    local c = text:sub(i, i)
    if c == "\n" then
      line = line + 1
      i = i + 1
    elseif c:match("%s") then
      i = i + 1
    elseif c == "#" then
      local e = text:find("\n", i, true) or n + 1
      i = e
    elseif c == '"' then
      local j, buf = i + 1, {}
      while true do
        local ch = text:sub(j, j)
        if ch == "" or ch == "\n" then
          return nil, ("%s:%d: unterminated string"):format(name, line)
        elseif ch == "\\" then
          buf[#buf + 1] = text:sub(j + 1, j + 1)
          j = j + 2
        elseif ch == '"' then
          break
        else
          buf[#buf + 1] = ch
          j = j + 1
        end
      end
      toks[#toks + 1] = { kind = "string", value = table.concat(buf), line = line }
      i = j + 1
    elseif c:match("[%w_%.%-%+]") then
      local s, e = text:find("^[%w_%.%-%+]+", i)
      local w = text:sub(s, e)
      local num = w:match("^0[xX]%x+$") and tonumber(w:sub(3), 16) or w:match("^%-?%d+$") and tonumber(w)
      toks[#toks + 1] = { kind = num and "number" or "word", value = num or w, line = line }
      i = e + 1
    elseif c:match("[=;,~%(%)%*/|&<>%[%]{}:]") then
      toks[#toks + 1] = { kind = "punct", value = c, line = line }
      i = i + 1
    else
      return nil, ("%s:%d: unexpected character '%s'"):format(name, line, c)
    end
  end
  return toks
end

-- Parses one value list after '=' up to ';': numbers, strings, words, ~N.
local function parse_values(toks, k, name)
  local vals = {}
  while true do
    local t = toks[k]
    if not t then return nil, nil, ("%s: unexpected end of file in a value"):format(name) end
    if t.kind == "punct" and t.value == ";" then return vals, k + 1 end
    if t.kind == "punct" and t.value == "~" then
      local nt = toks[k + 1]
      if not nt or nt.kind ~= "number" then
        return nil, nil, ("%s:%d: '~' must be followed by a pin number"):format(name, t.line)
      end
      vals[#vals + 1] = { pin = nt.value, inverted = true }
      k = k + 2
    elseif t.kind == "punct" and (t.value == "," or t.value == "|") then
      k = k + 1   -- list separator, or PM_TPI | PM_ISP
    else
      vals[#vals + 1] = t.kind == "number" and { pin = t.value, number = t.value } or t.value
      k = k + 1
      -- Numbers may follow each other (signature = 0x1e 0x95 0x87); a
      -- string must be followed by ',' or ';', a word also by '|'.
      local nt = toks[k]
      local sep = nt and nt.kind == "punct" and (nt.value == "," or nt.value == ";"
        or (nt.value == "|" and t.kind == "word"))
      if t.kind ~= "number" and nt and not sep then
        return nil, nil, ("%s:%d: expected ',' or ';' before '%s'"):format(name, nt.line, tostring(nt.value))
      end
    end
  end
end

-- Parses a block body from toks[k] (after its header) to its closing ';'.
-- Returns the statements as { key = values } plus nested blocks, and the
-- index after the closing ';'.
local function parse_block(toks, k, name)
  local stmts, nested = {}, {}
  while true do
    local t = toks[k]
    if not t then return nil, nil, nil, ("%s: unexpected end of file inside a block"):format(name) end
    if t.kind == "punct" and t.value == ";" then return stmts, nested, k + 1 end
    if t.kind == "word" and (t.value == "memory" or t.value == "programmer" or t.value == "part") then
      local kk = k + 1
      if toks[kk] and toks[kk].kind == "string" then kk = kk + 1 end
      local s, n, nk, err = parse_block(toks, kk, name)
      if not s then return nil, nil, nil, err end
      nested[#nested + 1] = { kind = t.value, stmts = s, nested = n }
      k = nk
    elseif t.kind == "word" then
      local eq = toks[k + 1]
      if eq and eq.kind == "punct" and eq.value == "=" then
        local vals, nk, err = parse_values(toks, k + 2, name)
        if not vals then return nil, nil, nil, err end
        stmts[t.value] = vals
        k = nk
      elseif t.value == "parent" then
        stmts.parent = { toks[k + 1] and toks[k + 1].value }
        k = k + 2
      elseif eq and eq.kind == "string" then
        -- `alias "fuse0";` and the like: a keyword with a value, no '='
        local vals, nk, err = parse_values(toks, k + 1, name)
        if not vals then return nil, nil, nil, err end
        stmts[t.value] = vals
        k = nk
      else
        return nil, nil, nil, ("%s:%d: expected '=' after '%s'"):format(name, t.line, t.value)
      end
    else
      return nil, nil, nil, ("%s:%d: unexpected '%s'"):format(name, t.line, tostring(t.value))
    end
  end
end

local function pin_of(stmts, ...)
  for _, key in ipairs({ ... }) do
    local v = stmts[key]
    if v and v[1] then
      local p = v[1]
      if type(p) == "table" then return p.pin, p.inverted or false end
    end
  end
end

--- Parses avrdude.conf text. Returns { programmers = { [id] = entry } }
-- where entry = { id, desc, type, pins = {reset=, sck=, mosi=, miso=},
-- invert = {reset=true, ...}, line }, or nil, "name:line: cause".
function M.parse(text, name)
  name = name or "avrdude.conf"
  local toks, err = tokenize(text, name)
  if not toks then return nil, err end
  local out = { programmers = {} }
  local k = 1
  while toks[k] do
    local t = toks[k]
    if t.kind == "word" and (t.value == "programmer" or t.value == "part") then
      local kk = k + 1
      local parent
      if toks[kk] and toks[kk].kind == "word" and toks[kk].value == "parent" then
        parent = toks[kk + 1] and toks[kk + 1].value
        kk = kk + 2
      end
      local stmts, _, nk, perr = parse_block(toks, kk, name)
      if not stmts then return nil, perr end
      if t.value == "programmer" and stmts.id then
        local entry = { type = stmts.type and stmts.type[1], desc = stmts.desc and stmts.desc[1],
          pins = {}, invert = {}, line = t.line, parent = parent }
        for role, keys in pairs({ reset = { "reset" }, sck = { "sck" }, mosi = { "sdo", "mosi" },
                                  miso = { "sdi", "miso" } }) do
          local pin, inv = pin_of(stmts, table.unpack(keys))
          entry.pins[role] = pin
          if inv then entry.invert[role] = true end
        end
        for _, id in ipairs(stmts.id) do
          local e = setmetatable({ id = id }, { __index = entry })
          out.programmers[id] = e
        end
      end
      k = nk
    elseif t.kind == "word" and toks[k + 1] and toks[k + 1].value == "=" then
      local _, nk, verr = parse_values(toks, k + 2, name)
      if not nk then return nil, verr end
      k = nk
    else
      return nil, ("%s:%d: unexpected '%s' at top level"):format(name, t.line, tostring(t.value))
    end
  end
  -- Entries with a parent inherit what they do not set.
  for _, e in pairs(out.programmers) do
    local p = e.parent and out.programmers[e.parent]
    if p and p ~= e then
      e.type = e.type or p.type
      for _, role in ipairs({ "reset", "sck", "mosi", "miso" }) do
        if e.pins[role] == nil then e.pins[role] = p.pins[role] e.invert[role] = p.invert[role] end
      end
    end
  end
  return out
end

--- Reads and parses a file. nil, "path: cause" on failure.
function M.load(path)
  local f, err = io.open(path, "r")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  return M.parse(text, path)
end

return M
