// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The capture engine: what one capture thread does with one RX ring
//! segment, from a completed descriptor to a published record.
//!
//! It is hardware-independent and used as is by the kernel driver's capture
//! threads, by the software source (`hpcap-sim`) and by the hot-path
//! benchmark; they differ only in their [`Port`] (descriptors, buffers,
//! tail register and clock) and their [`StreamMemory`] (where the stream
//! buffer is).
//!
//! One [`Writer::poll`] of the writer holding the publication token:
//!
//! 1. **Tail**: hand released descriptors back to the NIC
//!    ([`PublishState::tail_update`]).
//! 2. **Open**: read the device's [`Settings`] (only the token holder
//!    does), compute the reservation limit from the listeners, open a batch.
//! 3. **Gather**: for up to [`MAX_BATCH`] completed descriptors of the
//!    segment, in ring order: timestamp, decide the frame's fate
//!    ([`Fate`]: ring error, no listener, filtered, too large, no space,
//!    stored) and reserve room for stored frames. Every frame lands in
//!    exactly one counter.
//! 4. **Close**: finish the batch; at the segment's end write the tail and
//!    pass the token; on an idle link close the open block.
//! 5. **Copy**, in parallel with the next token holder: padding, block
//!    header, record header and the one copy of each frame; re-arm every
//!    descriptor.
//! 6. **Publish**: complete the batch (ordered publication) and report
//!    whether sleepers must be woken.
//!
//! The caller adds the returned counters to its own and wakes its sleepers;
//! it owns scheduling (when to poll, when to sleep).

use super::bpf::{Program, SockFilter, Verified};
use super::config::Stream;
use super::desc::RxDone;
use super::format::StreamFormat;
use super::frame::{WireFrame, TAG_LEN};
use super::listener::{Limits, ListenerTable};
use super::pcapng::{self, BlockHeader};
use super::publish::{BeginError, Placement, PublishState, Span};
use super::segment::RingLayout;
use super::stats::{self, CaptureStats, DropStage};
use super::sync::{AtomicU64, Ordering};

/// Descriptors one writer takes per reservation batch (the batch storage
/// the driver gives each [`Writer`]). Every batch costs a token hand-off
/// and a few cache lines written by turns by the writers (publication
/// state, completion record, tail); with several writers a batch is also
/// the contiguous range of the stream one writer fills before the other's
/// range, and stores into a DRAM-resident buffer stream only within such a
/// range: 512 descriptors (40 KiB of records at 64 B) keep a second
/// writer's copy phase at 33 cycles per 64-byte packet where 128 (10 KiB)
/// cost 49 against one writer's 25 (docs/architecture.md, "Two writers at
/// 64 B"). The batch's records (512 x 72 bytes) sit in L2 between gather
/// and copy; a writer alone writes only two fields of each.
pub const MAX_BATCH: usize = 512;

// A writer hands the token on after each full batch of its segment.
const _: () = assert!(super::segment::SEGMENT_TARGET as usize == MAX_BATCH);
/// Released descriptors that justify a tail register write.
pub const TAIL_BATCH: u32 = 32;

/// The hardware side of a capture: one RX ring, its tail register and the
/// clock, as a capture thread sees them.
pub trait Port {
    /// The write-back of descriptor `i` if the NIC has completed it.
    fn poll(&self, i: u32) -> Option<RxDone>;

    /// The first `len` bytes of descriptor `i`'s receive buffer (capped at
    /// the buffer size).
    ///
    /// # Safety
    ///
    /// The caller owns descriptor `i`: [`Self::poll`] reported it done and
    /// it has not been re-armed since, so nothing writes the buffer while
    /// the slice lives.
    unsafe fn frame(&self, i: u32, len: u32) -> &[u8];

    /// Re-arms descriptor `i` with its buffer (the caller owns it); the NIC
    /// gets it back with a later tail write.
    fn arm(&self, i: u32);

    /// Writes the tail register: descriptors up to (not including) `tail`
    /// belong to the NIC.
    fn write_tail(&self, tail: u32);

    /// The current time in ns since the Unix epoch (idle timing).
    fn now_ns(&self) -> u64;

    /// The timestamp of the frame in descriptor `i`, taken when the engine
    /// first sees it completed (in ring order, so timestamps are ordered).
    /// Default: the clock, which is what a driver without hardware
    /// timestamps records.
    fn timestamp(&self, _i: u32) -> u64 {
        self.now_ns()
    }

    /// The length on the wire of the frame in descriptor `i`, given the
    /// length of the frame as delivered (`wire`, with a stripped VLAN tag
    /// put back). Hardware delivers whole frames; a software NIC replaying
    /// a trace captured with a snapshot length knows the original length.
    fn orig_len(&self, _i: u32, wire: u32) -> u32 {
        wire
    }

    /// Whether a VLAN tag that a descriptor reports was stripped from the
    /// delivered bytes (and must be put back), rather than only reported.
    fn vlan_stripped(&self) -> bool;

    /// Instrumentation: [`Writer::poll`] of writer `writer` reached `at`
    /// (`n`: see [`Mark`]). The default does nothing and compiles away, as
    /// in the driver's ports; the hot-path benchmark's instrumented mode
    /// times the phases of a poll with it (docs/architecture.md, "Two
    /// writers at 64 B").
    #[inline(always)]
    fn mark(&self, _writer: u32, _at: Mark, _n: usize) {}
}

/// The phase boundaries of a [`Writer::poll`] reported to [`Port::mark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The poll found the token with this writer.
    Token,
    /// The token holder could not open a batch: `n` = 1 if too many
    /// batches await publication ([`super::publish::BeginError`]), 0 if
    /// it holds no token after all.
    Refused,
    /// A batch is open (tail written, settings read, limits computed).
    Opened,
    /// The gather loop is done: `n` descriptors in this batch.
    Gathered,
    /// The batch is finished and, if `n` = 1, the token passed (the
    /// segment is done); the token-held part of the poll ends here.
    Closed,
    /// The records are copied and the descriptors re-armed.
    Copied,
    /// The batch is completed (ordered publication).
    Published,
}

/// The stream buffer the engine writes records into.
pub trait StreamMemory {
    /// The buffer bytes `[pos, pos + len)`, or `None` if out of range.
    ///
    /// # Safety
    ///
    /// The range must be reserved for the caller alone by the publication
    /// protocol (no other writer touches it and no reader relies on it
    /// until it is published) for as long as the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn span_mut(&self, pos: u64, len: u64) -> Option<&mut [u8]>;

    /// The buffer's first byte and its length in bytes, for the record hot
    /// path: the engine writes each record through a pointer into the span
    /// its placement reserved, rather than building a checked slice per
    /// record. Writing through it has [`Self::span_mut`]'s contract.
    fn raw(&self) -> (*mut u8, u64);
}

/// A filter installed on the device.
pub trait Filter {
    /// The verified program.
    fn program(&self) -> Program<'_>;
}

impl<S: core::ops::Deref<Target = [SockFilter]>> Filter for Verified<S> {
    fn program(&self) -> Program<'_> {
        Verified::program(self)
    }
}

impl<F: Filter + ?Sized> Filter for &F {
    fn program(&self) -> Program<'_> {
        (**self).program()
    }
}

/// The device settings a batch uses, read once per batch by the token
/// holder.
pub struct Settings<F> {
    /// Format and layout of the stream.
    pub stream: Stream,
    /// Snapshot length (0 = whole frames).
    pub snaplen: u32,
    /// The BPF filter, if one is installed.
    pub filter: Option<F>,
}

/// What to do with a frame that does not fit before the reservation limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Drop and count it, as a NIC must (the driver).
    Drop,
    /// Leave its descriptor completed and stop the batch before it; the
    /// next poll retries. Only a software NIC that can wait (a lossless
    /// replay) uses this.
    Stall,
}

/// Device-wide engine state shared by all writers of one ring: all-zero is
/// the initial state. On cache lines of its own: the token holder writes
/// `consumed` every batch, and neighbours that the copies read (settings,
/// buffer pointers) must not share its line.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub struct Shared {
    /// Descriptors consumed in ring order (token holder only).
    consumed: AtomicU64,
    /// Frames lost after the driver saw them, all writers (for block
    /// headers).
    drops: AtomicU64,
    /// `drops` when the last block header was written.
    drops_at_header: AtomicU64,
    /// Capture gaps so far (the NIC was reset under the capture), for
    /// block headers.
    gaps: AtomicU64,
    /// `gaps` when the last block header was written.
    gaps_at_header: AtomicU64,
}

impl Shared {
    /// Fresh state.
    pub fn new() -> Self {
        Self {
            consumed: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            drops_at_header: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            gaps_at_header: AtomicU64::new(0),
        }
    }

    /// Descriptors consumed in ring order so far. Exact only while no
    /// writer polls (the driver pauses them); used to re-align the ring
    /// with a NIC that was reset (see `segment::RingLayout::realign`).
    pub fn consumed(&self) -> u64 {
        // Relaxed: the caller's pause handshake orders it after the last
        // token holder's store.
        self.consumed.load(Ordering::Relaxed)
    }

    /// Records a capture gap (the NIC was reset and frames that arrived
    /// meanwhile were never received): the next block header carries
    /// [`pcapng::BH_FLAG_GAP`].
    pub fn mark_gap(&self) {
        // Relaxed: a flag for the next block header, like `drops`.
        self.gaps.fetch_add(1, Ordering::Relaxed);
    }
}

