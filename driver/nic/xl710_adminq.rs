// SPDX-License-Identifier: GPL-2.0
//! The admin queue of the Intel XL710 family: a send queue (ATQ) and a
//! receive queue (ARQ) of 32-byte descriptors in host memory, each with a
//! base, length, head and tail register (XL710 datasheet 7.10, "Admin
//! Queue"). A PF talks to its firmware through one; a VF talks to its PF
//! through the same kind of queue pair (its "mailbox"), at other register
//! offsets. This file is the transport for both: ring memory, enabling and
//! disabling, one command at a time on the ATQ (with its buffer both ways,
//! for a PF's firmware commands) and messages off the ARQ. What the
//! descriptors mean (firmware commands on a PF, virtchnl on a VF) is the
//! caller's business;
//! the descriptor layout itself is the core's ([`adminq::Desc`]).
//!
//! Everything here sleeps (polling with `fsleep`): slow path only, never a
//! capture thread. The caller serialises access (`&mut self`).

use super::{
    poll_until,
    with_bar, //
};
use crate::hpcap_core::adminq::{
    self,
    Desc, //
};
use kernel::{
    device::{
        Bound,
        Device, //
    },
    dma::Coherent,
    io::Io,
    pci,
    prelude::*,
    sync::barrier::{
        dma_mb,
        Read, //
    },
    time::Delta, //
};

/// Register offsets of one admin queue pair. The layout of each register
/// is the same for a PF (`PF_ATQ*`) and a VF (`VF_ATQ*1`).
pub(crate) struct Regs {
    /// ATQBAL: send queue base address, low 32 bits.
    pub(crate) atqbal: usize,
    /// ATQBAH: send queue base address, high 32 bits.
    pub(crate) atqbah: usize,
    /// ATQLEN: send queue length and enable.
    pub(crate) atqlen: usize,
    /// ATQH: send queue head (the other side's progress).
    pub(crate) atqh: usize,
    /// ATQT: send queue tail (written to hand over descriptors).
    pub(crate) atqt: usize,
    /// ARQBAL: receive queue base address, low 32 bits.
    pub(crate) arqbal: usize,
    /// ARQBAH: receive queue base address, high 32 bits.
    pub(crate) arqbah: usize,
    /// ARQLEN: receive queue length and enable.
    pub(crate) arqlen: usize,
    /// ARQH: receive queue head (the other side's progress).
    pub(crate) arqh: usize,
    /// ARQT: receive queue tail (buffers handed to the other side).
    pub(crate) arqt: usize,
}

/// A VF's mailbox registers (Linux `iavf_register.h`, datasheet 10.2.x
/// `VF_ATQBAL1` and following).
pub(crate) const VF_REGS: Regs = Regs {
    atqbal: 0x7C00,
    atqbah: 0x7800,
    atqlen: 0x6800,
    atqh: 0x6400,
    atqt: 0x8400,
    arqbal: 0x6C00,
    arqbah: 0x6000,
    arqlen: 0x8000,
    arqh: 0x7400,
    arqt: 0x7000,
};

/// A PF's admin queue registers (datasheet 10.2.x `PF_ATQBAL` and
/// following; Linux `i40e_register.h`).
pub(crate) const PF_REGS: Regs = Regs {
    atqbal: 0x0008_0000,
    atqbah: 0x0008_0100,
    atqlen: 0x0008_0200,
    atqh: 0x0008_0300,
    atqt: 0x0008_0400,
    arqbal: 0x0008_0080,
    arqbah: 0x0008_0180,
    arqlen: 0x0008_0280,
    arqh: 0x0008_0380,
    arqt: 0x0008_0480,
};

/// ATQLEN/ARQLEN: number of descriptors (`ATQLEN`/`ARQLEN` field).
const LEN_MASK: u32 = 0x3FF;
/// ATQLEN/ARQLEN: the queue is enabled (`ATQENABLE`/`ARQENABLE`). The other
/// side clears it when it resets the queue: on a VF, the sign that the PF
/// is resetting the VF.
const LEN_ENABLE: u32 = 1 << 31;
/// ATQH/ARQH: the head index field.
const HEAD_MASK: u32 = 0x3FF;

