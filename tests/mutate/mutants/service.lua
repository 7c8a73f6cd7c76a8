-- Mutants of the OpenWrt service (issue 14, items 3 and 6): the init
-- script's respawn, its enabled gate and its reload trigger
-- (dist/openwrt/fotahost/files/fotahost.init, run through the stand-ins of
-- tests/openwrt/ by spec/initscript_spec.lua), and `fotahost doctor`'s
-- checks that the service starts at boot, is enabled and runs.
local INIT = { "spec/initscript_spec.lua" }
local DOCTOR = { "spec/doctor_spec.lua" }
local INIT_FILE = "dist/openwrt/fotahost/files/fotahost.init"

return {
  { name = "service-no-respawn", file = INIT_FILE,
    from = "\tprocd_set_param respawn 300 10 5\n",
    to = "",
    specs = INIT,
    why = "an app that crashes stays down until someone logs in to the board" },
  { name = "service-respawn-forever", file = INIT_FILE,
    from = "procd_set_param respawn 300 10 5",
    to = "procd_set_param respawn 300 10 0",
    specs = INIT,
    why = "an app that exits at once (a bad config) is restarted every 10 s forever, filling the log" },
  { name = "service-enabled-gate-ignored", file = INIT_FILE,
    from = "if [ \"$enabled\" != 1 ]; then",
    to = "if [ \"$enabled\" = 2 ]; then",
    specs = INIT,
    why = "the package starts the app at install, before the user set a device id and key: it "
      .. "crash-loops until procd gives up" },
  { name = "service-no-reload-trigger", file = INIT_FILE,
    from = "\tprocd_add_reload_trigger fotahost\n",
    to = "\t:\n",
    specs = INIT,
    why = "reload_config (LuCI's apply) after a uci commit leaves the app on the old settings" },
  { name = "doctor-boot-link-unchecked", file = "scripts/tools/doctor.lua",
    from = "if not (start and sys.lstat(SYSROOT .. link)) then",
    to = "if not start then",
    specs = DOCTOR,
    why = "doctor says OK for a service that is not started at boot: after the next power cut "
      .. "no update arrives" },
  { name = "doctor-enabled-option-any", file = "scripts/tools/doctor.lua",
    from = "if TRUTH[v or \"0\"] then",
    to = "if v then",
    specs = DOCTOR,
    why = "doctor says OK for fotahost.main.enabled '0', the shipped value that starts nothing" },
  { name = "doctor-running-unchecked", file = "scripts/tools/doctor.lua",
    from = "if inst.running == true then",
    to = "if inst.running ~= nil then",
    specs = DOCTOR,
    why = "an app procd gave up on after a crash loop is reported running" },
  { name = "doctor-keep-unchecked", file = "scripts/tools/doctor.lua",
    from = "if d:match(pattern) then return list end",
    to = "if d:match(pattern:sub(1, -2)) then return list end",
    specs = DOCTOR,
    why = "a state_dir beside a kept path (/etc/fotahost/statefoo for /etc/fotahost/state) is "
      .. "called kept across sysupgrade" },
  { name = "doctor-respawn-fail-after-crash-loop", file = "scripts/tools/doctor.lua",
    from = "  if inst.running ~= true then return skip(\"respawn\", \"procd gave up: see running\") end\n",
    to = "",
    specs = DOCTOR, filter = "procd gave up",
    why = "after a crash loop doctor says to reinstall the package, which fixes nothing" },
  { name = "doctor-sysupgrade-glob-ignored", file = "scripts/tools/doctor.lua",
    from = "local pattern, d = glob_pattern(l), dir",
    to = "local pattern, d = \"^\" .. l:gsub(\"%p\", \"%%%0\") .. \"$\", dir",
    specs = DOCTOR, filter = "glob",
    why = "a state dir kept by /etc/fotahost/* in sysupgrade.conf is said to be lost, with a needless fix" },
  { name = "doctor-fix-names-lua-for-uci", file = "scripts/tools/doctor.lua",
    from = "  return set_in and set_in[key] or (from == cfgmod.UCI_PATH and from) or path\n", to = "  return path\n",
    specs = DOCTOR, filter = "UCI file alone",
    why = "a key set with uci is to be fixed in /etc/fotahost/config.lua, where UCI overrides it" },
}
