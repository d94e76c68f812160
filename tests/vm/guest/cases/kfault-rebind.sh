# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# Kernel fault campaign (issue 13): the 82576 PF is taken away from hpcap
# ROUNDS times (default 15) while frames arrive, hpcapdd reads and maps the
# buffer and a stalled blocking listener (hpcap-abi-probe --hold map) keeps
# touching its mapping. The way it goes away cycles through three kinds:
#   unbind    echo BDF >/sys/bus/pci/drivers/hpcap/unbind
#   remove    echo 1 >/sys/bus/pci/devices/BDF/remove, then a bus rescan
#             (the removal the kernel's PCI hotplug drivers perform when
#             QEMU's device_del is acknowledged)
#   surprise  memory decoding and bus mastering switched off in the
#             function's COMMAND register first, so the driver finds a
#             device that reads as gone (no register answers, no DMA) for a
#             second before the removal: a NIC pulled out of its slot
# Before and after the removal, while files and mappings are open, `rmmod
# hpcap` must fail with "in use" and leave the module loaded; once the
# holders are gone every fifth round it must unload, and is loaded again.
# After the removal hpcapdd must end by itself (within 30 s) and the holder
# must still read its mapping. In the surprise kind, the NIC counters of the
# device (STATS) must not jump while its registers are dead. Per round one line "ROUND k kind: ..." and at
# the end "REBIND-OK n"; the host checks dmesg for any kernel report.
#
# NIC (default igb) picks the port: igb (the 82576 PF, QEMU's), or iavf,
# i40e or ixgbevf (the XL710 VF or PF or the 82599 VF of hpcap-model over
# vfio-user). KINDS (default "unbind remove surprise") is the cycle of
# kinds. Each round k leaves in $HPCAP_OUT/rk/: hpcapdd's files and its
# --stats-json lines, hpcap's counters before the traffic
# (stats-before.json), the "final counters" line the driver printed at the
# removal (final.txt) and, with a device model, the model's counters before
# the traffic, a second after the removal and after the round
# (model-{before,unbound,after}.json): the host checks that every frame
# the model delivered is stored or counted where it was lost.
set -e
rounds=${ROUNDS:-15}
nic=${NIC:-igb}
kinds=${KINDS:-unbind remove surprise}
nkinds=$(echo "$kinds" | wc -w)
model() {
	[ ! -f /host/model.json ] || cp /host/model.json "$1"
	return 0
}
insmod "$HPCAP_KO" buffer_mb=4 block_kb=256
case $nic in
igb) bdf=$(pci_first igb) ;;
*) bdf=$(pci_for_module "$nic" | head -n 1) ;;
esac
[ -n "$bdf" ] || { echo "kfault-rebind: no port for NIC=$nic"; exit 1; }
dev=/dev/hpcap/by-pci/$bdf
# The function's config space, for the surprise kind.
cfg=/sys/bus/pci/devices/$bdf/config

rmmod_refused() {
	local err
	if err=$(rmmod hpcap 2>&1); then
		echo "rmmod hpcap succeeded while $1"
		return 1
	fi
	grep -q '^hpcap ' /proc/modules || { echo "rmmod failed ($err) but hpcap is gone"; return 1; }
	case "$err" in
	*"in use"* | *busy* | *Busy* | *"temporarily unavailable"*) ;;
	*)
		echo "rmmod hpcap while $1: unexpected error: $err"
		return 1
		;;
	esac
	return 0
}

