# fotahost: a Lua 5.4 host for firmware-over-the-air updates of an AVR MCU.
#
# Everything comes from Debian's packages through pkg-config. Override any
# of CC, CFLAGS, LDFLAGS, PREFIX, DESTDIR, PKG_CONFIG on the command line,
# and LUA_CFLAGS, LUA_LIBS, CJSON_LIBS, GPIOD_CFLAGS, GPIOD_LIBS,
# DIGEST_CFLAGS, DIGEST_LIBS, SODIUM_CFLAGS, SODIUM_LIBS where a library
# has no pkg-config file (see
# "A missing package" below). DIGEST_LIB picks fotahost.digest's library.
#
#   make                 build ./fotahost (a link to build/fotahost), the product's
#                        plugins and the development wing's (dev/plugins)
#   make product         the product only: build/fotahost and its plugins
#   make test            C unit tests + busted specs run by ./fotahost
#   make browser-deps    the browser tests' npm package (playwright-core, pinned by
#                        tests/browser/package-lock.json) into build/browser
#   make check-asan      the same suite against an ASan+UBSan build
#   make torture         FOTA under random power cuts, TRIALS (default 32) trials
#                        (SEED=n replays a run; make test runs 4)
#   make bench           start-up time, peak RSS and binary size against lua5.4
#   make demo            the README's main job
#   make mutate          the mutation check: break each safeguard, watch a spec fail
#                        (ONLY=name[,name] runs those mutants; see tests/mutate/run.lua)
#   make install         the product: binary, scripts, plugins and docs under
#                        $(DESTDIR)$(PREFIX)
#   make install-dev     the development wing (dev/scripts, dev/plugins) into the
#                        same scripts and plugins directories
#   make example-plugin  build examples/plugin (the model for custom plugins)
#   make digest-mbedtls  fotahost.digest on mbedTLS as well, under
#                        $(BUILD)/digest-mbedtls/plugins (its spec runs it)
#   make board           fotahost for the board (MIPS32r2 soft-float, musl) from
#                        the recipes in vendor/, laid out in build/board/ARCH/root
#                        (BOARD_ARCH=x86_64: the same stack for this machine)
#   make board-package   the board's OpenWrt packages from make board:
#                        build/board/fotahost{,-dev}_VERSION-RELEASE_ARCH.ipk
#   make board-test      the suite against the board build under qemu-mipsel
#   make dist            the release tarball build/fotahost-VERSION.tar.gz (git archive
#                        of HEAD), the source the OpenWrt feed package builds from

VERSION    := 0.1.0

# A board build (make board) runs this Makefile again with BOARD_CONFIG: the
# cross compiler and the recipes' libraries, written by vendor/build-deps.
ifdef BOARD_CONFIG
include $(BOARD_CONFIG)
endif

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
DATADIR    ?= $(PREFIX)/share/fotahost
LIBDIR     ?= $(PREFIX)/lib/fotahost
DOCDIR     ?= $(PREFIX)/share/doc/fotahost
INCLUDEDIR ?= $(PREFIX)/include/fotahost
SYSCONFDIR ?= /etc/fotahost

CC         ?= cc
PKG_CONFIG ?= pkg-config
BUILD      ?= build

# Lua is linked statically by default, as Debian's own lua5.4 does: start-up
# is faster and the API is exported from the binary with -Wl,-E, so plugins
# and Debian's Lua C modules (which link no liblua) resolve against it.
# LUA_LINK=shared links liblua5.4.so instead.
LUA_LINK   ?= static
LUA_PC     ?= lua5.4
CJSON_PC   ?= lua5.4-cjson
# fotahost.digest's MD5, SHA-1 and SHA-256: libcrypto (OpenSSL, Debian's
# libcurl brings it) or mbedtls (OpenWrt's libcurl is built on mbedTLS and
# brings no libcrypto). mbedTLS 2.28 has no .pc file: -lmbedcrypto.
DIGEST_LIB ?= libcrypto

