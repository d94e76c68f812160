// SPDX-License-Identifier: GPL-2.0
//! The 82576 receive queue registers and device status, which sit at the
//! same offsets in the PF's register space and in every VF's (82576
//! datasheet 8.2 and 8.10 for the PF; the VF copies are listed in 8.28).
//! Both 82576 backends drive their receive queue through this file.

use super::{
    poll_until,
    with_bar,
    Link,
    RingConfig, //
};
use crate::hpcap_core::config::RingLimits;
use kernel::{
    io::{
        register,
        register::Array,
        Io, //
    },
    pci,
    prelude::*,
    time::Delta, //
};

/// The queue hpcap uses: queue 0 of the PF, the VF's queue 0.
pub(super) const QUEUE: usize = 0;

/// What one 82576 receive queue accepts, in a PF and in a VF alike: `RDLEN`
/// in steps of 128 bytes (8 descriptors), buffers in the 1 KiB units of
/// `SRRCTL.BSIZEPACKET`; the upper bounds are the ones hpcap uses.
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
    /// Device Status (8.2.2; read-only in a VF).
    pub(crate) STATUS(u32) @ 0x0008 {
        /// Link up.
        1:1 lu;
        /// Speed: 0 = 10, 1 = 100, 2 or 3 = 1000 Mb/s.
        7:6 speed;
    }

    /// Receive Descriptor Base Address Low (8.10.5); queues 0..3.
    pub(crate) RDBAL(u32)[4, stride = 0x100] @ 0x2800 {
        /// Low 32 bits (16-byte aligned; 128 recommended).
        31:0 value;
    }

    /// Receive Descriptor Base Address High (8.10.6).
    pub(crate) RDBAH(u32)[4, stride = 0x100] @ 0x2804 {
        /// High 32 bits.
        31:0 value;
    }

    /// Receive Descriptor Ring Length in bytes (8.10.7).
    pub(crate) RDLEN(u32)[4, stride = 0x100] @ 0x2808 {
        /// Bytes; a multiple of 128.
        31:0 value;
    }

    /// Split and Replication Receive Control (8.10.2).
    pub(crate) SRRCTL(u32)[4, stride = 0x100] @ 0x280C {
        /// Receive buffer size in 1 KiB units.
        6:0 bsizepkt;
        /// Descriptor type: 1 = advanced, one buffer.
        27:25 desctype;
        /// Drop when no descriptor is available (instead of stalling).
        31:31 drop_en;
    }

    /// Receive Descriptor Head (8.10.8).
    pub(crate) RDH(u32)[4, stride = 0x100] @ 0x2810 {
        /// Head index (hardware-owned).
        15:0 value;
    }

    /// Receive Descriptor Tail (8.10.9).
    pub(crate) RDT(u32)[4, stride = 0x100] @ 0x2818 {
        /// Tail index (software-owned).
        15:0 value;
    }

    /// Receive Descriptor Control (8.10.10).
    pub(crate) RXDCTL(u32)[4, stride = 0x100] @ 0x2828 {
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

/// `SRRCTL.DESCTYPE` of advanced one-buffer descriptors.
const DESCTYPE_ADV_ONEBUF: u32 = 1;

/// Programs the queue with `ring` (advanced one-buffer descriptors, drop
/// when no descriptor is free) and enables it (datasheet 4.5.9). The tail
/// stays 0: the caller hands descriptors over with [`write_tail`].
pub(super) fn start<const SIZE: usize>(bar: &pci::DevresBar<SIZE>, ring: &RingConfig) -> Result {
    let len_bytes = ring.count.checked_mul(DESC_BYTES).ok_or(EINVAL)?;
    // CAST: the low and high halves of the 64-bit bus address (truncation
    // intended).
    let (lo, hi) = (ring.dma as u32, (ring.dma >> 32) as u32);
    with_bar(bar, |b| -> Result {
        b.write(RXDCTL::at(QUEUE), RXDCTL::zeroed());
        b.write(RDBAL::at(QUEUE), RDBAL::zeroed().with_value(lo));
        b.write(RDBAH::at(QUEUE), RDBAH::zeroed().with_value(hi));
        b.write(RDLEN::at(QUEUE), RDLEN::zeroed().with_value(len_bytes));
        b.write(RDH::at(QUEUE), RDH::zeroed());
        b.write(RDT::at(QUEUE), RDT::zeroed());
        b.write(
            SRRCTL::at(QUEUE),
            SRRCTL::zeroed()
                .try_with_bsizepkt(ring.buf_size / 1024)?
                .with_const_desctype::<DESCTYPE_ADV_ONEBUF>()
                .with_drop_en(true),
        );
        b.write(
            RXDCTL::at(QUEUE),
            RXDCTL::zeroed()
                .with_const_pthresh::<8>()
                .with_const_hthresh::<8>()
                .with_const_wthresh::<1>()
                .with_enable(true),
        );
        Ok(())
    })??;
    poll_until(
        || with_bar(bar, |b| b.read(RXDCTL::at(QUEUE))),
        |r| r.enable().into_bool(),
        Delta::from_millis(1),
        Delta::from_millis(100),
    )?;
    Ok(())
}

/// Disables the queue and waits (up to 100 ms) until the NIC acknowledges:
/// once `RXDCTL.ENABLE` reads 0 the queue fetches and writes no more
/// descriptors (datasheet 4.5.9.1). Then the base address is cleared.
pub(super) fn stop<const SIZE: usize>(bar: &pci::DevresBar<SIZE>) {
    let _ = with_bar(bar, |b| b.write(RXDCTL::at(QUEUE), RXDCTL::zeroed()));
    let _ = poll_until(
        || with_bar(bar, |b| b.read(RXDCTL::at(QUEUE))),
        |r| !r.enable().into_bool(),
        Delta::from_millis(1),
        Delta::from_millis(100),
    );
    let _ = with_bar(bar, |b| {
        b.write(RDBAL::at(QUEUE), RDBAL::zeroed());
        b.write(RDBAH::at(QUEUE), RDBAH::zeroed());
    });
}

/// Hands descriptors up to (not including) `tail` to the NIC; nothing
/// happens once the device is gone.
pub(super) fn write_tail<const SIZE: usize>(bar: &pci::DevresBar<SIZE>, tail: u32) {
    let _ = with_bar(bar, |b| {
        if let Ok(r) = RDT::zeroed().try_with_value(tail) {
            b.write(RDT::at(QUEUE), r);
        }
    });
}

/// Whether the function still answers. A read from a function that is gone
/// (pulled out, its link lost, memory decoding switched off) completes with
/// all ones, which a working 82576 does not return for `STATUS` (Linux's
/// igb makes the same check on `CTRL` after every all-ones register read).
/// Counters read from a vanished function are such all-ones values, never
/// frames.
pub(super) fn present<const SIZE: usize>(bar: &pci::DevresBar<SIZE>) -> bool {
    with_bar(bar, |b| b.read(STATUS).into_raw() != u32::MAX).unwrap_or(false)
}

/// Link state from STATUS; link down once the device is gone.
pub(super) fn link<const SIZE: usize>(bar: &pci::DevresBar<SIZE>) -> Link {
    /// `STATUS.SPEED` values (8.2.2).
    const SPEED_10: u32 = 0;
    const SPEED_100: u32 = 1;
    with_bar(bar, |b| {
        let s = b.read(STATUS);
        if s.into_raw() == u32::MAX {
            // Gone (see `present`).
            return Link::default();
        }
        Link {
            up: s.lu().into_bool(),
            mbps: match s.speed().get() {
                SPEED_10 => 10,
                SPEED_100 => 100,
                _ => 1000,
            },
        }
    })
    .unwrap_or_default()
}
