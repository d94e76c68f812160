// SPDX-License-Identifier: GPL-2.0

//! The RX descriptor ring and its receive buffers, in coherent DMA memory.
//!
//! Each descriptor owns one fixed buffer for the life of the ring and is
//! re-armed with the same address after its frame was copied out, so no
//! buffer is ever allocated or mapped on the hot path. Buffers come in
//! chunks of at most [`CHUNK_BYTES`], because without an IOMMU a single
//! coherent allocation is limited to 4 MiB.

use crate::hpcap_core::{
    desc::{
        RxDone,
        RxFormat, //
    },
    engine::Port,
};
use crate::kthread;
use crate::nic::{
    Caps,
    Nic,
    RingConfig, //
};
use core::{
    marker::PhantomData,
    sync::atomic::{
        AtomicBool,
        Ordering, //
    }, //
};
use kernel::{
    device::{
        Bound,
        Device, //
    },
    dma::Coherent,
    prelude::*,
    sync::barrier::{
        dma_mb,
        Read, //
    }, //
};

/// Largest coherent allocation per buffer chunk.
const CHUNK_BYTES: usize = 2 << 20;

/// A ring of `count` descriptors in format `F`, each with a `buf_size` buffer.
///
/// # Invariants
///
/// - `desc` holds `count * F::WORDS` words; `chunks` hold `count` buffers of
///   `buf_size` bytes, `1 << chunk_shift` per chunk (the last one fewer).
/// - A descriptor is owned either by the NIC (armed and handed over by a tail
///   write) or by the one capture thread whose segment contains it (done, not
///   yet re-armed); the owner alone touches its buffer.
pub(crate) struct RxRing<F: RxFormat> {
    desc: Coherent<[u64]>,
    chunks: KVec<Coherent<[u8]>>,
    count: u32,
    buf_size: u32,
    /// Buffers per chunk, as a power of two: finding a descriptor's buffer
    /// on the capture path is a shift and a mask, not a division.
    chunk_shift: u32,
    // `fn() -> F`: the ring stores no `F`, so it is Send/Sync regardless.
    _format: PhantomData<fn() -> F>,
}

impl<F: RxFormat> RxRing<F> {
    /// Allocates the ring and buffers and arms every descriptor.
    pub(crate) fn new(dev: &Device<Bound>, count: u32, buf_size: u32) -> Result<Self> {
        let (n, buf) = (usize::try_from(count)?, usize::try_from(buf_size)?);
        if n == 0 || buf == 0 || buf > CHUNK_BYTES || buf_size > F::MAX_BUFFER {
            return Err(EINVAL);
        }
        let words = n.checked_mul(F::WORDS).ok_or(EINVAL)?;
        let desc = Coherent::<u64>::zeroed_slice(dev, words, GFP_KERNEL)?;
        // The largest power of two of buffers that fits a chunk.
        let fit = u32::try_from(CHUNK_BYTES / buf)?;
        let chunk_shift = fit.checked_ilog2().ok_or(EINVAL)?;
        let per_chunk = 1u32 << chunk_shift;
        let nchunks = (count >> chunk_shift) + u32::from(count & (per_chunk - 1) != 0);
        let mut chunks = KVec::with_capacity(usize::try_from(nchunks)?, GFP_KERNEL)?;
        let mut left = count;
        for _ in 0..nchunks {
            let n = left.min(per_chunk);
            let bytes = usize::try_from(n)?.checked_mul(buf).ok_or(EINVAL)?;
            chunks.push(Coherent::<u8>::zeroed_slice(dev, bytes, GFP_KERNEL)?, GFP_KERNEL)?;
            left -= n;
        }
        // INVARIANT: sizes as documented; no descriptor handed to the NIC yet.
        let ring = Self {
            desc,
            chunks,
            count,
            buf_size,
            chunk_shift,
            _format: PhantomData,
        };
        for i in 0..count {
            ring.arm(i);
        }
        Ok(ring)
    }

    /// Number of descriptors.
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// Bytes per receive buffer.
    pub(crate) fn buf_size(&self) -> u32 {
        self.buf_size
    }

    /// Bus address of descriptor 0.
    pub(crate) fn dma(&self) -> u64 {
        self.desc.dma_address()
    }

