-- Mutants of the OpenWrt packages' safeguards (issue 14, items 1, 2 and 5):
-- the UCI config private, conffiles declared, the development wing kept
-- out of fotahost, and the .ipk reproducible (one mtime, sorted names,
-- owner 0:0). spec/package_spec.lua kills them natively, on its stand-in
-- of the board build (the scratch tree has no board build).
local PACKAGE = { "spec/package_spec.lua" }

return {
  { name = "package-config-readable", file = "dist/board-package",
    from = [[install -m 0600 "$feed/files/fotahost.config"]],
    to = [[install -m 0644 "$feed/files/fotahost.config"]],
    specs = PACKAGE,
    why = "/etc/config/fotahost, which holds the device key, is readable by every user on the board" },
  { name = "package-conffiles-missing", file = "dist/board-package",
    from = [[[ -z "$conffiles" ] || echo "$conffiles" > "$c/conffiles"]],
    to = [[true]],
    specs = PACKAGE,
    why = "opkg upgrade overwrites the user's /etc/config/fotahost (device id and key) with the default" },
  { name = "package-ships-dev-scripts", file = "dist/board-package",
    from = [[    copy_tree "$root/usr/share/fotahost/scripts" "$p/usr/share/fotahost/scripts" 0644
]],
    to = [[    copy_tree "$root/usr/share/fotahost/scripts" "$p/usr/share/fotahost/scripts" 0644
    copy_tree "$dev_root/usr/share/fotahost/scripts" "$p/usr/share/fotahost/scripts" 0644
]],
    specs = PACKAGE,
    why = "the production package carries the local cloud, the demo and the virtual board" },
  { name = "package-mtime-unfixed", file = "dist/ipkg-build",
    from = [[--mtime="@$epoch" "$@"]],
    to = [["$@"]],
    specs = PACKAGE,
    why = "every build of the same source gives other bytes: the package cannot be checked against its source" },
  { name = "package-names-unsorted", file = "dist/ipkg-build",
    from = [[--numeric-owner --owner=0 --group=0 --sort=name \]],
    to = [[--numeric-owner --owner=0 --group=0 \]],
    specs = PACKAGE,
    why = "the members follow the build machine's directory order: another machine, other bytes" },
  { name = "package-owner-kept", file = "dist/ipkg-build",
    from = [[--numeric-owner --owner=0 --group=0 --sort=name \]],
    to = [[--numeric-owner --sort=name \]],
    specs = PACKAGE,
    why = "the files install on the board owned by the builder's uid, not root" },
}
