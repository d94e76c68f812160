// SPDX-License-Identifier: MIT
//! Behavioural PCI device models served to QEMU over vfio-user, so that a
//! guest's real drivers run against them with real DMA and MSI-X (see
//! docs/models.md). The models' logic is independent of QEMU: it reaches
//! guest memory and interrupts through [`transport::Platform`], which unit
//! tests build without QEMU.

pub mod e82599_queues;
pub mod ixgbe;
pub mod ixgbevf;
pub mod pci;
pub mod testdev;
pub mod transport;
pub mod xl710;
pub mod xl710_queues;
pub mod xl710pf;

/// Now as nanoseconds since the Unix epoch: when a model last delivered a
/// frame (`ModelStats::last_delivery_unix_ns`), so a benchmark can tell the
/// rate the model itself delivered at from the model's own clock.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