# (busybox rmmod calls delete_module with O_NONBLOCK: a module in use is
# EWOULDBLOCK, "Resource temporarily unavailable", or EBUSY.)
k=1
bad=0
while [ $k -le "$rounds" ]; do
	# shellcheck disable=SC2086 # the list of kinds, split on purpose
	kind=$(echo $kinds | cut -d' ' -f$(((k - 1) % nkinds + 1)))
	r=$HPCAP_OUT/r$k
	mkdir -p "$r"
	[ -e "/sys/bus/pci/devices/$bdf" ] || { echo "ROUND $k: $bdf did not come back"; exit 1; }
	pci_rebind "$bdf" hpcap
	wait_for "$dev" 20
	rm -rf /mnt/disk/kf
	mkdir -p /mnt/disk/kf
	hpcapdd --stats-json "$r/dd.jsonl" "$dev" /mnt/disk/kf 2>"$r/dd.err" &
	dd=$!
	hpcap-abi-probe --hold "$dev" map >/tmp/case.kf.hold 2>&1 &
	hold=$!
	wait_listeners "$dev" 2 30
	# The model writes its counters every 200 ms.
	[ ! -f /host/model.json ] || sleep 0.5
	model "$r/model-before.json"
	hpcapctl stats --json "$dev" >"$r/stats-before.json"
	inject_start
	sleep 0.3
	rmmod_refused "captured and mapped" || bad=$((bad + 1))
	case $kind in
	unbind) echo "$bdf" >/sys/bus/pci/drivers/hpcap/unbind ;;
	remove) echo 1 >"/sys/bus/pci/devices/$bdf/remove" ;;
	surprise)
		r0=$(hpcap_counter "$dev" nic_received)
		# COMMAND (offset 4, 16 bits, little-endian) = 0: no memory
		# decoding, no bus mastering.
		printf '\000\000' | dd of="$cfg" bs=1 seek=4 count=2 conv=notrunc 2>/dev/null
		# The service thread reads the NIC's counters every 100 ms: a
		# vanished function must not add what its dead registers read.
		sleep 1
		r1=$(hpcap_counter "$dev" nic_received)
		status=$(hpcap-abi-probe --bar32 "/sys/bus/pci/devices/$bdf/resource0" 8) || status=unreadable
		echo "ROUND $k surprise: STATUS reads $status with decoding off; nic_received $r0 -> $r1"
		if [ $((r1 - r0)) -gt 1000 ]; then
			echo "ROUND $k surprise: the NIC counters jumped by $((r1 - r0)) frames with the device gone"
			bad=$((bad + 1))
		fi
		echo 1 >"/sys/bus/pci/devices/$bdf/remove"
		;;
	esac
	wait_exit $dd 30 || { echo "ROUND $k $kind: hpcapdd still running 30 s after the removal"; exit 1; }
	rc=0
	wait $dd || rc=$?
	dmesg | grep 'final counters' | tail -n 1 >"$r/final.txt"
	kill -0 $hold 2>/dev/null || { echo "ROUND $k $kind: the mapping holder died:"; cat /tmp/case.kf.hold; exit 1; }
	rmmod_refused "a removed device's file is mapped" || bad=$((bad + 1))
	kill $hold
	wait $hold 2>/dev/null || true
	[ ! -f /host/model.json ] || { sleep 1 && model "$r/model-unbound.json"; }
	inject_wait 120
	[ ! -f /host/model.json ] || { sleep 0.5 && model "$r/model-after.json"; }
	cp -r /mnt/disk/kf/. "$r/"
	if [ "$kind" != unbind ]; then
		echo 1 >/sys/bus/pci/rescan
		wait_for "/sys/bus/pci/devices/$bdf" 20
	fi
	unloaded=''
	if [ $((k % 5)) = 0 ]; then
		# Nothing holds the module now: it must go, and come back.
		for d in $(pci_by_driver hpcap 2>/dev/null); do echo "$d" >/sys/bus/pci/drivers/hpcap/unbind; done
		rmmod hpcap || { echo "ROUND $k: rmmod failed with nothing open"; exit 1; }
		insmod "$HPCAP_KO" buffer_mb=4 block_kb=256
		unloaded=', unloaded and loaded again'
	fi
	echo "ROUND $k $kind: hpcapdd exit $rc$unloaded"
	k=$((k + 1))
done
[ $bad = 0 ] || { echo "REBIND-FAILED: $bad check(s)"; exit 1; }
pci_release "$bdf"
rmmod hpcap
echo "REBIND-OK $rounds"
