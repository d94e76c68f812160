// SPDX-License-Identifier: GPL-2.0

//! Test-only fault injection: fail probe after a given step.
//!
//! With the module parameter `fail_probe_at=N` (0, the default, disables
//! it), probe fails with `ECANCELED` right after step `N` of [`Step`] has
//! completed, so the VM tests can walk every step and check that the
//! cleanup of everything done so far leaves the device quiet (receive
//! disabled, no DMA into freed memory) and the kernel's checkers clean.
//! It has no other effect; production systems leave it at 0.

use kernel::{
    device::Core,
    pci,
    prelude::*, //
};

/// The steps of probe, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Step {
    /// PCI memory decoding and bus mastering enabled, DMA mask set.
    Enable = 1,
    /// `/dev/hpcapN` index taken.
    Index = 2,
    /// Stream buffer allocated.
    Buffer = 3,
    /// Backend took the device over (reset, negotiation).
    Backend = 4,
    /// Ring allocated and receive enabled.
    Queue = 5,
    /// Descriptors handed to the NIC (tail written).
    Tail = 6,
    /// Consumer threads running.
    Consumers = 7,
    /// Service thread running.
    Service = 8,
    /// Device nodes registered.
    Nodes = 9,
}

/// Number of steps (the largest useful `fail_probe_at`).
// CAST: a field-less `#[repr(u32)]` enum's discriminant.
pub(crate) const STEPS: u32 = Step::Nodes as u32;

/// Fails with `ECANCELED` if `fail_probe_at` names `step`.
pub(crate) fn fail_at(pdev: &pci::Device<Core<'_>>, step: Step) -> Result {
    // CAST: a field-less `#[repr(u32)]` enum's discriminant.
    let n = step as u32;
    if crate::module_parameters::fail_probe_at.value() == n {
        dev_info!(pdev, "fail_probe_at={}: failing probe after step {:?}\n", n, step);
        return Err(ECANCELED);
    }
    Ok(())
}
