#!/usr/bin/env bash
# lab.sh — the Tandem two-ISP network lab, for humans.
#
# The same topology is built for Go tests by package tandem/scripts/netlab
# (scripts/netlab/netlab.go). Keep the two in sync: addresses, interface names,
# table numbers, rule priorities and nft chain layout are identical; only the
# namespace names and the nft table name differ.
#
#   namespace tdm-lab-app (the appliance)        namespace tdm-lab-cloud (the switcher)
#   -------------------------------------        ---------------------------------------
#   wana 10.201.1.2/24  <== veth, link "a" ==>   ispa 10.201.1.1/24
#   wanb 10.201.2.2/24  <== veth, link "b" ==>   ispb 10.201.2.1/24
#   lo   127.0.0.1                               lo   127.0.0.1, 10.201.0.1/32 (the cloud
#                                                     service address, reachable over a and b)
#
#   APP policy routing (skip it with TANDEM_LAB_POLICY=0):
#     table 101: default via 10.201.1.1 dev wana; unreachable default metric 4000
#     table 102: default via 10.201.2.1 dev wanb; unreachable default metric 4000
#     rule pref 1001: from 10.201.1.2 lookup 101
#     rule pref 1002: from 10.201.2.2 lookup 102
#     main table: default via 10.201.1.1 dev wana
#   The unreachable routes keep traffic of a link whose interface is down from
#   leaking out of the other link (the kernel deletes a table's default route when
#   its interface goes down).
#
#   Impairments: nftables table "netdev tdmlab" in the APP namespace, base chains
#   bound to wana/wanb on the ingress and egress hooks:
#     cut_<l>_in / cut_<l>_out   priority -10   "drop"                    (cut)
#     loss_<l>_in / loss_<l>_out priority 0     "meta protocol != arp
#                                               numgen random mod 100 < PCT drop" (loss)
#   A cut drops everything (ARP too) while the interfaces stay up, like an upstream
#   ISP failure. Loss drops IP packets at random in both directions. Cut and loss
#   are independent: "restore" removes the cut (and brings a downed link back up),
#   it keeps the loss; "loss l 0" removes the loss.
#   IPv6 is disabled in both namespaces so that interface counters only move with
#   the traffic you send.
#
# Usage: scripts/lab.sh COMMAND
#   up                    create the lab (idempotent: running it again repairs it)
#   down                  remove the lab (idempotent), killing processes left in it
#   status                show the lab; exit status 3 when it is not up
#   cut a|b               drop all traffic of that link, interfaces stay up
#   restore a|b           undo cut (and ifdown) of that link; loss stays
#   loss a|b PCT          drop PCT % (0..100) of IP packets each way; 0 clears
#   ifdown a|b            ip link set down on the APP side (the kernel drops its routes)
#   ifup a|b              ip link set up again and re-add that link's default routes
#   exec app|cloud CMD... run CMD inside a namespace
#
# Environment: TANDEM_LAB=prefix changes the namespace names to PREFIX-app and
# PREFIX-cloud (default tdm-lab); TANDEM_LAB_POLICY=0 skips policy routing on up
# (ifup and restore then re-add no routes either).
# Needs root, iproute2 and nftables.
set -euo pipefail

LAB="${TANDEM_LAB:-tdm-lab}"
POLICY="${TANDEM_LAB_POLICY:-1}"
APP="$LAB-app"
CLOUD="$LAB-cloud"
NFT_TABLE=tdmlab
CLOUD_ADDR=10.201.0.1
PREFIX_LEN=24
MAIN_LINK=a
UNREACHABLE_METRIC=4000
declare -A APP_IF=([a]=wana [b]=wanb)
declare -A CLOUD_IF=([a]=ispa [b]=ispb)
declare -A APP_ADDR=([a]=10.201.1.2 [b]=10.201.2.2)
declare -A CLOUD_LINK_ADDR=([a]=10.201.1.1 [b]=10.201.2.1)
declare -A TABLE=([a]=101 [b]=102)
declare -A RULE_PREF=([a]=1001 [b]=1002)

say() { echo "lab: $*"; }
die() {
	echo "lab: error: $*" >&2
	exit 1
}
# run prints a command, then runs it.
run() {
	printf '+'
	printf ' %q' "$@"
	printf '\n'
	"$@"
}

