# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# Kernel fault campaign (issue 13): hpcap-abi-probe --fuzz as root with
# every command, the administrative ones included (SET_CONFIG, SET_FILTER,
# KILL_LISTENER), FUZZ_CALLS calls (default 20000) with seed FUZZ_SEED
# (default: from the clock; printed, replayable), while frames arrive on
# the 82576 PF; then the module must unload. (The unprivileged fuzzer and
# the root fuzzer that spares other listeners run next to a capture:
# kfault-during.sh.)
set -e
seed=${FUZZ_SEED:-$(($(date +%s) % 1000000007))}
insmod "$HPCAP_KO" buffer_mb=4 block_kb=256
bdf=$(pci_first igb)
pci_rebind "$bdf" hpcap
dev=/dev/hpcap/by-pci/$bdf
wait_for "$dev"
inject_start
rc=0
hpcap-abi-probe --fuzz "$dev" "${FUZZ_CALLS:-20000}" "$seed" || rc=$?
inject_wait 600
pci_release "$bdf"
rmmod hpcap
grep -q '^hpcap ' /proc/modules && { echo "hpcap is still loaded after rmmod"; exit 1; }
echo "FUZZ-ROOT rc $rc"
exit $rc
