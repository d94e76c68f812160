# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# Linux's i40e and hpcap take turns on hpcap-model's XL710 PF: i40e, hpcap,
# i40e, hpcap. Each binding probes the PF afresh (i40e: reset, NVM, admin
# queue, HMC; hpcap: the same through its own backend) and receives one
# injector round: i40e prints RX_DELTA n (its rx_packets), hpcap stores the
# round with hpcapdd under $HPCAP_OUT/hpcap.N and prints HPCAP_SEEN n (its
# frames_seen). The host compares each with what was sent.
set -e
modprobe i40e
insmod "$HPCAP_KO" buffer_mb=8 block_kb=256
pf=$(pci_for_module i40e | head -n 1)
[ -n "$pf" ] || { echo "no PCI function matches i40e's aliases (the XL710 PF model)"; exit 1; }
for round in 1 2 3 4; do
	if [ $((round % 2)) = 1 ]; then
		[ "$(pci_driver "$pf")" = i40e ] || pci_rebind "$pf" i40e
		n=0
		until dev=$(netdev_of i40e); do
			sleep 0.1
			n=$((n + 1))
			[ $n -lt 300 ] || { echo "round $round: i40e created no interface for $pf"; exit 1; }
		done
		ip link set "$dev" up promisc on
		wait_link "$dev"
		rx0=$(cat "/sys/class/net/$dev/statistics/rx_packets")
		inject_round "" 300
		rx=$(wait_stable "/sys/class/net/$dev/statistics/rx_packets" 5)
		echo "RX_DELTA $((rx - rx0))"
		ip link set "$dev" down
		echo "$pf" >/sys/bus/pci/drivers/i40e/unbind
	else
		pci_rebind "$pf" hpcap
		d=/dev/hpcap/by-pci/$pf
		wait_for "$d"
		mkdir -p "/mnt/disk/hpcap.$round"
		hpcapdd "$d" "/mnt/disk/hpcap.$round" 2>"$HPCAP_OUT/hpcapdd.$round.err" &
		hd=$!
		wait_listeners "$d" 1
		inject_round "" 300
		wait_drained "$d"
		echo "HPCAP_SEEN $(hpcap_counter "$d" frames_seen)"
		kill -INT $hd
		wait $hd
		cp -r "/mnt/disk/hpcap.$round" "$HPCAP_OUT/"
		echo "$pf" >/sys/bus/pci/drivers/hpcap/unbind
	fi
done
pci_release "$pf"
