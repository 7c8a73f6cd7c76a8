-- Mutants of editing on the board (issue 20, items 5 and 2): SIGHUP
-- reloads the app (plugins/sys.c, host/main.c, scripts/tools/app.lua)
-- only when the edits pass the check and never mid-update; an error raised
-- inside an update is finished at once (scripts/fotahost/fota.lua).
local RELOAD = "spec/reload_spec.lua"
local APP = "scripts/tools/app.lua"

return {
  { name = "sys-hangup-default-kept", file = "plugins/sys.c",
    from = "        if (sigaction(SIGHUP, &sa, NULL) != 0) {",
    to = "        if (0) {",
    specs = { "spec/sys_spec.lua" }, filter = "SIGHUP",
    why = "kill -HUP (an /etc/init.d/fotahost reload) ends the app instead of reloading it" },
  { name = "host-reexec-before-close", file = "host/main.c",
    from = "    report(L, status);\n    lua_close(L);\n",
    to = "    report(L, status);\n    if (fh_reexec_requested())\n        reexec(exe, argv);\n    lua_close(L);\n",
    specs = { "spec/modules_spec.lua" }, filter = "reexec",
    why = "a reload execs with the old process's files still open: each reload leaks them" },
  { name = "host-reexec-hup-deadly", file = "host/main.c",
    from = "    signal(SIGHUP, SIG_IGN);\n",
    to = "",
    specs = { "spec/modules_spec.lua" }, filter = "reexec",
    why = "a second reload asked for while the app starts again kills it" },
  { name = "app-reload-unchecked", file = APP,
    from = "    elseif nerrors == 0 then",
    to = "    elseif true then",
    specs = { RELOAD }, filter = "broken edit",
    why = "a reload takes a broken edit: the app stops with a load error, off the air" },
  { name = "app-reload-mid-update", file = APP,
    from = "return not (policy.busy or policy.pending) and cloud:idle()",
    to = "return true",
    specs = { RELOAD }, filter = "update under way",
    why = "a reload cuts an update short: the chip is left for the next start's recovery" },
  { name = "app-hangup-not-drained", file = APP,
    from = "    repeat until not sys.read(hangups, 64)\n",
    to = "",
    specs = { RELOAD }, filter = "broken edit",
    why = "one refused reload checks the scripts again and again, filling the log" },
  { name = "fota-raise-no-recovery", file = "scripts/fotahost/fota.lua",
    from = "  if exists(self.paths.journal) then\n    local rok, done = pcall(self.recover, self)",
    to = "  if false then\n    local rok, done = pcall(self.recover, self)",
    specs = { "spec/fota_policy_spec.lua" }, filter = "error",
    why = "an error mid-flash leaves half an image on the MCU until the next start" },
  { name = "fota-raise-no-version-report", file = "scripts/fotahost/fota.lua",
    from = "  local inst = self:installed()\n  if self.cloud and inst then",
    to = "  local inst = nil\n  if self.cloud and inst then",
    specs = { "spec/fota_policy_spec.lua" }, filter = "error",
    why = "after an error mid-update the recovery flashed a version the cloud never hears" },
}
