// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! A NIC in software, for the software source (`hpcap-sim`), the hot-path
//! benchmark and the engine's tests (userspace only; never in the module).
//!
//! It behaves like the hardware the engine drives: an RX ring of
//! descriptors in one of the real formats ([`RxFormat::write_back`]), one
//! fixed receive buffer per descriptor, a tail register, and a receive
//! side ([`SoftNic::receive`]) that fills the descriptors the driver handed
//! over, splits frames larger than a buffer across descriptors, strips a
//! VLAN tag when configured to, and drops (and counts, as `missed`) frames
//! that find no free descriptor. So the code measured and tested through
//! it is exactly the driver's engine.

extern crate alloc;
extern crate std;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::desc::{RxDone, RxFormat};
use super::engine::Port;
use super::frame::{TAG_LEN, TAG_OFFSET, TPID_8021Q};

/// Receive buffers, written by the receive side and read by the descriptor
/// owner; the descriptor protocol keeps the two apart.
struct Buffers(Box<[UnsafeCell<u8>]>);

// SAFETY: a buffer is written only by `receive` while its descriptor
// belongs to the NIC (between a tail write and the write-back) and read
// only by the engine while it owns the descriptor (after the write-back,
// before re-arming); the Release/Acquire pair on the status word orders
// them.
unsafe impl Sync for Buffers {}

/// A software NIC with an RX ring of descriptors in format `F`.
pub struct SoftNic<F: RxFormat> {
    words: Box<[AtomicU64]>,
    bufs: Buffers,
    count: u32,
    buf_size: u32,
    /// Per descriptor: the frame's timestamp (0 = use the clock).
    ts: Box<[AtomicU64]>,
    /// Per descriptor: the frame's original length (0 = as delivered).
    orig: Box<[AtomicU32]>,
    /// Next descriptor the receive side fills.
    head: AtomicU32,
    /// One past the last descriptor handed over by the driver.
    tail: AtomicU32,
    received: AtomicU64,
    missed: AtomicU64,
    strip_vlan: bool,
    clock: fn() -> u64,
    _format: PhantomData<fn() -> F>,
}

/// A frame offered to the receive side.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The frame as on the wire (without FCS).
    pub bytes: &'a [u8],
    /// Timestamp to report (ns since the epoch); `None`: the clock's.
    pub ts_ns: Option<u64>,
    /// Original length, when `bytes` is a truncated capture of the frame.
    pub orig_len: Option<u32>,
}

impl<F: RxFormat> SoftNic<F> {
    /// A ring of `count` descriptors with `buf_size`-byte buffers. With
    /// `strip_vlan`, an 802.1Q tag is stripped into the descriptor, as an
    /// 82576 VF with a port VLAN or an XL710 queue with L2TAG1 stripping
    /// do. `clock` gives ns since the epoch.
    pub fn new(count: u32, buf_size: u32, strip_vlan: bool, clock: fn() -> u64) -> Self {
        let n = count as usize;
        let words = (0..n * F::WORDS).map(|_| AtomicU64::new(0)).collect();
        let bufs = (0..n * buf_size as usize)
            .map(|_| UnsafeCell::new(0))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Self {
            words,
            bufs: Buffers(bufs),
            count,
            buf_size,
            ts: (0..n).map(|_| AtomicU64::new(0)).collect(),
            orig: (0..n).map(|_| AtomicU32::new(0)).collect(),
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
            received: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            strip_vlan,
            clock,
            _format: PhantomData,
        }
    }

    /// Descriptors.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Bytes per receive buffer.
    pub fn buf_size(&self) -> u32 {
        self.buf_size
    }

    /// Descriptors the driver handed over that the receive side has not
    /// filled yet.
    pub fn free(&self) -> u32 {
        // Relaxed: the receive side is single-threaded; the tail is read
        // again under the same rule by the next call.
        let (h, t) = (
            self.head.load(Ordering::Relaxed),
            self.tail.load(Ordering::Acquire),
        );
        (t + self.count - h) % self.count
    }

    /// Frames received into descriptors so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Frames dropped for lack of a free descriptor so far.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }

    /// The receive side: places `frame` in the next free descriptors (one
    /// per `buf_size` bytes), or drops it and counts it as missed when there
    /// are not enough. One caller at a time.
    pub fn receive(&self, frame: Incoming<'_>) -> bool {
        let mut tci = None;
        let mut parts: [&[u8]; 2] = [frame.bytes, &[]];
        let tagged = frame.bytes.len() >= TAG_OFFSET + TAG_LEN
            && frame.bytes[TAG_OFFSET..TAG_OFFSET + 2] == TPID_8021Q.to_be_bytes();
        if self.strip_vlan && tagged {
            tci = Some(u16::from_be_bytes([
                frame.bytes[TAG_OFFSET + 2],
                frame.bytes[TAG_OFFSET + 3],
            ]));
            parts = [
                &frame.bytes[..TAG_OFFSET],
                &frame.bytes[TAG_OFFSET + TAG_LEN..],
            ];
        }
        let len = parts[0].len() + parts[1].len();
        let need = len.div_ceil(self.buf_size as usize).max(1) as u32;
        if self.free() < need {
            self.missed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let mut bytes = parts[0].iter().chain(parts[1].iter());
        let mut left = len;
        // Relaxed: single-threaded receive side.
        let mut h = self.head.load(Ordering::Relaxed);
        for k in 0..need {
            let n = left.min(self.buf_size as usize);
            let base = h as usize * self.buf_size as usize;
            for (dst, src) in self.bufs.0[base..base + n].iter().zip(bytes.by_ref()) {
                // SAFETY: descriptor `h` belongs to the NIC (it is between
                // head and tail), so nobody reads its buffer now.
                unsafe { *dst.get() = *src };
            }
            left -= n;
            let last = k + 1 == need;
            self.ts[h as usize].store(frame.ts_ns.unwrap_or(0), Ordering::Relaxed);
            self.orig[h as usize].store(frame.orig_len.unwrap_or(0), Ordering::Relaxed);
            let wb = F::write_back(&RxDone {
                len: n as u32,
                eop: last,
                error: false,
                skip: false,
                vlan: if last { tci } else { None },
            });
            let d = &self.words[h as usize * F::WORDS..][..F::WORDS];
            for (w, v) in d.iter().zip(wb).rev() {
                // Release on word 1 (stored before word 0 here, as status
                // is checked first): the buffer bytes and the other words
                // happen-before a poll that sees the done bit.
                w.store(v, Ordering::Release);
            }
            h = (h + 1) % self.count;
        }
        self.head.store(h, Ordering::Relaxed);
        self.received.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn desc(&self, i: u32) -> Option<&[AtomicU64]> {
        self.words
            .get(i as usize * F::WORDS..(i as usize + 1) * F::WORDS)
    }
}

impl<F: RxFormat> Port for SoftNic<F> {
    fn poll(&self, i: u32) -> Option<RxDone> {
        let d = self.desc(i)?;
        let mut words = [0u64; 4];
        for (w, a) in words.iter_mut().zip(d) {
            // Acquire: pairs with the Release stores in `receive`.
            *w = a.load(Ordering::Acquire);
        }
        F::decode(&words[..F::WORDS])
    }

    unsafe fn frame(&self, i: u32, len: u32) -> &[u8] {
        let base = i as usize * self.buf_size as usize;
        let len = len.min(self.buf_size) as usize;
        let Some(cells) = self.bufs.0.get(base..base + len) else {
            return &[];
        };
        // SAFETY: the caller owns descriptor `i` (done, not re-armed), so
        // the receive side does not write these bytes while the slice
        // lives; `UnsafeCell<u8>` has the layout of `u8`.
        unsafe { core::slice::from_raw_parts(cells.as_ptr().cast::<u8>(), len) }
    }

    fn arm(&self, i: u32) {
        if let Some(d) = self.desc(i) {
            for (w, v) in d.iter().zip(F::arm(0)) {
                // Relaxed: the descriptor goes back to the NIC with the
                // Release tail store.
                w.store(v, Ordering::Relaxed);
            }
        }
    }

    fn write_tail(&self, tail: u32) {
        // Release: the re-armed descriptors before the tail.
        self.tail.store(tail % self.count.max(1), Ordering::Release);
    }

    fn now_ns(&self) -> u64 {
        (self.clock)()
    }

    fn timestamp(&self, i: u32) -> u64 {
        match self.ts.get(i as usize).map(|t| t.load(Ordering::Relaxed)) {
            Some(t) if t != 0 => t,
            _ => self.now_ns(),
        }
    }

    fn orig_len(&self, i: u32, wire: u32) -> u32 {
        match self.orig.get(i as usize).map(|o| o.load(Ordering::Relaxed)) {
            Some(o) if o > wire => o,
            _ => wire,
        }
    }

    fn vlan_stripped(&self) -> bool {
        self.strip_vlan
    }
}

/// A stream buffer in ordinary memory (tests, benchmarks).
pub struct SoftBuffer(Box<[UnsafeCell<u8>]>);

// SAFETY: writers only touch spans the publication protocol reserved for
// them alone; readers only read published bytes (see `StreamMemory`).
unsafe impl Sync for SoftBuffer {}

impl SoftBuffer {
    /// `len` zero bytes.
    pub fn new(len: usize) -> Self {
        Self(
            (0..len)
                .map(|_| UnsafeCell::new(0))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        )
    }

    /// A copy of `[pos, pos + len)`.
    ///
    /// # Safety
    ///
    /// The bytes must be published and not being rewritten (a blocking
    /// listener's unacknowledged bytes, or a quiescent buffer).
    pub unsafe fn read(&self, pos: usize, len: usize) -> Vec<u8> {
        self.0[pos..pos + len]
            .iter()
            // SAFETY: per the caller's contract nobody writes these bytes.
            .map(|c| unsafe { *c.get() })
            .collect()
    }
}

impl super::engine::StreamMemory for SoftBuffer {
    unsafe fn span_mut(&self, pos: u64, len: u64) -> Option<&mut [u8]> {
        let pos = usize::try_from(pos).ok()?;
        let end = pos.checked_add(usize::try_from(len).ok()?)?;
        let cells = self.0.get(pos..end)?;
        // SAFETY: in bounds; exclusive per the caller's contract;
        // `UnsafeCell<u8>` has the layout of `u8`.
        Some(unsafe {
            core::slice::from_raw_parts_mut(UnsafeCell::raw_get(cells.as_ptr()), cells.len())
        })
    }

    fn raw(&self) -> (*mut u8, u64) {
        (UnsafeCell::raw_get(self.0.as_ptr()), self.0.len() as u64)
    }
}

/// What [`capture`] stored.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The stream from the listener's start, whole blocks.
    pub stream: Vec<u8>,
    /// Stream offset of its first byte.
    pub start: u64,
    /// The engine's counters.
    pub stats: super::stats::CaptureStats,
}

/// Runs `frames` through the capture engine exactly as the driver does (one
/// writer, a software 82576 ring of 64 descriptors with 16 KiB buffers,
/// snapshot length `snaplen`) with one blocking listener that reads
/// everything; the last block is closed by an idle flush. `start` is where
/// the stream begins (a block boundary). For tests and fixtures.
pub fn capture(
    stream: super::config::Stream,
    start: u64,
    snaplen: u32,
    frames: &[Incoming<'_>],
) -> Captured {
    use super::desc::IgbAdv;
    use super::engine::{Ctx, OnFull, Port, Rec, Settings, Shared, Writer, MAX_BATCH, TAIL_BATCH};
    use super::listener::{ListenerTable, Mode};
    use super::publish::PublishState;
    use super::segment::RingLayout;
    use super::stats::CaptureStats;

    const RING: u32 = 64;
    fn clock() -> u64 {
        1_000_000_000
    }
    let geo = stream.geo;
    let ring = RingLayout::new(RING, 1, TAIL_BATCH, 1).expect("a valid ring");
    let nic: SoftNic<IgbAdv> = SoftNic::new(RING, 16384, false, clock);
    let mem = SoftBuffer::new(geo.buffer_size() as usize);
    let publish = PublishState::starting_at(start);
    let listeners = ListenerTable::new();
    let shared = Shared::new();
    publish.set_tail(ring.initial_tail());
    nic.write_tail(ring.tail_register(ring.initial_tail()));
    let l = listeners
        .attach(Mode::Blocking, &publish, &geo)
        .expect("a free listener slot");
    let mut writer = Writer::new(0, &ring, alloc::vec![Rec::EMPTY; MAX_BATCH]);
    let mut out = Vec::new();
    let mut stats = CaptureStats::ZERO;
    let drain = |out: &mut Vec<u8>| {
        let (cursor, _) = listeners.cursor(l.id).expect("attached");
        let commit = publish.committed();
        let mut at = cursor;
        while at < commit {
            let pos = geo.position(at);
            let n = (commit - at).min(geo.buffer_size() - pos);
            // SAFETY: published and not yet acknowledged by this blocking
            // listener, so not rewritten.
            out.extend(unsafe { mem.read(pos as usize, n as usize) });
            at += n;
        }
        listeners
            .ack(l.id, commit - cursor, &publish)
            .expect("published");
    };
    let mut next = 0;
    loop {
        while next < frames.len() && nic.free() > 16 {
            nic.receive(frames[next]);
            next += 1;
        }
        let flush_ns = if next == frames.len() { 0 } else { u64::MAX };
        let cx = Ctx {
            port: &nic,
            memory: &mem,
            publish: &publish,
            listeners: &listeners,
            shared: &shared,
            ring: &ring,
            flush_ns,
            on_full: OnFull::Stall,
        };
        let p = writer.poll(&cx, || Settings {
            stream,
            snaplen,
            filter: None::<&super::bpf::Verified<Vec<super::bpf::SockFilter>>>,
        });
        stats.merge(&p.stats);
        drain(&mut out);
        if next == frames.len() && p.handled == 0 {
            break;
        }
    }
    stats.nic_missed = nic.missed();
    Captured {
        stream: out,
        start: l.start,
        stats,
    }
}