    fn chunk_of(&self, i: u32) -> Option<(&Coherent<[u8]>, usize)> {
        let chunk = self.chunks.get(usize::try_from(i >> self.chunk_shift).ok()?)?;
        let slot = usize::try_from(i & ((1 << self.chunk_shift) - 1)).ok()?;
        Some((chunk, slot.checked_mul(usize::try_from(self.buf_size).ok()?)?))
    }

    fn word_ptr(&self, i: u32) -> Option<*mut u64> {
        if i >= self.count {
            return None;
        }
        // SAFETY: `i < count` so the offset is inside the `count * WORDS`
        // words of `desc` (type invariant).
        Some(unsafe { self.desc.as_mut_ptr().cast::<u64>().add(usize::try_from(i).ok()? * F::WORDS) })
    }

    /// Arms descriptor `i` with its buffer (the "read" format), which also
    /// clears the done bit. Caller owns the descriptor.
    pub(crate) fn arm(&self, i: u32) {
        let (Some(p), Some((chunk, off))) = (self.word_ptr(i), self.chunk_of(i)) else {
            return;
        };
        // CAST: a byte offset inside a 2 MiB chunk.
        let words = F::arm(chunk.dma_address() + off as u64);
        for (k, w) in words.iter().take(F::WORDS).enumerate() {
            // SAFETY: `p` points at descriptor `i`'s `WORDS` words in
            // coherent memory; volatile because the NIC reads them.
            unsafe { p.add(k).write_volatile(w.to_le()) };
        }
    }

    /// Writes descriptor `i` as done without a frame (`F::NOT_A_FRAME`);
    /// false if the format has no such descriptor. Caller owns the
    /// descriptor, or the NIC's queue is stopped (re-aligning after a
    /// reset).
    pub(crate) fn mark_not_a_frame(&self, i: u32) -> bool {
        let (Some(p), Some(words)) = (self.word_ptr(i), F::NOT_A_FRAME) else {
            return false;
        };
        for (k, w) in words.iter().take(F::WORDS).enumerate() {
            // SAFETY: `p` points at descriptor `i`'s `WORDS` words in
            // coherent memory; volatile because the NIC may read them.
            unsafe { p.add(k).write_volatile(w.to_le()) };
        }
        true
    }

    /// The write-back of descriptor `i` if the NIC has completed it.
    pub(crate) fn poll(&self, i: u32) -> Option<RxDone> {
        let p = self.word_ptr(i)?;
        let mut words = [0u64; 4];
        // Read the status word first: nothing else is valid before DD.
        // SAFETY: inside descriptor `i` (see `word_ptr`); volatile because
        // the NIC writes it.
        words[1] = u64::from_le(unsafe { p.add(1).read_volatile() });
        F::decode(&words[..F::WORDS])?;
        // DD seen: order the reads of the rest of the descriptor (and of the
        // buffer, done later) after it.
        dma_mb(Read);
        for (k, w) in words.iter_mut().enumerate().take(F::WORDS) {
            // SAFETY: as above.
            *w = u64::from_le(unsafe { p.add(k).read_volatile() });
        }
        let mut done = F::decode(&words[..F::WORDS])?;
        // A write-back claiming more bytes than the buffer holds is a broken
        // descriptor: the engine copies `len` bytes of a buffer of
        // `buf_size` (`Port::frame` caps the slice), so such a frame is
        // handed on as a receive error: dropped and counted at the ring
        // stage like a frame the NIC flagged, never stored with bytes the
        // NIC did not write.
        if done.len > self.buf_size {
            done.error = true;
            done.len = self.buf_size;
        }
        Some(done)
    }

    /// The first `len` bytes of descriptor `i`'s buffer (capped at the
    /// buffer size).
    ///
    /// # Safety
    ///
    /// The caller owns descriptor `i`: the NIC completed it ([`Self::poll`])
    /// and it has not been re-armed and handed back, so the NIC does not
    /// write the buffer while the slice lives.
    pub(crate) unsafe fn frame(&self, i: u32, len: u32) -> &[u8] {
        let Some((chunk, off)) = self.chunk_of(i) else {
            return &[];
        };
        let Ok(len) = usize::try_from(len.min(self.buf_size)) else {
            return &[];
        };
        // SAFETY: `off + len` is within the chunk (type invariant: each chunk
        // holds whole buffers); the caller guarantees the NIC is not writing.
        unsafe { core::slice::from_raw_parts(chunk.as_ptr().cast::<u8>().add(off), len) }
    }
}

