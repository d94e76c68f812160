# SPDX-License-Identifier: MIT
# shellcheck shell=dash
#
# Docker helpers of the Debian guest (tools/hpcap-vm --kernel stock), sourced
# by capture-docker.sh and the docker cases. The recipes of
# docs/deployment.md are run verbatim: tools/hpcap-vm extracts each block
# marked `<!-- recipe: NAME -->` to /opt/hpcap/lib/recipe-NAME.sh.

# Run recipe NAME of docs/deployment.md with sh -e in the current directory
# (its variables come from the environment), echoing its commands.
recipe() {
	local r=/opt/hpcap/lib/recipe-$1.sh
	[ -f "$r" ] || { echo "recipe: docs/deployment.md has no recipe $1" >&2; return 1; }
	echo "--- recipe $1 (docs/deployment.md)"
	sed 's/^/    /' "$r"
	sh -ex "$r"
}

# Start the Docker daemon (it is not started at boot in the guest) and wait
# until it answers (at most 120 s under TCG).
docker_up() {
	local n=0
	systemctl start docker.service
	until docker info >/dev/null 2>&1; do
		sleep 1
		n=$((n + 1))
		[ $n -lt 120 ] || { echo "docker_up: dockerd does not answer" >&2; journalctl -u docker --no-pager | tail -n 20; return 1; }
	done
	return 0
}

# The hpcap-tools image, built as docs/deployment.md says from the
# hpcap-tools package under test (/host/debs) on a Debian base imported from
# a tarball (/var/cache/hpcap-vm), unless it exists already.
docker_image() {
	docker_up || return 1
	docker image inspect hpcap-tools >/dev/null 2>&1 && return 0
	mkdir -p /tmp/docker-build
	(
		cd /tmp/docker-build || exit 1
		ln -sf /var/cache/hpcap-vm/trixie-minbase.tar .
		cp /host/debs/hpcap-tools_*.deb .
		recipe docker-image
	) || return 1
	rm -rf /tmp/docker-build
	return 0
}
