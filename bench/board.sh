#!/bin/sh
# bench/board.sh (run by bench/run): the board's software stack - musl,
# the recipes' Lua, libcurl and mbedTLS, built by `make board
# BOARD_ARCH=x86_64` - against the Debian build, measured in the same run:
# start-up, the size of the binary and plugins (the MIPS build's too), and
# the app's memory connected and idle, and at its peak over two updates
# (bench/fota.lua on the virtual board). The seed's Node.js app held 55 MB.
#
# The musl build runs natively through its own loader, its scripts and
# plugins given by FOTAHOST_PATH/FOTAHOST_CPATH, and only those (no ";;":
# nothing of an install on this machine): this machine has no
# /lib/ld-musl-x86_64.so.1 for its interpreter path to find.
set -eu
BUILD=${BUILD:-build}
N=${N:-300}
top=$(pwd)
root=$top/build/board/x86_64/test-root
mips=$top/build/board/mipsel_24kc/root
if [ ! -x "$root/usr/bin/fotahost" ]; then
    echo "bench/board.sh: no x86-64 board build (make bench makes it)" >&2
    exit 1
fi
musl=$top/build/board/x86_64/fotahost-native
scripts=$root/usr/share/fotahost/scripts
cat > "$musl" <<SH
#!/bin/sh
FOTAHOST_PATH="$scripts/?.lua;$scripts/?/init.lua" \\
FOTAHOST_CPATH="$root/usr/lib/fotahost/plugins/?.so" \\
exec "$root/lib/ld-musl-x86_64.so.1" --library-path "$root/lib:$root/usr/lib" "$root/usr/bin/fotahost" "\$@"
SH
chmod +x "$musl"

# Start-up without the wrapper's shell: the loader runs the binary itself.
set -- "$root/lib/ld-musl-x86_64.so.1" --library-path "$root/lib:$root/usr/lib" "$root/usr/bin/fotahost" -e ''
"$BUILD/spawnstat" 20 "$BUILD/fotahost" -e '' >/dev/null
"$BUILD/spawnstat" 20 "$@" >/dev/null
d1=$("$BUILD/spawnstat" "$N" "$BUILD/fotahost" -e '')
m1=$("$BUILD/spawnstat" "$N" "$@")
d2=$("$BUILD/spawnstat" "$N" "$BUILD/fotahost" -e '')
m2=$("$BUILD/spawnstat" "$N" "$@")

size() { if [ -f "$1" ]; then wc -c < "$1"; else echo 0; fi; }
stripped() { strip -o "$BUILD/bench.strip" "$1" && size "$BUILD/bench.strip"; }
plug=lib/fotahost/plugins/fotahost
dsize=$(stripped "$BUILD/fotahost")
dhttp=$(stripped "$BUILD/plugins/fotahost/http/core.so")
ddigest=$(stripped "$BUILD/plugins/fotahost/digest.so")
rm -f "$BUILD/bench.strip"

# The app: idle and peak memory, one 4 KB and one 28 KB update each.
mem() { sed -n "s/^$2 *\([0-9]*\)$/\1/p" "$1"; }
"$BUILD/fotahost" bench/fota.lua 1 > "$BUILD/bench-app-debian.txt"
"$BUILD/fotahost" bench/fota.lua 1 "$musl" > "$BUILD/bench-app-musl.txt"

awk -v d1="$d1" -v d2="$d2" -v m1="$m1" -v m2="$m2" -v n="$N" \
    -v ds="$dsize" -v ms="$(size "$root/usr/bin/fotahost")" -v ps="$(size "$mips/usr/bin/fotahost")" \
    -v dh="$dhttp" -v mh="$(size "$root/usr/$plug/http/core.so")" -v ph="$(size "$mips/usr/$plug/http/core.so")" \
    -v dd="$ddigest" -v md="$(size "$root/usr/$plug/digest.so")" -v pd="$(size "$mips/usr/$plug/digest.so")" \
    -v di="$(mem "$BUILD/bench-app-debian.txt" 'app RSS idle (connected), KiB')" \
    -v mi="$(mem "$BUILD/bench-app-musl.txt" 'app RSS idle (connected), KiB')" \
    -v dp="$(mem "$BUILD/bench-app-debian.txt" 'app peak RSS over the updates (VmHWM), KiB')" \
    -v mp="$(mem "$BUILD/bench-app-musl.txt" 'app peak RSS over the updates (VmHWM), KiB')" '
function med(a, b) { return (a + b) / 2 }
BEGIN {
    split(d1, a); split(d2, b); split(m1, c); split(m2, d)
    printf "%-40s %12s %12s %12s\n", "the board stack (" n " runs x 2)", "Debian", "musl x86-64", "musl MIPS"
    printf "%-40s %12.3f %12.3f %12s\n", "start-up, -e \047\047, median ms", med(a[1], b[1]), med(c[1], d[1]), "-"
    printf "%-40s %12d %12d %12s\n", "start-up peak RSS, KiB", (a[4] > b[4]) ? a[4] : b[4], (c[4] > d[4]) ? c[4] : d[4], "-"
    printf "%-40s %12d %12d %12d\n", "binary, bytes (stripped)", ds, ms, ps
    printf "%-40s %12d %12d %12d\n", "http plugin (libcurl), bytes", dh, mh, ph
    printf "%-40s %12d %12d %12d\n", "digest plugin, bytes", dd, md, pd
    printf "%-40s %12d %12d %12s\n", "app RSS connected and idle, KiB", di, mi, "-"
    printf "%-40s %12d %12d %12s\n", "app peak RSS over 2 updates, KiB", dp, mp, "-"
    printf "%-40s %12s %12.1f %12s\n", "  idle, times below the seed (55 MB)", "", 55 * 1024 / mi, ""
}'
