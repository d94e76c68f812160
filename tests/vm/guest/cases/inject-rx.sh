# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# The injected frames reach the kernel's igb driver: prints the guest's
# rx_packets delta (RX_DELTA n) for the host to compare with what was sent.
set -e
dev=$(netdev_of igb)
ip link set "$dev" up promisc on
# The link must be up before the first frame, or QEMU drops it.
wait_link "$dev"
rx0=$(cat "/sys/class/net/$dev/statistics/rx_packets")
inject_start
inject_wait 300
rx=$(wait_stable "/sys/class/net/$dev/statistics/rx_packets" 5)
echo "RX_DELTA $((rx - rx0))"
