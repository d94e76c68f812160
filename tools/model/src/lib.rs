// SPDX-License-Identifier: MIT
//! Behavioural PCI device models served to QEMU over vfio-user, so that a
//! guest's real drivers run against them with real DMA and MSI-X (see
//! docs/models.md). The models' logic is independent of QEMU: it reaches
//! guest memory and interrupts through [`transport::Platform`], which unit
//! tests build without QEMU.

pub mod ixgbe;
pub mod ixgbevf;
pub mod pci;
pub mod testdev;
pub mod transport;
pub mod xl710;
pub mod xl710pf;
