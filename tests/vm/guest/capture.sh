# SPDX-License-Identifier: MIT
# shellcheck shell=dash
#
# `tools/hpcap-vm capture`: store the injected frames and leave in
# $HPCAP_OUT the stored files (out/), the counters and the guest-side
# duration (times.json). Parameters come from the environment (set by
# hpcap-vm): CAPTURE_WITH (hpcap|tcpdump), NIC (igb|igbvf|iavf|i40e|ixgbevf|ixgbe), VF_MAC,
# VF_VLAN, BUFFER_MB, BLOCK_KB, CONSUMERS, SNAPLEN, FORMAT (0 pcapng, 1 raw),
# RING, RX_BUF, RX_DESC, HPCAPDD_ARGS, DURING (a case script run next to hpcapdd while
# the frames arrive: its output in during.txt, its status in during.rc; the
# capture fails if it fails).
#   hpcap:   hpcap.ko bound to the port, hpcapdd on the virtio disk;
#            counters in hpcap-stats.json.
#   tcpdump: the kernel's own driver for the NIC (igb, igbvf, iavf, i40e, ixgbevf, ixgbe) and
#            `tcpdump -w`; the interface's counters before and after in
#            nic-stats.json, tcpdump's report in tcpdump.err, the driver's
#            lines of /proc/interrupts in interrupts.txt.
set -e
uname -r >"$HPCAP_OUT/kernel-release"

# The port to capture from, bound to DRIVER (hpcap or the kernel's own);
# prints its PCI address.
setup_port() {
	local drv=$1 pf vf
	case "$NIC" in
	igb)
		pf=$(pci_first igb)
		[ "$drv" = igb ] || pci_rebind "$pf" "$drv"
		echo "$pf"
		;;
	igbvf)
		# The kernel's igb PF driver creates the VF. The PF must be up (it
		# serves the VF's mailbox) and gives the VF a fixed MAC before a
		# driver binds it.
		pf=$(pci_first igb)
		dev=$(netdev_of igb)
		ip link set "$dev" up
		wait_link "$dev" >&2
		echo 0 >"/sys/bus/pci/devices/$pf/sriov_drivers_autoprobe"
		echo 1 >"/sys/bus/pci/devices/$pf/sriov_numvfs"
		"$IP" link set "$dev" vf 0 mac "$VF_MAC"
		# A port VLAN: the VF's pool receives only that VLAN, tag stripped.
		[ "$VF_VLAN" = 0 ] || "$IP" link set "$dev" vf 0 vlan "$VF_VLAN"
		vf=$(basename "$(readlink "/sys/bus/pci/devices/$pf/virtfn0")")
		pci_rebind "$vf" "$drv"
		echo "$vf"
		;;
	iavf | ixgbevf)
		# The XL710 VF or the 82599 VF of hpcap-model (vfio-user), found by
		# the aliases of Linux's iavf or ixgbevf module; no driver is bound
		# at boot (both are modules).
		vf=$(pci_for_module "$NIC" | head -n 1)
		[ -n "$vf" ] || { echo "capture: no PCI function matches $NIC's aliases (hpcap-model's VF)" >&2; return 1; }
		if [ "$drv" = "$NIC" ]; then
			modprobe "$NIC"
			[ "$(pci_driver "$vf")" = "$NIC" ] || pci_rebind "$vf" "$NIC"
		else
			pci_rebind "$vf" "$drv"
		fi
		echo "$vf"
		;;
	i40e | ixgbe)
		# The XL710 PF or the 82599 PF of hpcap-model (vfio-user), found by
		# the aliases of Linux's i40e or ixgbe module.
		pf=$(pci_for_module "$NIC" | head -n 1)
		[ -n "$pf" ] || { echo "capture: no PCI function matches $NIC's aliases (hpcap-model's PF)" >&2; return 1; }
		if [ "$drv" = "$NIC" ]; then
			modprobe "$NIC"
			[ "$(pci_driver "$pf")" = "$NIC" ] || pci_rebind "$pf" "$NIC"
		else
			pci_rebind "$pf" "$drv"
		fi
		echo "$pf"
		;;
	*)
		echo "capture: unknown NIC '$NIC'" >&2
		return 1
		;;
	esac
	return 0
}

t_start() { t0=$(uptime_s); }
t_end() {
	jq -n --arg t0 "$t0" --arg t1 "$(uptime_s)" \
		'{guest_capture_s: (($t1 | tonumber) - ($t0 | tonumber))}' >"$HPCAP_OUT/times.json"
}

# The netdev statistics of interface $1 as JSON.
nic_counters() {
	local s=/sys/class/net/$1/statistics
	jq -n --argjson rx "$(cat "$s/rx_packets")" --argjson missed "$(cat "$s/rx_missed_errors")" \
		--argjson dropped "$(cat "$s/rx_dropped")" --argjson fifo "$(cat "$s/rx_fifo_errors")" \
		'{rx_packets: $rx, rx_missed_errors: $missed, rx_dropped: $dropped, rx_fifo_errors: $fifo}'
}

