# SPDX-License-Identifier: MIT
# shellcheck shell=dash
# Named lingering listeners on the real module (issue 13, section 2).
#
# Part A: `hpcapdd --name keep` is killed with SIGKILL at the moments in
# $KILLS (pairs RUN:GAP in seconds, drawn from a seed by the host test):
# it runs RUN s after it attached, is killed, stays dead GAP s (its listener
# lingers and holds the stream) and is started again; the files of all runs
# must hold every frame the driver received exactly once, in order (checked
# on the host, with what QEMU's NIC model dropped counted from its trace).
# Part B (a 4 MiB buffer): a lingering listener alone pins the buffer, so
# the frames that find no room are counted as dropped_lingering; a restart
# resumes at its cursor and stores what it kept; `hpcapctl kill DEV NAME`
# frees a lingering listener at once and stops a live one; an expired
# linger time frees it too.
set -e
: "${KILLS:?KILLS (RUN:GAP ...) comes from the host test}"
dev=/dev/hpcap0

# The JSON of the listener named $1 (null if none).
listener_named() {
	hpcapctl status --json $dev | jq -c --arg n "$1" '[.listener[] | select(.name == $n)] | first'
}

# Wait until the listener named $1 is attached by process $2 (not lingering).
wait_named_live() {
	local tries=0
	until [ "$(listener_named "$1" | jq -r --argjson pid "$2" '.lingering == false and .pid == $pid')" = true ]; do
		sleep 0.1
		tries=$((tries + 1))
		[ $tries -gt 600 ] && { echo "wait_named_live: $1 not attached by pid $2" >&2; return 1; }
	done
	return 0
}

# Wait until the listener named $1 lingers; prints its JSON as then seen.
wait_named_lingering() {
	local tries=0 l
	while :; do
		l=$(listener_named "$1")
		[ "$(echo "$l" | jq -r '.lingering')" = true ] && break
		sleep 0.1
		tries=$((tries + 1))
		[ $tries -gt 300 ] && { echo "wait_named_lingering: $1 does not linger" >&2; return 1; }
	done
	echo "$l"
	return 0
}

# Wait until no listener is named $1 (at most $2 s).
wait_named_gone() {
	local tries=0
	until [ "$(listener_named "$1")" = null ]; do
		sleep 0.1
		tries=$((tries + 1))
		[ $tries -gt $(($2 * 10)) ] && { echo "wait_named_gone: $1 still listed" >&2; return 1; }
	done
	return 0
}

pf=$(pci_first igb)

# ---------------------------------------------------------------- part A
# A 4096-descriptor ring: a restarting hpcapdd loads the guest's CPUs,
# and QEMU's NIC model drops (and traces) what finds no descriptor.
insmod "$HPCAP_KO" buffer_mb=16 block_kb=256 ring_size=4096
pci_rebind "$pf" hpcap
wait_for $dev
mkdir -p /mnt/disk/a
run=1
hpcapdd --name keep --linger 120 $dev /mnt/disk/a 2>"$HPCAP_OUT/a.$run.err" &
dd=$!
wait_named_live keep $dd
inject_start
for k in $KILLS; do
	sleep "${k%%:*}"
	kill -9 $dd
	wait $dd || true
	wait_named_lingering keep >/dev/null
	# While it lingers: listed with its name, and its cursor is where the
	# next run must resume.
	sleep "${k##*:}"
	listener_named keep >"$HPCAP_OUT/lingering.$run.json"
	hpcapctl status $dev >"$HPCAP_OUT/status.$run.txt"
	run=$((run + 1))
	hpcapdd --name keep --linger 120 $dev /mnt/disk/a 2>"$HPCAP_OUT/a.$run.err" &
	dd=$!
	wait_named_live keep $dd
done
inject_wait 600
wait_drained $dev
wait_caught_up $dev $dd 120
kill -INT $dd
wait $dd
echo "$run" >"$HPCAP_OUT/runs"
# SIGINT detached it explicitly: nothing lingers.
listener_named keep >"$HPCAP_OUT/after-a.json"
hpcapctl stats --json $dev >"$HPCAP_OUT/stats-a.json"
mkdir -p "$HPCAP_OUT/a"
cp -r /mnt/disk/a/. "$HPCAP_OUT/a/"
pci_release "$pf"
rmmod hpcap

# ---------------------------------------------------------------- part B
insmod "$HPCAP_KO" buffer_mb=4 block_kb=256
pci_rebind "$pf" hpcap
wait_for $dev
mkdir -p /mnt/disk/b
# Killed before any traffic: it lingers at the start of the stream, the
# only listener, and pins the 4 MiB buffer when 9 MB arrive.
hpcapdd --name pin --linger 600 $dev /mnt/disk/b 2>"$HPCAP_OUT/b.1.err" &
dd=$!
wait_named_live pin $dd
kill -9 $dd
wait $dd || true
wait_named_lingering pin >/dev/null
inject_round 3000
wait_drained $dev
hpcapctl stats --json $dev >"$HPCAP_OUT/stats-b.json"
listener_named pin >"$HPCAP_OUT/lingering-b.json"
# Resumed: it stores what the lingering listener kept.
hpcapdd --name pin --linger 600 $dev /mnt/disk/b 2>"$HPCAP_OUT/b.2.err" &
dd=$!
wait_named_live pin $dd
wait_caught_up $dev $dd 120
# Kill by name of a live listener: hpcapdd sees the end of the stream.
hpcapctl kill $dev pin >"$HPCAP_OUT/kill-live.txt"
rc=0
wait $dd || rc=$?
echo "$rc" >"$HPCAP_OUT/kill-live.rc"
mkdir -p "$HPCAP_OUT/b"
cp -r /mnt/disk/b/. "$HPCAP_OUT/b/"
# Kill by name of a lingering listener: freed at once, and the name is
# free for a new listener (attached, not resumed).
hpcapdd --name gone --linger 600 --null $dev 2>"$HPCAP_OUT/c.1.err" &
dd=$!
wait_named_live gone $dd
kill -9 $dd
wait $dd || true
wait_named_lingering gone >/dev/null
hpcapctl kill $dev gone >"$HPCAP_OUT/kill-lingering.txt"
wait_named_gone gone 5
hpcapdd --name gone --null $dev 2>"$HPCAP_OUT/c.2.err" &
dd=$!
wait_named_live gone $dd
kill -INT $dd
wait $dd
# The linger time runs out: the driver's service thread frees it. (8 s:
# long enough for the slow hpcapctl of a loaded TCG guest to see it first.)
hpcapdd --name short --linger 8 --null $dev 2>"$HPCAP_OUT/d.1.err" &
dd=$!
wait_named_live short $dd
kill -9 $dd
wait $dd || true
t0=$(uptime_s)
wait_named_lingering short >"$HPCAP_OUT/lingering-short.json"
wait_named_gone short 30
awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { print b - a }' >"$HPCAP_OUT/expired-after-s"
hpcapctl status --json $dev >"$HPCAP_OUT/status-end.json"
pci_release "$pf"
rmmod hpcap
echo NAMED-RESTART-OK
