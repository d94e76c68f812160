// SPDX-License-Identifier: GPL-2.0

//! hpcap: full-packet capture for Intel NICs.
//!
//! The module takes over a NIC port or SR-IOV virtual function, receives on a
//! single RX ring, timestamps every frame and stores it once into a large
//! buffer that userspace maps read-only through `/dev/hpcapN`.
//!
//! This file holds only the module glue: the shared core self-test run at
//! load and the PCI driver registration. The PCI side is in `pci_driver.rs`,
//! the code shared with userspace in `hpcap_core.rs`.

use kernel::{
    driver::Registration,
    pci,
    prelude::*,
    InPlaceModule, //
};

pub mod hpcap_core;
mod pci_driver;

/// The module name, as the driver core sees it.
pub(crate) const MODULE_NAME: &CStr = <LocalModule as kernel::ModuleMetadata>::NAME;

#[pin_data]
struct HpcapModule {
    #[pin]
    _driver: Registration<pci::Adapter<pci_driver::HpcapDriver>>,
}

/// Runs the shared core's known-answer test and logs its result, so a test
/// can compare the kernel's output with the userspace build of the same code.
fn core_selftest() -> Result {
    let mut scratch = KVec::from_elem(0u8, hpcap_core::pcapng::FILE_HEADER_LEN, GFP_KERNEL)?;
    let (len, digest) = hpcap_core::selftest::file_header_digest(&mut scratch).ok_or(EINVAL)?;
    pr_info!("core self-test: file header {} bytes fnv1a={:#010x}\n", len, digest);
    Ok(())
}

impl InPlaceModule for HpcapModule {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        pin_init::pin_init_scope(move || {
            core_selftest()?;
            Ok(try_pin_init!(Self {
                _driver <- Registration::new(MODULE_NAME, module),
            }))
        })
    }
}

module! {
    type: HpcapModule,
    name: "hpcap",
    authors: ["The hpcap-rs authors"],
    description: "Full-packet capture to a shared buffer for Intel NICs",
    license: "GPL v2",
}