/// The frames a stopped capture left in the ring: from ring position
/// `from` (the writers' [`Shared::consumed`]) up to at most `tail` (the
/// publication state's tail: the NIC writes nothing at or past it), every
/// descriptor the NIC completed, in order, until the first it did not.
/// Each frame (at its last descriptor; programming-status descriptors are
/// not frames) is counted as seen and as [`DropStage::Stop`].
///
/// Call it once, after the writers stopped and the NIC's queue was
/// disabled (no DMA): the count is then final, and every frame the NIC
/// wrote into the ring is either counted by a writer or here.
pub fn left_in_ring<P: Port + ?Sized>(port: &P, count: u32, from: u64, tail: u64) -> CaptureStats {
    let mut stats = CaptureStats::ZERO;
    let n = u64::from(count);
    let mut k = from;
    while k < tail {
        // CAST: a remainder below the ring size (a u32).
        let Some(done) = k.checked_rem(n).and_then(|i| port.poll(i as u32)) else {
            break;
        };
        if !done.skip && done.eop {
            stats.seen(done.len);
            stats.dropped(DropStage::Stop, done.len);
        }
        k += 1;
    }
    stats
}

/// Everything one poll works on. Built by the caller for each poll (a few
/// references), so the engine holds no pointers of its own.
pub struct Ctx<'a, P: ?Sized, M: ?Sized> {
    /// The NIC side.
    pub port: &'a P,
    /// The stream buffer.
    pub memory: &'a M,
    /// Ordered publication state.
    pub publish: &'a PublishState,
    /// Listener cursors (the reservation limit).
    pub listeners: &'a ListenerTable,
    /// Engine state shared by the writers.
    pub shared: &'a Shared,
    /// The ring's split into segments.
    pub ring: &'a RingLayout,
    /// Close a partly filled block after this long without traffic (ns).
    pub flush_ns: u64,
    /// What to do when the buffer is full.
    pub on_full: OnFull,
}

/// Why a completed descriptor's frame was not stored, or that it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Not a frame (an XL710 programming status): recycled, not counted.
    NotAFrame,
    /// Part of a frame spanning descriptors, before its last one.
    Fragment,
    /// Dropped at `stage`.
    Dropped(DropStage),
    /// Rejected by the filter.
    Filtered,
    /// Stored at the placement recorded in its [`Rec`].
    Stored,
}

/// One frame of a batch, between reservation and copy.
///
/// Written field by field in the gather loop (only what the frame's fate
/// needs) and read once in the copy loop, where one test of `flags` tells
/// the common record (stored, no padding, no block header, no tag to put
/// back) from the rest.
#[derive(Debug, Clone, Copy)]
pub struct Rec {
    desc: u32,
    /// Bytes the NIC wrote into the descriptor's buffer.
    bytes: u32,
    /// Length on the wire.
    len: u32,
    /// Captured length (meaningful if [`Rec::STORED`]).
    caplen: u32,
    ts_ns: u64,
    /// Buffer position of the record (meaningful if [`Rec::STORED`]).
    pos: u64,
    /// Where the record goes, with the padding and block header before it
    /// (meaningful if [`Rec::RARE`]; the common record needs only `pos`).
    place: Placement,
    /// TCI of a VLAN tag the NIC stripped from the bytes (if
    /// [`Rec::TAGGED`]).
    tci: u16,
    /// [`Rec::STORED`], [`Rec::RARE`], [`Rec::TAGGED`].
    flags: u8,
}

impl Rec {
    /// An empty record (storage for [`Writer`] batches).
    pub const EMPTY: Self = Self {
        desc: 0,
        bytes: 0,
        len: 0,
        caplen: 0,
        ts_ns: 0,
        pos: 0,
        place: Placement::EMPTY,
        tci: 0,
        flags: 0,
    };
    /// The frame is stored at `place`.
    const STORED: u8 = 1;
    /// Its placement writes padding or a block header before it.
    const RARE: u8 = 2;
    /// The NIC stripped a VLAN tag (`tci`) that goes back into the copy.
    const TAGGED: u8 = 4;
    /// Already written and its descriptor re-armed by the gather loop (a
    /// writer alone on its ring, [`gather_plain`]): the copy phase skips
    /// it.
    const DONE: u8 = 8;

    /// The stripped tag's TCI, if any.
    fn tci(&self) -> Option<u16> {
        (self.flags & Self::TAGGED != 0).then_some(self.tci)
    }
}

/// What one poll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Polled {
    /// Descriptors handled (0: nothing to do; the caller may back off).
    pub handled: usize,
    /// Counters of this poll's frames, for the caller's per-writer total.
    pub stats: CaptureStats,
    /// Sleepers wait for what this poll published: wake them.
    pub wake: bool,
    /// [`OnFull::Stall`] stopped the batch: wait for room, then poll again.
    pub stalled: bool,
    /// Another writer holds the token: traffic may well be flowing and the
    /// token may come back within a batch's time, so a caller with nothing
    /// handled should wait briefly (spin) rather than sleep.
    pub token_elsewhere: bool,
}

impl Polled {
    const IDLE: Self = Self {
        handled: 0,
        stats: CaptureStats::ZERO,
        wake: false,
        stalled: false,
        token_elsewhere: false,
    };
}

/// One capture thread's state: its segment, its position in it and its
/// current batch. `R` is the batch storage: its length ([`MAX_BATCH`]
/// [`Rec`]s in the driver; a heap allocation in the kernel, whose stacks
/// are small) is the most descriptors one batch takes.
pub struct Writer<R> {
    id: u32,
    /// The segment this writer works on, `[seg_start, seg_end)`: kept
    /// here so the loop steps through it without the ring layout's
    /// divisions.
    seg: u32,
    seg_start: u32,
    seg_end: u32,
    next: u32,
    in_frame: bool,
    idle_since_ns: u64,
    recs: R,
}

impl<R: core::ops::DerefMut<Target = [Rec]>> Writer<R> {
    /// Writer `id` of `ring` (it owns segment `id`), with batch storage
    /// `recs`.
    pub fn new(id: u32, ring: &RingLayout, recs: R) -> Self {
        Self {
            id,
            seg: id,
            seg_start: ring.segment_start(id),
            seg_end: ring.segment_end(id),
            next: ring.segment_start(id),
            in_frame: false,
            idle_since_ns: 0,
            recs,
        }
    }

