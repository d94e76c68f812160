# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# hpcapdd, a lossy hpcapdd --null, dd and a poll()er on one device; the
# lossy listener is killed mid-capture.
set -e
insmod "$HPCAP_KO" buffer_mb=8 block_kb=256
pf=$(pci_first igb)
pci_rebind "$pf" hpcap
wait_for /dev/hpcap0
mkdir -p /mnt/disk/a "$HPCAP_OUT/lossy"
hpcapdd /dev/hpcap0 /mnt/disk/a 2>"$HPCAP_OUT/a.err" &
a=$!
hpcapdd --lossy --null --stats-interval 1 /dev/hpcap0 2>"$HPCAP_OUT/lossy.err" &
b=$!
# A plain dd stream: file header + whole blocks = a valid pcapng prefix.
dd if=/dev/hpcap0 of="$HPCAP_OUT/dd.pcapng" bs=64k 2>"$HPCAP_OUT/dd.err" &
d=$!
# poll(POLLIN) must sleep until a block is published, then wake up.
hpcap-abi-probe --poll /dev/hpcap0 >"$HPCAP_OUT/poll.txt" 2>&1 &
pp=$!
sleep 1
inject_start
sleep 1
kill -9 $b
inject_wait 600
sleep 1
kill -INT $a
wait $a
# dd writes through 9p, slowly under TCG: let it read everything published
# (the idle flush closed the last block) and write it out before stopping
# it, or its file ends inside the block it was copying.
wait_caught_up /dev/hpcap0 $d 120
wait_size_stable "$HPCAP_OUT/dd.pcapng" 10
kill $d
wait $d || true
wait $pp || true
hpcapctl stats --json /dev/hpcap0 >"$HPCAP_OUT/stats.json"
pci_release "$pf"
rmmod hpcap
mkdir -p "$HPCAP_OUT/a"
cp -r /mnt/disk/a/. "$HPCAP_OUT/a/"
