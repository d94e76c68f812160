// SPDX-License-Identifier: GPL-2.0
//! What the capture engine needs from a NIC, and the table of backends.
//!
//! A backend is one file under `nic/` implementing [`Nic`] for one family of
//! PCI functions, plus one line in [`crate::pci_driver`]'s device table
//! naming its [`Backend`] descriptor (see "Adding a backend" in
//! `docs/architecture.md`). Everything a VF only learns from its PF at run
//! time (largest frame, whether VLAN tags are stripped, ring and buffer
//! limits, which counters exist) is in the [`Caps`] the backend returns
//! from [`Nic::new`], not in compile-time constants.
//!
//! The capture threads call only [`Nic::write_tail`]. Everything slow (link
//! state, counters, admin-queue or mailbox round trips, events) happens in
//! [`Nic::service`], called by the device's slow-path thread.

use crate::hpcap_core::{
    config::RingLimits,
    desc::RxFormat,
    stats::NicCounters, //
};
use kernel::{
    device::Core,
    pci,
    prelude::*,
    time::{
        delay::fsleep,
        Delta, //
    }, //
};

pub(crate) mod e82576_queue;
pub(crate) mod e82599_queue;
pub(crate) mod i40e;
pub(crate) mod iavf;
pub(crate) mod igb;
pub(crate) mod igbvf;
pub(crate) mod ixgbe;
pub(crate) mod ixgbevf;
pub(crate) mod vf_mailbox;
pub(crate) mod xl710_adminq;

/// Link state as the NIC reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Link {
    /// Carrier present.
    pub(crate) up: bool,
    /// Speed in Mb/s, 0 if unknown.
    pub(crate) mbps: u32,
}

/// What a backend found its device can do, at bring-up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caps {
    /// Ring and receive buffer limits.
    pub(crate) ring: RingLimits,
    /// Largest frame the port accepts (bytes, without FCS).
    pub(crate) max_frame: u32,
    /// Whether a VLAN tag a descriptor reports was stripped from the
    /// frame (and must be put back) rather than only reported. Put back as
    /// 802.1Q (TPID 0x8100); a backend that can strip an outer 802.1ad tag
    /// must keep that off.
    pub(crate) vlan_stripped: bool,
    /// Which counters [`Nic::service`] reads (`stats::NIC_*` bits).
    pub(crate) counters: u32,
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

/// What the slow path reads from the NIC.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Status {
    /// Link state.
    pub(crate) link: Link,
    /// The NIC's counters since `start_rx` (only those in
    /// [`Caps::counters`] are meaningful).
    pub(crate) counters: NicCounters,
    /// The NIC is being reset under the capture (an XL710 VF reset by its
    /// PF): its queue stopped, and it will restart at descriptor 0. The
    /// capture calls [`Nic::await_reset`], brings the ring back in step
    /// and calls [`Nic::start_rx`] again.
    pub(crate) reset: bool,
    /// What the NIC receives (`abi::PROMISC_*`), as the backend achieved it.
    pub(crate) promisc: u32,
}

/// A NIC port or VF driven for capture.
///
/// Register access goes through the kernel's revocable BAR mapping, so
/// every method is safe to call after a surprise removal (it then fails
/// with `ENODEV` or does nothing). Dropping a backend releases the device
/// (e.g. hands it back to firmware or the PF); the receive queue is
/// stopped before, by [`crate::rx_ring::RxQueue`].
pub(crate) trait Nic: Sized + Send + Sync + 'static {
    /// RX descriptor layout.
    type Format: RxFormat;

    /// Takes the device over: reset, negotiation with firmware or the PF,
    /// interrupts masked. Returns the backend and what it can do.
    fn new(pdev: &pci::Device<Core<'_>>) -> Result<(Self, Caps)>;

    /// Programs and enables the receive queue and promiscuous reception;
    /// the ring already holds armed descriptors. The tail stays at 0.
    fn start_rx(&self, ring: &RingConfig) -> Result;

    /// Disables the receive queue and waits until the NIC no longer writes
    /// to the ring or its buffers (DMA quiesced). Safe to call at any time,
    /// also when `start_rx` failed half way or was never called.
    fn stop_rx(&self);

    /// Hands descriptors up to (not including) `tail` back to the NIC. The
    /// capture threads' only register access; a gone device is ignored.
    fn write_tail(&self, tail: u32);

    /// The slow path, every 100 ms: link state and counters (admin-queue
    /// or mailbox round trips happen here, never on a capture thread).
    fn service(&self) -> Status;

    /// After [`Status::reset`]: waits until the reset is over and the
    /// device takes commands again (re-negotiated as in [`Nic::new`]; the
    /// [`Caps`] must not have changed). From the moment the reset started
    /// the NIC writes nothing into the ring until [`Nic::start_rx`] is
    /// called again. Fails if the device cannot be brought back (it then
    /// needs a rebind); backends whose NIC is never reset under a capture
    /// keep this default.
    fn await_reset(&self) -> Result {
        Err(EOPNOTSUPP)
    }
}

/// One backend: what the PCI driver needs to know to drive a device.
pub(crate) struct Backend {
    /// Short name (logs, `hpcapctl`).
    pub(crate) name: &'static str,
    /// Human-readable model.
    pub(crate) model: &'static str,
    /// `abi::NIC_*` value reported in `HPCAP_IOC_INFO`.
    pub(crate) abi_kind: u32,
    /// Takes the device over and starts capturing into `shared`.
    pub(crate) start: crate::capture::StartFn,
}

/// An errno as its name (`EINVAL`), for logs: the test kernel has no
/// `CONFIG_SYMBOLIC_ERRNAME`, so `{:?}` of an [`Error`] prints a bare
/// number there.
pub(crate) struct Errno(pub(crate) Error);

impl kernel::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const NAMES: [(Error, &str); 16] = [
            (EPERM, "EPERM"),
            (ENOENT, "ENOENT"),
            (EIO, "EIO"),
            (ENOMEM, "ENOMEM"),
            (EFAULT, "EFAULT"),
            (EBUSY, "EBUSY"),
            (EEXIST, "EEXIST"),
            (ENODEV, "ENODEV"),
            (EINVAL, "EINVAL"),
            (ENOSPC, "ENOSPC"),
            (ERANGE, "ERANGE"),
            (EPROTO, "EPROTO"),
            (EOPNOTSUPP, "EOPNOTSUPP"),
            (ETIMEDOUT, "ETIMEDOUT"),
            (EAGAIN, "EAGAIN"),
            (EMSGSIZE, "EMSGSIZE"),
        ];
        match NAMES.iter().find(|(e, _)| *e == self.0) {
            Some((_, name)) => f.write_str(name),
            None => write!(f, "errno {}", -self.0.to_errno()),
        }
    }
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