# A missing package stops the build at once, naming the Debian package.
# A library given by hand (its *_CFLAGS and *_LIBS on the command line or in
# the environment, for a system whose Lua has no .pc file, as OpenWrt's)
# is not looked up:
#   make LUA_CFLAGS=-I/usr/include/lua5.4 LUA_LIBS='-llua5.4 -lm -ldl' \
#        CJSON_LIBS=/path/to/libcjson.a
# LUA_CFLAGS holds lua-cjson's flags too (it needs none of its own: its entry
# points are declared in host/preload.c); GPIOD_CFLAGS/GPIOD_LIBS likewise.
given = $(filter-out undefined default,$(origin $(1)))
ifeq ($(filter clean,$(MAKECMDGOALS)),)
ifeq ($(and $(call given,LUA_CFLAGS),$(call given,LUA_LIBS)),)
ifneq ($(shell $(PKG_CONFIG) --exists $(LUA_PC) && echo yes),yes)
$(error pkg-config cannot find $(LUA_PC): apt-get install liblua5.4-dev (or run .ci/install-deps), or give LUA_CFLAGS and LUA_LIBS)
endif
endif
ifeq ($(call given,CJSON_LIBS),)
ifneq ($(shell $(PKG_CONFIG) --exists $(CJSON_PC) && echo yes),yes)
$(error pkg-config cannot find $(CJSON_PC): apt-get install lua-cjson-dev (or run .ci/install-deps), or give CJSON_LIBS)
endif
endif
ifeq ($(and $(call given,GPIOD_CFLAGS),$(call given,GPIOD_LIBS)),)
ifneq ($(shell $(PKG_CONFIG) --exists libgpiod && echo yes),yes)
$(error pkg-config cannot find libgpiod: apt-get install libgpiod-dev (or run .ci/install-deps), or give GPIOD_CFLAGS and GPIOD_LIBS)
endif
endif
ifeq ($(and $(call given,SODIUM_CFLAGS),$(call given,SODIUM_LIBS)),)
ifneq ($(shell $(PKG_CONFIG) --exists libsodium && echo yes),yes)
$(error pkg-config cannot find libsodium: apt-get install libsodium-dev (or run .ci/install-deps), or give SODIUM_CFLAGS and SODIUM_LIBS)
endif
endif
ifeq ($(DIGEST_LIB),mbedtls)
# No .pc file to ask: the compiler, with the flags given if any, must find the header.
ifneq ($(shell printf '\043include <mbedtls/md.h>\n' | $(CC) $(DIGEST_CFLAGS) -E -x c - >/dev/null 2>&1 && echo yes),yes)
$(error $(CC) $(DIGEST_CFLAGS) cannot find mbedtls/md.h: apt-get install libmbedtls-dev (or run .ci/install-deps), or give DIGEST_CFLAGS and DIGEST_LIBS)
endif
else ifeq ($(DIGEST_LIB),libcrypto)
ifeq ($(and $(call given,DIGEST_CFLAGS),$(call given,DIGEST_LIBS)),)
ifneq ($(shell $(PKG_CONFIG) --exists libcrypto && echo yes),yes)
$(error pkg-config cannot find libcrypto: apt-get install libssl-dev (or run .ci/install-deps), or give DIGEST_CFLAGS and DIGEST_LIBS)
endif
endif
else
$(error DIGEST_LIB=$(DIGEST_LIB): libcrypto or mbedtls)
endif
endif

LUA_CFLAGS   ?= $(shell $(PKG_CONFIG) --cflags $(LUA_PC) $(CJSON_PC))
LUA_LDIRS    := $(shell $(PKG_CONFIG) --libs-only-L $(LUA_PC) 2>/dev/null)
ifeq ($(LUA_LINK),static)
LUA_LIBS     ?= $(LUA_LDIRS) -Wl,-Bstatic -l$(LUA_PC) -Wl,-Bdynamic -lm -ldl
else
LUA_LIBS     ?= $(shell $(PKG_CONFIG) --libs $(LUA_PC)) -lm -ldl
endif
# lua-cjson ships a static archive; linking it in keeps `require "cjson"`
# free of any search path and of a second copy of the Lua API.
CJSON_LIBS   ?= -Wl,-Bstatic -l$(CJSON_PC) -Wl,-Bdynamic
GPIOD_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libgpiod)
GPIOD_LIBS   ?= $(shell $(PKG_CONFIG) --libs libgpiod)
# fotahost.minisign's Ed25519 and BLAKE2b-512 (libsodium, Debian's and OpenWrt's).
SODIUM_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libsodium)
SODIUM_LIBS   ?= $(shell $(PKG_CONFIG) --libs libsodium)
ifeq ($(DIGEST_LIB),mbedtls)
DIGEST_CFLAGS ?=
DIGEST_LIBS   ?= -lmbedcrypto
DIGEST_DEFS   := -DFH_DIGEST_MBEDTLS
else
DIGEST_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libcrypto)
DIGEST_LIBS   ?= $(shell $(PKG_CONFIG) --libs libcrypto)
DIGEST_DEFS   :=
endif

WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS   ?= -O2 -g
# 64-bit file offsets and time_t on 32-bit glibc too (musl has both
# already; on 64-bit systems they change nothing): readdir, stat and lseek
# on big files, clocks past 2038. Threads: the name resolver's.
PORT_CFLAGS := -D_FILE_OFFSET_BITS=64 -D_TIME_BITS=64 -pthread
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(PORT_CFLAGS) $(WARN) $(CFLAGS) $(LUA_CFLAGS) $(GPIOD_CFLAGS) -Ihost -Iplugins -I$(BUILD) \
             -DFOTAHOST_VERSION='"$(VERSION)"' \
             -DFOTAHOST_DATADIR='"$(DATADIR)"' -DFOTAHOST_LIBDIR='"$(LIBDIR)"' \
             -DFOTAHOST_BINDIR='"$(BINDIR)"' \
             -DFOTAHOST_SYSCONFDIR='"$(SYSCONFDIR)"'
ALL_LDFLAGS = -Wl,-E $(LDFLAGS)

# The product: the host proper, and the board's native modules. Every
# plugins/NAME.c is the module fotahost.NAME, built in unless it is listed in
# PLUGIN_SRC; NAME may hold dots: plugins/tcp.core.c is fotahost.tcp.core
# (luaopen_fotahost_tcp_core), the C core under the Lua face fotahost.tcp
# (see DEVELOPERS.md). plugins/NAME/*.c are support files (plugins/avr/,
# the part table's C side, serves the ISP here and the simulated chip in
# the development wing). The preload table is generated from the list
# (build/builtins.h, see host/preload.c).
HOST_SRC    := $(wildcard host/*.c)
MODULE_SRC  := $(sort $(wildcard plugins/*.c))
# A plugin's own C core (plugins/minisign/, the parser the fuzzer drives
# too) is compiled into its .so (PLUGIN_SUPPORT below), not the host.
MINISIGN_CORE := plugins/minisign/minisign.c
SUPPORT_SRC := $(filter-out $(MINISIGN_CORE),$(sort $(wildcard plugins/*/*.c)))
# Native modules built as loadable .so plugins instead: those with a heavy
# dependency, so start-up does not pay for it. Digests come from the crypto
# library beside libcurl's TLS (DIGEST_LIB: libcrypto, or mbedTLS on
# OpenWrt). A plugin, so start-up does not map it.
PLUGIN_SRC  := plugins/digest.c
# HTTP(S) on libcurl: a plugin too, loaded by the first require of
# fotahost.http, so a script that never downloads never maps libcurl.
PLUGIN_SRC  += plugins/http.core.c
# minisign signatures on libsodium: only the FOTA that checks a signature loads it.
PLUGIN_SRC  += plugins/minisign.c
# MQTT on libmosquitto: loaded by the first require of fotahost.mqtt. Not
# for the board yet: vendor/ has no libmosquitto recipe, so a board build
# (BOARD_CONFIG) leaves the plugin out (fotahost.mqtt's require fails there
# with "module 'fotahost.mqtt.core' not found").
MQTT_SRC    := plugins/mqtt.core.c
ifdef BOARD_CONFIG
MODULE_SRC  := $(filter-out $(MQTT_SRC),$(MODULE_SRC))
else
PLUGIN_SRC  += $(MQTT_SRC)
endif
BUILTIN_SRC := $(filter-out $(PLUGIN_SRC),$(MODULE_SRC))
HEADERS     := $(wildcard host/*.h plugins/*/*.h dev/plugins/*/*.h)

HOST_OBJ    := $(HOST_SRC:%.c=$(BUILD)/%.o) $(BUILTIN_SRC:%.c=$(BUILD)/%.o) \
               $(SUPPORT_SRC:%.c=$(BUILD)/%.o)
# A plugin's .so is where require looks for it: dots become directories
# (plugins/http.core.c is $(BUILD)/plugins/fotahost/http/core.so).
plugin_so    = $(foreach f,$(2),$(1)/plugins/fotahost/$(subst .,/,$(basename $(notdir $(f)))).so)
PLUGIN_SO   := $(call plugin_so,$(BUILD),$(PLUGIN_SRC))

# The development wing (dev/): the simulated chip (fotahost.avrsim), the
# GPIO backend "sim" wired to it (fotahost.gpio_sim, which registers itself
# with fotahost.gpio) and the virtual board's core (fotahost.vboard.core,
# under dev/scripts/fotahost/vboard.lua). Always .so
# plugins, never linked into build/fotahost, built into the same
# build/plugins/fotahost/ so a checkout finds them; each compiles in the
# support files it needs. The virtual board needs simavr, a development
# and test dependency: built only where installed.
DEV_SRC     := dev/plugins/avrsim.c dev/plugins/gpio_sim.c
ifeq ($(shell $(PKG_CONFIG) --exists simavr && echo yes),yes)
DEV_SRC     += dev/plugins/vboard.core.c
endif
SIMCHIP_SRC := $(sort $(wildcard dev/plugins/avrsim/*.c)) plugins/avr/part.c
DEV_SO      := $(call plugin_so,$(BUILD),$(DEV_SRC))

UNIT_SRC    := $(wildcard tests/unit/test_*.c)
# Unit tests link the host's objects and the development wing's support
# files (the simulated chip), never main.o.
UNIT_OBJ    := $(sort $(filter-out $(BUILD)/host/main.o,$(HOST_OBJ)) \
               $(patsubst %.c,$(BUILD)/%.o,$(wildcard dev/plugins/*/*.c)))