    /// One poll. `settings` is called only if this writer holds the token
    /// (only the token holder looks at descriptors).
    pub fn poll<P, M, F>(
        &mut self,
        cx: &Ctx<'_, P, M>,
        settings: impl FnOnce() -> Settings<F>,
    ) -> Polled
    where
        P: Port + ?Sized,
        M: StreamMemory + ?Sized,
        F: Filter,
    {
        let j = self.id;
        if !cx.publish.holds_token(j) {
            return Polled {
                token_elsewhere: true,
                ..Polled::IDLE
            };
        }
        cx.port.mark(j, Mark::Token, 0);
        // 1. Tail.
        if let Some(t) = cx.publish.tail_update(j, cx.ring) {
            cx.port.write_tail(t);
        }
        // 2. Open.
        let cfg = settings();
        let copying = cx.listeners.any_attached();
        let limits = cx
            .listeners
            .reserve_limits(cx.publish.committed(), &cfg.stream.geo);
        let mut batch = match cx.publish.begin_batch(j, limits.all) {
            Ok(b) => b,
            Err(e) => {
                cx.port.mark(
                    j,
                    Mark::Refused,
                    usize::from(e == BeginError::CompletionsFull),
                );
                // Too many batches await publication: come back later.
                return Polled::IDLE;
            }
        };
        cx.port.mark(j, Mark::Opened, 0);
        // Every listener starts past the batch (a blocking one attached
        // alone while a block was open: it starts at the next boundary):
        // close that block first, or its frames would go where nobody
        // reads them (listener.rs, "Where a new listener starts").
        let skip = if copying && limits.first > batch.start() {
            batch.close_block(&cfg.stream.geo)
        } else {
            None
        };
        let filter = if copying { cfg.filter.as_ref() } else { None };
        let prog = filter.map(|f| f.program());
        // 3. Gather.
        let mut stats = CaptureStats::ZERO;
        let recs = &mut *self.recs;
        let mut i = self.next;
        // One bound for the loop: the batch storage, and the segment's end
        // (where the token moves on).
        debug_assert!(self.seg_start <= i && i < self.seg_end);
        let room = recs.len().min(self.seg_end.saturating_sub(i) as usize);
        let mut n = 0;
        let mut stalled = false;
        let vlan_stripped = cx.port.vlan_stripped();
        // Filled in place: a record is too large to build and copy.
        let recs = recs.get_mut(..room).unwrap_or_default();
        // The common frame (whole, no error, no tag to put back, stored
        // without filter inside the open block) takes `gather_plain`'s
        // tight loop; this loop handles everything else, one descriptor at
        // a time, and hands back to it.
        let plain = copying && prog.is_none();
        // A writer alone on its ring passes the token to nobody, so
        // nothing runs in parallel with its copy phase: it stores each
        // common record as soon as it reserved it, in the gather loop,
        // where the stores of one record drain while the next descriptor
        // is checked and timestamped (the clock read and the stores to
        // the stream buffer overlap instead of following each other).
        // Only when the memory holds the whole geometry (as `copy`).
        let (mem_base, mem_size) = cx.memory.raw();
        let direct = (cx.ring.consumers() == 1 && cfg.stream.geo.buffer_size() <= mem_size)
            .then_some(mem_base);
        // Records `gather_plain` already wrote (with `direct`).
        let mut stored_direct = 0;
        let snap = if cfg.snaplen == 0 {
            u32::MAX
        } else {
            cfg.snaplen
        };
        while n < room {
            if plain && !self.in_frame {
                let rest = recs.get_mut(n..).unwrap_or_default();
                let m = match (cfg.stream.format, direct) {
                    (StreamFormat::Pcapng, None) => gather_plain::<_, false>(
                        cx.port,
                        rest,
                        i,
                        &mut batch,
                        Plain {
                            format: StreamFormat::Pcapng,
                            snap,
                            vlan_stripped,
                            base: core::ptr::null_mut(),
                        },
                        &mut stats,
                    ),
                    (StreamFormat::Raw, None) => gather_plain::<_, false>(
                        cx.port,
                        rest,
                        i,
                        &mut batch,
                        Plain {
                            format: StreamFormat::Raw,
                            snap,
                            vlan_stripped,
                            base: core::ptr::null_mut(),
                        },
                        &mut stats,
                    ),
                    (StreamFormat::Pcapng, Some(base)) => gather_plain::<_, true>(
                        cx.port,
                        rest,
                        i,
                        &mut batch,
                        Plain {
                            format: StreamFormat::Pcapng,
                            snap,
                            vlan_stripped,
                            base,
                        },
                        &mut stats,
                    ),
                    (StreamFormat::Raw, Some(base)) => gather_plain::<_, true>(
                        cx.port,
                        rest,
                        i,
                        &mut batch,
                        Plain {
                            format: StreamFormat::Raw,
                            snap,
                            vlan_stripped,
                            base,
                        },
                        &mut stats,
                    ),
                };
                n += m;
                if direct.is_some() {
                    stored_direct += m;
                }
                // CAST: `m <= room`, at most the segment's length (a u32).
                i += m as u32;
                if n == room {
                    break;
                }
            }
            let Some(rec) = recs.get_mut(n) else {
                break;
            };
            let Some(done) = cx.port.poll(i) else {
                break;
            };
            let tci = if vlan_stripped { done.vlan } else { None };
            // The frame as on the wire: what was delivered, plus the tag
            // the NIC stripped (`WireFrame::len` without building one).
            let wire = done
                .len
                .saturating_add(if tci.is_some() { TAG_LEN as u32 } else { 0 });
            let len = cx.port.orig_len(i, wire);
            rec.desc = i;
            rec.bytes = done.len;
            rec.len = len;
            // The one clock read of this descriptor.
            rec.ts_ns = cx.port.timestamp(i);
            rec.flags = match tci {
                Some(t) => {
                    rec.tci = t;
                    Rec::TAGGED
                }
                None => 0,
            };
            let fate = match multi_descriptor_fate(&mut self.in_frame, &done) {
                Some(f) => f,
                None => {
                    // The filter reads the frame; the descriptor is done
                    // and this writer owns it until the copy phase re-arms
                    // it.
                    let filtered_out = prog.as_ref().is_some_and(|p| {
                        // SAFETY: as just said.
                        let frame = WireFrame::new(unsafe { cx.port.frame(i, done.len) }, tci);
                        !p.matches_frame(&frame, len)
                    });
                    fate(wire, rec, copying, filtered_out, &cfg, &mut batch, limits)
                }
            };
            match fate {
                Fate::Dropped(DropStage::NoSpace | DropStage::Lingering)
                    if cx.on_full == OnFull::Stall =>
                {
                    // Not consumed: this descriptor is polled again.
                    stalled = true;
                    break;
                }
                Fate::NotAFrame | Fate::Fragment => {}
                Fate::Dropped(stage) => {
                    stats.seen(len);
                    stats.dropped(stage, len);
                }
                Fate::Filtered => {
                    stats.seen(len);
                    stats.filter_rejected(len);
                }
                Fate::Stored => {
                    stats.seen(len);
                    stats.stored(len, rec.caplen);
                }
            }
            n += 1;
            i += 1;
        }
        let seg_done = i == self.seg_end;
        if seg_done {
            // Past the segment's last descriptor: the token moves on to
            // the next segment's writer, this one goes on with its own
            // next segment.
            self.seg = cx.ring.next_own_segment(self.seg);
            self.seg_start = cx.ring.segment_start(self.seg);
            self.seg_end = cx.ring.segment_end(self.seg);
            i = self.seg_start;
        }
        cx.port.mark(j, Mark::Gathered, n);
        // 4. Close.
        let now = cx.port.now_ns();
        if n > 0 {
            self.idle_since_ns = now;
        }
        let flush = if n == 0
            && !stalled
            && copying
            && now.saturating_sub(self.idle_since_ns) >= cx.flush_ns
        {
            batch.close_block(&cfg.stream.geo)
        } else {
            None
        };
        if n == 0 && flush.is_none() && skip.is_none() {
            // An empty batch reserved nothing; dropping it changes nothing.
            return Polled {
                stalled,
                ..Polled::IDLE
            };
        }
        let drops = stats.dropped_total();
        if drops != 0 {
            // Relaxed: an approximate figure for block headers.
            cx.shared.drops.fetch_add(drops, Ordering::Relaxed);
        }
        // Relaxed: token-protected (only the holder consumes descriptors).
        let consumed = cx.shared.consumed.load(Ordering::Relaxed) + n as u64;
        cx.shared.consumed.store(consumed, Ordering::Relaxed);
        let ticket = cx.publish.finish_batch(batch, consumed);
        self.next = i;
        if seg_done {
            if let Some(t) = cx.publish.tail_update(j, cx.ring) {
                cx.port.write_tail(t);
            }
            cx.publish.pass_token(j, cx.ring.next_writer(j));
        }
        cx.port.mark(j, Mark::Closed, usize::from(seg_done));
        // 5. Copy, in parallel with the next token holder. One loop per
        // format, so the format is a constant inside it.
        let format = cfg.stream.format;
        let done = recs.get(..n).unwrap_or(&[]);
        // A writer alone wrote (and re-armed) the common records already;
        // the loop is for the rest, if any.
        if stored_direct < n {
            match format {
                StreamFormat::Pcapng => copy(cx, &cfg.stream, StreamFormat::Pcapng, done),
                StreamFormat::Raw => copy(cx, &cfg.stream, StreamFormat::Raw, done),
            }
        }
        for span in [skip, flush].iter().flatten() {
            write_pad(cx, format, span);
        }
        cx.port.mark(j, Mark::Copied, 0);
        // 6. Publish.
        let published = cx.publish.complete(ticket);
        cx.port.mark(j, Mark::Published, 0);
        Polled {
            handled: n.max(1),
            stats,
            wake: published.wake,
            stalled,
            token_elsewhere: false,
        }
    }
}

/// The fate of a descriptor that is part of a frame spanning several
/// descriptors, carries an error, or is no frame at all; `None` for a
/// normal single-descriptor frame. Spanning frames are larger than the
/// receive buffer; they and frames with MAC errors are counted once, at
/// their last descriptor. `in_frame` tracks a spanning frame across polls.
fn multi_descriptor_fate(in_frame: &mut bool, done: &RxDone) -> Option<Fate> {
    if done.skip {
        // A frame cannot go on past a descriptor that is no frame: one
        // whose end never came (the NIC was reset in the middle of it) is
        // counted once, here.
        if core::mem::take(in_frame) {
            return Some(Fate::Dropped(DropStage::Ring));
        }
        return Some(Fate::NotAFrame);
    }
    if *in_frame || !done.eop || done.error {
        *in_frame = !done.eop;
        return Some(if done.eop {
            Fate::Dropped(DropStage::Ring)
        } else {
            Fate::Fragment
        });
    }
    None
}

/// What [`gather_plain`] needs of the batch's settings.
#[derive(Clone, Copy)]
struct Plain {
    format: StreamFormat,
    /// The snapshot length, `u32::MAX` for none.
    snap: u32,
    /// The port strips VLAN tags (a tagged frame is not plain).
    vlan_stripped: bool,
    /// The stream memory's base (`StreamMemory::raw`), holding the whole
    /// geometry; used only by the direct loop.
    base: *mut u8,
}

