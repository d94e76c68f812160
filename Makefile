# SPDX-License-Identifier: MIT
#
# hpcap-rs developer entry points. The kernel module itself is built by
# Kbuild from ./Kbuild (make -C <kernel build dir> M=$PWD); `make module`
# does that against the cached test kernel.
#
#   make demo     the QEMU demo (boot, load hpcap.ko, replay a trace, report)
#   make test     everything CI runs (.ci/run calls exactly this)
#   make sanitize the capture/ABI VM tests on the KASAN/kmemleak/lockdep kernel
#   make bench    benchmarks (ratios measured side by side; not part of test)
#   make bench-plot  out/bench/hotpath.svg: hot-path ratios across revisions
#   make deb      Debian packages hpcap-tools and hpcap-dkms in target/deb/

RUST_TOOLCHAIN := $(shell sed -n 's/^RUST_TOOLCHAIN=//p' tools/kernel/versions)
export RUSTUP_TOOLCHAIN := $(RUST_TOOLCHAIN)
CARGO ?= cargo

.PHONY: all deps kernel module userspace fmt clippy unit check vmtest sanitize test demo bench bench-plot deb clean help

all: userspace module

help:
	@sed -n 's/^#   //p' Makefile
	@echo "other targets: deps kernel module userspace fmt clippy unit check vmtest deb clean"

deps:
	tools/deps/install

kernel: deps
	tools/kernel/build

module: deps
	tools/kernel/module

userspace:
	$(CARGO) build --release --workspace

fmt:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

check: fmt clippy unit

vmtest: userspace module
	tests/vm/run

test:
	tests/run

# The VM tests that load hpcap.ko and capture or exercise the ABI, on the
# sanitize kernel (tools/kernel/build --variant sanitize: clang, KASAN,
# kmemleak, lockdep); each fails on any report. Not part of `make test`: the
# second kernel costs 25+ minutes cold on 2 cores (docs/testing.md).
# The 82599 VF's removal case is not among them: the sanitize kernel built
# here (key 0f82f9c2f4d654dd) has no ixgbe/ixgbevf although hpcap.config
# asks for them (to be found out; a rebuild costs over an hour here).
SANITIZE_TESTS ?= sanitizers|module_load|capture_(pcapng|raw|longer|vf_pcapng)|abi_errors|listeners_dd|slow_blocking|unbind_while|unprivileged|probe_failure|kfault_(during|fuzz|rebind|iavf|i40e)
sanitize: deps userspace
	HPCAP_KERNEL_VARIANT=sanitize tools/kernel/build
	HPCAP_KERNEL_VARIANT=sanitize tools/kernel/module
	HPCAP_KERNEL_VARIANT=sanitize tests/vm/run -k '$(SANITIZE_TESTS)'

demo: deps userspace module
	tools/hpcap-vm demo

bench:
	tests/bench/run

bench-plot:
	tests/bench/plot out/bench/results.jsonl out/bench/hotpath.svg

deb: userspace
	tools/packaging/deb/build

clean:
	-tools/kernel/module clean
	$(CARGO) clean
