# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# insmod, bind the 82576 PF to hpcap, unbind, rmmod (the host checks dmesg
# for the probe and unbind messages and the kernel self-test line).
set -e
insmod "$HPCAP_KO"
grep -q '^hpcap ' /proc/modules
bdf=$(pci_first igb)
pci_rebind "$bdf" hpcap
sleep 0.5
[ "$(pci_driver "$bdf")" = hpcap ]
echo "$bdf" >/sys/bus/pci/drivers/hpcap/unbind
rmmod hpcap
if grep -q '^hpcap ' /proc/modules; then
	echo 'hpcap is still loaded after rmmod'
	exit 1
fi
