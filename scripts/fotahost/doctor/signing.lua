--- fotahost doctor's signing checks (scripts/tools/doctor.lua): who can
-- have the MCU flashed, and the anti-rollback counter. Each returns what
-- doctor prints: "OK", "WARN" or "FAIL", what it found, and the fix.
--
-- The keys are read by fotahost.fota.signature.load_keys and the counter by
-- fotahost.fota.accepted_counter, as the app reads them: what doctor says
-- is what the app will do.

local M = {}

--- trusted_keys (`paths`, nil when none are set). Without keys anyone who
-- reaches the command channel can have any firmware flashed: a WARN, as
-- updates work. With them, a key that cannot be read or parsed stops the
-- app at start: a FAIL. `name_keys` is the fix that sets trusted_keys, in
-- the file the user edits.
function M.keys(paths, name_keys)
  if not paths then
    return "WARN", "no trusted_keys: unsigned firmware is accepted from anyone who can reach the command channel",
      "make a key pair with minisign and name its public key: " .. name_keys .. " (README.md, Signed firmware)"
  end
  local signature = require "fotahost.fota.signature" -- loads libsodium: only when keys are set
  local keys, err = signature.load_keys(paths)
  if not keys then
    return "FAIL", err .. " (the app would not start)",
      "put the minisign public key there (the .pub file minisign -G writes), or name the right file: " .. name_keys
  end
  return "OK", ("%d trusted key%s: %s; unsigned firmware is refused")
    :format(#keys, #keys > 1 and "s" or "", signature.key_ids(keys))
end

--- The highest counter accepted, from state_dir's counter.json; nothing
-- (nil) before the first signed update. Unreadable, it stops every signed
-- update until an operator installs an image with --allow-downgrade, which
-- writes it again. `config_path`: the --config doctor was given, for the fix.
function M.counter(state_dir, config_path)
  local file = state_dir .. "/counter.json"
  local n, version = require("fotahost.fota").accepted_counter(state_dir)
  if n then
    return "OK", ("%s: %d is the highest counter accepted (version %s): an image signed with a lower one is refused")
      :format(file, n, version or "not recorded")
  elseif version then
    return "FAIL", ("%s cannot be read (%s): signed updates are refused"):format(file, version),
      "on the board, install the image that should run: fotahost fota --allow-downgrade --url URL --version V"
      .. (config_path and (" --config '" .. config_path:gsub("'", "'\\''") .. "'") or "")
      .. " (it writes the counter again)"
  end
end

return M