mkdir -p /mnt/disk/capture "$HPCAP_OUT/out"
if [ "$CAPTURE_WITH" = tcpdump ]; then
	drv=$NIC
	bdf=$(setup_port "$drv")
	n=0
	until dev=$(netdev_of "$drv"); do
		sleep 0.1
		n=$((n + 1))
		[ $n -lt 300 ] || { echo "capture: $drv created no interface for $bdf"; exit 1; }
	done
	echo 1 >"/proc/sys/net/ipv6/conf/$dev/disable_ipv6" 2>/dev/null || true
	ethtool -G "$dev" rx "$RING" 2>/dev/null || echo "capture: $dev keeps its RX ring size"
	# Frames as on the wire: GRO would merge TCP segments.
	ethtool -K "$dev" gro off 2>/dev/null || echo "capture: $dev keeps GRO on"
	[ "$RX_BUF" -le 2048 ] || ip link set "$dev" mtu $((RX_BUF - 18 > 9000 ? 9000 : RX_BUF - 18))
	ip link set "$dev" up promisc on
	wait_link "$dev"
	nic_counters "$dev" >"$HPCAP_OUT/nic-before.json"
	# A device model's own counters (hpcap-model writes them every 200 ms).
	[ ! -f /host/model.json ] || cp /host/model.json "$HPCAP_OUT/model-before.json"
	snap=${SNAPLEN:-0}
	[ "$snap" != 0 ] || snap=262144
	tcpdump -i "$dev" -Q in -n -Z root -s "$snap" -w /mnt/disk/capture/trace.pcap 2>"$HPCAP_OUT/tcpdump.err" &
	td=$!
	n=0
	until grep -q listening "$HPCAP_OUT/tcpdump.err"; do
		sleep 0.1
		n=$((n + 1))
		[ $n -lt 300 ] || { echo "capture: tcpdump did not start"; cat "$HPCAP_OUT/tcpdump.err"; exit 1; }
	done
	t_start
	inject_start
	inject_wait 3600
	wait_stable "/sys/class/net/$dev/statistics/rx_packets" 5 >/dev/null
	sleep 1
	t_end
	kill -INT $td
	rc=0
	wait $td || rc=$?
	cat "$HPCAP_OUT/tcpdump.err"
	nic_counters "$dev" >"$HPCAP_OUT/nic-after.json"
	[ ! -f /host/model.json ] || cp /host/model.json "$HPCAP_OUT/model-after.json"
	# Which interrupts the driver took (MSI-X, MSI or INTx) and how many.
	grep -E "$drv|$dev" /proc/interrupts >"$HPCAP_OUT/interrupts.txt" || true
	ip link set "$dev" down
	cp /mnt/disk/capture/trace.pcap "$HPCAP_OUT/out/"
	exit $rc
fi

insmod "$HPCAP_KO" buffer_mb="$BUFFER_MB" block_kb="$BLOCK_KB" consumers="$CONSUMERS" \
	snaplen="$SNAPLEN" format="$FORMAT" ring_size="$RING" rx_buf="$RX_BUF" rx_desc="${RX_DESC:-0}"
bdf=$(setup_port hpcap)
# The stable name: /dev/hpcapN counts every port hpcap could drive.
dev=/dev/hpcap/by-pci/$bdf
wait_for "$dev"
# shellcheck disable=SC2086 # HPCAPDD_ARGS is a list of options
hpcapdd $HPCAPDD_ARGS --stats-json "$HPCAP_OUT/hpcapdd.jsonl" "$dev" /mnt/disk/capture \
	2>"$HPCAP_OUT/hpcapdd.err" &
ddpid=$!
# Replay once hpcapdd is attached (its first block starts at the next boundary).
wait_listeners "$dev" 1
# A device model's own counters (hpcap-model writes them every 200 ms).
[ ! -f /host/model.json ] || cp /host/model.json "$HPCAP_OUT/model-before.json"
t_start
inject_start
during=''
if [ -n "$DURING" ]; then
	# A subshell: it sees the case's variables (env.sh), exported or not.
	# shellcheck disable=SC1090 # the case is named at run time
	(export HPCAP_DEV="$dev" && . "/opt/hpcap/lib/cases/$DURING.sh") >"$HPCAP_OUT/during.txt" 2>&1 </dev/null &
	during=$!
fi
inject_wait 3600
drc=0
if [ -n "$during" ]; then
	wait $during || drc=$?
	echo "$drc" >"$HPCAP_OUT/during.rc"
	echo "$DURING: exit status $drc"
	cat "$HPCAP_OUT/during.txt"
fi
wait_drained "$dev"
sleep 1
t_end
[ ! -f /host/model.json ] || cp /host/model.json "$HPCAP_OUT/model-after.json"
kill -INT $ddpid
rc=0
wait $ddpid || rc=$?
echo "hpcapdd exit status $rc"
cat "$HPCAP_OUT/hpcapdd.err"
hpcapctl stats --json "$dev" >"$HPCAP_OUT/hpcap-stats.json"
hpcapctl status --json "$dev" >"$HPCAP_OUT/hpcap-status.json"
echo "$bdf" >/sys/bus/pci/drivers/hpcap/unbind
rmmod hpcap
cp -r /mnt/disk/capture/. "$HPCAP_OUT/out/"
[ "$drc" = 0 ] || exit "$drc"
exit $rc
