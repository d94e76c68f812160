# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# hpcap-abi-probe --security: what a process with access to the device can
# and cannot do to others (issue 16). The node is made world-readable so
# the probe's children running as nobody can open it; traffic starts when
# the probe asks for it (its stale-read check needs published data).
set -e
insmod "$HPCAP_KO" buffer_mb=4 block_kb=256
pf=$(pci_first igb)
pci_rebind "$pf" hpcap
wait_for /dev/hpcap0
chmod 0644 /dev/hpcap0
rm -f /tmp/security.ready
hpcap-abi-probe --security /dev/hpcap0 300 200 /tmp/security.ready &
probe=$!
wait_for /tmp/security.ready 600
inject_start
rc=0
wait $probe || rc=$?
inject_wait 600
pci_release "$pf"
rmmod hpcap
exit $rc