UNIT_BIN    := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
EXTRA_LIBS  := $(GPIOD_LIBS) -pthread

.PHONY: all product test browser-deps unit-tests digest-mbedtls check-asan torture bench demo mutate install install-dev uninstall \
        clean example-plugin fuzz FORCE

# ./fotahost links to the default build only; other builds (build-asan,
# a packager's BUILD=...) never move it.
ifeq ($(BUILD),build)
TOP_LINK := fotahost
endif

all: product $(DEV_SO) $(TOP_LINK)

product: $(BUILD)/fotahost $(PLUGIN_SO)

fotahost: $(BUILD)/fotahost
	ln -sf $(BUILD)/fotahost $@

$(BUILD)/fotahost: $(HOST_OBJ)
	$(CC) $(ALL_CFLAGS) -o $@ $(HOST_OBJ) $(CJSON_LIBS) $(LUA_LIBS) $(EXTRA_LIBS) $(ALL_LDFLAGS)

# Rewritten only when the list of modules changes (a new plugins/NAME.c).
$(BUILD)/builtins.h: FORCE
	@mkdir -p $(BUILD)
	@for f in $(BUILTIN_SRC); do n=$$(basename $$f .c); \
	    echo "FH_BUILTIN(\"fotahost.$$n\", luaopen_fotahost_$$(echo $$n | tr . _))"; done > $@.tmp
	@cmp -s $@.tmp $@ || mv $@.tmp $@; rm -f $@.tmp

$(BUILD)/host/preload.o: $(BUILD)/builtins.h

# The compiler flags (PREFIX included) in a file that changes only when they
# do, so `make PREFIX=/usr` after a plain `make` rebuilds what it must.
# A board build adds its libraries' id (BOARD_DEPS_ID): a rebuilt Lua or
# musl under the same flags rebuilds the objects too.
$(BUILD)/config.flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $(BOARD_DEPS_ID)' | cmp -s - $@ || \
	    echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $(BOARD_DEPS_ID)' > $@

# The digest library's flags likewise, for digest.so alone: a make
# DIGEST_LIB=mbedtls after a plain make rebuilds it.
$(BUILD)/digest.flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(DIGEST_DEFS) $(DIGEST_CFLAGS) $(DIGEST_LIBS)' | cmp -s - $@ || \
	    echo '$(DIGEST_DEFS) $(DIGEST_CFLAGS) $(DIGEST_LIBS)' > $@

FORCE:

$(BUILD)/%.o: %.c $(HEADERS) $(BUILD)/config.flags
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The source of a plugin's .so: its stem with the directories turned back
# into dots (http/core.so is built from plugins/http.core.c).
.SECONDEXPANSION:
$(BUILD)/plugins/fotahost/%.so: plugins/$$(subst /,.,$$*).c $(HEADERS) $(BUILD)/config.flags
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PLUGIN_CFLAGS) -fPIC -shared -o $@ $< $(PLUGIN_SUPPORT) $(LDFLAGS) $(PLUGIN_LIBS)