/// Descriptors per queue.
pub(crate) const ENTRIES: u32 = 16;
/// Bytes of each receive buffer and of the send buffer (the largest
/// virtchnl message hpcap exchanges is far smaller).
pub(crate) const BUF_SIZE: usize = 4096;

/// How long the other side may take to take a command off the ATQ.
const SEND_TIMEOUT: Delta = Delta::from_millis(2000);

/// One admin queue pair in host memory.
///
/// # Invariants
///
/// `atq` and `arq` hold `ENTRIES` descriptors of four words each,
/// `arq_bufs` holds `ENTRIES` buffers of `BUF_SIZE` bytes and `send_buf` one.
/// The device reads `send_buf` only while a command that points at it is
/// outstanding ([`AdminQueue::send`] waits for it), and writes an ARQ
/// buffer only while its descriptor is handed over (armed and behind
/// ARQT).
pub(crate) struct AdminQueue {
    regs: &'static Regs,
    atq: Coherent<[u64]>,
    arq: Coherent<[u64]>,
    arq_bufs: Coherent<[u8]>,
    send_buf: Coherent<[u8]>,
    /// Next ATQ slot to fill.
    atq_next: u32,
    /// Next ARQ slot to read.
    arq_next: u32,
}

/// Words per descriptor.
const DESC_WORDS: usize = adminq::DESC_LEN / 8;

impl AdminQueue {
    /// Allocates the rings and buffers; nothing is programmed yet.
    pub(crate) fn new(dev: &Device<Bound>, regs: &'static Regs) -> Result<Self> {
        let n = usize::try_from(ENTRIES)?;
        // INVARIANT: sizes as documented.
        Ok(Self {
            regs,
            atq: Coherent::<u64>::zeroed_slice(dev, n * DESC_WORDS, GFP_KERNEL)?,
            arq: Coherent::<u64>::zeroed_slice(dev, n * DESC_WORDS, GFP_KERNEL)?,
            arq_bufs: Coherent::<u8>::zeroed_slice(dev, n * BUF_SIZE, GFP_KERNEL)?,
            send_buf: Coherent::<u8>::zeroed_slice(dev, BUF_SIZE, GFP_KERNEL)?,
            atq_next: 0,
            arq_next: 0,
        })
    }

    /// Pointer to descriptor `i` of `ring`, if `i` is a slot.
    fn slot(ring: &Coherent<[u64]>, i: u32) -> Option<*mut u64> {
        if i >= ENTRIES {
            return None;
        }
        let at = usize::try_from(i).ok()? * DESC_WORDS;
        // SAFETY: `i < ENTRIES`, so the descriptor's words are inside the
        // ring (type invariant).
        Some(unsafe { ring.as_mut_ptr().cast::<u64>().add(at) })
    }

    fn write_desc(ring: &Coherent<[u64]>, i: u32, d: &Desc) {
        let Some(p) = Self::slot(ring, i) else {
            return;
        };
        for (k, w) in d.to_words().iter().enumerate() {
            // SAFETY: inside descriptor `i` (see `slot`); volatile because
            // the device reads it.
            unsafe { p.add(k).write_volatile(w.to_le()) };
        }
    }

    fn read_desc(ring: &Coherent<[u64]>, i: u32) -> Desc {
        let mut w = [0u64; 4];
        if let Some(p) = Self::slot(ring, i) {
            for (k, w) in w.iter_mut().enumerate() {
                // SAFETY: inside descriptor `i` (see `slot`); volatile
                // because the device writes it.
                *w = u64::from_le(unsafe { p.add(k).read_volatile() });
            }
        }
        Desc::from_words(&w)
    }

    /// Bus address and pointer of ARQ buffer `i`.
    fn arq_buf(&self, i: u32) -> Option<(u64, *mut u8)> {
        if i >= ENTRIES {
            return None;
        }
        let off = usize::try_from(i).ok()? * BUF_SIZE;
        // SAFETY: `i < ENTRIES`: the buffer is inside `arq_bufs` (type
        // invariant).
        let p = unsafe { self.arq_bufs.as_mut_ptr().cast::<u8>().add(off) };
        // CAST: an offset below 64 KiB.
        Some((self.arq_bufs.dma_address() + off as u64, p))
    }