/// The gather loop's common case, as a tight loop: completed descriptors
/// in ring order from `first`, each a whole frame without error and
/// without a stripped tag to put back, stored (a listener is attached and
/// there is no filter: the caller checked) in the open block
/// ([`Batch::place_fast`]). Stops before the first descriptor that is not
/// done or not that case, without consuming it, so the general loop
/// decides it. Returns how many descriptors it consumed, filling one
/// [`Rec`] each; adds their counters to `stats`.
///
/// `plain.format` is a constant of the caller. With `DIRECT` (a writer
/// alone on its ring, `plain.base` holding the whole geometry) each record
/// is also written and its descriptor re-armed here, and marked
/// [`Rec::DONE`] so the copy phase skips it.
#[inline(always)]
fn gather_plain<P: Port + ?Sized, const DIRECT: bool>(
    port: &P,
    recs: &mut [Rec],
    first: u32,
    batch: &mut super::publish::Batch,
    plain: Plain,
    stats: &mut CaptureStats,
) -> usize {
    let Plain {
        format,
        snap,
        vlan_stripped,
        base,
    } = plain;
    let mut m = 0;
    let mut bytes_seen = 0u64;
    let mut bytes_stored = 0u64;
    let mut truncated = 0u64;
    let mut bytes_truncated = 0u64;
    for (i, rec) in (first..).zip(recs.iter_mut()) {
        let Some(done) = port.poll(i) else {
            break;
        };
        if !done.eop || done.error || done.skip || (vlan_stripped && done.vlan.is_some()) {
            break;
        }
        let len = port.orig_len(i, done.len);
        // The stored bytes never exceed what was delivered.
        let caplen = len.min(snap).min(done.len);
        let Some(rlen) = format.record_len(caplen) else {
            break;
        };
        let Some(pos) = batch.place_fast(rlen) else {
            break;
        };
        if DIRECT {
            // The one clock read of this descriptor.
            let ts_ns = port.timestamp(i);
            rec.desc = i;
            // SAFETY: the descriptor is done and owned by this writer
            // (re-armed just below); `[pos, pos + rlen)` was reserved by
            // this batch, lies in `[0, buffer_size)` and `base` holds the
            // whole geometry (the caller checked), as `copy` requires.
            unsafe { store_plain(port, format, base, i, pos, ts_ns, caplen, len) };
            port.arm(i);
            rec.flags = Rec::DONE;
        } else {
            rec.desc = i;
            rec.bytes = done.len;
            rec.len = len;
            rec.caplen = caplen;
            // The one clock read of this descriptor.
            rec.ts_ns = port.timestamp(i);
            rec.pos = pos;
            rec.flags = Rec::STORED;
        }
        bytes_seen += u64::from(len);
        bytes_stored += u64::from(caplen);
        if caplen < len {
            truncated += 1;
            bytes_truncated += u64::from(len - caplen);
        }
        m += 1;
    }
    let frames = m as u64;
    stats.frames_seen = stats.frames_seen.wrapping_add(frames);
    stats.bytes_seen = stats.bytes_seen.wrapping_add(bytes_seen);
    stats.frames_stored = stats.frames_stored.wrapping_add(frames);
    stats.bytes_stored = stats.bytes_stored.wrapping_add(bytes_stored);
    stats.truncated_by_snaplen = stats.truncated_by_snaplen.wrapping_add(truncated);
    stats.bytes_truncated = stats.bytes_truncated.wrapping_add(bytes_truncated);
    m
}

/// The fate of a whole, error-free frame of `delivered` bytes (as on the
/// wire); reserves its record if it is stored (and sets `rec.caplen`).
#[inline(always)]
fn fate<F: Filter>(
    delivered: u32,
    rec: &mut Rec,
    copying: bool,
    filtered_out: bool,
    cfg: &Settings<F>,
    batch: &mut super::publish::Batch,
    limits: Limits,
) -> Fate {
    if !copying {
        return Fate::Dropped(DropStage::NoListener);
    }
    if filtered_out {
        return Fate::Filtered;
    }
    // The stored bytes never exceed what was delivered.
    let caplen = stats::caplen(rec.len, cfg.snaplen).min(delivered);
    rec.caplen = caplen;
    let geo = &cfg.stream.geo;
    let Some(len) = cfg.stream.format.record_len(caplen) else {
        return Fate::Dropped(DropStage::Writer);
    };
    // The common case first: inside the open block, a few instructions.
    if let Some(pos) = batch.place_fast(len) {
        rec.pos = pos;
        rec.flags |= Rec::STORED;
        return Fate::Stored;
    }
    let place = batch.place(geo, len);
    if let Some(p) = place {
        rec.pos = p.record.pos;
        rec.place = p;
        rec.flags |= Rec::STORED | if p.is_plain() { 0 } else { Rec::RARE };
    }
    match place {
        Some(_) => Fate::Stored,
        // Refused: no block can hold the record, or the limit.
        None if !geo.fits_fresh_block(len) => Fate::Dropped(DropStage::Writer),
        // Only lingering listeners hold the room it needs.
        None if limits.live > limits.all && batch.would_fit(geo, len, limits.live) => {
            Fate::Dropped(DropStage::Lingering)
        }
        None => Fate::Dropped(DropStage::NoSpace),
    }
}

/// The copy phase: stores every placed record of the batch and re-arms
/// every descriptor. `format` is `stream.format`, passed as a constant by
/// the caller.
#[inline(always)]
fn copy<P, M>(cx: &Ctx<'_, P, M>, stream: &Stream, format: StreamFormat, recs: &[Rec])
where
    P: Port + ?Sized,
    M: StreamMemory + ?Sized,
{
    let (base, size) = cx.memory.raw();
    // Once per batch instead of once per record: every placement lies in
    // `[0, buffer_size)` (`publish` positions never wrap inside a block),
    // so if the memory holds the whole geometry it holds every record.
    // A memory smaller than its stream's geometry is a bug elsewhere; its
    // records are then written (or skipped) through the checked `span_mut`.
    let whole = stream.geo.buffer_size() <= size;
    for rec in recs {
        // The common record first: one compare (stored, nothing rare, no
        // tag, not already written by a writer alone).
        if rec.flags == Rec::STORED && whole {
            debug_assert!(format
                .record_len(rec.caplen)
                .and_then(|len| rec.pos.checked_add(len))
                .is_some_and(|end| end <= size));
            // SAFETY: the descriptor is done and still owned by this
            // writer (it is re-armed just below); the record's span is
            // inside the memory (`whole` and the placement invariant
            // above), reserved by this writer's ticket and not yet
            // completed.
            unsafe {
                store_plain(
                    cx.port, format, base, rec.desc, rec.pos, rec.ts_ns, rec.caplen, rec.len,
                )
            };
        } else if rec.flags & Rec::DONE != 0 {
            // Written and re-armed by the gather loop (a writer alone).
            continue;
        } else if rec.flags & Rec::STORED != 0 {
            store_rare(cx, stream, format, rec, base, size);
        }
        cx.port.arm(rec.desc);
    }
}

/// Writes the common record: header and the one copy of the frame in
/// descriptor `desc`, `caplen` of its bytes, at buffer position `pos`.
///
/// # Safety
///
/// Descriptor `desc` is done and owned by the caller (not yet re-armed);
/// `[pos, pos + record_len(caplen))` lies inside the memory at `base`,
/// was reserved by the caller's batch and is not yet completed, so nothing
/// else touches it.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn store_plain<P: Port + ?Sized>(
    port: &P,
    format: StreamFormat,
    base: *mut u8,
    desc: u32,
    pos: u64,
    ts_ns: u64,
    caplen: u32,
    len: u32,
) {
    // SAFETY: the descriptor is done and owned by the caller.
    let bytes = unsafe { port.frame(desc, caplen) };
    // The gather chose `caplen <= bytes` as delivered, and a
    // single-descriptor frame fits its buffer, so this is `caplen`; a
    // descriptor claiming more than its buffer holds gets a slice capped
    // at the buffer (`Port::frame`), and only that is read.
    debug_assert!(bytes.len() == caplen as usize);
    let cap = bytes.len();
    // CAST: `pos < buffer_size <= size`, a buffer offset that fits
    // `usize`.
    // SAFETY: `[pos, pos + len)` is inside the memory and exclusively the
    // caller's (the contract above); `len` is `record_len(caplen)`, so the
    // head and the `cap <= caplen` data bytes fit, and the frame's bytes do
    // not overlap the stream buffer.
    unsafe {
        let dst = base.add(pos as usize);
        let data = format.write_head_raw(dst, ts_ns, caplen, len);
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), data, cap);
    }
}

/// Writes a record that is not the common case: its padding, block header
/// and record (with a stripped tag put back) into its reserved spans.
#[inline(never)]
#[cold]
fn store_rare<P, M>(
    cx: &Ctx<'_, P, M>,
    stream: &Stream,
    format: StreamFormat,
    rec: &Rec,
    base: *mut u8,
    size: u64,
) where
    P: Port + ?Sized,
    M: StreamMemory + ?Sized,
{
    let p = &rec.place;
    if rec.flags & Rec::RARE == 0 {
        // Only a tag to put back: the placement is `pos` alone.
        let len = format.record_len(rec.caplen).unwrap_or(0);
        let r = Span {
            offset: 0,
            pos: rec.pos,
            len,
        };
        return write_record_checked(cx, format, rec, base, size, &r);
    }
    if let Some(pad) = p.pad(&stream.geo) {
        write_pad(cx, format, &pad);
    }
    if let Some(h) = p.header(&stream.geo) {
        // Drops since the previous block header, all writers (approximate
        // with several writers). Relaxed: statistics.
        let total = cx.shared.drops.load(Ordering::Relaxed);
        let drops = total.saturating_sub(cx.shared.drops_at_header.swap(total, Ordering::Relaxed));
        // Relaxed: as `drops`.
        let gaps = cx.shared.gaps.load(Ordering::Relaxed);
        let gap = cx.shared.gaps_at_header.swap(gaps, Ordering::Relaxed) != gaps;
        let hdr = BlockHeader {
            format: format.block_header_code(),
            // CAST: block sizes are at most 256 MiB (config::MAX_BLOCK_SHIFT).
            block_len: stream.geo.block_size() as u32,
            records: 0,
            seq: h.offset >> stream.geo.block_size().trailing_zeros(),
            offset: h.offset,
            first_ts_ns: rec.ts_ns,
            last_ts_ns: 0,
            drops,
            flags: if gap { pcapng::BH_FLAG_GAP } else { 0 },
        };
        // SAFETY: `h` was reserved by this writer's ticket, not yet
        // completed.
        if let Some(buf) = unsafe { cx.memory.span_mut(h.pos, h.len) } {
            let _ = pcapng::write_block_header(buf, 0, &hdr);
        }
    }
    write_record_checked(cx, format, rec, base, size, &p.record);
}

