# SPDX-License-Identifier: MIT
# shellcheck shell=dash
#
# `tools/hpcap-vm --kernel stock capture --container docker`: as capture.sh,
# but hpcapdd runs in a Docker container that is given only /dev/hpcap0, as
# a non-root user (uid 1000) in the host's hpcap group, without
# --privileged or added capabilities: the recipes of docs/deployment.md,
# run verbatim (docker-lib.sh). Leaves in $HPCAP_OUT the stored files (out/),
# the device's counters, the container's log (hpcapdd.err) and its
# configuration (container.json). Parameters as capture.sh; the port is the
# 82576 PF (the Debian guest's udev rule gives /dev/hpcap0 to group hpcap).
set -e
# shellcheck source=tests/vm/guest/docker-lib.sh
. /opt/hpcap/lib/docker-lib.sh
uname -r >"$HPCAP_OUT/kernel-release"
[ "$NIC" = igb ] || { echo "capture-docker: only --nic igb"; exit 2; }
# The image first: building it takes a while, and the port is not held meanwhile.
docker_image
insmod "$HPCAP_KO" buffer_mb="$BUFFER_MB" block_kb="$BLOCK_KB" consumers="$CONSUMERS" \
	snaplen="$SNAPLEN" format="$FORMAT" ring_size="$RING" rx_buf="$RX_BUF"
# The first 82576 port by PCI address: /dev/hpcap0.
bdf=$(pci_first igb)
pci_rebind "$bdf" hpcap
udevadm settle
dev=/dev/hpcap0
wait_for "$dev"
ls -l "$dev"
rm -rf /srv/capture
recipe docker-run
wait_listeners "$dev" 1 60
docker inspect hpcapdd | jq '.[0] | {User: .Config.User, Privileged: .HostConfig.Privileged,
	CapAdd: .HostConfig.CapAdd, Devices: .HostConfig.Devices, NetworkMode: .HostConfig.NetworkMode}' \
	>"$HPCAP_OUT/container.json"
t0=$(uptime_s)
inject_start
inject_wait 3600
wait_drained "$dev"
sleep 1
t1=$(uptime_s)
# The container's listener, still attached: its mode and whether it lost data.
hpcapctl stats --json "$dev" >"$HPCAP_OUT/listeners.json"
recipe docker-stop
rc=$(docker inspect -f '{{.State.ExitCode}}' hpcapdd)
docker logs hpcapdd >"$HPCAP_OUT/hpcapdd.err" 2>&1
docker rm hpcapdd >/dev/null
echo "hpcapdd (in the container) exit status $rc"
cat "$HPCAP_OUT/hpcapdd.err"
hpcapctl stats --json "$dev" >"$HPCAP_OUT/hpcap-stats.json"
echo "$bdf" >/sys/bus/pci/drivers/hpcap/unbind
rmmod hpcap
mkdir -p "$HPCAP_OUT/out"
cp -r /srv/capture/. "$HPCAP_OUT/out/"
rm -rf /srv/capture
jq -n --arg t0 "$t0" --arg t1 "$t1" '{guest_capture_s: (($t1 | tonumber) - ($t0 | tonumber))}' \
	>"$HPCAP_OUT/times.json"
exit "$rc"
