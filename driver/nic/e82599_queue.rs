// SPDX-License-Identifier: GPL-2.0
//! The 82599 receive queue 0 registers, which sit at the same offsets in
//! the PF's register space (queue 0 of the 0x1000 block, datasheet 8.2.3.8)
//! and in a VF's (`VFRDBAL` .. `VFRXDCTL`, 8.3.5.2). Both 82599 backends
//! (ixgbe, ixgbevf) drive their receive queue through this file; link state
//! and counters live elsewhere in each (`LINKS`/`GPRC` in the PF,
//! `VFLINKS`/`VFGPRC` in a VF).

use super::{
    poll_until,
    with_bar,
    RingConfig, //
};
use crate::hpcap_core::config::RingLimits;
use kernel::{
    io::{
        register,
        Io, //
    },
    pci,
    prelude::*,
    time::Delta, //
};

/// What an 82599 receive queue accepts: `RDLEN` in steps of 128 bytes (8
/// descriptors), buffers in the 1 KiB units of `SRRCTL.BSIZEPACKET`; the
/// upper bounds are the ones hpcap uses.
pub(super) const RING: RingLimits = RingLimits {
    min: 64,
    max: 4096,
    step: 8,
    tail_step: 1,
    buf_min: 1024,
    buf_max: 16384,
    buf_unit: 1024,
};

/// Bytes per advanced RX descriptor (`RDLEN` counts bytes).
const DESC_BYTES: u32 = 16;

register! {
    /// Receive Descriptor Base Address Low, queue 0 (8.2.3.8.1).
    pub(crate) RDBAL(u32) @ 0x1000 {
        /// Low 32 bits (128-byte aligned).
        31:0 value;
    }

    /// Receive Descriptor Base Address High (8.2.3.8.2).
    pub(crate) RDBAH(u32) @ 0x1004 {
        /// High 32 bits.
        31:0 value;
    }

    /// Receive Descriptor Length in bytes (8.2.3.8.3).
    pub(crate) RDLEN(u32) @ 0x1008 {
        /// Bytes; a multiple of 128.
        19:0 value;
    }

    /// Receive Descriptor Head (8.2.3.8.4).
    pub(crate) RDH(u32) @ 0x1010 {
        /// Head index (hardware-owned).
        15:0 value;
    }

    /// Split Receive Control (8.2.3.8.7).
    pub(crate) SRRCTL(u32) @ 0x1014 {
        /// Receive buffer size in 1 KiB units.
        4:0 bsizepacket;
        /// Descriptor type: 1 = advanced, one buffer.
        27:25 desctype;
        /// Drop when no descriptor is free (instead of waiting in the
        /// packet buffer).
        28:28 drop_en;
    }

    /// Receive Descriptor Tail (8.2.3.8.5).
    pub(crate) RDT(u32) @ 0x1018 {
        /// Tail index (software-owned).
        15:0 value;
    }

    /// Receive Descriptor Control (8.2.3.8.6).
    pub(crate) RXDCTL(u32) @ 0x1028 {
        /// Queue enable.
        25:25 enable;
        /// Strip VLAN tags into the descriptor.
        30:30 vme;
    }
}

/// `SRRCTL.DESCTYPE` of advanced one-buffer descriptors.
const DESCTYPE_ADV_ONEBUF: u32 = 1;

/// Programs queue 0 with `ring` (advanced one-buffer descriptors, VLAN tags
/// kept in the frames; with `drop_en` a frame that finds no descriptor is
/// dropped, else it waits in the receive packet buffer) and enables it
/// (datasheet 4.6.7). The tail stays 0: the caller hands descriptors over
/// with [`write_tail`].
pub(super) fn start<const SIZE: usize>(bar: &pci::DevresBar<SIZE>, ring: &RingConfig, drop_en: bool) -> Result {
    let len_bytes = ring.count.checked_mul(DESC_BYTES).ok_or(EINVAL)?;
    // CAST: the low and high halves of the 64-bit bus address (truncation
    // intended).
    let (lo, hi) = (ring.dma as u32, (ring.dma >> 32) as u32);
    stop(bar);
    with_bar(bar, |b| -> Result {
        b.write_reg(RDBAL::zeroed().with_value(lo));
        b.write_reg(RDBAH::zeroed().with_value(hi));
        b.write_reg(RDLEN::zeroed().try_with_value(len_bytes)?);
        b.write_reg(RDH::zeroed());
        b.write_reg(RDT::zeroed());
        b.write_reg(
            SRRCTL::zeroed()
                .try_with_bsizepacket(ring.buf_size / 1024)?
                .with_const_desctype::<DESCTYPE_ADV_ONEBUF>()
                .with_drop_en(drop_en),
        );
        b.write_reg(RXDCTL::zeroed().with_enable(true));
        Ok(())
    })??;
    poll_until(
        || with_bar(bar, |b| b.read(RXDCTL)),
        |r| r.enable().into_bool(),
        Delta::from_millis(1),
        Delta::from_millis(100),
    )?;
    Ok(())
}

/// Disables queue 0 and waits (up to 100 ms) until the NIC acknowledges:
/// once `RXDCTL.ENABLE` reads 0 the queue writes no more descriptors. Then
/// the base address is cleared.
pub(super) fn stop<const SIZE: usize>(bar: &pci::DevresBar<SIZE>) {
    let _ = with_bar(bar, |b| b.write_reg(RXDCTL::zeroed()));
    let _ = poll_until(
        || with_bar(bar, |b| b.read(RXDCTL)),
        |r| !r.enable().into_bool(),
        Delta::from_millis(1),
        Delta::from_millis(100),
    );
    let _ = with_bar(bar, |b| {
        b.write_reg(RDBAL::zeroed());
        b.write_reg(RDBAH::zeroed());
    });
}

/// Hands descriptors up to (not including) `tail` to the NIC; nothing
/// happens once the device is gone.
pub(super) fn write_tail<const SIZE: usize>(bar: &pci::DevresBar<SIZE>, tail: u32) {
    let _ = with_bar(bar, |b| {
        if let Ok(r) = RDT::zeroed().try_with_value(tail) {
            b.write_reg(r);
        }
    });
}