/// The record of [`store_rare`], with every check.
fn write_record_checked<P, M>(
    cx: &Ctx<'_, P, M>,
    format: StreamFormat,
    rec: &Rec,
    base: *mut u8,
    size: u64,
    r: &Span,
) where
    P: Port + ?Sized,
    M: ?Sized,
{
    debug_assert!(Some(r.len) == format.record_len(rec.caplen));
    // SAFETY: the descriptor is still owned by this writer (re-armed after
    // this call).
    let bytes = unsafe { cx.port.frame(rec.desc, rec.bytes) };
    let frame = WireFrame::new(bytes, rec.tci());
    // The rare path keeps the full check: the span inside the memory, and
    // the captured bytes inside the frame.
    if r.pos.checked_add(r.len).is_some_and(|end| end <= size) && rec.caplen as usize <= frame.len()
    {
        // CAST: `pos < size`, a buffer offset that fits `usize`.
        // SAFETY: `[pos, pos + len)` is inside the buffer (just checked),
        // reserved by this writer's ticket and not yet completed, so nothing
        // else touches it; `len` is `record_len(caplen)` and
        // `caplen <= frame.len()` (just checked) within the format's limit.
        unsafe {
            format.write_record_raw(
                base.add(r.pos as usize),
                rec.ts_ns,
                rec.caplen,
                rec.len,
                &frame,
            )
        };
    }
}

