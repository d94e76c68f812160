# SPDX-License-Identifier: MIT
# shellcheck shell=dash
#
# Helpers for guest scripts run by tools/hpcap-vm (sourced before the
# command or the batch case). Each returns 0 on success explicitly, so
# scripts may use `set -e`, and keeps its variables local, so it never
# clobbers the script's (e.g. a saved PID).
#
# Where a script writes its results: /host for `hpcap-vm run`, the case's
# own directory in a batch. Scripts write to "$HPCAP_OUT/...".
export HPCAP_OUT="${HPCAP_OUT:-/host}"
# The injection this script replays (inject_start): files, rate, loops and
# destination MAC, as JSON for hpcap-inject --rounds-dir (see tools/inject).
export HPCAP_INJECT_SPEC="${HPCAP_INJECT_SPEC:-/host/inject-spec.json}"
# iproute2's ip and the module: busybox sh prefers its own applets, so
# scripts call these by path.
export IP=/opt/hpcap/bin/ip HPCAP_KO=/opt/hpcap/hpcap.ko

# The first network interface driven by DRIVER (e.g. igb, igbvf); fails if none.
netdev_of() {
	local n drv
	for n in /sys/class/net/*; do
		drv=$(readlink "$n/device/driver" 2>/dev/null) || continue
		[ "${drv##*/}" = "$1" ] && { echo "${n##*/}"; return 0; }
	done
	return 1
}

# PCI addresses of the devices bound to DRIVER, one per line in address
# order; fails if there is none. Tests find their NIC this way (the kernel
# driver that claimed it at boot) instead of by vendor:device ID.
pci_by_driver() {
	local d found=1
	for d in /sys/bus/pci/drivers/"$1"/0000:*; do
		[ -e "$d" ] || continue
		echo "${d##*/}"
		found=0
	done
	return $found
}

# PCI addresses of the devices kernel module MODULE can drive, by its own
# aliases (modinfo -F alias, matched against each device's modalias), one
# per line in address order; fails if there is none. MODULE is a module name
# known to modprobe or the path of a .ko file.
pci_for_module() {
	local aliases d a m found=1
	aliases=$(modinfo -F alias "$1" 2>/dev/null | grep '^pci:') || { echo "pci_for_module: no PCI aliases for $1" >&2; return 1; }
	for d in /sys/bus/pci/devices/*; do
		read -r m <"$d/modalias" || continue
		for a in $aliases; do
			# shellcheck disable=SC2254 # the alias is a glob on purpose
			case "$m" in $a)
				echo "${d##*/}"
				found=0
				break
				;;
			esac
		done
	done
	return $found
}

# The first PCI device bound to DRIVER (see pci_by_driver).
pci_first() {
	local all
	all=$(pci_by_driver "$1") || { echo "pci_first: no PCI device is bound to $1" >&2; return 1; }
	echo "$all" | head -n 1
	return 0
}

# The driver PCI device BDF is bound to; empty if none.
pci_driver() {
	local drv
	drv=$(readlink "/sys/bus/pci/devices/$1/driver" 2>/dev/null) || { echo ""; return 0; }
	echo "${drv##*/}"
	return 0
}

# Bind PCI device BDF to DRIVER, unbinding it from its current driver.
pci_rebind() {
	local d=/sys/bus/pci/devices/$1
	[ -e "$d/driver" ] && echo "$1" >"$d/driver/unbind"
	echo "$2" >"$d/driver_override"
	echo "$1" >"/sys/bus/pci/drivers/$2/bind"
	return 0
}

# Undo pci_rebind: clear the override and let the kernel pick the driver.
pci_release() {
	local d=/sys/bus/pci/devices/$1
	[ -e "$d/driver" ] && echo "$1" >"$d/driver/unbind"
	echo >"$d/driver_override"
	echo "$1" >/sys/bus/pci/drivers_probe 2>/dev/null || true
	return 0
}

