# tests/openwrt/procd.sh: stands in for OpenWrt's /lib/functions/procd.sh,
# the functions an init script with USE_PROCD=1 uses to declare its
# service to procd. Written for the specs from OpenWrt's documentation and
# procd's behaviour, not copied: the message has the shape the real one
# sends with `ubus call service set` --
#   {"name":..., "script":..., "instances":{"instance1":{"command":[...],
#    "respawn":[...], "file":[...], "stdout":true, "term_timeout":30, ...}},
#    "triggers":[["config.change",["if",["eq","package","NAME"],
#    ["run_script","/etc/init.d/NAME","reload"]],1000]]}
# -- built in shell variables here (the real one uses jshn), and sent
# through the `ubus` first in PATH (tests/openwrt/ubus in the specs).
# POSIX sh: it runs under dash and busybox ash.

PROCD_RELOAD_DELAY=${PROCD_RELOAD_DELAY:-1000}

# A JSON string of $1: backslashes, quotes, tabs and newlines escaped.
_procd_json_str() {
	printf '"%s"' "$(printf '%s\n' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/	/\\t/g' |
		awk 'NR > 1 { printf "\\n" } { printf "%s", $0 }')"
}

# The JSON strings of "$@", comma-separated (an array's elements).
_procd_json_strs() {
	local out="" a
	for a in "$@"; do
		out="${out:+$out,}$(_procd_json_str "$a")"
	done
	printf '%s' "$out"
}

# KEY=VALUE words as an object's members ("KEY":"VALUE").
_procd_json_members() {
	local out="" a
	for a in "$@"; do
		out="${out:+$out,}$(_procd_json_str "${a%%=*}"):$(_procd_json_str "${a#*=}")"
	done
	printf '%s' "$out"
}

procd_open_service() {
	_procd_service=$1
	_procd_script=$2
	_procd_instances=""
	_procd_triggers=""
	_procd_seq=0
}

procd_close_service() {
	local msg
	msg="{\"name\":$(_procd_json_str "$_procd_service")"
	[ -n "$_procd_script" ] && msg="$msg,\"script\":$(_procd_json_str "$_procd_script")"
	msg="$msg,\"instances\":{$_procd_instances}"
	if type service_triggers >/dev/null 2>&1; then
		service_triggers
	fi
	msg="$msg,\"triggers\":[$_procd_triggers]}"
	ubus call service "${1:-set}" "$msg"
}

# Each parameter of the open instance is kept as _procd_p_TYPE (its JSON
# value without brackets, for arrays and tables) and its type listed in
# _procd_params in the order of first setting.
procd_open_instance() {
	_procd_seq=$((_procd_seq + 1))
	_procd_iname=${1:-instance$_procd_seq}
	local p
	for p in $_procd_params; do
		unset "_procd_p_$p"
	done
	_procd_params=""
}

_procd_kind() {
	case "$1" in
	env|data|limits) echo table ;;
	command|netdev|file|respawn|watch|watchdog) echo array ;;
	nice|term_timeout|reload_signal) echo int ;;
	stdout|stderr|no_new_privs) echo bool ;;
	pidfile|user|group|seccomp|capabilities|facility) echo string ;;
	*) echo unknown ;;
	esac
}

_procd_value() {
	local type=$1
	shift
	case "$(_procd_kind "$type")" in
	table) _procd_json_members "$@" ;;
	array) _procd_json_strs "$@" ;;
	int)
		if [ "$type" = reload_signal ]; then
			kill -l "${1#SIG}" 2>/dev/null || printf '%s' "$1"
		else
			printf '%d' "$1"
		fi ;;
	bool) case "$1" in 1|true|on|yes) printf true ;; *) printf false ;; esac ;;
	string) _procd_json_str "$1" ;;
	esac
}

procd_set_param() {
	local type=$1
	shift
	[ "$(_procd_kind "$type")" = unknown ] && return 0
	case " $_procd_params " in
	*" $type "*) ;;
	*) _procd_params="$_procd_params $type" ;;
	esac
	eval "_procd_p_$type=\$(_procd_value \"\$type\" \"\$@\")"
}

procd_append_param() {
	local type=$1 old more
	shift
	eval "old=\${_procd_p_$type-}"
	case "$(_procd_kind "$type")" in
	table|array)
		if [ -n "$old" ]; then
			more=$(_procd_value "$type" "$@")
			eval "_procd_p_$type=\$old\${more:+,\$more}"
			return 0
		fi ;;
	esac
	procd_set_param "$type" "$@"
}

procd_close_instance() {
	local inst="" p v
	# respawn given without numbers: procd's defaults (system.@service[0]
	# can change them on a board; not here)
	[ "${_procd_params#* respawn}" != "$_procd_params" ] && [ -z "$_procd_p_respawn" ] &&
		_procd_p_respawn='"3600","5","5"'
	for p in $_procd_params; do
		eval "v=\$_procd_p_$p"
		case "$(_procd_kind "$p")" in
		table) v="{$v}" ;;
		array) v="[$v]" ;;
		esac
		inst="${inst:+$inst,}\"$p\":$v"
	done
	_procd_instances="${_procd_instances:+$_procd_instances,}$(_procd_json_str "$_procd_iname"):{$inst}"
}

procd_open_trigger() { :; }
procd_close_trigger() { :; }

# A commit of each named UCI config runs `/etc/init.d/NAME reload`.
procd_add_reload_trigger() {
	local c t
	for c in "$@"; do
		t="[\"config.change\",[\"if\",[\"eq\",\"package\",$(_procd_json_str "$c")],"
		t="$t[\"run_script\",$(_procd_json_str "/etc/init.d/$_procd_service"),\"reload\"]]"
		[ "$PROCD_RELOAD_DELAY" -gt 0 ] && t="$t,$PROCD_RELOAD_DELAY"
		_procd_triggers="${_procd_triggers:+$_procd_triggers,}$t]"
	done
}

# `ubus call service delete`: procd stops the service's instances
# (SIGTERM, SIGKILL after term_timeout) and forgets it.
procd_kill() {
	local msg
	msg="{\"name\":$(_procd_json_str "$1")"
	[ -n "$2" ] && msg="$msg,\"instance\":$(_procd_json_str "$2")"
	ubus call service delete "$msg}" 2>/dev/null
	return 0
}

# `ubus call service signal`: procd sends signal $3 (a name or a number;
# none: SIGHUP) to instance $2 of service $1 ('*' or none: every instance).
# A name becomes its number through `kill -l`, as busybox ash does it;
# dash's takes numbers only, so there HUP (the one name sent) is spelt out.
procd_send_signal() {
	local signal=$3 msg
	case "$signal" in
	[A-Z]*) signal=$(kill -l "$signal" 2>/dev/null || { [ "$signal" = HUP ] && echo 1; }) || return 1 ;;
	esac
	msg="{\"name\":$(_procd_json_str "$1")"
	[ -n "$2" ] && [ "$2" != "*" ] && msg="$msg,\"instance\":$(_procd_json_str "$2")"
	[ -n "$signal" ] && msg="$msg,\"signal\":$signal"
	ubus call service signal "$msg}"
}

# Whether procd reports an instance of service $1 running.
procd_running() {
	ubus call service list "{\"name\":$(_procd_json_str "$1")}" 2>/dev/null | grep -q '"running":true'
}
