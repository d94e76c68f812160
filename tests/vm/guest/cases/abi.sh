# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# Bad ioctl arguments, bad pointers, write/exec mappings and unprivileged
# opens get their documented errors (hpcap-abi-probe), on /dev/hpcap0 and on
# its by-pci node.
set -e
insmod "$HPCAP_KO" buffer_mb=4 block_kb=256
pf=$(pci_first igb)
pci_rebind "$pf" hpcap
wait_for /dev/hpcap0
hpcap-abi-probe /dev/hpcap0
hpcap-abi-probe "/dev/hpcap/by-pci/$pf"
pci_release "$pf"
rmmod hpcap