# Wait until PATH exists (at most SECS, default 10).
wait_for() {
	local n=0
	until [ -e "$1" ]; do
		sleep 0.1
		n=$((n + 1))
		[ $n -gt $((${2:-10} * 10)) ] && { echo "wait_for: no $1 after ${2:-10} s" >&2; return 1; }
	done
	return 0
}

# Wait until process PID has exited (at most SECS); 1 if it still runs.
wait_exit() {
	local n=0
	while kill -0 "$1" 2>/dev/null; do
		sleep 0.1
		n=$((n + 1))
		[ $n -lt $(($2 * 10)) ] || return 1
	done
	return 0
}

# Wait until network interface $1 reports carrier (at most $2 s, default 30).
wait_link() {
	local n=0
	until [ "$(cat "/sys/class/net/$1/operstate" 2>/dev/null)" = up ]; do
		sleep 0.1
		n=$((n + 1))
		[ $n -gt $((${2:-30} * 10)) ] && { echo "wait_link: $1 has no link" >&2; return 1; }
	done
	return 0
}

# The next injector round of this boot (rounds are numbered 1, 2, ... over
# the whole boot; a batch runs several scripts against one injector).
_inject_next_round() {
	local k=0
	[ -f /tmp/hpcap-vm.rounds ] && read -r k </tmp/hpcap-vm.rounds
	k=$((k + 1))
	echo $k >/tmp/hpcap-vm.rounds
	echo $k
	return 0
}

# Tell the host injector to replay this script's frames (its injection
# spec), at RATE frames/s if given (0 = unpaced), without waiting.
inject_start() {
	local k
	[ -f "$HPCAP_INJECT_SPEC" ] || { echo "inject_start: no injection was configured ($HPCAP_INJECT_SPEC)" >&2; return 1; }
	k=$(_inject_next_round)
	if [ -n "${1:-}" ]; then
		jq --argjson pps "$1" '.pps = $pps' "$HPCAP_INJECT_SPEC" >/host/rounds/.go."$k"
	else
		cp "$HPCAP_INJECT_SPEC" /host/rounds/.go."$k"
	fi
	# Renamed into place whole: the injector never reads half a file.
	mv /host/rounds/.go."$k" /host/rounds/go."$k"
	echo "$k" >/tmp/hpcap-vm.pending
	return 0
}

# Wait until the host injector has written every frame of the round
# inject_start began (at most $1 s, default 600). Its counts go to
# $HPCAP_OUT/inject.json and, numbered per script, inject.N.json.
inject_wait() {
	local k n=0 i=1
	read -r k </tmp/hpcap-vm.pending || { echo "inject_wait: no round was started" >&2; return 1; }
	until [ -e /host/rounds/done."$k" ]; do
		sleep 0.1
		n=$((n + 1))
		[ $n -gt $((${1:-600} * 10)) ] && { echo "inject_wait: round $k timed out" >&2; return 1; }
	done
	while [ -e "$HPCAP_OUT/inject.$i.json" ]; do i=$((i + 1)); done
	cp /host/rounds/done."$k" "$HPCAP_OUT/inject.$i.json"
	cp /host/rounds/done."$k" "$HPCAP_OUT/inject.json"
	rm -f /tmp/hpcap-vm.pending
	return 0
}

# Replay this script's frames once more at RATE frames/s (0 = unpaced) and
# wait until they are sent (at most $2 s, default 600).
inject_round() {
	inject_start "$1" && inject_wait "${2:-600}"
}

# One counter of hpcap device DEV (e.g. frames_seen), read with jq.
hpcap_counter() {
	hpcapctl stats --json "$1" | jq -e ".counters.$2"
}

# Wait until hpcap device $1 has at least $2 listeners attached (at most $3 s,
# default 30): a reader started in the background is then really reading.
wait_listeners() {
	local tries=0 have
	while :; do
		have=$(hpcapctl status --json "$1" | jq -e '.listeners') || have=0
		[ "$have" -ge "$2" ] && return 0
		sleep 0.1
		tries=$((tries + 1))
		[ $tries -gt $((${3:-30} * 10)) ] && { echo "wait_listeners: $1 has $have listeners, want $2" >&2; return 1; }
	done
}

