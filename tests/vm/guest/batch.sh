#!/bin/sh
# SPDX-License-Identifier: MIT
# shellcheck shell=dash
#
# Batch runner: runs several independent test cases in one guest boot
# (tools/hpcap-vm batch). DIR/list names the cases in order; each case
# directory DIR/NAME holds cmd.sh (the script), optionally env.sh (its
# variables), inject-spec.json (its frames) and timeout (seconds). Each case
# runs in its own session with HPCAP_OUT=DIR/NAME, where it leaves its
# results; the runner then adds:
#   console.txt  the case's stdout and stderr
#   cleanup.txt  what the runner undid after the case (see cleanup below)
#   dmesg.txt    the kernel log from the case's start marker to its end
#   seconds      how long the case and its cleanup took
#   rc           the exit status (written last: the case is complete)
# A case that outlives its timeout is killed with its whole session and
# gets status 124. If lockdep has switched itself off (it reports only the
# first problem of a boot), the runner stops before the next case and
# writes DIR/stopped; tools/hpcap-vm runs the rest in a fresh boot.
dir=$1
# shellcheck source=tests/vm/guest/vm-lib.sh
. /opt/hpcap/lib/vm-lib.sh

# Drivers of the PCI network devices at the start of the batch, restored
# after every case.
: >/tmp/batch.drivers
for d in /sys/bus/pci/devices/*; do
	case "$(cat "$d/class")" in 0x02*) echo "${d##*/} $(pci_driver "${d##*/}")" >>/tmp/batch.drivers ;; esac
done

# Modules loaded at the start of the batch; a case's own are unloaded after it.
cut -d' ' -f1 /proc/modules >/tmp/batch.modules

lockdep_on() {
	[ -r /proc/lockdep_stats ] || return 0
	! grep -qE 'debug_locks: +0' /proc/lockdep_stats
}

