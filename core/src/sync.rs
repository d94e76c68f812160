// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Atomics used by the publication and listener protocols.
//!
//! Normally these are `core::sync::atomic`; unit tests built with
//! `--cfg loom` swap in loom's model-checked versions so the very same
//! protocol code is explored under the C11 memory model. The kernel build
//! never sets `cfg(loom)`. Only the test build has loom available, hence the
//! `test` condition: a non-test build with `--cfg loom` still compiles.

#[cfg(all(loom, test))]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(not(all(loom, test)))]
pub(crate) use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Called in every spin-wait loop of the core.
///
/// Under loom a spinning thread must yield, or the model never lets the
/// thread it waits for make progress.
#[inline(always)]
#[cfg(not(hpcap_kernel))]
pub(crate) fn spin_hint() {
    #[cfg(all(loom, test))]
    loom::thread::yield_now();
    #[cfg(not(all(loom, test)))]
    core::hint::spin_loop();
}
