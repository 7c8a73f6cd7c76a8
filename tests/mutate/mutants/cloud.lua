-- Mutants of the local cloud's admin API and command framing
-- (dev/scripts/fotahost/mcs_cloud.lua and its parts, dev/scripts/tools/cloud.lua): the admin
-- token, JSON-only bodies, firmware from an upload or the firmware
-- directory only, no device key in a reply, MCS's unterminated and spaced
-- commands, a device bound at its first heartbeat. (The cloud's older
-- checks are in mcs.lua.)
local CLOUD = { "spec/cloud_spec.lua" }
local F = "dev/scripts/fotahost/mcs_cloud.lua" -- the face: routing, life cycle
local P = "dev/scripts/fotahost/mcs_cloud/"
local ADMIN, STORE, COMMON, TOKEN, TCP = P .. "admin_api.lua", P .. "store.lua", P .. "common.lua",
  P .. "token.lua", P .. "command_server.lua"

return {
  { name = "cloud-admin-token-skipped", file = F,
    from = "if status then return fail(res, status, why) end",
    to = "if status and status ~= 401 then return fail(res, status, why) end",
    specs = CLOUD, filter = "admin API safeguards",
    why = "anything that reaches the port (a page's fetch, another user on the host) drives the admin API" },
  { name = "cloud-admin-any-token", file = ADMIN,
    from = [[if not same_secret(given, self.token) then return 401, "wrong admin token" end]],
    to = "",
    specs = CLOUD, filter = "admin API safeguards",
    why = "any Authorization header opens the admin API: the token protects nothing" },
  { name = "cloud-admin-token-compare", file = COMMON,
    from = "for i = 1, #token do diff = diff | (given:byte(i) ~ token:byte(i)) end",
    to = "for i = 1, #token do diff = given:byte(i) ~ token:byte(i) end",
    specs = CLOUD, filter = "admin API safeguards",
    why = "only the token's last character is compared: 16 guesses open the admin API" },
  { name = "cloud-admin-any-content-type", file = ADMIN,
    from = [[if writes and media_type(req.headers["content-type"]) ~= "application/json" then]],
    to = "if false then",
    specs = CLOUD, filter = "admin API safeguards",
    why = "a form or text/plain body, what a web page may send without asking first, is acted on" },
  { name = "cloud-firmware-path-escape", file = STORE,
    from = "  if not S.safe_name(name) or name == C.MANIFEST or name == C.ROLLOUT then\n"
      .. "    return fmt(\"bad firmware file name %q (a name inside",
    to = "  if name == C.MANIFEST or name == C.ROLLOUT then\n    return fmt(\"bad firmware file name %q (a name inside",
    specs = CLOUD, filter = "admin API safeguards",
    why = "the admin API registers ../../home/you/secret, and /firmwares/ then serves it to anyone" },
  { name = "cloud-firmware-link-followed", file = STORE,
    from = [[if st.type ~= "file" then]],
    to = [[if st.type ~= "file" and st.type ~= "link" then]],
    specs = CLOUD, filter = "admin API safeguards",
    why = "a link in the firmware directory makes the cloud read and serve any file of its host" },
  { name = "cloud-upload-any-name", file = STORE,
    from = "  if not S.safe_name(name) or name == C.MANIFEST or name == C.ROLLOUT then\n"
      .. "    return nil, fmt(\"bad firmware file name %q (no /, not hidden)\"",
    to = "  if name == C.MANIFEST or name == C.ROLLOUT then\n"
      .. "    return nil, fmt(\"bad firmware file name %q (no /, not hidden)\"",
    specs = CLOUD, filter = "admin API safeguards",
    why = "an upload named ../x writes a file outside the firmware directory" },
  { name = "cloud-reply-shows-key", file = ADMIN,
    from = "  shown = self:without_keys(shown)\n",
    to = "",
    specs = CLOUD, filter = "admin API safeguards",
    why = "every FOTA push and command reply hands out the device's key" },
  { name = "cloud-token-file-readable", file = TOKEN,
    from = [[sys.write_file(path, token .. "\n", tonumber("600", 8))]],
    to = [[sys.write_file(path, token .. "\n")]],
    specs = CLOUD, filter = "admin API safeguards",
    why = "every user of the machine can read the admin token" },
  { name = "cloud-newline-by-default", file = "dev/scripts/tools/cloud.lua",
    from = "newline = o.newline == true,",
    to = "newline = not o.no_newline,",
    specs = CLOUD, filter = "no terminator",
    why = "commands end with \\n, which mcsjs keeps in the value: clients pass against the local cloud that failed"
      .. " against MCS" },
  { name = "cloud-commands-unspaced", file = TCP,
    from = "if wait > 0 then sched.sleep(wait) end",
    to = "",
    specs = CLOUD, filter = "back to back",
    why = "two queued commands arrive in one read: a client that takes one read for one command loses the second" },
  { name = "cloud-binds-at-quiet-gap", file = TCP,
    from = "if id and not conn.device and self:identify(conn, id, key) == false then return end",
    to = "",
    specs = CLOUD, filter = "first heartbeat",
    why = "a command pushed right after a device connects is refused: 409 not connected for 0.2 s" },
}