# Wait until hpcap device $1 has drained: its frames_seen counter has not
# moved for $2 checks 0.2 s apart (default 5); frames stopped arriving and
# the idle flush has closed the last block.
wait_drained() {
	local prev='' same=0 cur
	while [ $same -lt "${2:-5}" ]; do
		cur=$(hpcap_counter "$1" frames_seen) || cur=''
		if [ "$cur" = "$prev" ]; then same=$((same + 1)); else same=0; fi
		prev=$cur
		sleep 0.2
	done
	return 0
}

# Wait until the listener of process $2 on hpcap device $1 has consumed
# everything published (lag 0), at most $3 s (default 60).
wait_caught_up() {
	local tries=0 lag
	while :; do
		lag=$(hpcapctl status --json "$1" | jq -e --argjson pid "$2" '[.listener[] | select(.pid == $pid) | .lag] | first') || lag=''
		[ "$lag" = 0 ] && return 0
		sleep 0.2
		tries=$((tries + 1))
		[ $tries -gt $((${3:-60} * 5)) ] && { echo "wait_caught_up: listener of pid $2 on $1 still lags ($lag)" >&2; return 1; }
	done
}

# Wait until file $1 holds a value that stops changing for $2 checks 0.2 s
# apart (default 5); prints the value.
wait_stable() {
	local prev='' same=0 cur
	while [ $same -lt "${2:-5}" ]; do
		cur=$(cat "$1")
		if [ "$cur" = "$prev" ]; then same=$((same + 1)); else same=0; fi
		prev=$cur
		sleep 0.2
	done
	echo "$cur"
	return 0
}

# Wait until file $1 has stopped growing: its size has not changed for $2
# checks 0.2 s apart (default 5), e.g. a writer has caught up.
wait_size_stable() {
	local prev='' same=0 cur
	while [ $same -lt "${2:-5}" ]; do
		cur=$(stat -c %s "$1" 2>/dev/null) || cur=''
		if [ "$cur" = "$prev" ]; then same=$((same + 1)); else same=0; fi
		prev=$cur
		sleep 0.2
	done
	return 0
}

# Seconds since boot (a decimal), for durations measured in the guest.
uptime_s() {
	cut -d' ' -f1 /proc/uptime
}

# Ask the host to hot-remove (hotplug_del ID) or hot-add (hotplug_add ID)
# the QEMU device ID (tools/hpcap-vm --hotplug: nic0 is the igb NIC, model0
# the vfio-user device), and wait for its answer (at most $2 s, default
# 240). hotplug_del returns once QEMU has sent DEVICE_DELETED, i.e. after
# this guest's pciehp removed the function and powered its slot off. The
# host's answer (JSON: ok, error, seconds) is printed.
_hotplug() {
	local k=0 n=0
	[ -d /host/hotplug ] || { echo "hotplug: the host serves no hotplug requests (hpcap-vm --hotplug)" >&2; return 1; }
	[ -f /tmp/hpcap-vm.hotplug ] && read -r k </tmp/hpcap-vm.hotplug
	k=$((k + 1))
	echo $k >/tmp/hpcap-vm.hotplug
	printf '{"op": "%s", "id": "%s"}\n' "$1" "$2" >/host/hotplug/.req."$k"
	mv /host/hotplug/.req."$k" /host/hotplug/req."$k"
	until [ -e /host/hotplug/done."$k" ]; do
		sleep 0.1
		n=$((n + 1))
		[ $n -gt $((${3:-240} * 10)) ] && { echo "hotplug: no answer to $1 $2 after ${3:-240} s" >&2; return 1; }
	done
	cat /host/hotplug/done."$k"
	jq -e .ok /host/hotplug/done."$k" >/dev/null || return 1
	return 0
}
hotplug_del() { _hotplug del "$1" "${2:-240}"; }
hotplug_add() { _hotplug add "$1" "${2:-240}"; }
