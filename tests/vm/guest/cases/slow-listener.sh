# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# A blocking listener that never reads pins a 1 MiB buffer while hpcapdd
# stores what it can: drops must be counted.
set -e
insmod "$HPCAP_KO" buffer_mb=1 block_kb=64
pci_rebind "$(pci_first igb)" hpcap
wait_for /dev/hpcap0
# A blocking listener that never reads: it holds the producer back. (An
# open file that never reads or waits is not a listener at all.)
hpcap-abi-probe --hold /dev/hpcap0 &
s=$!
wait_listeners /dev/hpcap0 1
mkdir -p /mnt/disk/a
hpcapdd /dev/hpcap0 /mnt/disk/a 2>"$HPCAP_OUT/a.err" &
a=$!
sleep 1
inject_start
inject_wait 600
sleep 1
hpcapctl stats --json /dev/hpcap0 >"$HPCAP_OUT/stats.json"
kill -INT $a
wait $a
kill $s
mkdir -p "$HPCAP_OUT/a"
cp -r /mnt/disk/a/. "$HPCAP_OUT/a/"
