# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# Unbind mid-traffic while hpcapdd has the buffer mapped and is reading.
set -e
insmod "$HPCAP_KO" buffer_mb=8 block_kb=256
bdf=$(pci_first igb)
pci_rebind "$bdf" hpcap
wait_for /dev/hpcap0
mkdir -p /mnt/disk/a
hpcapdd /dev/hpcap0 /mnt/disk/a 2>"$HPCAP_OUT/a.err" &
a=$!
sleep 1
inject_start
sleep 2
echo "$bdf" >/sys/bus/pci/drivers/hpcap/unbind
rc=0
wait $a || rc=$?
echo "HPCAPDD_EXIT $rc"
# With every file closed the module can go.
rmmod hpcap
if grep -q '^hpcap ' /proc/modules; then
	echo 'hpcap is still loaded after rmmod'
	exit 1
fi
mkdir -p "$HPCAP_OUT/a"
cp -r /mnt/disk/a/. "$HPCAP_OUT/a/"
