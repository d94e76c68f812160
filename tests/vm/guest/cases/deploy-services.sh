# SPDX-License-Identifier: MIT
# shellcheck shell=dash
#
# Debian guest (--kernel stock --nics 2), hpcap-dkms and hpcap-tools
# installed: the packages' state, the udev rule, hpcap-bind@ and hpcapdd@
# on two ports through the recipes of docs/deployment.md, hpcapctl-serve
# answering /metrics for both, one replay that
# both ports receive, `systemctl stop` (files closed validly), restart on
# failure, and the services' confinement. Leaves in $HPCAP_OUT: svc0/ and
# svc1/ (the stored files), state.txt, nodes.txt, listeners.*.json,
# status.*.txt (/proc/PID/status of each hpcapdd), security.txt, and
# result.*.txt (each service's result after the stop), and of the metrics
# service metrics.http (its answer), status.serve.txt, security.serve.txt.
set -e
# shellcheck source=tests/vm/guest/docker-lib.sh
. /opt/hpcap/lib/docker-lib.sh
# shellcheck disable=SC2046 # one word per port
set -- $(pci_by_driver igb)
BDF=$1 BDF2=$2
export BDF BDF2
[ -n "$BDF2" ] || { echo "deploy-services: needs two 82576 ports (--nics 2)"; exit 1; }

# What the packages installed, before anything runs: DKMS built the module
# for this kernel, nothing loaded it at boot (blacklisted: igb keeps every
# port until told otherwise), the hpcap system user exists.
{
	echo "kernel $(uname -r)"
	dkms status hpcap
	echo "loaded at boot: $(grep -c '^hpcap ' /proc/modules || true)"
	echo "drivers: $(pci_driver "$BDF") $(pci_driver "$BDF2")"
	id hpcap
	modinfo -F filename hpcap
} | tee "$HPCAP_OUT/state.txt"

# Module options for this small guest, as an operator sets them.
echo "options hpcap buffer_mb=64 block_kb=1024" >/etc/modprobe.d/hpcap.conf

# The first port, as docs/deployment.md says.
recipe services-enable
wait_listeners /dev/hpcap0 1 60

# hpcap-tools' postinst applies the udev rule to nodes that exist already:
# break the first port's permissions, reinstall the package, look again.
chown root:root /dev/hpcap0
chmod 0600 /dev/hpcap0
dpkg -i /host/debs/hpcap-tools_*.deb >/dev/null
udevadm settle

# The second port with its own options and output directory.
recipe services-second-port
wait_listeners /dev/hpcap1 1 60
for n in /dev/hpcap0 /dev/hpcap1 /dev/hpcap/by-pci/"$BDF" /dev/hpcap/by-pci/"$BDF2"; do
	echo "$n $(stat -L -c '%U %G %a' "$n")"
done | tee "$HPCAP_OUT/nodes.txt"
for i in 0 1; do
	pid=$(systemctl show -P MainPID "hpcapdd@hpcap$i.service")
	grep -E '^(Uid|Gid|Groups|NoNewPrivs|CapInh|CapPrm|CapEff|CapBnd|CapAmb|Seccomp):' "/proc/$pid/status" \
		>"$HPCAP_OUT/status.$i.txt"
done
systemd-analyze security --no-pager hpcapdd@hpcap0.service >"$HPCAP_OUT/security.txt" 2>&1 || true
tail -n 1 "$HPCAP_OUT/security.txt"

# One replay; the hub hands every frame to both ports.
inject_start
inject_wait 3600
wait_drained /dev/hpcap0
wait_drained /dev/hpcap1
sleep 1
hpcapctl stats --json /dev/hpcap0 >"$HPCAP_OUT/listeners.0.json"
hpcapctl stats --json /dev/hpcap1 >"$HPCAP_OUT/listeners.1.json"