$(BUILD)/plugins/fotahost/digest.so: $(BUILD)/digest.flags
$(BUILD)/plugins/fotahost/digest.so: PLUGIN_CFLAGS = $(DIGEST_DEFS) $(DIGEST_CFLAGS)
$(BUILD)/plugins/fotahost/digest.so: PLUGIN_LIBS = $(DIGEST_LIBS)
$(BUILD)/plugins/fotahost/http/core.so: PLUGIN_CFLAGS = $(shell $(PKG_CONFIG) --cflags libcurl)
$(BUILD)/plugins/fotahost/http/core.so: PLUGIN_LIBS = $(shell $(PKG_CONFIG) --libs libcurl)
$(BUILD)/plugins/fotahost/mqtt/core.so: PLUGIN_CFLAGS = $(shell $(PKG_CONFIG) --cflags libmosquitto)
$(BUILD)/plugins/fotahost/mqtt/core.so: PLUGIN_LIBS = $(shell $(PKG_CONFIG) --libs libmosquitto)
$(BUILD)/plugins/fotahost/minisign.so: $(MINISIGN_CORE)
$(BUILD)/plugins/fotahost/minisign.so: PLUGIN_SUPPORT = $(MINISIGN_CORE)
$(BUILD)/plugins/fotahost/minisign.so: PLUGIN_CFLAGS = $(SODIUM_CFLAGS)
$(BUILD)/plugins/fotahost/minisign.so: PLUGIN_LIBS = $(SODIUM_LIBS)

# A development plugin: dev/plugins/NAME.c and the support files listed in
# its PLUGIN_SUPPORT (also prerequisites), compiled into NAME.so.
$(BUILD)/plugins/fotahost/%.so: dev/plugins/$$(subst /,.,$$*).c $(HEADERS) $(BUILD)/config.flags
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Idev/plugins $(PLUGIN_CFLAGS) -fPIC -shared -o $@ $< $(PLUGIN_SUPPORT) \
	    $(LDFLAGS) $(PLUGIN_LIBS)

$(BUILD)/plugins/fotahost/avrsim.so $(BUILD)/plugins/fotahost/gpio_sim.so: $(SIMCHIP_SRC)
$(BUILD)/plugins/fotahost/avrsim.so $(BUILD)/plugins/fotahost/gpio_sim.so: PLUGIN_SUPPORT = $(SIMCHIP_SRC)
$(BUILD)/plugins/fotahost/vboard/core.so: PLUGIN_CFLAGS = $(shell $(PKG_CONFIG) --cflags simavr)
$(BUILD)/plugins/fotahost/vboard/core.so: PLUGIN_LIBS = $(shell $(PKG_CONFIG) --libs simavr) -lutil

