# tests/openwrt/functions.sh: stands in for OpenWrt's /lib/functions.sh,
# the part init scripts and package scripts use: reading UCI configs
# (config_load, config_get, config_get_bool, config_list_foreach) and the
# package hooks (default_postinst, default_prerm). Written for the specs
# from OpenWrt's documentation, not copied. POSIX sh (dash, busybox ash).
#
# A UCI file is itself shell syntax (`config TYPE 'NAME'`, `option KEY
# 'VALUE'`, `list KEY 'VALUE'`); OpenWrt's config_load evaluates `uci
# export`, which prints that syntax; here the file is sourced with the
# same three functions defined. Configs are read from $UCI_CONFIG_DIR,
# else $IPKG_INSTROOT/etc/config.

CONFIG_SECTIONS=""
CONFIG_SECTION=""
_config_anon=0

config() {
	local type=$1 name=$2
	if [ -z "$name" ]; then
		_config_anon=$((_config_anon + 1))
		name="cfg$_config_anon"
	fi
	CONFIG_SECTION=$name
	CONFIG_SECTIONS="$CONFIG_SECTIONS $name"
	eval "CONFIG_${name}_TYPE=\$type"
}

option() {
	eval "CONFIG_${CONFIG_SECTION}_$1=\$2"
}

# A list's items are kept as $CONFIG_<section>_<key>_ITEM<n>.
list() {
	local n
	eval "n=\$((\${CONFIG_${CONFIG_SECTION}_$1_LENGTH:-0} + 1))"
	eval "CONFIG_${CONFIG_SECTION}_$1_ITEM$n=\$2"
	eval "CONFIG_${CONFIG_SECTION}_$1_LENGTH=\$n"
}

config_load() {
	local file="${UCI_CONFIG_DIR:-$IPKG_INSTROOT/etc/config}/$1"
	CONFIG_SECTIONS=""
	CONFIG_SECTION=""
	[ -f "$file" ] || return 1
	. "$file"
}

# config_get VAR SECTION OPTION [DEFAULT]
config_get() {
	eval "$1=\${CONFIG_$2_$3:-\$4}"
}

# config_get_bool VAR SECTION OPTION [DEFAULT]: 1 or 0, from UCI's words
# for true (1 on yes true enabled) and false (0 off no false disabled).
config_get_bool() {
	local v
	config_get v "$2" "$3" "$4"
	case "$v" in
	1|on|yes|true|enabled) v=1 ;;
	0|off|no|false|disabled) v=0 ;;
	*) v=$4 ;;
	esac
	eval "$1=\$v"
}

# config_list_foreach SECTION OPTION FUNCTION [ARGS...]: FUNCTION ITEM ARGS
# for each item of the list.
config_list_foreach() {
	local section=$1 key=$2 fn=$3 n i item
	shift 3
	eval "n=\${CONFIG_${section}_${key}_LENGTH:-0}"
	i=1
	while [ "$i" -le "$n" ]; do
		eval "item=\$CONFIG_${section}_${key}_ITEM$i"
		"$fn" "$item" "$@"
		i=$((i + 1))
	done
}

# The package scripts OpenWrt writes call `default_postinst $0 "$@"` (and
# default_prerm): $1 is .../info/PACKAGE.postinst. PACKAGE's init scripts
# are the /etc/init.d/ entries of its file list, info/PACKAGE.list.
_package_initscripts() {
	local name
	name=$(basename "$1")
	name=${name%.*}
	grep '^/etc/init\.d/' "$IPKG_INSTROOT/usr/lib/opkg/info/$name.list" 2>/dev/null
}

# After an install: each init script enabled; on a running system (no
# IPKG_INSTROOT: not an image being built) started too, and on an upgrade
# ($PKG_UPGRADE=1) started only, keeping the user's enable or disable.
default_postinst() {
	local s ret=0
	for s in $(_package_initscripts "$1"); do
		if [ -n "$IPKG_INSTROOT" ]; then
			sh "$IPKG_INSTROOT/etc/rc.common" "$IPKG_INSTROOT$s" enable || ret=1
		else
			[ "$PKG_UPGRADE" = 1 ] || "$s" enable || ret=1
			"$s" start || ret=1
		fi
	done
	return $ret
}

# Before a removal: each init script stopped (on a running system) and
# disabled.
default_prerm() {
	local s ret=0
	for s in $(_package_initscripts "$1"); do
		if [ -n "$IPKG_INSTROOT" ]; then
			sh "$IPKG_INSTROOT/etc/rc.common" "$IPKG_INSTROOT$s" disable || ret=1
		else
			"$s" stop
			"$s" disable || ret=1
		fi
	done
	return $ret
}