# Kill every process of the case's session $SID (its background readers
# included), never the runner itself.
kill_session() {
	local p stat
	for p in /proc/[0-9]*; do
		[ "${p#/proc/}" = "$$" ] && continue
		# read, not $(cat): a fork per process costs seconds under TCG
		read -r stat <"$p/stat" 2>/dev/null || continue
		# Fields after "pid (comm) ": state ppid pgrp session ...
		stat=${stat##*) }
		# shellcheck disable=SC2086 # split the fields on purpose
		set -- $stat
		[ "$4" = "$SID" ] && kill -KILL "${p#/proc/}" 2>/dev/null
	done
	return 0
}

# Put the guest back into its boot state after a case; prints what it did
# and fails if something could not be undone.
cleanup() {
	local ok=0 bdf drv want k n dev override m
	# Frames of a round the case started but did not wait for would reach
	# the next case: let the round end, into the PF (restored below).
	k=''
	[ -f /tmp/hpcap-vm.pending ] && read -r k </tmp/hpcap-vm.pending
	if grep -q '^hpcap ' /proc/modules; then
		for bdf in $(pci_by_driver hpcap); do
			echo "unbinding $bdf from hpcap"
			echo "$bdf" >/sys/bus/pci/drivers/hpcap/unbind
		done
		echo "rmmod hpcap"
		rmmod hpcap || { echo "cleanup: rmmod hpcap failed"; ok=1; }
	fi
	# Other modules the case loaded (e.g. iavf and its libraries), users
	# first. Not under systemd (the Debian guest): there udev and services
	# load modules of their own (docker: bridge, overlay, netfilter) that a
	# running daemon keeps using; hpcap is unloaded above in either guest.
	if [ ! -d /run/systemd/system ]; then
		for _ in 1 2 3 4; do
			cut -d' ' -f1 /proc/modules >/tmp/batch.modules.now
			while read -r m; do
				grep -qx "$m" /tmp/batch.modules && continue
				rmmod "$m" 2>/dev/null && echo "rmmod $m"
			done </tmp/batch.modules.now
		done
		cut -d' ' -f1 /proc/modules >/tmp/batch.modules.now
		while read -r m; do
			grep -qx "$m" /tmp/batch.modules || { echo "cleanup: cannot unload $m"; ok=1; }
		done </tmp/batch.modules.now
	fi
	for d in /sys/bus/pci/devices/*; do
		[ -w "$d/sriov_numvfs" ] || continue
		n=$(cat "$d/sriov_numvfs")
		[ "$n" = 0 ] && continue
		echo "removing $n VFs of ${d##*/}"
		echo 0 >"$d/sriov_numvfs" || { echo "cleanup: cannot remove the VFs of ${d##*/}"; ok=1; }
	done
	while read -r bdf want; do
		[ -e "/sys/bus/pci/devices/$bdf" ] || continue
		drv=$(pci_driver "$bdf")
		read -r override <"/sys/bus/pci/devices/$bdf/driver_override"
		# An unset override reads "(null)".
		[ "$override" = "(null)" ] && override=''
		[ -n "$override" ] || [ "$drv" != "$want" ] || continue
		echo "rebinding $bdf ($drv) to ${want:-no driver}"
		pci_release "$bdf"
		[ "$(pci_driver "$bdf")" = "$want" ] || { echo "cleanup: $bdf is bound to '$(pci_driver "$bdf")', not '$want'"; ok=1; }
	done </tmp/batch.drivers
	if [ -n "$k" ]; then
		echo "draining injector round $k"
		dev=$(netdev_of igb) && ip link set "$dev" up promisc on
		n=0
		until [ -e "/host/rounds/done.$k" ]; do
			sleep 0.2
			n=$((n + 1))
			[ $n -lt 3000 ] || { echo "cleanup: round $k did not end"; ok=1; break; }
		done
		[ -n "$dev" ] && wait_stable "/sys/class/net/$dev/statistics/rx_packets" 5 >/dev/null
		rm -f /tmp/hpcap-vm.pending
	fi
	for n in /sys/class/net/*; do
		[ "${n##*/}" = lo ] || ip link set "${n##*/}" down promisc off 2>/dev/null || true
	done
	if grep -q ' /mnt/disk ' /proc/mounts; then
		find /mnt/disk -mindepth 1 -maxdepth 1 ! -name lost+found -exec rm -rf {} +
	fi
	rm -rf /dev/shm/* /tmp/case.*
	return $ok
}

# kmemleak (the sanitize kernel has it; it scans only when asked): forget
# what boot left, then scan after every case and write what it finds into
# the kernel log, inside the case's slice, where the host's DMESG_BAD check
# sees it ("kmemleak: unreferenced object ...").
kmemleak=/sys/kernel/debug/kmemleak
if [ -w $kmemleak ]; then
	echo scan >$kmemleak && echo clear >$kmemleak
else
	kmemleak=''
fi
kmemleak_scan() {
	[ -n "$kmemleak" ] || return 0
	# An object is reported only once unreferenced for 5 s (kmemleak's
	# minimum age): wait that long after the case's module was unloaded.
	sleep 6
	echo scan >$kmemleak || { echo "hpcap-vm: kmemleak: the scan failed" >/dev/kmsg; return 0; }
	if [ -s $kmemleak ]; then
		echo "hpcap-vm: kmemleak: case $1 left $(grep -c '^unreferenced object' $kmemleak) suspected memory leak(s):" >/dev/kmsg
		while IFS= read -r line; do
			echo "kmemleak: $line" >/dev/kmsg
		done <$kmemleak
		echo clear >$kmemleak
	fi
}

first=1
while read -r name; do
	c=$dir/$name
	[ -e "$c/rc" ] && continue # finished in an earlier boot
	if [ $first = 0 ] && ! lockdep_on; then
		echo "lockdep switched itself off before case $name" >"$dir/stopped"
		echo "HPCAP-VM: lockdep is off; the remaining cases need a fresh boot"
		break
	fi
	first=0
	tmo=600
	[ -f "$c/timeout" ] && read -r tmo <"$c/timeout"
	echo "HPCAP-VM: case $name"
	echo "hpcap-vm: case $name begins" >/dev/kmsg
	: >"$c/started"
	t0=$(date +%s)
	rm -f /tmp/case.sid
	# shellcheck disable=SC2016 # expanded by the case's shell
	timeout -s KILL "$tmo" setsid sh -c '
		echo $$ >/tmp/case.sid
		cd /tmp || exit 125
		export HPCAP_OUT=$1 HPCAP_INJECT_SPEC=$1/inject-spec.json
		. /opt/hpcap/lib/vm-lib.sh
		if [ -f "$1/env.sh" ]; then . "$1/env.sh"; fi
		. "$1/cmd.sh"' case "$c" >"$c/console.txt" 2>&1 </dev/null
	rc=$?
	if [ $(($(date +%s) - t0)) -ge "$tmo" ]; then
		echo "hpcap-vm: case $name killed after its timeout of $tmo s" >>"$c/console.txt"
		rc=124
	fi
	SID=''
	[ -f /tmp/case.sid ] && read -r SID </tmp/case.sid
	[ -n "$SID" ] && kill_session
	if ! cleanup >"$c/cleanup.txt" 2>&1; then
		echo "hpcap-vm: case $name left the guest in a state the runner could not undo:" >>"$c/console.txt"
		cat "$c/cleanup.txt" >>"$c/console.txt"
		[ $rc = 0 ] && rc=125
	fi
	kmemleak_scan "$name"
	echo "hpcap-vm: case $name ends" >/dev/kmsg
	dmesg >/tmp/dmesg.all
	if grep -q "hpcap-vm: case $name begins" /tmp/dmesg.all; then
		sed -n "/hpcap-vm: case $name begins/,\$p" /tmp/dmesg.all >"$c/dmesg.txt"
	else
		echo "hpcap-vm: case $name: its start marker left the kernel log buffer (log_buf_len too small?)" >>"$c/console.txt"
		cp /tmp/dmesg.all "$c/dmesg.txt"
		[ $rc = 0 ] && rc=125
	fi
	sed 's/^/    /' "$c/console.txt"
	echo $(($(date +%s) - t0)) >"$c/seconds"
	echo "HPCAP-VM: case $name status $rc ($(cat "$c/seconds") s)"
	echo "$rc" >"$c/.rc" && mv "$c/.rc" "$c/rc"
done <"$dir/list"
sync
exit 0
