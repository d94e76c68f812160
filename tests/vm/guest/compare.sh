# SPDX-License-Identifier: MIT
# shellcheck shell=dash
#
# `tools/hpcap-vm compare`: for each rate in RATES, the kernel's own driver
# for the NIC + tcpdump -w, then hpcap.ko + hpcapdd, on the same port, disk
# and trace. Round k (1, 2, ...) is the k-th capture: odd = tcpdump, even =
# hpcap; results go to $HPCAP_OUT/res, the injector's counts of round k to
# $HPCAP_OUT/inject.k.json and, with a device model, its counters before
# and after the round to res/model.k.{before,after}.json. Parameters: NIC
# (igb: the 82576 PF; iavf, i40e: the XL710 VF or PF of hpcap-model;
# ixgbevf, ixgbe: its 82599 VF or PF), RATES, BUFFER_MB, BLOCK_KB, RING.
set -e
NIC=${NIC:-igb}
case "$NIC" in
igb) pf=$(pci_first igb) ;;
iavf | i40e | ixgbevf | ixgbe)
	# The XL710 or 82599 VF or PF of hpcap-model, found by the aliases of
	# Linux's own driver for it.
	pf=$(pci_for_module "$NIC" | head -n 1)
	modprobe "$NIC"
	;;
*)
	echo "compare: unknown NIC '$NIC'"
	exit 1
	;;
esac
[ -n "$pf" ] || { echo "compare: no port for NIC=$NIC"; exit 1; }
# A device model's counters (hpcap-model writes them every 200 ms).
model() {
	[ ! -f /host/model.json ] || cp /host/model.json "$res/model.$1.json"
	return 0
}
res=$HPCAP_OUT/res
mkdir -p "$res"
echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6 2>/dev/null || true
insmod "$HPCAP_KO" buffer_mb="$BUFFER_MB" block_kb="$BLOCK_KB" ring_size="$RING"
k=0
for rate in $RATES; do
	# --- the kernel's driver for the NIC + tcpdump -w (AF_PACKET)
	k=$((k + 1))
	[ "$(pci_driver "$pf")" = "$NIC" ] || pci_rebind "$pf" "$NIC"
	n=0
	until dev=$(netdev_of "$NIC"); do
		sleep 0.1
		n=$((n + 1))
		[ $n -lt 300 ]
	done
	echo 1 >"/proc/sys/net/ipv6/conf/$dev/disable_ipv6" 2>/dev/null || true
	# The same number of RX descriptors as hpcap's ring (igb's default is 256,
	# iavf's 512; iavf refuses while its adapter is still initializing).
	n=0
	until ethtool -G "$dev" rx "$RING" 2>/dev/null || [ "$(ethtool -g "$dev" | awk '/^RX:/ {v = $2} END {print v}')" = "$RING" ]; do
		sleep 0.2
		n=$((n + 1))
		[ $n -lt 150 ] || { echo "compare: ethtool -G $dev rx $RING failed"; ethtool -G "$dev" rx "$RING"; }
	done
	ip link set "$dev" up
	wait_link "$dev"
	s=/sys/class/net/$dev/statistics
	rx0=$(cat "$s/rx_packets")
	miss0=$(cat "$s/rx_missed_errors")
	tcpdump -i "$dev" -Q in -n -Z root -w /mnt/disk/tcpdump.pcap 2>"$res/tcpdump.$k.err" &
	td=$!
	n=0
	until grep -q listening "$res/tcpdump.$k.err"; do
		sleep 0.1
		n=$((n + 1))
		[ $n -lt 300 ]
	done
	sleep 0.5
	model "$k.before"
	inject_round "$rate" 3600
	wait_stable "$s/rx_packets" 10 >/dev/null
	sleep 1
	model "$k.after"
	kill -INT $td
	wait $td || true
	jq -n --argjson rx "$(($(cat "$s/rx_packets") - rx0))" \
		--argjson miss "$(($(cat "$s/rx_missed_errors") - miss0))" \
		'{rx_packets: $rx, rx_missed: $miss}' >"$res/tcpdump.$k.json"
	cp /mnt/disk/tcpdump.pcap "$res/tcpdump.$k.pcap"
	rm -f /mnt/disk/tcpdump.pcap
	# --- hpcap.ko + hpcapdd on the same port, disk and trace
	k=$((k + 1))
	pci_rebind "$pf" hpcap
	d=/dev/hpcap/by-pci/$pf
	wait_for "$d"
	mkdir -p /mnt/disk/hpcap
	hpcapdd "$d" /mnt/disk/hpcap 2>"$res/hpcapdd.$k.err" &
	hd=$!
	wait_listeners "$d" 1
	sleep 0.5
	model "$k.before"
	inject_round "$rate" 3600
	wait_drained "$d" 10
	sleep 1
	model "$k.after"
	kill -INT $hd
	wait $hd
	hpcapctl stats --json "$d" >"$res/hpcap.$k.json"
	mkdir -p "$res/hpcap.$k"
	cp -r /mnt/disk/hpcap/. "$res/hpcap.$k/"
	rm -rf /mnt/disk/hpcap
done
pci_release "$pf"
rmmod hpcap
