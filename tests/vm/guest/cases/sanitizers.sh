# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# The kernel's bug detectors are on: lockdep always; KASAN and kmemleak when
# the host asks for the sanitize kernel (WANT_SANITIZE=1). Without them, a
# clean dmesg would prove nothing.
set -e
grep -qE 'debug_locks: +1' /proc/lockdep_stats || { echo "lockdep is off"; exit 1; }
if [ "${WANT_SANITIZE:-0}" = 1 ]; then
	dmesg | grep -q 'KernelAddressSanitizer initialized' || { echo "KASAN is off"; exit 1; }
	[ -w /sys/kernel/debug/kmemleak ] || { echo "kmemleak is off"; exit 1; }
	echo scan >/sys/kernel/debug/kmemleak
	echo "KASAN and kmemleak on"
fi
echo SANITIZERS-OK
