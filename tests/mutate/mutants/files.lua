-- Mutants of the file safeguards (issue 11, items 6, 8 and 9): files the
-- app creates in state_dir never written through a planted link
-- (plugins/sys.c's write_file, plugins/http.core.c's .part), state_dir
-- private (scripts/fotahost/fota.lua), and `fotahost flash` never replacing a
-- device, FIFO or link it reads into, nor reading a device, FIFO or huge
-- file as input (scripts/tools/flash.lua over sys.read_file and
-- sys.write_device); and the two wings: `make install` ships no
-- development plugin, build/fotahost links no simulator code.
local SYS = { "spec/sys_spec.lua" }
local HTTP = { "spec/http_spec.lua" }
local FLASH = { "spec/flash_spec.lua" }
local POLICY = { "spec/fota_policy_spec.lua" }

local INSTALL = { "spec/install_spec.lua" }

return {
  ---------------------------------------------------------------- staged installs
  { name = "paths-stage-ignored", file = "host/paths.c",
    from = "if (len > 0 && (size_t)len < sizeof buf && is_dir(buf)) {",
    to = "if (0) {",
    specs = INSTALL,
    why = "a tree installed with DESTDIR (the board's root/, a package being built) runs the "
      .. "scripts and plugins of whatever is installed in /usr, or none" },
  { name = "paths-stage-unchecked", file = "host/paths.c",
    from = "if (len > 0 && (size_t)len < sizeof buf && is_dir(buf)) {",
    to = "if (len > 0 && (size_t)len < sizeof buf) {",
    specs = INSTALL,
    why = "a binary copied under any .../usr/bin looks for its scripts beside it, finds none, "
      .. "and no longer runs the installed ones" },
  ---------------------------------------------------------------- the board build's sources
  { name = "vendor-sha-unchecked", file = "vendor/build-deps",
    from = 'if [ "$got" != "$sha" ]; then',
    to = "if false; then",
    specs = { "spec/vendor_spec.lua" },
    why = "a tarball swapped on the mirror or in transit is built into the board's binary" },
  ---------------------------------------------------------------- two wings
  { name = "install-ships-dev-plugins", file = "Makefile",
    from = [[install: product
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)/scripts \
	    $(DESTDIR)$(LIBDIR)/plugins/fotahost $(DESTDIR)$(DOCDIR) $(DESTDIR)$(INCLUDEDIR)
	install -m 755 $(BUILD)/fotahost $(DESTDIR)$(BINDIR)/fotahost
	$(call install_lua,scripts)
	$(call install_so,$(PLUGIN_SO))]],
    to = [[install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)/scripts \
	    $(DESTDIR)$(LIBDIR)/plugins/fotahost $(DESTDIR)$(DOCDIR) $(DESTDIR)$(INCLUDEDIR)
	install -m 755 $(BUILD)/fotahost $(DESTDIR)$(BINDIR)/fotahost
	$(call install_lua,scripts)
	$(call install_so,$(PLUGIN_SO) $(DEV_SO))]],
    specs = INSTALL, filter = "installs no development",
    why = "make install puts the simulated chip, its GPIO backend and the virtual board on the board" },
  -- killed once dev/scripts holds the development wing's Lua (the merge of issue 12)
  { name = "install-ships-dev-lua", file = "Makefile",
    from = "$(call install_lua,scripts)",
    to = "$(call install_lua,scripts)\n\t$(call install_lua,dev/scripts)",
    specs = INSTALL, filter = "installs no development",
    why = "make install puts the local cloud, the demo and the other development tools on the board" },
  { name = "binary-links-simulator", file = "Makefile",
    from = "$(sort $(wildcard plugins/*/*.c)))",
    to = "$(sort $(wildcard plugins/*/*.c dev/plugins/*/*.c)))",
    specs = INSTALL, filter = "links no simulator",
    why = "the board binary carries the simulated chip (about 1,000 lines of development code)" },
  { name = "firmware-built-in-source-tree", file = "examples/firmware/Makefile",
    from = "O       ?= $(HERE)../../build/examples/firmware", to = "O       ?= .",
    specs = { "spec/install_spec.lua" }, filter = "example firmware",
    why = "make -C examples/firmware leaves .hex files in the source tree (untracked files in git status)" },
  ---------------------------------------------------------------- state files
  { name = "sys-write-file-tmp-follows-link", file = "plugins/sys.c",
    from = [[    if (unlink(tmp) < 0 && errno != ENOENT)
        return fh_result_errno(L, errno, path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);]],
    to = [[    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);]],
    specs = SYS,
    why = "a link planted at a state file's temporary name makes the write overwrite the file it points to" },
  { name = "sys-write-file-stale-tmp-kept", file = "plugins/sys.c",
    from = [[    if (unlink(tmp) < 0 && errno != ENOENT)
        return fh_result_errno(L, errno, path);
    int fd]],
    to = [[    int fd]],
    specs = SYS,
    why = "a temporary left by a crash (or a planted link) makes every later write of that state file fail" },
  { name = "sys-mkdir-no-parents", file = "plugins/sys.c",
    from = [[if (*p != '/' && *p != '\0')]],
    to = [[if (*p != '\0')]],
    specs = SYS,
    why = "a state_dir whose parent is missing is never made" },

  ---------------------------------------------------------------- the download's .part
  { name = "curl-part-follows-link", file = "plugins/http.core.c",
    from = [[        if (unlink(file) < 0 && errno != ENOENT)
            return fh_result_errno(L, errno, file);
        t->fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);]],
    to = [[        t->fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);]],
    specs = HTTP, filter = "symbolic",
    why = "a link planted at dest.part turns the download into a write to the file it points to" },
  { name = "curl-part-stale-kept", file = "plugins/http.core.c",
    from = [[        if (unlink(file) < 0 && errno != ENOENT)
            return fh_result_errno(L, errno, file);
]],
    to = "",
    specs = HTTP, filter = "symbolic",
    why = "a .part left by a crash (or a planted link) makes every later download of that file fail" },
  { name = "curl-resume-follows-link", file = "plugins/http.core.c",
    from = "O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK",
    to = "O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK",
    specs = HTTP, filter = "symbolic",
    why = "a .part swapped for a link between a cut and the resume: the outside file is truncated and written" },

  ---------------------------------------------------------------- state_dir
  { name = "fota-state-dir-link-accepted", file = "scripts/fotahost/fota.lua",
    from = [[if st.type == "link" then]],
    to = [[if false then]],
    specs = POLICY, filter = "state_dir",
    why = "state_dir as a link someone planted: journal and images go wherever it points" },
  { name = "fota-state-dir-owner-unchecked", file = "scripts/fotahost/fota.lua",
    from = [[if st.uid ~= sys.geteuid() then]],
    to = [[if false then]],
    specs = POLICY, filter = "state_dir",
    why = "another user's state_dir is used: its owner can swap the image that is flashed next" },
  { name = "fota-state-dir-mode-open", file = "scripts/fotahost/fota.lua",
    from = [[sys.mkdir(dir, tonumber("700", 8))]],
    to = [[sys.mkdir(dir, tonumber("755", 8))]],
    specs = POLICY, filter = "state_dir",
    why = "state_dir is made readable by every user (the device's images and journal)" },

  ---------------------------------------------------------------- fotahost flash: outputs
  { name = "flash-output-renamed-over-anything", file = "scripts/tools/flash.lua",
    from = [[if not st or st.type == "file" then return "replace" end]],
    to = [[if true then return "replace" end]],
    specs = FLASH,
    why = "-U flash:r:/dev/null as root turns /dev/null into a regular file; a link is replaced" },
  { name = "flash-output-checked-late", file = "scripts/tools/flash.lua",
    from = [[if u.op == "r" and u.file ~= "-" and output_kind(u) == "replace" then]],
    to = [[if u.op == "r" and u.file ~= "-" then]],
    specs = FLASH,
    why = "an output that will be refused (a link) is found out only after the MCU was touched" },
  { name = "sys-write-device-any-type", file = "plugins/sys.c",
    from = [[if (!S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode)) {]],
    to = [[if (0) {]],
    specs = SYS,
    why = "a regular file is overwritten in place, unsynced and not atomically" },

  ---------------------------------------------------------------- fotahost flash: inputs
  { name = "sys-read-file-any-type", file = "plugins/sys.c",
    from = [[    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fh_result_msg(L, "%s: %s, not a regular file: refused", path,]],
    to = [[    if (0) {
        close(fd);
        return fh_result_msg(L, "%s: %s, not a regular file: refused", path,]],
    specs = { "spec/sys_spec.lua", "spec/flash_spec.lua" },
    why = "a FIFO with no writer reads as an empty file; /dev/zero is read up to the limit" },
  { name = "sys-read-file-size-unchecked", file = "plugins/sys.c",
    from = [[if ((lua_Integer)st.st_size > max) {]],
    to = [[if (0) {]],
    specs = SYS,
    why = "a huge file is read (up to the limit) before it is refused" },
  { name = "sys-read-file-growth-unchecked", file = "plugins/sys.c",
    from = [[    if (total > max)
        return fh_result_msg]],
    to = [[    if (0)
        return fh_result_msg]],
    specs = SYS,
    why = "a file that grows while read (or lies about its size) is taken cut at the limit, as if whole" },
  { name = "flash-input-limit-loose", file = "scripts/tools/flash.lua",
    from = "return size * 16 + 65536",
    to = "return size * 1024 + 65536",
    specs = FLASH,
    why = "an input 64 times what the part holds as HEX is read into memory" },
}