usage() {
	sed -n '/^# Usage:/,/^# Needs root/p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

require_tools() {
	[[ $(id -u) -eq 0 ]] || die "must run as root"
	command -v ip >/dev/null || die "ip (iproute2) not found"
	command -v nft >/dev/null || die "nft (nftables) not found"
	[[ $LAB =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "TANDEM_LAB=$LAB: use lower-case letters, digits and -"
}

ns_exists() {
	local list
	list=$(ip netns list 2>/dev/null | awk '{print $1}')
	grep -qx -- "$1" <<<"$list"
}

is_up() { ns_exists "$APP" && ns_exists "$CLOUD"; }

require_up() { is_up || die "the lab is not up (run: $0 up)"; }

check_link() {
	[[ ${1:-} == a || ${1:-} == b ]] || die "link must be a or b, got '${1:-}'"
}

# policy_on tells whether the running lab has policy routing (it was brought up
# without TANDEM_LAB_POLICY=0): its rule for link a is there.
policy_on() {
	local rules
	rules=$(ip -n "$APP" rule show pref "${RULE_PREF[a]}" 2>/dev/null)
	[[ -n $rules ]]
}

# link_routes (re)adds link $1's routes in the APP namespace.
link_routes() {
	local l=$1
	run ip -n "$APP" route replace default via "${CLOUD_LINK_ADDR[$l]}" dev "${APP_IF[$l]}" table "${TABLE[$l]}"
	run ip -n "$APP" route replace unreachable default metric "$UNREACHABLE_METRIC" table "${TABLE[$l]}"
	if [[ $l == "$MAIN_LINK" ]]; then
		run ip -n "$APP" route replace default via "${CLOUD_LINK_ADDR[$l]}" dev "${APP_IF[$l]}"
	fi
}

nft_app() {
	echo "+ ip netns exec $APP nft -f - <<<'$*'"
	ip netns exec "$APP" nft -f - <<<"$*"
}

cmd_up() {
	require_tools
	local ns l
	for ns in "$APP" "$CLOUD"; do
		if ns_exists "$ns"; then
			say "namespace $ns exists"
		else
			run ip netns add "$ns"
		fi
		if [[ -d /proc/sys/net/ipv6 ]]; then
			run ip netns exec "$ns" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6'
		fi
		run ip -n "$ns" link set lo up
	done
	run ip -n "$CLOUD" addr replace "$CLOUD_ADDR/32" dev lo

	for l in a b; do
		if ip -n "$APP" link show dev "${APP_IF[$l]}" >/dev/null 2>&1; then
			say "link $l (${APP_IF[$l]} <-> ${CLOUD_IF[$l]}) exists"
		else
			run ip link add "${APP_IF[$l]}" netns "$APP" type veth peer name "${CLOUD_IF[$l]}" netns "$CLOUD"
		fi
		run ip -n "$APP" addr replace "${APP_ADDR[$l]}/$PREFIX_LEN" dev "${APP_IF[$l]}"
		run ip -n "$CLOUD" addr replace "${CLOUD_LINK_ADDR[$l]}/$PREFIX_LEN" dev "${CLOUD_IF[$l]}"
		run ip -n "$APP" link set "${APP_IF[$l]}" up
		run ip -n "$CLOUD" link set "${CLOUD_IF[$l]}" up
	done

	if [[ $POLICY != 1 ]]; then
		# a lab that had policy routing loses it
		for l in a b; do
			ip -n "$APP" rule del pref "${RULE_PREF[$l]}" 2>/dev/null || true
			ip -n "$APP" route flush table "${TABLE[$l]}" 2>/dev/null || true
		done
		ip -n "$APP" route del default 2>/dev/null || true
	fi
	if [[ $POLICY == 1 ]]; then
		for l in a b; do
			link_routes "$l"
			# delete first so that a second "up" does not stack duplicate rules
			ip -n "$APP" rule del pref "${RULE_PREF[$l]}" 2>/dev/null || true
			run ip -n "$APP" rule add pref "${RULE_PREF[$l]}" from "${APP_ADDR[$l]}" lookup "${TABLE[$l]}"
		done
	else
		say "TANDEM_LAB_POLICY=$POLICY: no policy routing, no default route in $APP"
	fi

	# Base chains only; "add" of an existing chain is a no-op, so the rules of a
	# running lab (cuts, loss) survive a second "up".
	local nft="add table netdev $NFT_TABLE"$'\n'
	for l in a b; do
		nft+="add chain netdev $NFT_TABLE cut_${l}_in { type filter hook ingress device ${APP_IF[$l]} priority -10; }"$'\n'
		nft+="add chain netdev $NFT_TABLE cut_${l}_out { type filter hook egress device ${APP_IF[$l]} priority -10; }"$'\n'
		nft+="add chain netdev $NFT_TABLE loss_${l}_in { type filter hook ingress device ${APP_IF[$l]} priority 0; }"$'\n'
		nft+="add chain netdev $NFT_TABLE loss_${l}_out { type filter hook egress device ${APP_IF[$l]} priority 0; }"$'\n'
	done
	nft_app "$nft"
	say "up: $APP (appliance) and $CLOUD (switcher), cloud service address $CLOUD_ADDR"
}

cmd_down() {
	require_tools
	local ns pid did=0
	for ns in "$APP" "$CLOUD"; do
		ns_exists "$ns" || continue
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			[[ $pid == "$$" ]] && continue
			run kill -KILL "$pid" || true
		done
		run ip netns del "$ns"
		did=1
	done
	if [[ $did == 1 ]]; then
		say "down"
	else
		say "nothing to do: $APP and $CLOUD do not exist"
	fi
}

cmd_status() {
	require_tools
	if ! is_up; then
		local ns
		for ns in "$APP" "$CLOUD"; do
			ns_exists "$ns" && say "only $ns exists (run: $0 up, or $0 down)"
		done
		say "the lab is not up"
		exit 3
	fi
	local ns
	for ns in "$APP" "$CLOUD"; do
		echo "== $ns: addresses"
		ip -n "$ns" -br addr show
		echo "== $ns: link counters"
		ip -n "$ns" -s link show
	done
	echo "== $APP: rules"
	ip -n "$APP" rule show
	local t
	for t in main "${TABLE[a]}" "${TABLE[b]}"; do
		echo "== $APP: route table $t"
		ip -n "$APP" route show table "$t"
	done
	echo "== $APP: impairments (nft table netdev $NFT_TABLE)"
	ip netns exec "$APP" nft list table netdev "$NFT_TABLE"
}

cmd_cut() {
	check_link "${1:-}"
	require_tools
	require_up
	local l=$1
	nft_app "flush chain netdev $NFT_TABLE cut_${l}_in
flush chain netdev $NFT_TABLE cut_${l}_out
add rule netdev $NFT_TABLE cut_${l}_in drop
add rule netdev $NFT_TABLE cut_${l}_out drop"
	say "link $l cut (${APP_IF[$l]} drops everything both ways; interface stays up)"
}

cmd_restore() {
	check_link "${1:-}"
	require_tools
	require_up
	local l=$1
	nft_app "flush chain netdev $NFT_TABLE cut_${l}_in
flush chain netdev $NFT_TABLE cut_${l}_out"
	if ! ip -n "$APP" link show dev "${APP_IF[$l]}" | head -1 | grep -q '[<,]UP[,>]'; then
		cmd_ifup "$l"
	fi
	say "link $l restored (loss, if any, is kept: clear it with '$0 loss $l 0')"
}

cmd_loss() {
	check_link "${1:-}"
	local l=$1 pct=${2:-}
	if ! [[ $pct =~ ^[0-9]{1,3}$ ]] || ((10#$pct > 100)); then
		die "loss: PCT must be an integer 0..100, got '$pct'"
	fi
	pct=$((10#$pct))
	require_tools
	require_up
	local nft="flush chain netdev $NFT_TABLE loss_${l}_in
flush chain netdev $NFT_TABLE loss_${l}_out"
	if ((pct > 0)); then
		local match="numgen random mod 100 < $pct "
		((pct < 100)) || match="" # nft rejects "< 100" against a 0..99 range
		nft+="
add rule netdev $NFT_TABLE loss_${l}_in meta protocol != arp ${match}drop
add rule netdev $NFT_TABLE loss_${l}_out meta protocol != arp ${match}drop"
	fi
	nft_app "$nft"
	if ((pct > 0)); then
		say "link $l: $pct % random loss each way"
	else
		say "link $l: loss cleared"
	fi
}

cmd_ifdown() {
	check_link "${1:-}"
	require_tools
	require_up
	run ip -n "$APP" link set "${APP_IF[$1]}" down
	say "link $1 down on the APP side (the kernel deleted the routes through ${APP_IF[$1]})"
}

cmd_ifup() {
	check_link "${1:-}"
	require_tools
	require_up
	run ip -n "$APP" link set "${APP_IF[$1]}" up
	if policy_on; then
		link_routes "$1"
	else
		say "no policy routing in this lab: no routes re-added"
	fi
	say "link $1 up"
}

cmd_exec() {
	local which=${1:-}
	shift || true
	[[ $# -gt 0 ]] || die "exec: missing command"
	require_tools
	require_up
	case $which in
	app) exec ip netns exec "$APP" "$@" ;;
	cloud) exec ip netns exec "$CLOUD" "$@" ;;
	*) die "exec: namespace must be app or cloud, got '$which'" ;;
	esac
}

main() {
	local cmd=${1:-}
	shift || true
	case $cmd in
	up) cmd_up ;;
	down) cmd_down ;;
	status) cmd_status ;;
	cut) cmd_cut "$@" ;;
	restore) cmd_restore "$@" ;;
	loss) cmd_loss "$@" ;;
	ifdown) cmd_ifdown "$@" ;;
	ifup) cmd_ifup "$@" ;;
	exec) cmd_exec "$@" ;;
	-h | --help | help) usage ;;
	*) usage ;;
	esac
}

main "$@"
