# shellcheck shell=bash
# SPDX-License-Identifier: MIT
# Shell helpers of tools/debian/*: cache paths, the Debian mirror this
# machine's apt configuration uses, and commands run inside a cached Debian
# root without modifying it. Sourced, not executed.

# shellcheck source=tools/debian/versions
. "$(dirname "${BASH_SOURCE[0]}")/versions"

HPCAP_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/hpcap
# shellcheck disable=SC2034 # used by the scripts that source this file
DEBIAN_CACHE=$HPCAP_CACHE/debian

deb_die() { echo "${0##*/}: error: $*" >&2; exit 1; }

# The Debian mirror this machine already trusts (deb822 or one-line
# sources). No registry host name is written in the repository.
deb_mirror() {
	local m=
	m=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
	[ -n "$m" ] || m=$(awk '/^deb /{for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
		/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1 || true)
	[ -n "$m" ] || deb_die "no Debian mirror found in the apt configuration"
	echo "$m"
}

# deb_in_root ROOT [-b SRC:DST[:ro]]... [-w] -- CMD...
#
# Runs CMD as root inside ROOT (a directory tree) in a private mount
# namespace: ROOT is the lower layer of an overlay whose upper layer is
# thrown away afterwards, so a cached root is never modified (-w writes to
# ROOT itself, for building it). /proc, /sys and /dev are the host's; each
# -b bind-mounts SRC at DST inside. Every mount disappears with the
# namespace, also when CMD is killed.
deb_in_root() {
	local root=$1 writable=0 binds=()
	shift
	while [ $# -gt 0 ]; do
		case "$1" in
		-b) binds+=("$2"); shift 2 ;;
		-w) writable=1; shift ;;
		--) shift; break ;;
		*) deb_die "deb_in_root: bad option $1" ;;
		esac
	done
	[ -x "$root/bin/sh" ] || deb_die "deb_in_root: $root is not a root file system"
	local scratch
	scratch=$(mktemp -d "$HPCAP_CACHE/tmp.chroot.XXXXXX")
	local rc=0
	# shellcheck disable=SC2016 # the inner script expands its own arguments
	unshare -m --propagation private -- bash -c '
		set -e
		root=$1 scratch=$2 writable=$3 nb=$4
		shift 4
		binds=("${@:1:$nb}")
		shift "$nb"
		if [ "$writable" = 1 ]; then
			top=$root
		else
			mkdir -p "$scratch/up" "$scratch/work" "$scratch/top"
			mount -t overlay overlay -o "lowerdir=$root,upperdir=$scratch/up,workdir=$scratch/work" "$scratch/top"
			top=$scratch/top
		fi
		mount -t proc proc "$top/proc"
		mount --rbind /sys "$top/sys"
		mount --rbind /dev "$top/dev"
		mount -t tmpfs tmpfs "$top/tmp"
		for b in "${binds[@]}"; do
			IFS=: read -r src dst ro <<<"$b"
			mkdir -p "$top$dst"
			mount --bind "$src" "$top$dst"
			[ "$ro" != ro ] || mount -o remount,bind,ro "$top$dst"
		done
		exec chroot "$top" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive "$@"
	' deb_in_root "$root" "$scratch" "$writable" "${#binds[@]}" "${binds[@]}" "$@" || rc=$?
	rm -rf "$scratch"
	return $rc
}
