// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The shared core of hpcap-rs.
//!
//! Everything here is plain `#![no_std]` Rust with no allocation (but the
//! software NIC), compiled twice: into this userspace crate, where it is
//! unit-, property-, model- and fuzz-tested, and into `hpcap.ko`, which
//! includes this very file as its `hpcap_core` module (`#[path]` in
//! `driver/hpcap_main.rs`) with `--cfg hpcap_kernel` (`driver/Kbuild`).
//! This list is the only list of the core's modules: under `hpcap_kernel`
//! the readers, converters, indexes and the software NIC, which the module
//! never uses, are left out (as are the reader halves of `pcapng` and
//! `raw`). Files refer to each other with `super::`, never `crate::`, so
//! that both module trees resolve.
#![cfg_attr(not(hpcap_kernel), no_std)]

pub mod abi;
pub mod adminq;
pub mod arith;
pub mod bpf;
pub mod config;
pub mod desc;
pub mod engine;
pub mod format;
pub mod frame;
pub mod gate;
pub mod hmc;
pub mod listener;
pub mod pcapng;
pub mod publish;
pub mod raw;
pub mod segment;
pub mod selftest;
pub mod session;
pub mod stats;
mod sync;
pub mod vfmbx;
pub mod virtchnl;

// Userspace only.
#[cfg(not(hpcap_kernel))]
pub mod block;
#[cfg(not(hpcap_kernel))]
pub mod capfile;
// Not under loom: its atomics are std's, and the models do not use it.
#[cfg(all(any(test, feature = "std"), not(all(loom, test)), not(hpcap_kernel)))]
pub mod softnic;
