// SPDX-License-Identifier: GPL-2.0

//! PCI glue: the devices hpcap drives and what happens on probe and unbind.
//!
//! Probe maps register space and reports the link; the capture engine that
//! follows owns the RX ring from here on. Hardware differences live behind
//! [`NicKind`] so each backend (igb PF, igbvf VF, and the XL710 backends that
//! come later) is one entry in the ID table plus its own file.

use kernel::{
    device::Core,
    io::{
        register,
        Io, //
    },
    pci,
    prelude::*, //
};

/// The NIC families hpcap knows, one per backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NicKind {
    /// Intel 82576 physical function (igb).
    Igb,
    /// Intel 82576 virtual function (igbvf), created by the host's igb PF driver.
    IgbVf,
}

impl NicKind {
    fn name(self) -> &'static str {
        match self {
            NicKind::Igb => "82576 PF",
            NicKind::IgbVf => "82576 VF",
        }
    }
}

mod regs {
    use super::*;

    register! {
        /// Device Status (82576 datasheet 8.2.2; the VF copy is at the same
        /// offset of the VF's BAR0).
        pub(super) STATUS(u32) @ 0x0008 {
            /// Full duplex.
            0:0 fd;
            /// Link up.
            1:1 lu;
            /// Link speed: 0 = 10, 1 = 100, 2 or 3 = 1000 Mb/s.
            7:6 speed;
        }
    }

    /// Bytes of BAR0 mapped by the skeleton: the VF's BAR0 is 16 KiB, the
    /// PF's 128 KiB; both hold STATUS.
    pub(super) const BAR0_MAP_LEN: usize = 0x4000;
}

type Bar0<'bound> = pci::Bar<'bound, { regs::BAR0_MAP_LEN }>;

/// Per-device state while hpcap is bound.
pub(crate) struct HpcapDevice<'bound> {
    pdev: &'bound pci::Device,
    _bar: Bar0<'bound>,
    kind: NicKind,
}

/// The hpcap PCI driver.
pub(crate) struct HpcapDriver;

kernel::pci_device_table!(
    PCI_TABLE,
    <HpcapDriver as pci::Driver>::IdInfo,
    [
        (pci::DeviceId::from_id(pci::Vendor::INTEL, 0x10c9), NicKind::Igb),
        (pci::DeviceId::from_id(pci::Vendor::INTEL, 0x10ca), NicKind::IgbVf),
    ]
);

impl pci::Driver for HpcapDriver {
    type IdInfo = NicKind;
    type Data<'bound> = HpcapDevice<'bound>;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        let kind = *info.ok_or(ENODEV)?;
        pdev.enable_device_mem()?;
        pdev.set_master();
        let bar = pdev.iomap_region_sized::<{ regs::BAR0_MAP_LEN }>(0, c"hpcap")?;
        let link = if bar.read(regs::STATUS).lu().into_bool() {
            "up"
        } else {
            "down"
        };
        dev_info!(pdev, "probed {}: link {}\n", kind.name(), link);
        Ok(HpcapDevice {
            pdev,
            _bar: bar,
            kind,
        })
    }

    fn unbind<'bound>(_pdev: &'bound pci::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        dev_info!(this.pdev, "unbinding {}\n", this.kind.name());
    }
}
