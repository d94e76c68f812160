# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# Linux's i40e on hpcap-model's XL710 PF, bound, unbound and bound again:
# each time it probes the PF (reset, NVM, admin queue, HMC), brings the
# link up and receives one injector round. Prints RX_DELTA n per round for
# the host to compare with what was sent.
set -e
modprobe i40e
pf=$(pci_for_module i40e | head -n 1)
[ -n "$pf" ] || { echo "no PCI function matches i40e's aliases (the XL710 PF model)"; exit 1; }
for round in 1 2; do
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
done
pci_release "$pf"
