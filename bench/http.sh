#!/bin/sh
# bench/http.sh: downloads over loopback, fotahost.http against the curl
# command line (the same libcurl underneath), from the same server in the
# same run: throughput for a 100 MB file (median of N runs each,
# interleaved), peak RSS of each process, and fotahost's peak RSS above
# its idle RSS (a process that has loaded fotahost.http and nothing else).
#
# Both write to a file in the same directory; fotahost also fsyncs it and
# renames it into place (its safety costs are part of the figure). A
# second pair writes nowhere (a sink / -o /dev/null), to show the transfer
# alone.
set -eu
BUILD=${BUILD:-build}
N=${HTTP_RUNS:-9}
SIZE_MB=${SIZE_MB:-100}
CURL=$(command -v curl || true)
if [ -z "$CURL" ]; then
    echo "bench/http.sh: the curl command is needed as the baseline (apt-get install curl)" >&2
    exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fotahost-bench-XXXXXX")
spid=
cleanup() {
    [ -n "$spid" ] && kill "$spid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
mkdir "$tmp/root"
dd if=/dev/urandom of="$tmp/root/file.bin" bs=1048576 count="$SIZE_MB" iflag=fullblock status=none
"$BUILD/fotahost" spec/support/http_test_server.lua --root "$tmp/root" --port 0 --no-stdin-watch \
    >"$tmp/server.out" 2>"$tmp/server.err" &
spid=$!
i=0
while ! grep -q '^listening' "$tmp/server.out" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then
        echo "bench/http.sh: the test server did not start:" >&2
        cat "$tmp/server.err" >&2
        exit 1
    fi
    sleep 0.05
done
port=$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/server.out")
url="http://127.0.0.1:$port/files/file.bin"
bytes=$((SIZE_MB * 1048576))

fh_file="local r, e = require('fotahost.http').download('$url', '$tmp/f.bin', { retries = 0 }) assert(r, e)"
fh_null="local r, e = require('fotahost.http').download('$url', function() end, { retries = 0 }) assert(r, e)"
fh_idle="require('fotahost.http')"
stat() { "$BUILD/spawnstat" "$N" "$@"; }

# Warm the page cache and the server, then interleave.
stat "$CURL" -sSf -o /dev/null "$url" >/dev/null
f1=$(stat "$BUILD/fotahost" -e "$fh_file")
c1=$(stat "$CURL" -sSf -o "$tmp/c.bin" "$url")
f2=$(stat "$BUILD/fotahost" -e "$fh_file")
c2=$(stat "$CURL" -sSf -o "$tmp/c.bin" "$url")
fn=$(stat "$BUILD/fotahost" -e "$fh_null")
cn=$(stat "$CURL" -sSf -o /dev/null "$url")
idle=$(stat "$BUILD/fotahost" -e "$fh_idle")
cmp -s "$tmp/f.bin" "$tmp/root/file.bin" || { echo "bench/http.sh: fotahost's copy differs" >&2; exit 1; }
cmp -s "$tmp/c.bin" "$tmp/root/file.bin" || { echo "bench/http.sh: curl's copy differs" >&2; exit 1; }

awk -v f1="$f1" -v f2="$f2" -v c1="$c1" -v c2="$c2" -v fn="$fn" -v cn="$cn" -v idle="$idle" \
    -v bytes="$bytes" -v n="$N" -v mb="$SIZE_MB" '
function mbs(ms) { return bytes / 1048576 / (ms / 1000) }
BEGIN {
    split(f1, a); split(f2, b); split(c1, c); split(c2, d); split(fn, e); split(cn, g); split(idle, i)
    ft = (a[1] + b[1]) / 2; ct = (c[1] + d[1]) / 2
    fr = (a[4] > b[4]) ? a[4] : b[4]; cr = (c[4] > d[4]) ? c[4] : d[4]
    printf "%-40s %12s %12s %8s\n", "HTTP download, " mb " MB on loopback (" n " runs x 2)", "fotahost", "curl", "ratio"
    printf "%-40s %12.0f %12.0f %8.2f\n", "to a file, MB/s (median)", mbs(ft), mbs(ct), mbs(ft) / mbs(ct)
    printf "%-40s %12.0f %12.0f %8.2f\n", "to nowhere, MB/s (median)", mbs(e[1]), mbs(g[1]), mbs(e[1]) / mbs(g[1])
    printf "%-40s %12d %12d %8.2f\n", "peak RSS, KiB", fr, cr, fr / cr
    printf "%-40s %12d %12s %8s\n", "idle RSS with fotahost.http loaded, KiB", i[4], "-", "-"
    printf "%-40s %12d %12s %8s\n", "peak above idle, KiB (goal < 4096)", fr - i[4], "-", "-"
}'
