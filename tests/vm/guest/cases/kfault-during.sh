# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# Kernel fault campaign (issue 13), run by capture.sh (`hpcap-vm capture
# --during kfault-during`) next to hpcapdd while the frames arrive, on the
# device HPCAP_DEV. hpcapdd's capture must add up afterwards (the host
# checks summary.json), so nothing here may touch another listener:
#   rmmod     RMMOD_TRIES (default 20) attempts to unload hpcap while hpcapdd
#             has it open and mapped: each must fail with "in use" and
#             leave the module loaded (the module is pinned by every open
#             file: the answer is EBUSY-like refusal, never an unload)
#   storm     hpcap-abi-probe --storm: STORM_ROUNDS (default 300) rounds of
#             open/attach/map/close from two threads
#   fuzz      hpcap-abi-probe --fuzz: FUZZ_CALLS (default 20000) calls as
#             root without the commands that act on other listeners by
#             design ("spare"), then as many as nobody (node mode 0666) with
#             every command; seed FUZZ_SEED (default: from the clock),
#             printed, replayable
# FAULTS (default "rmmod storm fuzz") picks them, in order. Exit status 1
# if any of them failed.
set -e
dev=${HPCAP_DEV:?}
seed=${FUZZ_SEED:-$(($(date +%s) % 1000000007))}
bad=0
for fault in ${FAULTS:-rmmod storm fuzz}; do
	t0=$(uptime_s)
	case $fault in
	rmmod)
		n=0
		refused=0
		while [ $n -lt "${RMMOD_TRIES:-20}" ]; do
			if err=$(rmmod hpcap 2>&1); then
				echo "FAIL rmmod: hpcap unloaded while hpcapdd has it open"
				bad=$((bad + 1))
				break
			fi
			case "$err" in
			*"in use"* | *busy* | *Busy* | *"temporarily unavailable"*)
				[ $refused = 0 ] && echo "rmmod: refused: $err"
				refused=$((refused + 1))
				;;
			*) echo "FAIL rmmod: unexpected error: $err" && bad=$((bad + 1)) ;;
			esac
			grep -q '^hpcap ' /proc/modules || { echo "FAIL rmmod: hpcap is gone"; bad=$((bad + 1)); break; }
			n=$((n + 1))
			sleep 0.05
		done
		echo "rmmod: $refused of ${RMMOD_TRIES:-20} attempts refused (in use), module loaded"
		;;
	storm)
		hpcap-abi-probe --storm "$dev" "${STORM_ROUNDS:-300}" || bad=$((bad + 1))
		;;
	fuzz)
		hpcap-abi-probe --fuzz "$dev" "${FUZZ_CALLS:-20000}" "$seed" spare || bad=$((bad + 1))
		mode=$(stat -c %a "$dev")
		chmod 0666 "$dev"
		hpcap-abi-probe --fuzz "$dev" "${FUZZ_CALLS:-20000}" "$((seed + 1))" nobody || bad=$((bad + 1))
		chmod "$mode" "$dev"
		;;
	*)
		echo "kfault-during: unknown fault '$fault'"
		exit 2
		;;
	esac
	echo "FAULT $fault done in $(echo "$(uptime_s) $t0" | awk '{printf "%.1f", $1 - $2}') s"
done
echo "KFAULT-DURING: $bad failure(s)"
[ $bad = 0 ]
