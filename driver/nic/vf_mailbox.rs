// SPDX-License-Identifier: GPL-2.0
//! The VF side of the PF/VF mailbox of Intel's e1000-family SR-IOV NICs:
//! the 82576 (`V2PMAILBOX0`/`VMBMEM`, datasheet 7.8.2.9) and the 82599
//! (`VFMAILBOX`/`VFMBMEM`, datasheet 7.9.2.2) have the same control bits and
//! the same handshake at different offsets. The message framing is in
//! `core/src/vfmbx.rs`; each backend knows which messages its PF serves.

use super::{
    poll_until,
    with_bar, //
};
use crate::hpcap_core::vfmbx::{
    self,
    WORDS, //
};
use kernel::{
    io::Io,
    pci,
    prelude::*,
    sync::{
        new_mutex,
        Mutex, //
    },
    time::{
        delay::fsleep,
        Delta, //
    }, //
};

/// Mailbox control: a message for the PF is in the buffer.
const REQ: u32 = 1 << 0;
/// Acknowledge a PF message.
const ACK: u32 = 1 << 1;
/// The VF owns the buffer.
const VFU: u32 = 1 << 2;
/// The PF wrote a message (read to clear).
const PFSTS: u32 = 1 << 4;
/// The PF acknowledged our message (read to clear).
const PFACK: u32 = 1 << 5;
/// PF reset in progress.
const RSTI: u32 = 1 << 6;
/// PF reset done (read to clear).
const RSTD: u32 = 1 << 7;

/// Where a VF's mailbox registers are in its BAR0.
pub(super) struct Layout {
    /// The control register (`V2PMAILBOX0`, `VFMAILBOX`).
    pub(super) ctl: usize,
    /// The 16-dword buffer (`VMBMEM`, `VFMBMEM`).
    pub(super) mem: usize,
}

/// One VF's mailbox. Read-to-clear status bits seen while waiting for
/// another bit are remembered, so none is lost.
pub(super) struct Mailbox {
    layout: Layout,
    seen: Pin<KBox<Mutex<u32>>>,
}

impl Mailbox {
    /// The mailbox at `layout`.
    pub(super) fn new(layout: Layout) -> Result<Self> {
        Ok(Self {
            layout,
            seen: KBox::pin_init(new_mutex!(0), GFP_KERNEL)?,
        })
    }

    fn ctl<const SIZE: usize>(&self, bar: &pci::DevresBar<SIZE>) -> Result<u32> {
        with_bar(bar, |b| b.try_read32(self.layout.ctl))?
    }

    fn set_ctl<const SIZE: usize>(&self, bar: &pci::DevresBar<SIZE>, v: u32) -> Result {
        with_bar(bar, |b| b.try_write32(v, self.layout.ctl))?
    }

    /// True if any of `bits` has been seen (and consumes them).
    fn check<const SIZE: usize>(&self, bar: &pci::DevresBar<SIZE>, seen: &mut u32, bits: u32) -> Result<bool> {
        *seen |= self.ctl(bar)?;
        if *seen & bits != 0 {
            *seen &= !bits;
            return Ok(true);
        }
        Ok(false)
    }

    fn wait<const SIZE: usize>(
        &self,
        pdev: &pci::Device,
        bar: &pci::DevresBar<SIZE>,
        seen: &mut u32,
        bits: u32,
        what: &str,
    ) -> Result {
        for _ in 0..2000 {
            if self.check(bar, seen, bits)? {
                return Ok(());
            }
            fsleep(Delta::from_micros(500));
        }
        dev_warn!(pdev, "mailbox: no {} from the PF within 1 s\n", what);
        Err(ETIMEDOUT)
    }

    /// After the VF's own reset: waits (up to `timeout`) until the PF's
    /// reset indications (RSTI, and the read-to-clear RSTD) are gone; the
    /// mailbox is unusable before.
    pub(super) fn await_reset_done<const SIZE: usize>(&self, bar: &pci::DevresBar<SIZE>, timeout: Delta) -> Result {
        poll_until(
            || self.ctl(bar),
            |v| v & (RSTI | RSTD) == 0,
            Delta::from_millis(1),
            timeout,
        )?;
        *self.seen.lock() = 0;
        Ok(())
    }

    /// Sends `msg` and returns the PF's reply: take the buffer (VFU, read
    /// back), write the message, REQ; wait for the PF's acknowledgement and
    /// its reply (PFACK, PFSTS); read the reply and acknowledge it. Fails
    /// with `EIO` when the PF refused (NACK), `EPROTO` when the reply is not
    /// for this message.
    pub(super) fn call<const SIZE: usize>(
        &self,
        pdev: &pci::Device,
        bar: &pci::DevresBar<SIZE>,
        msg: &[u32],
    ) -> Result<[u32; WORDS]> {
        let mut seen = self.seen.lock();
        // The PF may hold the buffer for a moment: retry for up to 100 ms.
        // The read also returns read-to-clear bits, which must not be lost.
        let mut owned = false;
        for _ in 0..100 {
            self.set_ctl(bar, VFU)?;
            let v = self.ctl(bar)?;
            *seen |= v;
            if v & VFU != 0 {
                owned = true;
                break;
            }
            fsleep(Delta::from_millis(1));
        }
        if !owned {
            dev_warn!(pdev, "mailbox: buffer busy (control {:#x})\n", *seen);
            return Err(EBUSY);
        }
        let mem = self.layout.mem;
        with_bar(bar, |b| -> Result {
            for i in 0..WORDS {
                b.try_write32(msg.get(i).copied().unwrap_or(0), mem + 4 * i)?;
            }
            b.try_write32(REQ, self.layout.ctl)
        })??;
        self.wait(pdev, bar, &mut seen, PFACK, "acknowledgement")?;
        self.wait(pdev, bar, &mut seen, PFSTS, "reply")?;
        self.set_ctl(bar, VFU)?;
        let reply = with_bar(bar, |b| -> Result<[u32; WORDS]> {
            let mut r = [0u32; WORDS];
            for (i, w) in r.iter_mut().enumerate() {
                *w = b.try_read32(mem + 4 * i)?;
            }
            // Acknowledge the PF's message and release the buffer.
            b.try_write32(ACK, self.layout.ctl)?;
            Ok(r)
        })??;
        let request = msg.first().copied().unwrap_or(0);
        if reply[0] & vfmbx::MSG_TYPE_MASK != request & vfmbx::MSG_TYPE_MASK {
            return Err(EPROTO);
        }
        if !vfmbx::is_ack_of(request, reply[0]) {
            return Err(EIO);
        }
        Ok(reply)
    }
}