    /// Hands ARQ slot `i` (empty, with its buffer) to the other side's
    /// next fill.
    fn arm_arq(&self, i: u32) {
        if let Some((dma, _)) = self.arq_buf(i) {
            // CAST: BUF_SIZE fits a u16.
            Self::write_desc(&self.arq, i, &Desc::receive_buffer(dma, BUF_SIZE as u16));
        }
    }

    /// Programs and enables both queues (datasheet 7.10.3, "initialization
    /// flow"; the order Linux uses): heads and tails at 0, base, length
    /// with the enable bit; every ARQ buffer handed over. Fails with `EIO`
    /// if the base register does not read back (a function in reset).
    pub(crate) fn enable<const SIZE: usize>(&mut self, bar: &pci::DevresBar<SIZE>) -> Result {
        for i in 0..ENTRIES {
            Self::write_desc(&self.atq, i, &Desc::default());
            self.arm_arq(i);
        }
        self.atq_next = 0;
        self.arq_next = 0;
        let r = self.regs;
        let program = |b: &pci::Bar<'_, SIZE>, base: u64, bal, bah, len, h, t, tail| -> Result<bool> {
            b.try_write32(0, h)?;
            b.try_write32(0, t)?;
            // CAST: the halves of the bus address (truncation intended).
            b.try_write32(base as u32, bal)?;
            b.try_write32((base >> 32) as u32, bah)?;
            b.try_write32(ENTRIES | LEN_ENABLE, len)?;
            b.try_write32(tail, t)?;
            Ok(b.try_read32(bal)? == base as u32)
        };
        let (atq, arq) = (self.atq.dma_address(), self.arq.dma_address());
        let ok = with_bar(bar, |b| -> Result<bool> {
            Ok(program(b, atq, r.atqbal, r.atqbah, r.atqlen, r.atqh, r.atqt, 0)?
                && program(b, arq, r.arqbal, r.arqbah, r.arqlen, r.arqh, r.arqt, ENTRIES - 1)?)
        })??;
        if !ok {
            self.disable(bar);
            return Err(EIO);
        }
        Ok(())
    }

    /// Disables both queues: the other side stops reading and writing the
    /// rings (Linux's shutdown order: heads, tails, length, base).
    pub(crate) fn disable<const SIZE: usize>(&mut self, bar: &pci::DevresBar<SIZE>) {
        let r = self.regs;
        let _ = with_bar(bar, |b| {
            for reg in [r.atqh, r.atqt, r.atqlen, r.atqbal, r.atqbah, r.arqh, r.arqt, r.arqlen, r.arqbal, r.arqbah] {
                let _ = b.try_write32(0, reg);
            }
        });
    }

    /// Whether the receive queue is still enabled: the other side clears
    /// `ARQENABLE` when it resets the queue (on a VF: a VF reset).
    pub(crate) fn enabled<const SIZE: usize>(&self, bar: &pci::DevresBar<SIZE>) -> Result<bool> {
        let len = with_bar(bar, |b| b.try_read32(self.regs.arqlen))??;
        Ok(len & LEN_ENABLE != 0 && len & LEN_MASK != 0)
    }

    /// Places `desc` (pointing at a copy of `data`, if any) on the ATQ and
    /// hands it over. With `wait`, waits until the other side has taken it
    /// and returns the completed descriptor (its flags and `retval` say
    /// whether the command was accepted); without, returns `desc` as sent
    /// (for a command that resets the queue itself, such as a VF reset).
    pub(crate) fn send<const SIZE: usize>(
        &mut self,
        bar: &pci::DevresBar<SIZE>,
        desc: Desc,
        data: &[u8],
        wait: bool,
    ) -> Result<Desc> {
        if data.len() > BUF_SIZE {
            return Err(EMSGSIZE);
        }
        let desc = if data.is_empty() && desc.flags & adminq::flag::BUF == 0 {
            desc
        } else {
            // SAFETY: `data.len() <= BUF_SIZE`, the size of `send_buf`; no
            // command pointing at `send_buf` is outstanding (type
            // invariant), so the device does not read it meanwhile.
            unsafe {
                core::ptr::copy_nonoverlapping(data.as_ptr(), self.send_buf.as_mut_ptr().cast::<u8>(), data.len())
            };
            desc.with_buffer(self.send_buf.dma_address())
        };
        let i = self.atq_next;
        Self::write_desc(&self.atq, i, &desc);
        let next = adminq::next_index(i, ENTRIES);
        self.atq_next = next;
        // The register write is ordered after the descriptor and buffer
        // stores (`writel` orders prior memory writes).
        with_bar(bar, |b| b.try_write32(next, self.regs.atqt))??;
        if !wait {
            return Ok(desc);
        }
        let atqh = self.regs.atqh;
        poll_until(
            || with_bar(bar, |b| b.try_read32(atqh))?,
            |h| h & HEAD_MASK == next,
            Delta::from_micros(200),
            SEND_TIMEOUT,
        )?;
        dma_mb(Read);
        Ok(Self::read_desc(&self.atq, i))
    }

    /// A firmware command that may carry a buffer both ways: `data` is
    /// copied into the send buffer (if the descriptor names one), and once
    /// the command completed, up to `out.len()` bytes of what the other side
    /// wrote back into it are copied to `out`. Returns the completed
    /// descriptor and the bytes copied.
    pub(crate) fn command<const SIZE: usize>(
        &mut self,
        bar: &pci::DevresBar<SIZE>,
        desc: Desc,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<(Desc, usize)> {
        if usize::from(desc.datalen) > BUF_SIZE {
            return Err(EMSGSIZE);
        }
        let done = self.send(bar, desc, data, true)?;
        let n = usize::from(done.datalen).min(BUF_SIZE).min(out.len());
        if done.flags & adminq::flag::BUF != 0 && n > 0 {
            // SAFETY: `n <= BUF_SIZE` bytes of `send_buf`; the command that
            // pointed at it has completed, so the device no longer writes it.
            unsafe { core::ptr::copy_nonoverlapping(self.send_buf.as_ptr().cast::<u8>(), out.as_mut_ptr(), n) };
            return Ok((done, n));
        }
        Ok((done, 0))
    }

    /// The next message the other side placed on the ARQ, if any: its
    /// descriptor and how many bytes of its buffer were copied into `out`.
    /// The slot is handed back at once.
    pub(crate) fn receive<const SIZE: usize>(
        &mut self,
        bar: &pci::DevresBar<SIZE>,
        out: &mut [u8],
    ) -> Result<Option<(Desc, usize)>> {
        let head = with_bar(bar, |b| b.try_read32(self.regs.arqh))?? & HEAD_MASK;
        let i = self.arq_next;
        if head == i {
            return Ok(None);
        }
        // The head moved past slot `i`: its write-back is complete. Order
        // the reads of the descriptor and buffer after the head read.
        dma_mb(Read);
        let d = Self::read_desc(&self.arq, i);
        if !d.done() {
            // Not written back: the other side reset the queue (its head
            // register reads 0); nothing to take.
            return Ok(None);
        }
        let n = usize::from(d.datalen).min(BUF_SIZE).min(out.len());
        if let (true, Some((_, p))) = (d.flags & adminq::flag::BUF != 0 && n > 0, self.arq_buf(i)) {
            // SAFETY: `n <= BUF_SIZE` bytes of buffer `i`, which the device
            // does not write until the slot is handed back below.
            unsafe { core::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), n) };
        }
        self.arm_arq(i);
        self.arq_next = adminq::next_index(i, ENTRIES);
        // Slot `i` is the other side's again: the tail names the last
        // buffer handed over.
        with_bar(bar, |b| b.try_write32(i, self.regs.arqt))??;
        Ok(Some((d, n)))
    }
}
