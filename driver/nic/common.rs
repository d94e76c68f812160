// SPDX-License-Identifier: GPL-2.0

//! Registers at the same offsets in the 82576 PF's register space and in
//! every VF's (datasheet 8.2 and 8.10 for the PF; the VF copies are listed in
//! 8.28): device status and RX queue 0. The PF and VF backends use them here.

use super::{
    poll_until,
    with_bar,
    Link,
    RingConfig, //
};
use kernel::{
    io::{
        register,
        Io, //
    },
    pci,
    prelude::*,
    time::Delta, //
};

register! {
    /// Device Status (8.2.2; read-only in a VF).
    pub(crate) STATUS(u32) @ 0x0008 {
        /// Link up.
        1:1 lu;
        /// Speed: 0 = 10, 1 = 100, 2 or 3 = 1000 Mb/s.
        7:6 speed;
    }

    /// Receive Descriptor Base Address Low, queue 0 (8.10.5).
    pub(crate) RDBAL0(u32) @ 0x2800 {
        /// Low 32 bits (16-byte aligned; 128 recommended).
        31:0 value;
    }

    /// Receive Descriptor Base Address High, queue 0 (8.10.6).
    pub(crate) RDBAH0(u32) @ 0x2804 {
        /// High 32 bits.
        31:0 value;
    }

    /// Receive Descriptor Ring Length in bytes, queue 0 (8.10.7).
    pub(crate) RDLEN0(u32) @ 0x2808 {
        /// Bytes; a multiple of 128.
        31:0 value;
    }

    /// Split and Replication Receive Control, queue 0 (8.10.2).
    pub(crate) SRRCTL0(u32) @ 0x280C {
        /// Receive buffer size in 1 KiB units.
        6:0 bsizepkt;
        /// Descriptor type: 1 = advanced, one buffer.
        27:25 desctype;
        /// Drop when no descriptor is available (instead of stalling).
        31:31 drop_en;
    }

    /// Receive Descriptor Head, queue 0 (8.10.8).
    pub(crate) RDH0(u32) @ 0x2810 {
        /// Head index (hardware-owned).
        15:0 value;
    }

    /// Receive Descriptor Tail, queue 0 (8.10.9).
    pub(crate) RDT0(u32) @ 0x2818 {
        /// Tail index (software-owned).
        15:0 value;
    }

    /// Receive Descriptor Control, queue 0 (8.10.10).
    pub(crate) RXDCTL0(u32) @ 0x2828 {
        /// Prefetch threshold.
        4:0 pthresh;
        /// Host threshold.
        12:8 hthresh;
        /// Write-back threshold.
        20:16 wthresh;
        /// Queue enable.
        25:25 enable;
    }
}

/// Programs queue 0 with `ring` (advanced one-buffer descriptors, drop when
/// no descriptor is free) and enables it (datasheet 4.5.9). The tail stays 0:
/// the caller hands descriptors over with [`write_tail`].
pub(super) fn start<const SIZE: usize>(bar: &pci::DevresBar<SIZE>, ring: &RingConfig) -> Result {
    let len_bytes = ring.count.checked_mul(16).ok_or(EINVAL)?;
    with_bar(bar, |b| -> Result {
        b.write_reg(RXDCTL0::zeroed());
        b.write_reg(RDBAL0::zeroed().with_value(ring.dma as u32));
        b.write_reg(RDBAH0::zeroed().with_value((ring.dma >> 32) as u32));
        b.write_reg(RDLEN0::zeroed().with_value(len_bytes));
        b.write_reg(RDH0::zeroed());
        b.write_reg(RDT0::zeroed());
        b.write_reg(
            SRRCTL0::zeroed()
                .try_with_bsizepkt(ring.buf_size / 1024)?
                .with_const_desctype::<1>()
                .with_drop_en(true),
        );
        b.write_reg(
            RXDCTL0::zeroed()
                .with_const_pthresh::<8>()
                .with_const_hthresh::<8>()
                .with_const_wthresh::<1>()
                .with_enable(true),
        );
        Ok(())
    })??;
    poll_until(
        || with_bar(bar, |b| b.read(RXDCTL0)),
        |r| r.enable().into_bool(),
        Delta::from_millis(1),
        Delta::from_millis(100),
    )?;
    Ok(())
}

/// Disables queue 0 and waits (up to 100 ms) until the NIC acknowledges.
pub(super) fn stop<const SIZE: usize>(bar: &pci::DevresBar<SIZE>) {
    let _ = with_bar(bar, |b| b.write_reg(RXDCTL0::zeroed()));
    let _ = poll_until(
        || with_bar(bar, |b| b.read(RXDCTL0)),
        |r| !r.enable().into_bool(),
        Delta::from_millis(1),
        Delta::from_millis(100),
    );
}

/// Hands descriptors up to (not including) `tail` to the NIC.
pub(super) fn write_tail<const SIZE: usize>(bar: &pci::DevresBar<SIZE>, tail: u32) -> Result {
    with_bar(bar, |b| -> Result {
        b.write_reg(RDT0::zeroed().try_with_value(tail)?);
        Ok(())
    })?
}

/// Link state from STATUS; link down once the device is gone.
pub(super) fn link<const SIZE: usize>(bar: &pci::DevresBar<SIZE>) -> Link {
    with_bar(bar, |b| {
        let s = b.read(STATUS);
        Link {
            up: s.lu().into_bool(),
            mbps: match s.speed().get() {
                0 => 10,
                1 => 100,
                _ => 1000,
            },
        }
    })
    .unwrap_or_default()
}
