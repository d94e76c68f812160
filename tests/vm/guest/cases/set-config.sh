# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# HPCAP_IOC_SET_CONFIG: pcapng/256 KiB -> RAW/512 KiB while idle; refused
# with a listener attached and for a bad block size.
set -e
insmod "$HPCAP_KO" buffer_mb=8 block_kb=256 format=0
pf=$(pci_first igb)
pci_rebind "$pf" hpcap
d=/dev/hpcap0
wait_for $d
mkdir -p /mnt/disk/a /mnt/disk/b
# Round 1: pcapng, 256 KiB blocks (module parameters); the trace fits in
# one block, which the idle flush closes: the commit ends at 256 KiB, not a
# 512 KiB boundary.
hpcapdd $d /mnt/disk/a 2>"$HPCAP_OUT/a.err" &
a=$!
wait_listeners $d 1
inject_round 3000
wait_drained $d
sleep 1
kill -INT $a
wait $a
# Refused while a listener is attached (EBUSY), and for a bad block size (EINVAL).
hpcapdd --null $d 2>/dev/null &
z=$!
wait_listeners $d 1
if hpcapctl config --format raw $d 2>"$HPCAP_OUT/busy.err"; then
	echo SWITCHED_WITH_A_LISTENER
	exit 1
fi
kill -INT $z
wait $z || true
if hpcapctl config --block-size 96K $d 2>"$HPCAP_OUT/inval.err"; then
	echo BAD_BLOCK_SIZE_ACCEPTED
	exit 1
fi
# Idle: switch to RAW with 512 KiB blocks.
hpcapctl config --format raw --block-size 512K $d
hpcapctl status --json $d >"$HPCAP_OUT/status.json"
# Rounds 2-5: the same trace into the new stream, also to a lossy listener
# attached first: it starts at the floor of the commit, which the switch
# put on a block boundary of the new layout (else: inside the old block).
mkdir -p /mnt/disk/c
hpcapdd --lossy $d /mnt/disk/c 2>"$HPCAP_OUT/c.err" &
c=$!
wait_listeners $d 1
hpcapdd $d /mnt/disk/b 2>"$HPCAP_OUT/b.err" &
b=$!
wait_listeners $d 2
for _ in 2 3 4 5; do inject_round 3000; done
wait_drained $d
sleep 1
kill -INT $b $c
wait $b
wait $c
hpcapctl stats --json $d >"$HPCAP_OUT/stats.json"
mkdir -p "$HPCAP_OUT/a" "$HPCAP_OUT/b" "$HPCAP_OUT/c"
cp -r /mnt/disk/a/. "$HPCAP_OUT/a/"
cp -r /mnt/disk/b/. "$HPCAP_OUT/b/"
cp -r /mnt/disk/c/. "$HPCAP_OUT/c/"
pci_release "$pf"
rmmod hpcap