fn write_pad<P, M>(cx: &Ctx<'_, P, M>, format: StreamFormat, span: &Span)
where
    P: ?Sized,
    M: StreamMemory + ?Sized,
{
    // SAFETY: the span was reserved by the caller's ticket.
    if let Some(buf) = unsafe { cx.memory.span_mut(span.pos, span.len) } {
        let _ = format.write_pad(buf);
    }
}

#[cfg(all(test, not(loom)))]
pub(crate) mod tests {
    extern crate std;

    use super::super::block::{check_block, Layout};
    use super::super::bpf::{SockFilter, Verified};
    use super::super::desc::{Iavf32, IgbAdv, RxFormat};
    use super::super::listener::{ListenerId, ListenerTable, Mode};
    use super::super::pcapng::{Block, Blocks};
    use super::super::raw::{RawRecord, RawRecords};
    pub(crate) use super::super::softnic::Captured;
    use super::super::softnic::{Incoming, SoftBuffer, SoftNic};
    use super::*;
    use std::boxed::Box;
    use std::vec;
    use std::vec::Vec;

    /// A fixed clock: idle flushes are driven by `Ctx::flush_ns`.
    fn clock() -> u64 {
        1_000_000_000
    }

    /// One frame of a test trace: bytes and timestamp.
    pub(crate) struct Frame {
        pub(crate) bytes: Vec<u8>,
        pub(crate) ts: u64,
    }

    /// `n`-byte frame number `i`: a recognisable fill.
    pub(crate) fn frame(i: usize, n: usize) -> Frame {
        let mut bytes = vec![(i % 251) as u8; n];
        bytes[..4].copy_from_slice(&(i as u32).to_be_bytes());
        Frame {
            bytes,
            ts: 1_700_000_000_000_000_000 + i as u64 * 1000,
        }
    }

    /// A device: ring, buffer, publication and listener state.
    pub(crate) struct Rig<F: RxFormat = IgbAdv> {
        pub(crate) nic: SoftNic<F>,
        pub(crate) mem: SoftBuffer,
        pub(crate) publish: PublishState,
        pub(crate) listeners: ListenerTable,
        pub(crate) shared: Shared,
        pub(crate) ring: RingLayout,
        pub(crate) stream: Stream,
        pub(crate) writers: Vec<Writer<Box<[Rec]>>>,
    }

    impl Rig<IgbAdv> {
        pub(crate) fn new(
            stream: Stream,
            ring_size: u32,
            buf: u32,
            consumers: u32,
            start: u64,
        ) -> Self {
            Self::with_format(stream, ring_size, buf, consumers, start, 1)
        }
    }

    impl<F: RxFormat> Rig<F> {
        /// A rig with a ring of descriptors in format `F` and the NIC's
        /// tail step `align`, with interleaved segments as the driver uses.
        pub(crate) fn with_format(
            stream: Stream,
            ring_size: u32,
            buf: u32,
            consumers: u32,
            start: u64,
            align: u32,
        ) -> Self {
            let ring =
                RingLayout::interleaved(ring_size, consumers, TAIL_BATCH.min(ring_size / 2), align)
                    .unwrap();
            let nic = SoftNic::new(ring_size, buf, false, clock);
            let publish = PublishState::starting_at(start);
            publish.set_tail(ring.initial_tail());
            nic.write_tail(ring.tail_register(ring.initial_tail()));
            let writers = (0..consumers)
                .map(|j| Writer::new(j, &ring, vec![Rec::EMPTY; MAX_BATCH].into_boxed_slice()))
                .collect();
            Self {
                nic,
                mem: SoftBuffer::new(stream.geo.buffer_size() as usize),
                publish,
                listeners: ListenerTable::new(),
                shared: Shared::new(),
                ring,
                stream,
                writers,
            }
        }

        fn ctx(&self, flush_ns: u64, on_full: OnFull) -> Ctx<'_, SoftNic<F>, SoftBuffer> {
            Ctx {
                port: &self.nic,
                memory: &self.mem,
                publish: &self.publish,
                listeners: &self.listeners,
                shared: &self.shared,
                ring: &self.ring,
                flush_ns,
                on_full,
            }
        }

        /// Polls every writer once; returns the summed result.
        pub(crate) fn poll_all(
            &mut self,
            flush_ns: u64,
            on_full: OnFull,
            snaplen: u32,
            filter: Option<&Verified<Vec<SockFilter>>>,
        ) -> Polled {
            let mut sum = Polled::IDLE;
            let mut writers = core::mem::take(&mut self.writers);
            for w in writers.iter_mut() {
                let stream = self.stream;
                let p = w.poll(&self.ctx(flush_ns, on_full), || Settings {
                    stream,
                    snaplen,
                    filter,
                });
                sum.handled += p.handled;
                sum.stats.merge(&p.stats);
                sum.wake |= p.wake;
                sum.stalled |= p.stalled;
            }
            self.writers = writers;
            sum
        }

        /// Copies what listener `id` may read and acknowledges it.
        pub(crate) fn drain(&self, id: ListenerId, out: &mut Vec<u8>) {
            let (cursor, _) = self.listeners.cursor(id).unwrap();
            let commit = self.publish.committed();
            let geo = &self.stream.geo;
            let mut at = cursor;
            while at < commit {
                let pos = geo.position(at);
                let n = (commit - at).min(geo.buffer_size() - pos);
                // SAFETY: published and not yet acknowledged by this
                // blocking listener, so not rewritten.
                out.extend(unsafe { self.mem.read(pos as usize, n as usize) });
                at += n;
            }
            self.listeners
                .ack(id, commit - cursor, &self.publish)
                .unwrap();
        }
    }

    /// Runs `frames` through the engine (see `softnic::capture`).
    pub(crate) fn capture(stream: Stream, start: u64, frames: &[Frame]) -> Captured {
        let incoming: Vec<Incoming<'_>> = frames
            .iter()
            .map(|f| Incoming {
                bytes: &f.bytes,
                ts_ns: Some(f.ts),
                orig_len: None,
            })
            .collect();
        let c = super::super::softnic::capture(stream, start, 0, &incoming);
        assert_eq!(c.stats.nic_missed, 0);
        c
    }

    /// Checks every block of `c` and returns the packets in it.
    pub(crate) fn packets(stream: &Stream, c: &Captured) -> Vec<(Vec<u8>, u64)> {
        let b = stream.geo.block_size();
        let layout = Layout::new(b, stream.geo.buffer_size(), stream.format).unwrap();
        assert_eq!(c.stream.len() as u64 % b, 0, "ends on a block boundary");
        let mut out = Vec::new();
        for (k, blk) in c.stream.chunks(b as usize).enumerate() {
            let info = check_block(blk, &layout, Some(c.start + k as u64 * b)).unwrap();
            let before = out.len();
            match stream.format {
                StreamFormat::Pcapng => {
                    assert!(info.header.is_some());
                    for r in Blocks::new(blk) {
                        if let (_, Block::Epb(e)) = r.unwrap() {
                            out.push((e.data.to_vec(), e.ts));
                        }
                    }
                }
                StreamFormat::Raw => {
                    assert!(info.header.is_none(), "RAW streams have no block headers");
                    for r in RawRecords::new(blk) {
                        if let (_, RawRecord::Packet(p)) = r.unwrap() {
                            out.push((p.data.to_vec(), p.ts_ns()));
                        }
                    }
                }
            }
            assert_eq!(out.len() - before, info.packets as usize);
        }
        out
    }

    fn assert_same(frames: &[Frame], got: &[(Vec<u8>, u64)]) {
        assert_eq!(frames.len(), got.len());
        for (i, (f, (data, ts))) in frames.iter().zip(got).enumerate() {
            assert_eq!((&f.bytes[..], f.ts), (&data[..], *ts), "frame {i}");
        }
    }

    #[test]
    fn every_frame_size_through_small_blocks() {
        let frames: Vec<Frame> = (60..=9018).map(|n| frame(n, n)).collect();
        let rev: Vec<Frame> = (60..=9018).rev().map(|n| frame(n, n)).collect();
        for format in StreamFormat::ALL {
            // Starts below 2^32 and crosses it; the buffer is 3 blocks (not
            // a power of two).
            let s = Stream::new(format, 3 << 16, 1 << 16).unwrap();
            let c = capture(s, (1 << 32) - (5 << 16), &frames);
            assert!(c.stream.len() > 500 << 16);
            assert_same(&frames, &packets(&s, &c));
            assert!(c.stats.fates_add_up() && c.stats.frames_stored == frames.len() as u64);
            let s = Stream::new(format, 3 << 17, 1 << 17).unwrap();
            let c = capture(s, (1 << 40) + (9 << 17), &rev);
            assert_same(&rev, &packets(&s, &c));
        }
    }

    #[test]
    fn default_block_size_mixed_sizes() {
        let mut x = 12345u32;
        let frames: Vec<Frame> = (0..6000)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let n = [60, 64, 128, 512, 1514, 9018][(x >> 16) as usize % 6] + (x as usize % 3);
                frame(i, n)
            })
            .collect();
        for format in StreamFormat::ALL {
            let s = Stream::new(format, 8 << 22, 1 << 22).unwrap();
            let c = capture(s, 0, &frames);
            assert!(c.stream.len() >= 2 << 22);
            assert_same(&frames, &packets(&s, &c));
        }
    }

    /// Every fate, each counted once: no listener, ring error (a frame
    /// spanning descriptors), filtered, snaplen, too large for a block,
    /// no space, stored; and a NIC drop when the ring is full.
    #[test]
    fn every_frame_has_one_fate() {
        let s = Stream::new(StreamFormat::Pcapng, 2 << 16, 1 << 16).unwrap();
        let mut rig = Rig::new(s, 64, 8192, 1, 0);
        let offer = |rig: &Rig, n: usize| {
            rig.nic.receive(Incoming {
                bytes: &frame(n, n).bytes,
                ts_ns: None,
                orig_len: None,
            })
        };
        // No listener: counted, nothing stored.
        assert!(offer(&rig, 100));
        let p = rig.poll_all(u64::MAX, OnFull::Drop, 0, None);
        assert_eq!((p.stats.frames_seen, p.stats.dropped_no_listener), (1, 1));
        assert_eq!(rig.publish.committed(), 0);
        let l = rig
            .listeners
            .attach(Mode::Blocking, &rig.publish, &s.geo)
            .unwrap();
        // Spans two descriptors (8192-byte buffers): one ring drop.
        assert!(offer(&rig, 9000));
        // Filter "len >= 200": rejects the 100-byte frame.
        let prog = Verified::new(vec![
            SockFilter {
                code: 0x80,
                jt: 0,
                jf: 0,
                k: 0,
            }, // ld len
            SockFilter {
                code: 0x35,
                jt: 0,
                jf: 1,
                k: 200,
            }, // jge #200
            SockFilter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 65535,
            }, // ret #65535
            SockFilter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0,
            }, // ret #0
        ])
        .unwrap();
        assert!(offer(&rig, 100));
        // Stored, cut to snaplen 128.
        assert!(offer(&rig, 1000));
        let p = rig.poll_all(u64::MAX, OnFull::Drop, 128, Some(&prog));
        let st = p.stats;
        assert_eq!(
            (
                st.frames_seen,
                st.dropped_ring,
                st.filtered,
                st.frames_stored
            ),
            (3, 1, 1, 1)
        );
        assert_eq!(
            (st.truncated_by_snaplen, st.bytes_truncated, st.bytes_stored),
            (1, 872, 128)
        );
        assert!(st.fates_add_up());
        // No space: the listener holds the buffer; fill it with 1000-byte
        // frames until one is refused.
        let mut total = CaptureStats::ZERO;
        for _ in 0..20 {
            while rig.nic.free() > 0 {
                offer(&rig, 1000);
            }
            total.merge(&rig.poll_all(u64::MAX, OnFull::Drop, 0, None).stats);
            if total.dropped_no_space > 0 {
                break;
            }
        }
        assert!(
            total.dropped_no_space > 0 && total.bytes_no_space == total.dropped_no_space * 1000,
            "{total:?}"
        );
        assert!(total.fates_add_up());
        assert_eq!(rig.nic.missed(), 0);
        // The ring is full when nobody polls: the NIC drops and counts.
        let free = rig.nic.free();
        for _ in 0..free + 3 {
            offer(&rig, 60);
        }
        assert_eq!(rig.nic.missed(), 3);
        let _ = l;
    }

    /// A NIC reset in the middle of a capture (an XL710 VF whose PF resets
    /// it): the queue restarts at slot 0 while the writers stand somewhere
    /// else. Re-aligned as the driver's slow path does (writers paused),
    /// every frame the NIC completed before the reset and every frame after
    /// it is stored once, in order; the marked descriptors count as
    /// nothing; the next block header flags the gap.
    #[test]
    fn a_nic_reset_is_realigned_without_losing_or_inventing_frames() {
        use super::super::pcapng::BH_FLAG_GAP;
        let s = Stream::new(StreamFormat::Pcapng, 4 << 16, 1 << 16).unwrap();
        for (before, unpolled, consumers) in
            [(40usize, 3usize, 2u32), (64, 0, 1), (5, 7, 2), (123, 1, 2)]
        {
            let mut rig = Rig::<Iavf32>::with_format(s, 64, 2048, consumers, 0, 8);
            let id = rig
                .listeners
                .attach(Mode::Blocking, &rig.publish, &s.geo)
                .unwrap()
                .id;
            let frames: Vec<Frame> = (0..before + unpolled + 30)
                .map(|i| frame(i, 60 + i % 200))
                .collect();
            let offer = |rig: &Rig<Iavf32>, f: &Frame| {
                rig.nic.receive(Incoming {
                    bytes: &f.bytes,
                    ts_ns: Some(f.ts),
                    orig_len: None,
                })
            };
            let mut out = Vec::new();
            let mut stats = CaptureStats::ZERO;
            let mut poll = |rig: &mut Rig<Iavf32>, out: &mut Vec<u8>| {
                for _ in 0..20 {
                    stats.merge(&rig.poll_all(0, OnFull::Drop, 0, None).stats);
                }
                rig.drain(id, out);
            };
            for f in &frames[..before] {
                assert!(offer(&rig, f));
                poll(&mut rig, &mut out);
            }
            // Completed by the NIC, not yet seen by the writers: kept.
            for f in &frames[before..before + unpolled] {
                assert!(offer(&rig, f));
            }
            // The reset: the queue is off and restarts at slot 0.
            rig.nic.reset_queue();
            assert!(!offer(&rig, &frames[0]), "a queue in reset takes nothing");
            let r = rig.ring.realign(rig.shared.consumed(), rig.publish.tail());
            for k in r.skip_from..r.restart {
                let slot = (k % 64) as u32;
                if rig.nic.poll(slot).is_none() {
                    rig.nic.write_descriptor(slot, Iavf32::NOT_A_FRAME.unwrap());
                }
            }
            rig.publish.set_tail(r.tail);
            rig.shared.mark_gap();
            rig.nic.write_tail(r.tail_register);
            for f in &frames[before + unpolled..] {
                poll(&mut rig, &mut out);
                assert!(offer(&rig, f), "the NIC has descriptors after the reset");
            }
            for _ in 0..3 {
                poll(&mut rig, &mut out);
            }
            let want = before + unpolled + 30;
            assert_eq!(
                (stats.frames_seen, stats.frames_stored),
                (want as u64, want as u64)
            );
            assert!(stats.fates_add_up());
            let mut got = Vec::new();
            let mut gap_flags = 0;
            for r in Blocks::new(&out) {
                match r.unwrap() {
                    (_, Block::Epb(e)) => got.push((e.data.to_vec(), e.ts)),
                    (_, Block::Header(h)) => gap_flags += u32::from(h.flags & BH_FLAG_GAP != 0),
                    _ => {}
                }
            }
            assert_same(&frames[..want - 30], &got[..want - 30]);
            assert_same(&frames[want - 30..], &got[want - 30..]);
            assert_eq!(
                gap_flags, 1,
                "the gap is flagged in the next block header, once"
            );
        }
    }

    #[test]
    fn a_frame_cut_by_a_reset_is_one_ring_drop() {
        let mut in_frame = false;
        let part = RxDone {
            len: 2048,
            eop: false,
            error: false,
            skip: false,
            vlan: None,
        };
        let marked = RxDone {
            skip: true,
            len: 0,
            ..part
        };
        assert_eq!(
            multi_descriptor_fate(&mut in_frame, &part),
            Some(Fate::Fragment)
        );
        assert_eq!(
            multi_descriptor_fate(&mut in_frame, &marked),
            Some(Fate::Dropped(DropStage::Ring))
        );
        assert!(!in_frame);
        assert_eq!(
            multi_descriptor_fate(&mut in_frame, &marked),
            Some(Fate::NotAFrame)
        );
        let whole = RxDone { eop: true, ..part };
        assert_eq!(
            multi_descriptor_fate(&mut in_frame, &whole),
            None,
            "the next frame is whole"
        );
    }

    #[test]
    fn too_large_for_a_block_is_a_writer_drop() {
        let s = Stream::new(StreamFormat::Pcapng, 2 << 16, 1 << 16).unwrap();
        let mut rig = Rig::new(s, 64, 65536, 1, 0);
        rig.listeners
            .attach(Mode::Blocking, &rig.publish, &s.geo)
            .unwrap();
        // 65536 - 76 (header) - 32 (EPB overhead) = 65428 bytes fit.
        for n in [65428usize, 65429] {
            assert!(rig.nic.receive(Incoming {
                bytes: &frame(n, n).bytes,
                ts_ns: None,
                orig_len: None,
            }));
        }
        let p = rig.poll_all(u64::MAX, OnFull::Drop, 0, None);
        assert_eq!((p.stats.frames_stored, p.stats.dropped_writer), (1, 1));
    }

    #[test]
    fn stripped_vlan_tags_are_put_back() {
        let s = Stream::new(StreamFormat::Raw, 2 << 16, 1 << 16).unwrap();
        let mut rig = Rig::new(s, 64, 2048, 1, 0);
        rig.nic = SoftNic::new(64, 2048, true, clock);
        rig.nic
            .write_tail(rig.ring.tail_register(rig.ring.initial_tail()));
        let l = rig
            .listeners
            .attach(Mode::Blocking, &rig.publish, &s.geo)
            .unwrap();
        let mut tagged = frame(7, 64).bytes;
        tagged[12..16].copy_from_slice(&[0x81, 0x00, 0x20, 0x64]);
        assert!(rig.nic.receive(Incoming {
            bytes: &tagged,
            ts_ns: Some(5),
            orig_len: None,
        }));
        rig.poll_all(0, OnFull::Drop, 0, None);
        rig.poll_all(0, OnFull::Drop, 0, None);
        let mut out = Vec::new();
        rig.drain(l.id, &mut out);
        let c = Captured {
            stream: out,
            start: l.start,
            stats: CaptureStats::ZERO,
        };
        assert_eq!(packets(&s, &c), vec![(tagged, 5)]);
    }

    /// A lossless replay waits for the listener instead of dropping.
    #[test]
    fn stall_waits_for_room() {
        let s = Stream::new(StreamFormat::Pcapng, 2 << 16, 1 << 16).unwrap();
        let mut rig = Rig::new(s, 64, 2048, 1, 0);
        let l = rig
            .listeners
            .attach(Mode::Blocking, &rig.publish, &s.geo)
            .unwrap();
        let frames: Vec<Frame> = (0..400).map(|i| frame(i, 1000)).collect();
        let mut out = Vec::new();
        let (mut next, mut stalls, mut stats) = (0, 0, CaptureStats::ZERO);
        while next < frames.len() || rig.publish.reserved() % (1 << 16) != 0 {
            while next < frames.len() && rig.nic.free() > 0 {
                rig.nic.receive(Incoming {
                    bytes: &frames[next].bytes,
                    ts_ns: Some(frames[next].ts),
                    orig_len: None,
                });
                next += 1;
            }
            let flush = if next == frames.len() { 0 } else { u64::MAX };
            let p = rig.poll_all(flush, OnFull::Stall, 0, None);
            stats.merge(&p.stats);
            if p.stalled {
                // Only now does the reader catch up.
                stalls += 1;
                rig.drain(l.id, &mut out);
            }
        }
        rig.drain(l.id, &mut out);
        assert!(stalls > 0, "the buffer never filled");
        assert_eq!((stats.frames_stored, stats.dropped_no_space), (400, 0));
        let c = Captured {
            stream: out,
            start: l.start,
            stats,
        };
        assert_same(&frames, &packets(&s, &c));
    }

    /// Drops caused by a lingering listener alone are counted apart from
    /// drops a live listener causes; taking the lingering listener over
    /// then yields every stored frame from where it stopped, in order.
    #[test]
    fn lingering_drops_are_counted_apart() {
        use super::super::listener::Name;
        let s = Stream::new(StreamFormat::Pcapng, 2 << 16, 1 << 16).unwrap();
        let mut rig = Rig::new(s, 64, 2048, 1, 0);
        let name = Name::new(b"dd").unwrap();
        let named = rig
            .listeners
            .attach_named(&name, 1_000, 0, true, &rig.publish, &s.geo)
            .unwrap();
        let live = rig
            .listeners
            .attach(Mode::Blocking, &rig.publish, &s.geo)
            .unwrap();
        // Fills the buffer: both listeners behind, plain no-space drops.
        let mut next = 0;
        let mut offer = |rig: &mut Rig, k: usize| -> CaptureStats {
            let mut total = CaptureStats::ZERO;
            for _ in 0..k {
                while rig.nic.free() > 0 {
                    rig.nic.receive(Incoming {
                        bytes: &frame(next, 1000).bytes,
                        ts_ns: Some(next as u64 + 1),
                        orig_len: None,
                    });
                    next += 1;
                }
                total.merge(&rig.poll_all(u64::MAX, OnFull::Drop, 0, None).stats);
            }
            total
        };
        let st = offer(&mut rig, 6);
        assert!(
            st.dropped_no_space > 0 && st.dropped_lingering == 0,
            "{st:?}"
        );
        // The named listener's owner goes away; the live one keeps up.
        rig.listeners.abandon(named.id, 0).unwrap();
        let mut ignored = Vec::new();
        rig.drain(live.id, &mut ignored);
        let st = offer(&mut rig, 6);
        assert!(
            st.dropped_lingering > 0 && st.dropped_no_space == 0,
            "{st:?}"
        );
        assert!(st.fates_add_up());
        // Taken over: live again, so the room it holds is plain no-space.
        let back = rig
            .listeners
            .attach_named(&name, 1_000, 0, true, &rig.publish, &s.geo)
            .unwrap();
        assert_eq!((back.start, back.resumed), (named.start, true));
        let st = offer(&mut rig, 6);
        assert!(
            st.dropped_no_space > 0 && st.dropped_lingering == 0,
            "{st:?}"
        );
        // Its stream continues exactly where it stopped.
        let mut out = Vec::new();
        rig.drain(back.id, &mut out);
        // Store what the ring still holds and close the open block (idle
        // flush), reading as we go.
        while rig.poll_all(0, OnFull::Drop, 0, None).handled > 0 {
            rig.drain(back.id, &mut out);
        }
        let c = Captured {
            stream: out,
            start: back.start,
            stats: CaptureStats::ZERO,
        };
        let got = packets(&s, &c);
        assert!(!got.is_empty());
        // Timestamps are the frame numbers + 1: stored frames in order,
        // from the very first one on.
        let ts: Vec<u64> = got.iter().map(|g| g.1).collect();
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "{ts:?}");
        assert_eq!(got[0].1, 1);
    }

    /// A lossless replay waits for a lingering listener too.
    #[test]
    fn stall_waits_for_lingering_listeners() {
        use super::super::listener::Name;
        let s = Stream::new(StreamFormat::Pcapng, 2 << 16, 1 << 16).unwrap();
        let mut rig = Rig::new(s, 64, 2048, 1, 0);
        let name = Name::new(b"dd").unwrap();
        let a = rig
            .listeners
            .attach_named(&name, 1_000, 0, true, &rig.publish, &s.geo)
            .unwrap();
        rig.listeners.abandon(a.id, 0).unwrap();
        let mut stalled = false;
        for i in 0..400 {
            while rig.nic.free() == 0 {
                let p = rig.poll_all(u64::MAX, OnFull::Stall, 0, None);
                if p.stalled {
                    stalled = true;
                    break;
                }
            }
            if stalled {
                break;
            }
            rig.nic.receive(Incoming {
                bytes: &frame(i, 1000).bytes,
                ts_ns: Some(i as u64),
                orig_len: None,
            });
        }
        assert!(stalled, "the lingering listener held nothing back");
        let p = rig.poll_all(u64::MAX, OnFull::Stall, 0, None);
        assert!(p.stalled && p.stats.dropped_total() == 0, "{p:?}");
        // Expired: the producer goes on (nothing attached: no-listener).
        assert_eq!(rig.listeners.expire(1_000, rig.publish.committed()), 1);
        let p = rig.poll_all(u64::MAX, OnFull::Stall, 0, None);
        assert!(!p.stalled && p.stats.dropped_no_listener > 0, "{p:?}");
    }

    /// Issue 10: frames the NIC completed that no writer took before
    /// capture stopped are found by walking the ring from the writers'
    /// position and counted as `dropped_stop`, so that every frame the NIC
    /// wrote is counted exactly once: by a writer, or here. A spanning
    /// frame counts once; descriptors the NIC did not complete end the walk.
    #[test]
    fn frames_left_in_the_ring_at_stop_are_counted_once() {
        let s = Stream::new(StreamFormat::Pcapng, 4 << 16, 1 << 16).unwrap();
        for consumers in [1, 2] {
            let mut rig = Rig::new(s, 256, 2048, consumers, 0);
            rig.listeners
                .attach(Mode::Blocking, &rig.publish, &s.geo)
                .unwrap();
            let offer = |rig: &Rig, i: usize, n: usize| {
                assert!(rig.nic.receive(Incoming {
                    bytes: &frame(i, n).bytes,
                    ts_ns: None,
                    orig_len: None,
                }))
            };
            for i in 0..40 {
                offer(&rig, i, 100);
            }
            let mut taken = CaptureStats::ZERO;
            for _ in 0..8 {
                taken.merge(&rig.poll_all(u64::MAX, OnFull::Drop, 0, None).stats);
            }
            assert_eq!(taken.frames_seen, 40);
            // Arrive after the writers' last poll: 9 frames, one of them
            // spanning two descriptors (3000 bytes, 2048-byte buffers).
            for i in 40..48 {
                offer(&rig, i, 60);
            }
            offer(&rig, 48, 3000);
            let left = left_in_ring(&rig.nic, 256, rig.shared.consumed(), rig.publish.tail());
            assert_eq!((left.frames_seen, left.dropped_stop), (9, 9), "{left:?}");
            assert_eq!(left.bytes_seen, 8 * 60 + (3000 - 2048));
            taken.merge(&left);
            assert_eq!(
                taken.frames_seen,
                rig.nic.received(),
                "every frame the NIC wrote, once"
            );
            assert!(taken.fates_add_up());
            // Nothing completed past the writers' position: nothing counted.
            let mut rig = Rig::new(s, 256, 2048, consumers, 0);
            let none = left_in_ring(&rig.nic, 256, rig.shared.consumed(), rig.publish.tail());
            assert_eq!(none, CaptureStats::ZERO);
            offer(&rig, 0, 60);
            rig.poll_all(u64::MAX, OnFull::Drop, 0, None);
            let none = left_in_ring(&rig.nic, 256, rig.shared.consumed(), rig.publish.tail());
            assert_eq!(none, CaptureStats::ZERO);
        }
    }

    /// Issue 13: a blocking listener that attaches alone while a block is
    /// open (its predecessor stored the published part of that block and
    /// detached, as a stopped hpcapdd does) starts at the next boundary
    /// (listener.rs). Every frame offered after it attached reaches it:
    /// the producer closes the open block instead of filling it for nobody.
    /// Sent = read by the first + counted as finding no listener + read by
    /// the second, frame for frame.
    #[test]
    fn a_listener_attaching_alone_mid_block_misses_nothing() {
        for format in StreamFormat::ALL {
            let s = Stream::new(format, 4 << 16, 1 << 16).unwrap();
            let mut rig = Rig::new(s, 64, 2048, 1, 0);
            let offer = |rig: &Rig, from: usize, to: usize| {
                for i in from..to {
                    assert!(rig.nic.receive(Incoming {
                        bytes: &frame(i, 200).bytes,
                        ts_ns: Some(i as u64 + 1),
                        orig_len: None,
                    }));
                }
            };
            let a = rig
                .listeners
                .attach(Mode::Blocking, &rig.publish, &s.geo)
                .unwrap();
            offer(&rig, 0, 10);
            // No idle flush: the block stays open, as under traffic.
            let p = rig.poll_all(u64::MAX, OnFull::Drop, 0, None);
            assert_eq!(p.stats.frames_stored, 10);
            let mut got_a = Vec::new();
            rig.drain(a.id, &mut got_a);
            rig.listeners.detach(a.id).unwrap();
            let r = rig.publish.committed();
            assert!(r % s.geo.block_size() != 0, "the block is open at {r}");
            // Nobody attached: dropped and counted.
            offer(&rig, 10, 15);
            let p = rig.poll_all(u64::MAX, OnFull::Drop, 0, None);
            assert_eq!(p.stats.dropped_no_listener, 5);
            let b = rig
                .listeners
                .attach(Mode::Blocking, &rig.publish, &s.geo)
                .unwrap();
            assert_eq!(b.start, s.geo.block_ceil(r));
            offer(&rig, 15, 25);
            let p = rig.poll_all(u64::MAX, OnFull::Drop, 0, None);
            assert_eq!(p.stats.frames_stored, 10);
            // An idle flush closes the second listener's block.
            rig.poll_all(0, OnFull::Drop, 0, None);
            let mut got_b = Vec::new();
            rig.drain(b.id, &mut got_b);
            let c = Captured {
                stream: got_b,
                start: b.start,
                stats: CaptureStats::ZERO,
            };
            let ts: Vec<u64> = packets(&s, &c).iter().map(|p| p.1).collect();
            assert_eq!(
                ts,
                (16..=25).collect::<Vec<u64>>(),
                "{format:?}: frames 15..25 (timestamps 16..=25) reach the listener that attached \
                 alone mid-block"
            );
        }
    }

    /// A batch's records stay small enough to sit in L2 between gather
    /// and copy with room to spare (see [`MAX_BATCH`]; a writer alone
    /// writes only two fields of each).
    #[test]
    fn a_batch_of_records_fits_in_l2() {
        assert_eq!(core::mem::size_of::<Rec>(), 72);
        assert!(MAX_BATCH * core::mem::size_of::<Rec>() <= 64 << 10);
    }

    /// Two writers on two threads share the ring and the stream; the stream
    /// holds every frame once, in ring order, and the iavf descriptor format
    /// decodes the same: with one segment per writer and with segments
    /// interleaved (the writers take turns every 16 descriptors).
    #[test]
    fn two_writers_publish_in_order() {
        two_writers(RingLayout::new(128, 2, 32, 8).unwrap());
        two_writers(RingLayout::with_segments(128, 2, 8, 16, 8).unwrap());
    }

    fn two_writers(ring: RingLayout) {
        let s = Stream::new(StreamFormat::Pcapng, 4 << 16, 1 << 16).unwrap();
        let nic: SoftNic<Iavf32> = SoftNic::new(128, 2048, false, clock);
        let publish = PublishState::new();
        publish.set_tail(ring.initial_tail());
        nic.write_tail(ring.tail_register(ring.initial_tail()));
        let listeners = ListenerTable::new();
        let shared = Shared::new();
        let mem = SoftBuffer::new(4 << 16);
        let l = listeners.attach(Mode::Blocking, &publish, &s.geo).unwrap();
        let frames: Vec<Frame> = (0..3000).map(|i| frame(i, 60 + i % 700)).collect();
        let done = std::sync::atomic::AtomicBool::new(false);
        let cx = |flush_ns| Ctx {
            port: &nic,
            memory: &mem,
            publish: &publish,
            listeners: &listeners,
            shared: &shared,
            ring: &ring,
            flush_ns,
            on_full: OnFull::Stall,
        };
        let mut out = Vec::new();
        std::thread::scope(|sc| {
            for j in 0..2 {
                let (cx, done, publish, ring) = (&cx, &done, &publish, &ring);
                sc.spawn(move || {
                    let mut w = Writer::new(j, ring, vec![Rec::EMPTY; MAX_BATCH]);
                    loop {
                        let finished = done.load(std::sync::atomic::Ordering::Acquire);
                        let p = w.poll(&cx(if finished { 0 } else { u64::MAX }), || Settings {
                            stream: s,
                            snaplen: 0,
                            filter: None::<&Verified<Vec<SockFilter>>>,
                        });
                        if finished && p.handled == 0 && publish.reserved() % (1 << 16) == 0 {
                            break;
                        }
                        std::thread::yield_now();
                    }
                });
            }
            let mut next = 0;
            while next < frames.len() {
                if nic.free() > 0 {
                    let f = &frames[next];
                    nic.receive(Incoming {
                        bytes: &f.bytes,
                        ts_ns: Some(f.ts),
                        orig_len: None,
                    });
                    next += 1;
                } else {
                    std::thread::yield_now();
                }
                // Read as we go, so the writers never run out of room.
                let (cursor, _) = listeners.cursor(l.id).unwrap();
                let commit = publish.committed();
                let geo = &s.geo;
                let mut at = cursor;
                while at < commit {
                    let pos = geo.position(at);
                    let n = (commit - at).min(geo.buffer_size() - pos);
                    // SAFETY: published, protected by our blocking cursor.
                    out.extend(unsafe { mem.read(pos as usize, n as usize) });
                    at += n;
                }
                listeners.ack(l.id, commit - cursor, &publish).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        let (cursor, _) = listeners.cursor(l.id).unwrap();
        let commit = publish.committed();
        let mut at = cursor;
        while at < commit {
            let pos = s.geo.position(at);
            let n = (commit - at).min(s.geo.buffer_size() - pos);
            // SAFETY: the writers have stopped.
            out.extend(unsafe { mem.read(pos as usize, n as usize) });
            at += n;
        }
        let c = Captured {
            stream: out,
            start: l.start,
            stats: CaptureStats::ZERO,
        };
        assert_same(&frames, &packets(&s, &c));
        assert_eq!(nic.missed(), 0);
    }
}
