# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# Two 82576 PFs bound in reverse order: /dev/hpcapN follows the PCI
# address, not the probe order; the by-pci nodes name the same devices.
set -e
insmod "$HPCAP_KO" buffer_mb=4 block_kb=256
pfs=$(pci_by_driver igb)
[ "$(echo "$pfs" | wc -l)" = 2 ] || { echo "want two igb ports, have: $pfs"; exit 1; }
first=$(echo "$pfs" | head -n 1)
second=$(echo "$pfs" | tail -n 1)
pci_rebind "$second" hpcap
pci_rebind "$first" hpcap
# Each node reports its port's PCI address in HPCAP_IOC_INFO.
hpcapctl status --json /dev/hpcap0 | jq -e --arg b "$first" '.bus == $b'
hpcapctl status --json /dev/hpcap1 | jq -e --arg b "$second" '.bus == $b'
hpcapctl status --json "/dev/hpcap/by-pci/$second" | jq -e '.name == "hpcap1"'
echo "ORDER-OK $first=hpcap0 $second=hpcap1"
echo "$first" >/sys/bus/pci/drivers/hpcap/unbind
echo "$second" >/sys/bus/pci/drivers/hpcap/unbind
rmmod hpcap