# The Prometheus exporter (recipe metrics-enable): every device, as a
# transient user in group hpcap. bash's /dev/tcp stands in for curl.
recipe metrics-enable
n=0
until bash -c 'exec 3<>/dev/tcp/127.0.0.1/9977 && printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3' \
	>"$HPCAP_OUT/metrics.http" 2>/dev/null && grep -q '^hpcap_frames_stored_total' "$HPCAP_OUT/metrics.http"; do
	sleep 0.5
	n=$((n + 1))
	[ $n -lt 120 ] || { echo "hpcapctl-serve does not answer"; systemctl status --no-pager hpcapctl-serve; exit 1; }
done
head -n 1 "$HPCAP_OUT/metrics.http"
pid=$(systemctl show -P MainPID hpcapctl-serve.service)
grep -E '^(Uid|Gid|Groups|NoNewPrivs|CapInh|CapPrm|CapEff|CapBnd|CapAmb|Seccomp):' "/proc/$pid/status" \
	>"$HPCAP_OUT/status.serve.txt"
getent group hpcap | cut -d: -f3 >"$HPCAP_OUT/hpcap-gid.txt"
systemd-analyze security --no-pager hpcapctl-serve.service >"$HPCAP_OUT/security.serve.txt" 2>&1 || true
tail -n 1 "$HPCAP_OUT/security.serve.txt"
systemctl disable --now hpcapctl-serve.service

# systemctl stop: SIGTERM, hpcapdd flushes the last block and closes its file.
systemctl stop hpcapdd@hpcap0.service hpcapdd@hpcap1.service
for i in 0 1; do
	systemctl show -p Result -p ExecMainStatus -p ExecMainCode "hpcapdd@hpcap$i.service" | tr '\n' ' ' \
		>"$HPCAP_OUT/result.$i.txt"
	cat "$HPCAP_OUT/result.$i.txt"
	echo
done
mkdir -p "$HPCAP_OUT/svc0" "$HPCAP_OUT/svc1"
cp -a /var/lib/hpcap/hpcap0/. "$HPCAP_OUT/svc0/"
cp -a /srv/hpcap1/. "$HPCAP_OUT/svc1/"
journalctl -u hpcapdd@hpcap0 -u hpcapdd@hpcap1 -u hpcap-bind@"$BDF" -u hpcap-bind@"$BDF2" --no-pager \
	>"$HPCAP_OUT/journal.txt"

# Restart on failure: a recorder killed by SIGKILL is started again.
systemctl start hpcapdd@hpcap0.service
wait_listeners /dev/hpcap0 1 60
systemctl kill -s KILL hpcapdd@hpcap0.service
n=0
until [ "$(systemctl show -P NRestarts hpcapdd@hpcap0.service)" -ge 1 ] &&
	[ "$(systemctl is-active hpcapdd@hpcap0.service)" = active ]; do
	sleep 0.5
	n=$((n + 1))
	[ $n -lt 120 ] || { echo "hpcapdd@hpcap0 was not restarted"; systemctl status --no-pager hpcapdd@hpcap0; exit 1; }
done
wait_listeners /dev/hpcap0 1 60
echo "restarted: NRestarts=$(systemctl show -P NRestarts hpcapdd@hpcap0.service)" | tee "$HPCAP_OUT/restart.txt"

# Back to the boot state: recorders and ports released, nothing enabled.
systemctl disable --now hpcapdd@hpcap0.service hpcapdd@hpcap1.service
systemctl disable --now hpcap-bind@"$BDF".service hpcap-bind@"$BDF2".service
rm -rf /var/lib/hpcap/hpcap0 /srv/hpcap1 /etc/hpcap/hpcapdd-hpcap1.conf \
	/etc/systemd/system/hpcapdd@hpcap1.service.d /etc/modprobe.d/hpcap.conf
systemctl daemon-reload
echo "drivers after: $(pci_driver "$BDF") $(pci_driver "$BDF2")" | tee -a "$HPCAP_OUT/state.txt"