# C unit tests link the objects they test against Lua. (Named here, the
# development wing's objects are not intermediate files make deletes.)
$(UNIT_BIN): $(UNIT_OBJ)
$(BUILD)/tests/%: tests/unit/%.c tests/unit/unit.h $(UNIT_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/unit -Idev/plugins -o $@ $< \
	    $(UNIT_OBJ) $(CJSON_LIBS) $(LUA_LIBS) $(EXTRA_LIBS) $(ALL_LDFLAGS)

# The example plugin builds with its own Makefile, as a deployment would.
example-plugin: $(BUILD)/fotahost
	$(MAKE) -C examples/plugin O=$(abspath $(BUILD))/plugins CC="$(CC)" \
	    CFLAGS="$(CFLAGS)" LDFLAGS="$(LDFLAGS)" PKG_CONFIG="$(PKG_CONFIG)"

unit-tests: $(UNIT_BIN)

# fotahost.digest on the other library, Debian's mbedTLS, in a build
# directory of its own, so the same digest specs can run on both backends
# (spec/digest_backends_spec.lua builds it, and points FOTAHOST_PLUGINS_DIR
# at it). Only this .so: the host is the same.
digest-mbedtls:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/digest-mbedtls DIGEST_LIB=mbedtls \
	    DIGEST_CFLAGS= DIGEST_LIBS=-lmbedcrypto $(BUILD)/digest-mbedtls/plugins/fotahost/digest.so

# Without node or npm the suite still runs: spec/console_browser_spec.lua
# then fails, saying what to install.
test: all example-plugin $(UNIT_BIN)
	@$(MAKE) --no-print-directory browser-deps || \
	    echo "make test: make browser-deps failed; spec/console_browser_spec.lua will fail"
	@BUILD=$(BUILD) sh tests/run

# The browser tests' one package (playwright-core: no dependencies, no
# install scripts, no browser download; it drives Debian's chromium) goes
# into build/browser, never the source tree. npm ci runs again only when
# tests/browser's package files change; npm's cache serves it offline then.
BROWSER_DIR = build/browser
BROWSER_PKG = tests/browser/package.json tests/browser/package-lock.json tests/browser/.npmrc
browser-deps: $(BROWSER_DIR)/node_modules/.installed
$(BROWSER_DIR)/node_modules/.installed: $(BROWSER_PKG)
	@command -v npm >/dev/null || { echo "browser-deps: npm is missing (sh .ci/install-deps installs nodejs and npm)" >&2; exit 1; }
	@mkdir -p $(BROWSER_DIR)
	@cp $(BROWSER_PKG) $(BROWSER_DIR)/
	@cd $(BROWSER_DIR) && npm ci --prefer-offline --loglevel=error >/dev/null
	@touch $@
	@echo "browser-deps: playwright-core $$(node -p 'require("./$(BROWSER_DIR)/node_modules/playwright-core/package.json").version') in $(BROWSER_DIR)"

# The long run of spec/fota_torture_spec.lua (a few minutes).
TRIALS ?= 32
torture: all
	@BUILD=$(BUILD) TORTURE_TRIALS=$(TRIALS) $(if $(SEED),TORTURE_SEED=$(SEED)) \
	    BUSTED_ARGS=spec/fota_torture_spec.lua sh tests/run

# Runs on a scratch copy of the tree (build-mutate/), never this one.
mutate:
	@lua5.4 tests/mutate/run.lua $(if $(ONLY),--only $(ONLY)) $(if $(QUICK),--quick)

# LeakSanitizer's roots leave out thread-local storage (use_tls=0): GCC 12's
# LSan crashed at the exit of `fotahost cloud status` in every run, reading a
# dynamic TLS block at a bogus address ("DTLS 5 at 0xbd", then "Tracer caught
# signal 11"). Leaks are still found and reported.
check-asan:
	$(MAKE) BUILD=build-asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    LDFLAGS="-fsanitize=address,undefined" build-asan/fotahost example-plugin browser-deps \
	    $(UNIT_SRC:tests/unit/%.c=build-asan/tests/%) $(call plugin_so,build-asan,$(PLUGIN_SRC) $(DEV_SRC))
	@BUILD=build-asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    LSAN_OPTIONS=suppressions=$(abspath tests/lsan.supp):use_tls=0:print_suppressions=0 sh tests/run

# The board's stack built for this machine (x86-64 musl) is measured beside
# the Debian build (bench/board.sh).
bench: all
	@$(MAKE) --no-print-directory board BOARD_ARCH=x86_64
	@$(MAKE) --no-print-directory BOARD_ARCH=x86_64 \
	    BOARD_CONFIG=$(abspath build/board/x86_64/config.mk) board-test-root
	@sh bench/run

demo: all
	./fotahost demo

# The product only: nothing of dev/ (see install-dev).
install: product
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)/scripts \
	    $(DESTDIR)$(LIBDIR)/plugins/fotahost $(DESTDIR)$(DOCDIR) $(DESTDIR)$(INCLUDEDIR)
	install -m 755 $(BUILD)/fotahost $(DESTDIR)$(BINDIR)/fotahost
	$(call install_lua,scripts)
	$(call install_so,$(PLUGIN_SO))
	install -m 644 host/fotahost.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 README.md DEVELOPERS.md $(DESTDIR)$(DOCDIR)/
	cd docs && find . -type d -exec install -d $(DESTDIR)$(DOCDIR)/{} \;
	cd docs && find . -type f -exec install -m 644 {} $(DESTDIR)$(DOCDIR)/{} \;

# The development wing, added to an installed product's directories: the
# host finds dev modules, tools and plugins where it finds the product's.
install-dev: $(DEV_SO)
	install -d $(DESTDIR)$(DATADIR)/scripts $(DESTDIR)$(LIBDIR)/plugins/fotahost
	$(if $(wildcard dev/scripts),$(call install_lua,dev/scripts))
	$(call install_so,$(DEV_SO))

