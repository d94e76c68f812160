# SPDX-License-Identifier: MIT
# shellcheck shell=dash
#
# `tools/hpcap-vm capture`: load hpcap.ko, bind the NIC, store the injected
# frames with hpcapdd on the virtio disk, and leave in $HPCAP_OUT the stored
# files (out/), the device's counters (hpcap-stats.json), hpcapdd's status
# lines and the guest-side duration (times.json). Parameters come from the
# environment (set by hpcap-vm): NIC (igb|igbvf), VF_MAC, VF_VLAN,
# BUFFER_MB, BLOCK_KB, CONSUMERS, SNAPLEN, FORMAT (0 pcapng, 1 raw), RING,
# RX_BUF, HPCAPDD_ARGS.
set -e
uname -r >"$HPCAP_OUT/kernel-release"
insmod "$HPCAP_KO" buffer_mb="$BUFFER_MB" block_kb="$BLOCK_KB" consumers="$CONSUMERS" \
	snaplen="$SNAPLEN" format="$FORMAT" ring_size="$RING" rx_buf="$RX_BUF"
# The 82576 port: the device the kernel's igb driver claimed at boot.
pf=$(pci_first igb)
if [ "$NIC" = igbvf ]; then
	# The kernel's igb PF driver creates the VF; hpcap binds it. The PF must
	# be up (it serves the VF's mailbox) and gives the VF a fixed MAC.
	dev=$(netdev_of igb)
	ip link set "$dev" up
	wait_link "$dev"
	echo 0 >"/sys/bus/pci/devices/$pf/sriov_drivers_autoprobe"
	echo 1 >"/sys/bus/pci/devices/$pf/sriov_numvfs"
	"$IP" link set "$dev" vf 0 mac "$VF_MAC"
	# A port VLAN: the VF's pool receives only that VLAN, tag stripped.
	[ "$VF_VLAN" = 0 ] || "$IP" link set "$dev" vf 0 vlan "$VF_VLAN"
	bdf=$(basename "$(readlink "/sys/bus/pci/devices/$pf/virtfn0")")
else
	bdf=$pf
fi
pci_rebind "$bdf" hpcap
# The stable name: /dev/hpcapN counts every port hpcap could drive.
dev=/dev/hpcap/by-pci/$bdf
wait_for "$dev"
mkdir -p /mnt/disk/capture
# shellcheck disable=SC2086 # HPCAPDD_ARGS is a list of options
hpcapdd $HPCAPDD_ARGS --stats-json "$HPCAP_OUT/hpcapdd.jsonl" "$dev" /mnt/disk/capture \
	2>"$HPCAP_OUT/hpcapdd.err" &
ddpid=$!
# Replay once hpcapdd is attached (its first block starts at the next boundary).
wait_listeners "$dev" 1
t0=$(uptime_s)
inject_start
inject_wait 3600
wait_drained "$dev"
sleep 1
t1=$(uptime_s)
kill -INT $ddpid
rc=0
wait $ddpid || rc=$?
echo "hpcapdd exit status $rc"
cat "$HPCAP_OUT/hpcapdd.err"
hpcapctl stats --json "$dev" >"$HPCAP_OUT/hpcap-stats.json"
echo "$bdf" >/sys/bus/pci/drivers/hpcap/unbind
rmmod hpcap
mkdir -p "$HPCAP_OUT/out"
cp -r /mnt/disk/capture/. "$HPCAP_OUT/out/"
jq -n --arg t0 "$t0" --arg t1 "$t1" '{guest_capture_s: (($t1 | tonumber) - ($t0 | tonumber))}' \
	>"$HPCAP_OUT/times.json"
exit $rc
