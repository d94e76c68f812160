# SPDX-License-Identifier: MIT
# shellcheck shell=dash
#
# `tools/hpcap-vm soak`: one long capture by hpcap.ko + hpcapdd with time
# rotation and retention by free space, on a small disk, while the host
# injects at a fixed rate. Parameters (set by hpcap-vm): NIC (igb: QEMU's
# 82576 PF; i40e: the XL710 PF of hpcap-model), RATE (frames/s), ROTATE
# (hpcapdd --rotate-seconds), MIN_FREE (hpcapdd --min-free, %), BUFFER_MB,
# BLOCK_KB, RING, SAMPLE (seconds between memory samples), INJECT_TIMEOUT.
#
# Leaves in $HPCAP_OUT: hpcapdd.err, hpcapdd.jsonl (--stats-json),
# files.jsonl (--files-json: every file completed and every file retention
# deleted, with its packets), mem.jsonl (memory samples: "start" before the frames,
# periodic ones, "end" after the last frame was stored, before hpcapdd
# stops), hpcap-stats.json (the device's counters), model-{before,after}.json
# (a device model's own counters), hpcapdd.rc, soak-times.json.
set -e
uname -r >"$HPCAP_OUT/kernel-release"

# One memory sample as a JSON line: the kernel's (/proc/meminfo), the
# module's vmalloc'ed memory (/proc/vmallocinfo, callers in hpcap) and every
# process's (VmRSS and its anonymous, file and shared parts: RssAnon is
# what a leak grows; RssShmem grows as hpcapdd touches the mapped buffer).
mem_sample() {
	local procs kernel vm
	procs=$(for s in /proc/[0-9]*/status; do
		awk -v f="$s" '
			/^Name:/ {n = $2} /^Pid:/ {p = $2} /^VmRSS:/ {r = $2} /^RssAnon:/ {a = $2}
			/^RssFile:/ {fl = $2} /^RssShmem:/ {sh = $2}
			END {if (r != "") printf "{\"pid\":%d,\"name\":\"%s\",\"vm_rss_kb\":%d,\"rss_anon_kb\":%d,\"rss_file_kb\":%d,\"rss_shmem_kb\":%d}\n", p, n, r, a, fl, sh}' "$s" 2>/dev/null || true
	done | jq -s -c .)
	kernel=$(awk '{sub(":", "", $1); printf "%s\"%s\":%d", (NR > 1 ? "," : "{"), $1, $2} END {print "}"}' /proc/meminfo)
	vm=$(awk '/hpcap/ {b += $2} END {print b + 0}' /proc/vmallocinfo 2>/dev/null || echo null)
	jq -n -c --arg lbl "$1" --arg t "$(uptime_s)" --argjson procs "$procs" --argjson kernel "$kernel" \
		--argjson vm "$vm" \
		'{"label": $lbl, uptime_s: ($t | tonumber), meminfo_kb: $kernel, hpcap_vmalloc_bytes: $vm, processes: $procs}' \
		>>"$HPCAP_OUT/mem.jsonl"
	return 0
}

model() {
	[ ! -f /host/model.json ] || cp /host/model.json "$HPCAP_OUT/model-$1.json"
	return 0
}

case "$NIC" in
igb) bdf=$(pci_first igb) ;;
i40e)
	bdf=$(pci_for_module i40e | head -n 1)
	[ -n "$bdf" ] || { echo "soak: no PCI function matches i40e's aliases (hpcap-model's XL710 PF)"; exit 1; }
	;;
*)
	echo "soak: unknown NIC '$NIC' (igb or i40e)"
	exit 1
	;;
esac
insmod "$HPCAP_KO" buffer_mb="$BUFFER_MB" block_kb="$BLOCK_KB" ring_size="$RING"
pci_rebind "$bdf" hpcap
dev=/dev/hpcap/by-pci/$bdf
wait_for "$dev" 30
dir=/mnt/disk/soak
mkdir -p "$dir"
hpcapdd --rotate-seconds "$ROTATE" --min-free "$MIN_FREE" --stats-interval 30 \
	--stats-json "$HPCAP_OUT/hpcapdd.jsonl" --files-json "$HPCAP_OUT/files.jsonl" \
	"$dev" "$dir" 2>"$HPCAP_OUT/hpcapdd.err" &
hd=$!
wait_listeners "$dev" 1 60
sleep 1
model before
mem_sample start
# Memory samples while the frames arrive.
(
	while :; do
		sleep "$SAMPLE"
		mem_sample during
	done
) &
sampler=$!
t0=$(uptime_s)
inject_round "$RATE" "$INJECT_TIMEOUT"
wait_drained "$dev" 10
t1=$(uptime_s)
kill "$sampler"
wait "$sampler" || true
mem_sample end
model after
kill -INT "$hd"
rc=0
wait "$hd" || rc=$?
echo "$rc" >"$HPCAP_OUT/hpcapdd.rc"
hpcapctl stats --json "$dev" >"$HPCAP_OUT/hpcap-stats.json"
jq -n --arg t0 "$t0" --arg t1 "$t1" '{guest_inject_s: (($t1 | tonumber) - ($t0 | tonumber))}' \
	>"$HPCAP_OUT/soak-times.json"
# The files left on the disk are read on the host (hpcap-vm soak copies
# them out of the disk image with debugfs); here only the file system's
# state.
df -k /mnt/disk >"$HPCAP_OUT/df.txt"
find "$dir" -type f | sort >"$HPCAP_OUT/kept.txt"
tail -n 20 "$HPCAP_OUT/hpcapdd.err"
pci_release "$bdf"
rmmod hpcap
exit "$rc"
