# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# Unbind mid-traffic while hpcapdd has the buffer mapped and is reading.
# NIC (default igb): the port to capture from, igb (the 82576 PF), igbvf
# (a VF of it, created by Linux's igb PF driver, MAC VF_MAC), iavf or i40e
# (the XL710 VF or PF of hpcap-model), ixgbevf or ixgbe (its 82599 VF or PF). With a
# device model, its counters are
# copied before the traffic (model-before.json), a second after the unbind
# (model-unbound.json) and after the traffic (model-after.json). hpcap's
# counters before the traffic go to stats-before.json; its final counters,
# printed at the unbind, are in dmesg ("final counters: ...").
set -e
model() {
	[ ! -f /host/model.json ] || cp /host/model.json "$HPCAP_OUT/model-$1.json"
	return 0
}
insmod "$HPCAP_KO" buffer_mb=8 block_kb=256
case "${NIC:-igb}" in
iavf | i40e | ixgbevf | ixgbe) bdf=$(pci_for_module "$NIC" | head -n 1) ;;
igbvf)
	# As capture.sh: the PF is up (it serves the VF's mailbox) and gives
	# the VF its MAC before hpcap binds it.
	pf=$(pci_first igb)
	pfdev=$(netdev_of igb)
	ip link set "$pfdev" up
	wait_link "$pfdev"
	echo 0 >"/sys/bus/pci/devices/$pf/sriov_drivers_autoprobe"
	echo 1 >"/sys/bus/pci/devices/$pf/sriov_numvfs"
	"$IP" link set "$pfdev" vf 0 mac "$VF_MAC"
	bdf=$(basename "$(readlink "/sys/bus/pci/devices/$pf/virtfn0")")
	;;
*) bdf=$(pci_first igb) ;;
esac
[ -n "$bdf" ] || { echo "unbind: no port for NIC=${NIC:-igb}"; exit 1; }
pci_rebind "$bdf" hpcap
# The stable name: /dev/hpcapN counts every port hpcap could drive.
dev=/dev/hpcap/by-pci/$bdf
wait_for "$dev"
mkdir -p /mnt/disk/a
hpcapdd --stats-json "$HPCAP_OUT/a.jsonl" "$dev" /mnt/disk/a 2>"$HPCAP_OUT/a.err" &
a=$!
wait_listeners "$dev" 1
# The model writes its counters every 200 ms.
sleep 0.5
model before
hpcapctl stats --json "$dev" >"$HPCAP_OUT/stats-before.json"
hpcapctl status --json "$dev" >"$HPCAP_OUT/status-before.json"
inject_start
sleep 2
echo "$bdf" >/sys/bus/pci/drivers/hpcap/unbind
echo "unbound $bdf"
sleep 1
model unbound
rc=0
wait $a || rc=$?
echo "HPCAPDD_EXIT $rc"
# With every file closed the module can go.
rmmod hpcap
if grep -q '^hpcap ' /proc/modules; then
	echo 'hpcap is still loaded after rmmod'
	exit 1
fi
if [ -f /host/model.json ]; then
	# The model takes every frame (a disabled queue is its "not ready");
	# QEMU's igb stops taking them with no driver: the batch runner lets
	# that round end into the PF after the case.
	inject_wait 600
	sleep 0.5
	model after
fi
mkdir -p "$HPCAP_OUT/a"
cp -r /mnt/disk/a/. "$HPCAP_OUT/a/"
