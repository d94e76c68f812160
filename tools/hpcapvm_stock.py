# SPDX-License-Identifier: MIT
"""The Debian guest of tools/hpcap-vm (--kernel stock).

Instead of the test kernel and the busybox initramfs, the guest boots
Debian's own kernel image and initramfs (linux-image-7.3.4+deb13-amd64) with
a Debian trixie root on a virtio disk (tools/debian/guest-image,
tools/debian/guest-disk). The packages under test are built from this tree
(tools/packaging/deb/build) and installed into that root before it boots:
hpcap-dkms's postinst has DKMS build hpcap.ko for the guest's kernel there,
natively (under QEMU TCG the compile alone takes minutes), and hpcap-tools
brings the tools, the udev rule and the systemd units. The guest's runner
service (tools/debian/guest/hpcap-vm-run) follows the busybox init's
protocol: /host share, /opt/hpcap/lib scripts, run and batch modes.

Guest layout (as in the busybox guest, so the same scripts run):
  /opt/hpcap/hpcap.ko   the DKMS-built module (modinfo -n hpcap), uncompressed
  /opt/hpcap/lib/       the bench's guest scripts
  /host                 9p share of the run's work directory
  /mnt/disk             the optional capture disk (--disk), /dev/vdb
  /var/cache/hpcap-vm/  files for the deployment tests (the Debian base
                        image tarball for docker import)
"""

import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUEST = REPO / "tests/vm/guest"
# What the guest boots with besides the command line of the bench.
CMDLINE = "root=/dev/vda rw fsck.mode=skip quiet systemd.show_status=false"
# A systemd boot under TCG takes 40-60 s on an idle host.
BOOT_TIMEOUT = 300


# A recipe of docs/deployment.md: a ```sh block right after its marker.
RECIPE = re.compile(r"^<!-- recipe: ([a-z0-9-]+) -->\n```sh\n(.*?)^```$", re.M | re.S)


def recipes():
    """The recipes of docs/deployment.md by name; the Debian guest's scripts
    run them verbatim (tests/vm/guest/docker-lib.sh: recipe NAME)."""
    return dict(RECIPE.findall((REPO / "docs/deployment.md").read_text()))


def guest_env():
    """VMLINUZ, INITRD, ROOT, LAYER, KERNEL_RELEASE of the cached guest
    (builds the trixie root, the stock kernel's Rust metadata and the guest
    layer when missing)."""
    out = subprocess.run([str(REPO / "tools/debian/guest-image"), "--print-env", "--quiet"],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return dict(line.split("=", 1) for line in out.split())


def prepare(vm, log, fail):
    """Builds this run's packages and root disk, and puts the guest scripts
    into the share. Returns the disk image."""
    debs = vm.work / "debs"
    p = subprocess.run([str(REPO / "tools/packaging/deb/build"), "--out", str(debs)],
                       cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        fail("building the Debian packages failed:\n" + p.stdout[-3000:])
    pkgs = sorted(debs.glob("hpcap-*.deb"))
    vm.debs = pkgs
    disk = vm.work / "root.img"
    log(f"installing {', '.join(d.name for d in pkgs)} into the guest's root (DKMS builds hpcap.ko for "
        f"{vm.kenv['KERNEL_RELEASE']})")
    cmd = [str(REPO / "tools/debian/guest-disk")]
    for d in pkgs:
        cmd += ["--install", str(d)]
    p = subprocess.run(cmd + [str(disk)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        fail("making the guest's disk failed:\n" + p.stdout[-3000:])
    for f in (disk.with_suffix(".img.log"), disk.with_suffix(".img.dkms.log")):
        if f.exists():
            shutil.copy2(f, vm.share / f.name.replace("root.img.", "install-"))
    lib = vm.share / "lib"
    lib.mkdir(exist_ok=True)
    for f in GUEST.glob("*.sh"):
        shutil.copy2(f, lib / f.name)
    for name, body in recipes().items():
        (lib / f"recipe-{name}.sh").write_text(body)
    shutil.copytree(debs, vm.share / "debs", dirs_exist_ok=True)
    return disk


def qemu_boot_args(vm, cmdline):
    """Kernel, initramfs, command line and root disk of the Debian guest."""
    return ["-kernel", vm.kenv["VMLINUZ"], "-initrd", vm.kenv["INITRD"], "-append", f"{CMDLINE} {cmdline}",
            "-drive", f"file={vm.root_disk},format=raw,if=virtio,cache=unsafe"]
