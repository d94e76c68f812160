# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# Probe fails after each of its steps in turn (module parameter
# fail_probe_at=1..STEPS), on the 82576 PF and on one of its VFs, while
# frames arrive. After every failure the device is unbound, bus mastering is
# off and the receive queue is disabled in the device's own registers (read
# through BAR0), so nothing can DMA into memory the failed probe freed; the
# kernel's checkers (KFENCE, lockdep, DEBUG_OBJECTS) stay quiet (the batch
# runner fails the case on any report). Then a normal probe of each device
# captures again. Prints PROBE-FAULT-OK at the end.
set -e
STEPS=${STEPS:-9}

# $1 = BDF, $2 = register offset in BAR0: prints the 32-bit value.
bar0_read() {
	local base
	read -r base _ <"/sys/bus/pci/devices/$1/resource"
	devmem $((base + $2)) 32
}

# The device BDF ($1, a "$2" for messages) is quiet after a failed probe.
check_quiet() {
	local cmd rxdctl rctl
	[ -z "$(pci_driver "$1")" ] || { echo "$2: still bound to $(pci_driver "$1")"; return 1; }
	# PCI COMMAND (config offset 4): bit 2 is bus mastering.
	cmd=$(od -An -tu2 -j4 -N2 "/sys/bus/pci/devices/$1/config" | tr -d ' ')
	[ $((cmd & 4)) -eq 0 ] || { echo "$2: bus mastering still on (COMMAND $cmd)"; return 1; }
	# RXDCTL of queue 0 (0x2828 in both the PF's and the VF's register
	# space): bit 25 enables the queue.
	rxdctl=$(bar0_read "$1" $((0x2828)))
	[ $((rxdctl & (1 << 25))) -eq 0 ] || { echo "$2: RXDCTL $rxdctl: queue 0 still enabled"; return 1; }
	if [ "$3" = pf ]; then
		# RCTL (0x0100): bit 1 enables the receiver.
		rctl=$(bar0_read "$1" $((0x0100)))
		[ $((rctl & 2)) -eq 0 ] || { echo "$2: RCTL $rctl: receiver still enabled"; return 1; }
	fi
	return 0
}

# Walks every step on device BDF ($1), of kind $2 (pf|vf).
walk() {
	local step out before after
	step=1
	while [ $step -le "$STEPS" ]; do
		insmod "$HPCAP_KO" buffer_mb=4 block_kb=256 fail_probe_at=$step
		before=$(dmesg | grep -c "fail_probe_at=$step: failing probe after step" || true)
		# The bind fails (ECANCELED); pci_rebind itself does not say so.
		out=$(pci_rebind "$1" hpcap 2>&1) || true
		if [ "$(pci_driver "$1")" = hpcap ]; then
			echo "$2 step $step: probe succeeded although fail_probe_at=$step"
			return 1
		fi
		after=$(dmesg | grep -c "fail_probe_at=$step: failing probe after step" || true)
		[ "$after" -gt "$before" ] ||
			{ echo "$2 step $step: no fault-injection message ($out)"; return 1; }
		check_quiet "$1" "$2 step $step" "$2"
		[ ! -e /dev/hpcap0 ] || { echo "$2 step $step: /dev/hpcap0 left behind"; return 1; }
		rmmod hpcap
		echo "$2 step $step: failed cleanly"
		step=$((step + 1))
	done
}

# A normal probe of BDF ($1) captures the frames of one round.
captures() {
	local seen pid
	insmod "$HPCAP_KO" buffer_mb=4 block_kb=256
	pci_rebind "$1" hpcap
	wait_for "/dev/hpcap/by-pci/$1"
	hpcapdd --null "/dev/hpcap/by-pci/$1" 2>/dev/null &
	pid=$!
	wait_listeners "/dev/hpcap/by-pci/$1" 1
	inject_round 0 600
	wait_drained "/dev/hpcap/by-pci/$1"
	seen=$(hpcap_counter "/dev/hpcap/by-pci/$1" frames_seen)
	kill -INT $pid
	wait $pid
	[ "$seen" -gt 0 ] || { echo "$2: no frames after the fault walk"; return 1; }
	echo "$2: captured $seen frames after the walk"
	pci_release "$1"
	rmmod hpcap
}

pf=$(pci_first igb)
# Frames arrive during the walk: a receive queue left running would write
# them into freed memory.
inject_start 2000
walk "$pf" pf
inject_wait 600
captures "$pf" pf
pci_release "$pf"

# A VF of the (kernel igb) PF, as in capture.sh.
dev=$(netdev_of igb)
ip link set "$dev" up
wait_link "$dev"
echo 0 >"/sys/bus/pci/devices/$pf/sriov_drivers_autoprobe"
echo 1 >"/sys/bus/pci/devices/$pf/sriov_numvfs"
"$IP" link set "$dev" vf 0 mac 02:00:00:00:00:10
vf=$(basename "$(readlink "/sys/bus/pci/devices/$pf/virtfn0")")
walk "$vf" vf
captures "$vf" vf
echo 0 >"/sys/bus/pci/devices/$pf/sriov_numvfs"
echo PROBE-FAULT-OK
