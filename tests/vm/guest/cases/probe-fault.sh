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
	hpcap-abi-probe --bar32 "/sys/bus/pci/devices/$1/resource0" "$2"
}

# The device BDF ($1, "$2" in messages, kind $3 pf|vf) is quiet after a
# probe that failed after step $4.
check_quiet() {
	local cmd rxdctl rctl
	[ -z "$(pci_driver "$1")" ] || { echo "$2: still bound to $(pci_driver "$1")"; return 1; }
	# PCI COMMAND (config offset 4): bit 2 is bus mastering. Off, the
	# function cannot DMA at all, whatever its queues say.
	cmd=$(od -An -tu2 -j4 -N2 "/sys/bus/pci/devices/$1/config" | tr -d ' ')
	[ $((cmd & 4)) -eq 0 ] || { echo "$2: bus mastering still on (COMMAND $cmd)"; return 1; }
	# Before step 4 (Backend) hpcap has not touched the NIC: its registers
	# are as the previous driver left them.
	[ "$4" -ge 4 ] || return 0
	if [ "$3" = pf ]; then
		# From step 4 hpcap has reset the PF: RCTL (0x0100) bit 1, the
		# receiver enable, must be off. (Queue 0's RXDCTL.ENABLE is set by
		# the reset itself, datasheet default; the receiver gates it.)
		rctl=$(bar0_read "$1" $((0x0100)))
		[ $((rctl & 2)) -eq 0 ] || { echo "$2: RCTL $rctl: receiver still enabled"; return 1; }
	fi
	# From step 5 (Queue) hpcap had started queue 0: RXDCTL (0x2828 in
	# both the PF's and the VF's register space) bit 25 must be off again.
	[ "$4" -ge 5 ] || return 0
	rxdctl=$(bar0_read "$1" $((0x2828)))
	[ $((rxdctl & (1 << 25))) -eq 0 ] || { echo "$2: RXDCTL $rxdctl: queue 0 still enabled"; return 1; }
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
		check_quiet "$1" "$2 step $step" "$2" $step
		[ ! -e /dev/hpcap0 ] || { echo "$2 step $step: /dev/hpcap0 left behind"; return 1; }
		rmmod hpcap
		echo "$2 step $step: failed cleanly"
		step=$((step + 1))
	done
}

# A normal probe of BDF ($1, "$2" in messages) captures the frames of the
# pending round, or with $3 = new of a round started now.
captures() {
	local seen pid
	insmod "$HPCAP_KO" buffer_mb=4 block_kb=256
	pci_rebind "$1" hpcap
	wait_for "/dev/hpcap/by-pci/$1"
	hpcapdd --null "/dev/hpcap/by-pci/$1" 2>/dev/null &
	pid=$!
	wait_listeners "/dev/hpcap/by-pci/$1" 1
	[ "${3:-}" != new ] || inject_start 2000
	inject_wait 600
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
# Frames are sent during the walk: a receive queue left running would write
# them into freed memory. (While the port receives nothing QEMU holds them
# back; they arrive when hpcap binds normally afterwards.)
inject_start 2000
walk "$pf" pf
captures "$pf" pf

# A VF of the (kernel igb) PF, as in capture.sh.
dev=$(netdev_of igb)
ip link set "$dev" up
wait_link "$dev"
echo 0 >"/sys/bus/pci/devices/$pf/sriov_drivers_autoprobe"
echo 1 >"/sys/bus/pci/devices/$pf/sriov_numvfs"
"$IP" link set "$dev" vf 0 mac 02:00:00:00:00:10
vf=$(basename "$(readlink "/sys/bus/pci/devices/$pf/virtfn0")")
# Frames for the VF during its walk: the PF (kernel igb) keeps the port
# receiving, so the NIC model drops what finds the VF's queue off.
inject_start 2000
walk "$vf" vf
inject_wait 600
captures "$vf" vf new
echo 0 >"/sys/bus/pci/devices/$pf/sriov_numvfs"
echo PROBE-FAULT-OK
