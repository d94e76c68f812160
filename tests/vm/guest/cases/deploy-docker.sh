# SPDX-License-Identifier: MIT
# shellcheck shell=dash
#
# Debian guest (--kernel stock), hpcap-tools image built as
# docs/deployment.md says: hpcapctl status in a container given only the
# device, the errors without --device and without the hpcap group, and the
# Compose recipe storing one replay. Leaves in $HPCAP_OUT: status.txt,
# nodevice.txt (+ .rc), nogroup.txt (+ .rc), compose/ (the stored files),
# compose.txt, listeners.json.
set -e
# shellcheck source=tests/vm/guest/docker-lib.sh
. /opt/hpcap/lib/docker-lib.sh
docker_image
insmod "$HPCAP_KO" buffer_mb=64 block_kb=1024
bdf=$(pci_first igb)
pci_rebind "$bdf" hpcap
udevadm settle
wait_for /dev/hpcap0
HPCAP_GID=$(getent group hpcap | cut -d: -f3)
export HPCAP_GID

recipe docker-status >"$HPCAP_OUT/status.txt" 2>&1
cat "$HPCAP_OUT/status.txt"

# No --device: the container has no /dev/hpcap0.
rc=0
docker run --rm --user "1000:$HPCAP_GID" --network none hpcap-tools hpcapdd /dev/hpcap0 /tmp \
	>"$HPCAP_OUT/nodevice.txt" 2>&1 || rc=$?
echo "$rc" >"$HPCAP_OUT/nodevice.rc"
echo "without --device: status $rc"
cat "$HPCAP_OUT/nodevice.txt"
# The device, but a user outside the hpcap group: permission denied.
rc=0
docker run --rm --device /dev/hpcap0 --user 1000:1000 --network none hpcap-tools hpcapctl status /dev/hpcap0 \
	>"$HPCAP_OUT/nogroup.txt" 2>&1 || rc=$?
echo "$rc" >"$HPCAP_OUT/nogroup.rc"
echo "without the hpcap group: status $rc"
cat "$HPCAP_OUT/nogroup.txt"

# Compose, as docs/deployment.md says, then one replay.
rm -rf /srv/capture /tmp/compose
mkdir -p /tmp/compose
cd /tmp/compose
recipe compose-up
wait_listeners /dev/hpcap0 1 60
inject_start
inject_wait 3600
wait_drained /dev/hpcap0
sleep 1
hpcapctl stats --json /dev/hpcap0 >"$HPCAP_OUT/listeners.json"
recipe compose-down >"$HPCAP_OUT/compose.txt" 2>&1
cat "$HPCAP_OUT/compose.txt"
mkdir -p "$HPCAP_OUT/compose"
cp -a /srv/capture/. "$HPCAP_OUT/compose/"
rm -rf /srv/capture /tmp/compose
