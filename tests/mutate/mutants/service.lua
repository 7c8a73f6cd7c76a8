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
    from = "(dir == l or dir:sub(1, #l + 1) == l .. \"/\")",
    to = "dir:sub(1, #l) == l",
    specs = DOCTOR,
    why = "a state_dir beside a kept path (/etc/fotahost/statefoo for /etc/fotahost/state) is "
      .. "called kept across sysupgrade" },
}