/// A running receive queue: the NIC and the ring its DMA writes into.
///
/// Owning both is what makes teardown safe on every path: dropping the
/// queue stops the NIC and waits until its DMA has quiesced
/// ([`Nic::stop_rx`]) before the ring and its buffers are freed (the fields
/// drop after `drop` returns), and then the backend releases the device
/// (its own `Drop`). Probe failure at any step after `start_rx`, a failed
/// thread spawn, unbind, rmmod and surprise removal all end here.
pub(crate) struct RxQueue<N: Nic> {
    nic: N,
    ring: RxRing<N::Format>,
    caps: Caps,
    /// [`Self::stop`] ran: the NIC's queue is off for good.
    stopped: AtomicBool,
}

impl<N: Nic> RxQueue<N> {
    /// Allocates a ring of `count` armed descriptors with `buf_size`-byte
    /// buffers for `nic` and enables reception; the tail is still 0.
    pub(crate) fn start(
        dev: &Device<Bound>,
        nic: N,
        caps: Caps,
        count: u32,
        buf_size: u32,
    ) -> Result<Self> {
        let ring = RxRing::<N::Format>::new(dev, count, buf_size)?;
        let q = Self {
            nic,
            ring,
            caps,
            stopped: AtomicBool::new(false),
        };
        // On failure `q` drops here, which stops whatever part of the
        // queue `start_rx` enabled.
        q.nic.start_rx(&q.config())?;
        Ok(q)
    }

    /// What the NIC is told about the ring.
    fn config(&self) -> RingConfig {
        RingConfig {
            dma: self.ring.dma(),
            count: self.ring.count(),
            buf_size: self.ring.buf_size(),
            max_frame: self.ring.buf_size().min(self.caps.max_frame),
        }
    }

    /// Starts the queue again after the NIC was reset ([`Nic::await_reset`]
    /// returned and the ring was re-aligned); the tail register is the
    /// caller's to write.
    pub(crate) fn restart(&self) -> Result {
        self.nic.start_rx(&self.config())
    }

    /// Descriptors in the ring.
    pub(crate) fn count(&self) -> u32 {
        self.ring.count()
    }

    /// Stops the NIC's queue for good ([`Nic::stop_rx`]: DMA quiesced);
    /// the ring stays readable, so what the NIC completed can still be
    /// counted. Only the first call stops; [`Drop`] calls it too.
    pub(crate) fn stop(&self) {
        // Relaxed: teardown is serialised by its caller (the last owner).
        if !self.stopped.swap(true, Ordering::Relaxed) {
            self.nic.stop_rx();
        }
    }

    /// See [`RxRing::mark_not_a_frame`].
    pub(crate) fn mark_not_a_frame(&self, i: u32) -> bool {
        self.ring.mark_not_a_frame(i)
    }

    /// The backend.
    pub(crate) fn nic(&self) -> &N {
        &self.nic
    }

    /// What the backend negotiated.
    pub(crate) fn caps(&self) -> &Caps {
        &self.caps
    }
}

impl<N: Nic> Drop for RxQueue<N> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl<N: Nic> Port for RxQueue<N> {
    #[inline]
    fn poll(&self, i: u32) -> Option<RxDone> {
        self.ring.poll(i)
    }

    #[inline]
    unsafe fn frame(&self, i: u32, len: u32) -> &[u8] {
        // SAFETY: the caller owns descriptor `i` (the trait's contract is
        // the ring's).
        unsafe { self.ring.frame(i, len) }
    }

    #[inline]
    fn arm(&self, i: u32) {
        self.ring.arm(i);
    }

    #[inline]
    fn write_tail(&self, tail: u32) {
        self.nic.write_tail(tail);
    }

    #[inline]
    fn now_ns(&self) -> u64 {
        kthread::now_ns()
    }

    #[inline]
    fn vlan_stripped(&self) -> bool {
        self.caps.vlan_stripped
    }
}
