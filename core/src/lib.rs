// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The shared core of hpcap-rs.
//!
//! Everything here is plain `#![no_std]` Rust with no allocation, compiled
//! twice: into this userspace crate, where it is unit-, property-, model- and
//! fuzz-tested, and into `hpcap.ko`, which pulls the very same files in with
//! `#[path]` (see `driver/hpcap_core.rs`). Files refer to each other with
//! `super::`, never `crate::`, so that both module trees resolve.
#![no_std]

pub mod abi;
pub mod arith;
pub mod block;
pub mod bpf;
pub mod capfile;
pub mod config;
pub mod desc;
pub mod engine;
pub mod format;
pub mod frame;
pub mod gate;
pub mod listener;
pub mod pcapng;
pub mod publish;
pub mod raw;
pub mod segment;
pub mod selftest;
pub mod session;
// Not under loom: its atomics are std's, and the models do not use it.
#[cfg(all(any(test, feature = "std"), not(all(loom, test))))]
pub mod softnic;
pub mod stats;
mod sync;