# Installs the plugins $(1), each at its path under $(BUILD)/plugins (a
# core's directory too: http/core.so).
install_so = for so in $(patsubst $(BUILD)/plugins/%,%,$(1)); do \
	install -D -m 755 $(BUILD)/plugins/$$so $(DESTDIR)$(LIBDIR)/plugins/$$so; done

# Copies the Lua files under directory $(1), tree and all, into the scripts
# directory, and the web console's page, style and script beside its module.
install_lua = cd $(1) && find . -type d -exec install -d $(DESTDIR)$(DATADIR)/scripts/{} \; && \
	find . -type f \( -name '*.lua' -o -name '*.html' -o -name '*.css' -o -name '*.js' \) \
	    -exec install -m 644 {} $(DESTDIR)$(DATADIR)/scripts/{} \;

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/fotahost
	rm -rf $(DESTDIR)$(DATADIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(INCLUDEDIR)

clean:
	rm -rf build build-asan build-fuzz build-mutate* fotahost

# libFuzzer on the C cores that read untrusted text, nothing else: Intel
# HEX (plugins/ihex/ihex.c) and minisign's key and signature files
# (plugins/minisign/minisign.c); clang with ASan+UBSan (Debian: clang,
# libclang-rt-14-dev). Each fuzzer runs FUZZ_SECONDS (CI: 30 each) on a
# scratch copy of its seed corpus, so the inputs it finds stay out of the
# checkout; a crash, a sanitizer report or a failed property (the target
# abort()s) fails the target, leaving the input in build-fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE $(WARN) -g -O1 -fno-omit-frame-pointer \
                -fno-sanitize-recover=undefined
FUZZERS      := ihex minisign

build-fuzz/ihex.o: plugins/ihex/ihex.c plugins/ihex/ihex.h
build-fuzz/minisign.o: plugins/minisign/minisign.c plugins/minisign/minisign.h
build-fuzz/%.o:
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<

build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c build-fuzz/%.o
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $^

fuzz: $(FUZZERS:%=build-fuzz/fuzz_%)
	@for f in $(FUZZERS); do \
	    echo "fuzz: $$f, $(FUZZ_SECONDS) s"; \
	    rm -rf build-fuzz/corpus_$$f && mkdir -p build-fuzz/corpus_$$f && \
	    cp tests/fuzz/corpus_$$f/* build-fuzz/corpus_$$f/ && \
	    build-fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=build-fuzz/$$f- build-fuzz/corpus_$$f || exit 1; \
	done

# The board build: the recipes' libraries (vendor/build-deps, which sees
# none of this make's command-line variables), then fotahost
# itself with their config.mk, installed into root/ as the board's
# filesystem holds it, stripped, with the shared libraries it loads (musl's
# libc and loader, libcurl, mbedTLS). obj/ keeps the unit tests and the
# development wing's plugins for make board-test; they never reach root/.
BOARD_ARCH ?= mipsel_24kc
BOARD_DIR  := build/board/$(BOARD_ARCH)
BOARD_MAKE  = $(MAKE) --no-print-directory BOARD_CONFIG=$(abspath $(BOARD_DIR))/config.mk

.PHONY: board board-test
board:
	@MAKEFLAGS= MFLAGS= sh vendor/build-deps $(BOARD_ARCH)
	@$(BOARD_MAKE) all unit-tests
	@rm -rf $(BOARD_DIR)/root.new
	@$(BOARD_MAKE) install DESTDIR=$(abspath $(BOARD_DIR))/root.new >/dev/null
	@cd $(BOARD_DIR) && cp -RP sysroot/lib root.new/ && \
	    cp -P sysroot/usr/lib/*.so.* root.new/usr/lib/ && \
	    rm -rf root.new/usr/include && \
	    find root.new -type f \( -name '*.so*' -o -path '*/bin/*' \) -exec llvm-strip --strip-unneeded {} +
	@rm -rf $(BOARD_DIR)/root && mv $(BOARD_DIR)/root.new $(BOARD_DIR)/root
	@echo "board: $(BOARD_DIR)/root/usr/bin/fotahost"

# The suite against the board build, under qemu (BOARD_QEMU in config.mk:
# a 24KEc without FPU): the unit tests, and busted run by the board's
# fotahost, whose specs start the board's fotahost too (the peers they
# start, the cloud and test servers, run natively). It runs from a copy of
# root/ with the development wing and the example plugin installed into it
# (test-root/), as a developer's board would hold it; busted's Lua is Debian's, its C
# modules the recipes'. FOTAHOST_BOARD_ROOT names root/ for the ABI spec.
board-test: board-package all
	@$(BOARD_MAKE) board-test-root board-suite

# The board's packages for opkg (dist/board-package; the feed package,
# dist/openwrt/fotahost/Makefile, names their files and release): fotahost
# from root/, fotahost-dev from the development wing installed for the
# board (dev-root/, stripped as root/ is). Every file's mtime is
# SOURCE_DATE_EPOCH: the last commit's time, or in a release tarball (no
# .git) the Makefile's, which git archive set to that same time.
SOURCE_DATE_EPOCH ?= $(or $(shell git log -1 --format=%ct 2>/dev/null),$(shell stat -c %Y Makefile))
BOARD_DEV_ROOT = $(abspath $(BOARD_DIR))/dev-root
.PHONY: board-package board-dev-root dist
board-package: board
	@$(BOARD_MAKE) board-dev-root
	@SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) sh dist/board-package $(abspath $(BOARD_DIR))/root \
	    $(BOARD_DEV_ROOT) $(BOARD_ARCH) build/board

board-dev-root:
	@rm -rf $(BOARD_DEV_ROOT)
	@$(MAKE) --no-print-directory install-dev DESTDIR=$(BOARD_DEV_ROOT) >/dev/null
	@find $(BOARD_DEV_ROOT) -type f -name '*.so' -exec llvm-strip --strip-unneeded {} +

# The release tarball: HEAD as git archive writes it (each file's mtime the
# commit's, gzip -n), so a tag gives the same bytes, and PKG_HASH, every time.
dist:
	@mkdir -p build
	@git archive --format=tar.gz --prefix=fotahost-$(VERSION)/ -o build/fotahost-$(VERSION).tar.gz HEAD
	@echo "dist: build/fotahost-$(VERSION).tar.gz"

# test-root/: root/ with the development wing and the example plugin (built
# for the board) installed into it, and fotahost-qemu, which runs its
# fotahost under the emulator.
BOARD_ROOT = $(abspath $(BOARD_DIR))/root
BOARD_TEST_ROOT = $(abspath $(BOARD_DIR))/test-root
.PHONY: board-test-root board-suite
board-test-root: example-plugin
	@rm -rf $(BOARD_TEST_ROOT) && cp -a $(BOARD_ROOT) $(BOARD_TEST_ROOT)
	@$(MAKE) --no-print-directory install-dev DESTDIR=$(BOARD_TEST_ROOT) >/dev/null
	@install -m 755 $(BUILD)/plugins/sysinfo.so $(BOARD_TEST_ROOT)/usr/lib/fotahost/plugins/
	@printf '#!/bin/sh\nexec %s -L %s -0 "$$0" %s "$$@"\n' '$(BOARD_QEMU)' '$(BOARD_TEST_ROOT)' \
	    '$(BOARD_TEST_ROOT)/usr/bin/fotahost' > $(BOARD_DIR)/fotahost-qemu
	@chmod +x $(BOARD_DIR)/fotahost-qemu

board-suite:
	@BUILD=$(BUILD) TEST_EXEC='$(BOARD_QEMU) -L $(BOARD_TEST_ROOT)' FOTAHOST_TEST_EMULATED=1 \
	    FOTAHOST_BIN=$(abspath $(BOARD_DIR))/fotahost-qemu FOTAHOST_TOP=$(CURDIR) \
	    FOTAHOST_PEER_BIN=$(CURDIR)/build/fotahost \
	    FOTAHOST_BOARD_ROOT=$(BOARD_ROOT) FOTAHOST_BOARD_ARCH=$(BOARD_ARCH) \
	    FOTAHOST_BOARD_TEST_ROOT=$(BOARD_TEST_ROOT) FOTAHOST_BOARD_QEMU='$(BOARD_QEMU)' \
	    FOTAHOST_BOARD_DEV_ROOT=$(BOARD_DEV_ROOT) \
	    FOTAHOST_PATH='$(CURDIR)/tests/board/?.lua;;' \
	    FOTAHOST_CPATH='$(abspath $(BOARD_DIR))/sysroot/usr/lib/lua/5.4/?.so;;' \
	    sh tests/run
