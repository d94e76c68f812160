# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# Hot removal of the captured NIC mid-capture through QEMU's device_del
# (issue 13), in a boot of `tools/hpcap-vm --hotplug`: the NIC sits behind a
# hotplug-capable PCIe root port and the guest's pciehp handles its slot.
# ROUNDS times (default 3): hpcap captures the port, hpcapdd reads and maps
# the buffer and a stalled blocking listener (hpcap-abi-probe --hold map)
# touches its mapping; frames arrive; a second later the host is asked to
# device_del the NIC (hotplug_del: QEMU presses the slot's Attention
# Button, pciehp waits its 5 s, removes the function with hpcap still
# bound, powers the slot off, and QEMU then deletes the device and sends
# DEVICE_DELETED). Then:
#   - the function is gone from the guest; hpcapdd ends by itself (within
#     30 s), exit status 0, its files finished (hpcap-check passes on each);
#   - the holder is alive, still reads its mapping, and its WAIT keeps
#     answering without an error (it has unread bytes: the end of the
#     stream, HPCAP_WAIT_HUP, comes once it has consumed them);
#   - `rmmod hpcap` is refused while the holder's file is open;
#   - the round's frames are all sent (what the host sends after the
#     removal has no NIC to go to: QEMU discards it);
#   - the device is added back (hotplug_add); Linux's igb driver probes it.
# At the end `rmmod hpcap` works. The host checks the rest: the accounting
# from the driver's final counters, printed at the removal (final.txt),
# minus those before the traffic (stats-before.json); the files; dmesg.
#
# NIC (default igb): igb (QEMU's 82576 PF, QEMU id nic0) or i40e (the XL710
# PF of hpcap-model over vfio-user, model0; one round, see docs/testing.md).
# Each round k leaves in $HPCAP_OUT/rk/: hpcapdd's files and --stats-json
# lines (dd.jsonl, dd.err), the holder's output (hold.txt), stats-before.json,
# final.txt, the host's answers (del.json, add.json), hpcap-check's output
# (check.txt), and with a device model its counters before the traffic
# (model-before.json) and after the removal (model-after.json).
set -e
rounds=${ROUNDS:-3}
nic=${NIC:-igb}
case $nic in
igb) qid=nic0 ;;
*) qid=model0 ;;
esac
model() {
	[ ! -f /host/model.json ] || cp /host/model.json "$1"
	return 0
}
find_port() {
	case $nic in
	igb) pci_first igb ;;
	*) pci_for_module "$nic" | head -n 1 ;;
	esac
}
rmmod_refused() {
	local err
	if err=$(rmmod hpcap 2>&1); then
		echo "rmmod hpcap succeeded while $1"
		return 1
	fi
	grep -q '^hpcap ' /proc/modules || { echo "rmmod failed ($err) but hpcap is gone"; return 1; }
	return 0
}
insmod "$HPCAP_KO" buffer_mb=16 block_kb=256
bad=0
k=1
while [ $k -le "$rounds" ]; do
	r=$HPCAP_OUT/r$k
	mkdir -p "$r"
	bdf=$(find_port) || { echo "ROUND $k: no port for NIC=$nic"; exit 1; }
	pci_rebind "$bdf" hpcap
	dev=/dev/hpcap/by-pci/$bdf
	wait_for "$dev" 20
	rm -rf /mnt/disk/hp
	mkdir -p /mnt/disk/hp
	hpcapdd --stats-json "$r/dd.jsonl" "$dev" /mnt/disk/hp 2>"$r/dd.err" &
	dd=$!
	hpcap-abi-probe --hold "$dev" map >"$r/hold.txt" 2>&1 &
	hold=$!
	wait_listeners "$dev" 2 30
	[ ! -f /host/model.json ] || sleep 0.5
	model "$r/model-before.json"
	hpcapctl stats --json "$dev" >"$r/stats-before.json"
	inject_start
	sleep 1
	echo "ROUND $k: device_del $qid ($bdf) mid-capture, $(hpcap_counter "$dev" frames_seen) frames seen"
	hotplug_del "$qid" >"$r/del.json" || { echo "ROUND $k: device_del $qid failed:"; cat "$r/del.json"; exit 1; }
	[ ! -e "/sys/bus/pci/devices/$bdf" ] || { echo "ROUND $k: $bdf is still there after DEVICE_DELETED"; exit 1; }
	wait_exit $dd 30 || { echo "ROUND $k: hpcapdd still running 30 s after the removal"; exit 1; }
	rc=0
	wait $dd || rc=$?
	[ $rc = 0 ] || { echo "ROUND $k: hpcapdd exit $rc"; bad=$((bad + 1)); }
	dmesg | grep 'final counters' | tail -n 1 >"$r/final.txt"
	# The holder polls WAIT every 50 ms; give it time to see the end.
	sleep 0.5
	kill -0 $hold 2>/dev/null || { echo "ROUND $k: the mapping holder died:"; cat "$r/hold.txt"; exit 1; }
	rmmod_refused "a removed device's file is mapped" || bad=$((bad + 1))
	kill $hold
	wait $hold 2>/dev/null || true
	# It has unread bytes, so WAIT goes on answering them (HUP comes once
	# everything published is consumed, docs/abi.md); it must not fail.
	! grep -q 'WAIT: error' "$r/hold.txt" || { echo "ROUND $k: the holder's WAIT failed:"; cat "$r/hold.txt"; bad=$((bad + 1)); }
	inject_wait 300
	[ ! -f /host/model.json ] || { sleep 0.5 && model "$r/model-after.json"; }
	cp -r /mnt/disk/hp/. "$r/"
	hidden=$(find /mnt/disk/hp -name '.*' -type f)
	[ -z "$hidden" ] || { echo "ROUND $k: unfinished files left: $hidden"; bad=$((bad + 1)); }
	: >"$r/check.txt"
	find /mnt/disk/hp -type f -name '*.pcapng' >/tmp/case.hp.files
	while read -r f; do
		hpcap-check "$f" >>"$r/check.txt" 2>&1 || { echo "ROUND $k: hpcap-check fails on $f"; bad=$((bad + 1)); }
	done </tmp/case.hp.files
	[ -s /tmp/case.hp.files ] || { echo "ROUND $k: hpcapdd left no file"; bad=$((bad + 1)); }
	if [ $k -lt "$rounds" ] || [ "$nic" = igb ]; then
		# Back into its slot: Linux's own driver probes it again.
		hotplug_add "$qid" >"$r/add.json" || { echo "ROUND $k: device_add $qid failed:"; cat "$r/add.json"; exit 1; }
		back=/sys/bus/pci/devices/$bdf
		[ "$nic" != igb ] || back=$back/driver
		n=0
		until [ -e "$back" ]; do
			sleep 0.1
			n=$((n + 1))
			[ $n -lt 300 ] || { echo "ROUND $k: no $back 30 s after device_add"; exit 1; }
		done
	fi
	echo "ROUND $k: hpcapdd exit $rc, $(jq -r .seconds "$r/del.json" | cut -c1-4) s from device_del to DEVICE_DELETED"
	k=$((k + 1))
done
rmmod hpcap || { echo "rmmod hpcap failed with every file closed"; exit 1; }
[ $bad = 0 ] || { echo "HOTPLUG-FAILED: $bad check(s)"; exit 1; }
echo "HOTPLUG-OK $rounds"
