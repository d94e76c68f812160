// SPDX-License-Identifier: GPL-2.0

//! The shared core (`core/src/`), compiled into the module.
//!
//! The same files form the userspace crate `hpcap-core`, where they are unit-,
//! property-, model- and fuzz-tested. Kbuild cannot link external crates, so
//! each file is pulled in here with `#[path]`; the files refer to each other
//! with `super::`, which resolves to this module.
//!
//! The module is public so that items only userspace uses (readers,
//! converters) count as exported rather than dead.

#[path = "../core/src/abi.rs"]
pub mod abi;
#[path = "../core/src/arith.rs"]
pub mod arith;
#[path = "../core/src/block.rs"]
pub mod block;
#[path = "../core/src/bpf.rs"]
pub mod bpf;
#[path = "../core/src/desc.rs"]
pub mod desc;
#[path = "../core/src/frame.rs"]
pub mod frame;
#[path = "../core/src/gate.rs"]
pub mod gate;
#[path = "../core/src/capfile.rs"]
pub mod capfile;
#[path = "../core/src/config.rs"]
pub mod config;
#[path = "../core/src/engine.rs"]
pub mod engine;
#[path = "../core/src/format.rs"]
pub mod format;
#[path = "../core/src/session.rs"]
pub mod session;
#[path = "../core/src/pcapng.rs"]
pub mod pcapng;
#[path = "../core/src/raw.rs"]
pub mod raw;
#[path = "../core/src/selftest.rs"]
pub mod selftest;
#[path = "../core/src/stats.rs"]
pub mod stats;
#[path = "../core/src/listener.rs"]
pub mod listener;
#[path = "../core/src/publish.rs"]
pub mod publish;
#[path = "../core/src/segment.rs"]
pub mod segment;
#[path = "../core/src/sync.rs"]
mod sync;
