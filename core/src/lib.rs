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
pub mod desc;
pub mod frame;
pub mod gate;
pub mod listener;
pub mod pcapng;
pub mod publish;
pub mod raw;
pub mod segment;
pub mod selftest;
pub mod stats;
mod sync;
