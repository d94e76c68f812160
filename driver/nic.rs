// SPDX-License-Identifier: GPL-2.0

//! What the capture engine needs from a NIC, and the backends providing it.
//!
//! One trait, [`Nic`], covers a capture port: bring the receive path up on a
//! single RX queue in promiscuous mode, move the tail, report link and the
//! NIC's own drop counter, and shut it down. The descriptor layout is the
//! backend's associated [`RxFormat`] from the shared core. Each backend is a
//! file under `nic/`; the XL710 PF (i40e) and VF (iavf) backends will sit
//! next to the 82576 ones behind the same trait.

use crate::hpcap_core::desc::RxFormat;
use kernel::{
    pci,
    prelude::*,
    time::{
        delay::fsleep,
        Delta, //
    }, //
};

pub(crate) mod igb;
pub(crate) mod igbvf;
mod common;

/// Link state as the NIC reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Link {
    /// Carrier present.
    pub(crate) up: bool,
    /// Speed in Mb/s, 0 if unknown.
    pub(crate) mbps: u32,
}

/// Where the receive ring lives, as the NIC must be told.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingConfig {
    /// Bus address of descriptor 0.
    pub(crate) dma: u64,
    /// Number of descriptors.
    pub(crate) count: u32,
    /// Bytes of each receive buffer.
    pub(crate) buf_size: u32,
    /// Largest frame to accept (bytes, without FCS).
    pub(crate) max_frame: u32,
}

/// A NIC port or VF driven for capture.
///
/// Methods that touch registers fail with `ENODEV` once the device is gone
/// (the register mapping is revocable), so they are safe to call from the
/// capture threads at any time.
pub(crate) trait Nic: Send + Sync + 'static {
    /// RX descriptor layout.
    type Format: RxFormat;
    /// `abi::NIC_*` value of this backend.
    const ABI_KIND: u32;
    /// Human-readable model, for logs.
    const MODEL: &'static str;
    /// Tail writes must be multiples of this many descriptors.
    const TAIL_ALIGN: u32;
    /// Largest frame the NIC can receive into one buffer (bytes, no FCS).
    const MAX_FRAME: u32;
    /// Whether a descriptor's VLAN report means the tag was stripped from
    /// the frame (and must be put back), rather than merely recognised. The
    /// tag is put back as 802.1Q (TPID 0x8100), the only kind the 82576
    /// strips; a backend that can strip an outer 802.1ad tag (XL710 with
    /// double VLAN) must keep that off or report the TPID.
    const RX_VLAN_STRIPPED: bool;

    /// Programs and enables the receive queue and promiscuous reception; the
    /// ring must already hold armed descriptors. Leaves the tail at 0.
    fn start_rx(&self, ring: &RingConfig) -> Result;
    /// Stops reception and waits until the NIC no longer writes to the ring.
    fn stop_rx(&self);
    /// Hands descriptors up to (not including) `tail` back to the NIC.
    fn write_tail(&self, tail: u32) -> Result;
    /// Current link state.
    fn link(&self) -> Link;
    /// Frames the NIC dropped for lack of descriptors since `start_rx`
    /// (monotonic; the backend accumulates read-to-clear counters).
    fn missed(&self) -> u64;
}

/// Reads through `io` until `done` holds, sleeping `step` between reads and
/// failing with `ETIMEDOUT` after `timeout`. The sleep happens outside `io`,
/// whose revocable register access must not sleep (it is an RCU section).
pub(crate) fn poll_until<R>(
    mut io: impl FnMut() -> Result<R>,
    done: impl Fn(&R) -> bool,
    step: Delta,
    timeout: Delta,
) -> Result<R> {
    let mut waited = 0i64;
    loop {
        let v = io()?;
        if done(&v) {
            return Ok(v);
        }
        if waited >= timeout.as_micros_ceil() {
            return Err(ETIMEDOUT);
        }
        fsleep(step);
        waited += step.as_micros_ceil().max(1);
    }
}

/// Runs `f` on a revocable BAR mapping; `ENODEV` once the device is gone.
/// `f` runs inside an RCU read-side section and must not sleep.
pub(crate) fn with_bar<const SIZE: usize, R>(
    bar: &pci::DevresBar<SIZE>,
    f: impl for<'a> FnOnce(&pci::Bar<'a, SIZE>) -> R,
) -> Result<R> {
    bar.try_access_with(f).ok_or(ENODEV)
}
