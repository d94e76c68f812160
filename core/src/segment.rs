// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! RX ring segment arithmetic and in-order descriptor return (tail updates).
//!
//! One RX ring of `ring_size` descriptors is split into `segments`
//! contiguous segments, dealt round-robin to `consumers` writer threads:
//! writer `j` owns segments `j`, `j + consumers`, `j + 2 * consumers`, ...
//! The NIC fills descriptors in ring order, so the segments are visited in
//! order too and the publication token (see [`super::publish`]) follows the
//! NIC from one segment, and writer, to the next.
//!
//! With one segment per writer (HPCAP's split), a writer waits for the
//! whole ring to come round before its segment fills again. Interleaved
//! segments ([`RingLayout::interleaved`]) let the writers overlap: one
//! copies the frames of its segment while the next one already reserves
//! room for the following segment's frames, so the copies run in parallel
//! and only the (short) reservation is serialised by the token.
//!
//! # Uneven splits
//!
//! The ring is cut in units of `align` descriptors (the granularity at which
//! the NIC accepts tail bumps: 8 on XL710, 1 on 82576). With
//! `units = ring_size / align`, every segment gets `units / segments` units
//! and the first `units % segments` segments one unit more. Segment ends
//! therefore always fall on an aligned descriptor, so the tail bump done at a
//! segment end needs no rounding; segment lengths differ by at most `align`.
//!
//! # Tail invariant
//!
//! Descriptors are counted with monotonic `u64` indices (descriptor `i` lives
//! in ring slot `i % ring_size`). `released` is how many descriptors software
//! has finished with (their buffers copied out, in ring order); `tail` is how
//! many descriptors have been handed to the NIC in total. The NIC owns
//! `[head, tail)`. We keep
//!
//! `tail <= released + ring_size - 1` and `tail % align == 0`,
//!
//! because a tail register equal to the head register means "ring empty" to
//! the NIC: handing over all `ring_size` descriptors would make a full ring
//! look empty and stall reception. So the NIC always owns at most
//! `ring_size - align` descriptors beyond what software still holds.

use super::arith::{div_u32, rem_u32, rem_u64};

/// Largest number of writer threads per ring.
pub const MAX_CONSUMERS: u32 = 32;

/// Segment length [`RingLayout::interleaved`] aims at, in descriptors: one
/// full batch of the engine (`engine::MAX_BATCH`), so a writer hands the
/// token on after every batch it reserves and copies that batch while the
/// next writer reserves the following one. (A writer holds the token for
/// its whole segment; with longer segments its copies would run under the
/// token, one after the other.)
pub const SEGMENT_TARGET: u32 = 512;

/// Why a [`RingLayout`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// `align` is zero or not a power of two.
    Align,
    /// `ring_size` is zero or not a multiple of `align` and of 8.
    RingSize,
    /// `consumers` is 0, above [`MAX_CONSUMERS`], or leaves a segment with
    /// fewer than `align` descriptors.
    Consumers,
    /// `segments` is not a non-zero multiple of `consumers`, or leaves a
    /// segment with fewer than `align` descriptors.
    Segments,
    /// `batch` is zero, not a multiple of `align`, or larger than the ring.
    Batch,
}

/// Geometry of one RX ring split into writer segments.
///
/// # Invariants
///
/// - `align` is a power of two, `ring_size` is a non-zero multiple of 8 and
///   of `align`, and `ring_size <= u32::MAX / 2`.
/// - `1 <= consumers <= MAX_CONSUMERS` and `consumers <= ring_size / align`.
/// - `segments` is a multiple of `consumers`, `segments <= ring_size / align`.
/// - `batch` is a non-zero multiple of `align`, `batch <= ring_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    ring_size: u32,
    consumers: u32,
    segments: u32,
    align: u32,
    batch: u32,
    /// Units (of `align` descriptors) in every segment.
    base_units: u32,
    /// Number of leading segments with one extra unit.
    extra: u32,
}

impl RingLayout {
    /// Validates and builds a layout with one segment per writer.
    #[cfg(not(hpcap_kernel))]
    ///
    /// `batch` is the number of released descriptors that justifies a tail
    /// register write (an MMIO write is expensive); `align` is the NIC's
    /// tail granularity (1 for igb, 8 for i40e/iavf).
    pub const fn new(
        ring_size: u32,
        consumers: u32,
        batch: u32,
        align: u32,
    ) -> Result<Self, LayoutError> {
        Self::with_segments(ring_size, consumers, consumers, batch, align)
    }

    /// A layout whose writers take turns every [`SEGMENT_TARGET`]
    /// descriptors or so (one segment per writer when there is one writer,
    /// or when the ring is too small to interleave).
    pub const fn interleaved(
        ring_size: u32,
        consumers: u32,
        batch: u32,
        align: u32,
    ) -> Result<Self, LayoutError> {
        let mut segments = consumers;
        if consumers > 1 && align != 0 && consumers != 0 {
            let want = div_u32(ring_size, SEGMENT_TARGET);
            let most = div_u32(ring_size, align);
            let mut n = if want < most { want } else { most };
            n -= rem_u32(n, consumers);
            if n > segments {
                segments = n;
            }
        }
        Self::with_segments(ring_size, consumers, segments, batch, align)
    }

    /// Validates and builds a layout of `segments` segments dealt
    /// round-robin to `consumers` writers.
    pub const fn with_segments(
        ring_size: u32,
        consumers: u32,
        segments: u32,
        batch: u32,
        align: u32,
    ) -> Result<Self, LayoutError> {
        if align == 0 || !align.is_power_of_two() {
            return Err(LayoutError::Align);
        }
        if ring_size == 0
            || ring_size % 8 != 0
            || rem_u32(ring_size, align) != 0
            || ring_size > u32::MAX / 2
        {
            return Err(LayoutError::RingSize);
        }
        let units = div_u32(ring_size, align);
        if consumers == 0 || consumers > MAX_CONSUMERS || consumers > units {
            return Err(LayoutError::Consumers);
        }
        if segments < consumers || rem_u32(segments, consumers) != 0 || segments > units {
            return Err(LayoutError::Segments);
        }
        if batch == 0 || rem_u32(batch, align) != 0 || batch > ring_size {
            return Err(LayoutError::Batch);
        }
        Ok(Self {
            ring_size,
            consumers,
            segments,
            align,
            batch,
            base_units: div_u32(units, segments),
            extra: rem_u32(units, segments),
        })
    }

    #[cfg(not(hpcap_kernel))]
    /// Number of descriptors in the ring.
    pub const fn ring_size(&self) -> u32 {
        self.ring_size
    }

    /// Number of writer threads.
    pub const fn consumers(&self) -> u32 {
        self.consumers
    }

    /// Number of segments (a multiple of the writers).
    #[cfg(not(hpcap_kernel))]
    pub const fn segments(&self) -> u32 {
        self.segments
    }

    /// The writer that owns segment `seg`.
    #[cfg(not(hpcap_kernel))]
    pub const fn writer_of(&self, seg: u32) -> u32 {
        rem_u32(seg, self.consumers)
    }

    /// The writer after `writer`, i.e. the owner of the segment after any
    /// of `writer`'s: where the token goes next.
    pub const fn next_writer(&self, writer: u32) -> u32 {
        let n = rem_u32(writer, self.consumers) + 1;
        if n == self.consumers {
            0
        } else {
            n
        }
    }

    /// The segment its owner works on after `seg` (one lap of the writers
    /// later).
    pub const fn next_own_segment(&self, seg: u32) -> u32 {
        rem_u32(rem_u32(seg, self.segments) + self.consumers, self.segments)
    }

    #[cfg(not(hpcap_kernel))]
    /// Tail granularity.
    pub const fn align(&self) -> u32 {
        self.align
    }

    /// First descriptor of segment `seg` (taken modulo `segments`).
    pub const fn segment_start(&self, seg: u32) -> u32 {
        let seg = rem_u32(seg, self.segments);
        let extra_before = if seg < self.extra { seg } else { self.extra };
        (seg * self.base_units + extra_before) * self.align
    }

    /// One past the last descriptor of segment `seg` (taken modulo
    /// `segments`); `ring_size` for the last segment.
    pub const fn segment_end(&self, seg: u32) -> u32 {
        let seg = rem_u32(seg, self.segments);
        self.segment_start(seg) + self.segment_len(seg)
    }

    /// Number of descriptors in segment `seg` (taken modulo `segments`).
    pub const fn segment_len(&self, seg: u32) -> u32 {
        let seg = rem_u32(seg, self.segments);
        let units = self.base_units + if seg < self.extra { 1 } else { 0 };
        units * self.align
    }

    /// Segment that owns ring slot `i` (taken modulo `ring_size`).
    pub const fn segment_of(&self, i: u32) -> u32 {
        let unit = div_u32(rem_u32(i, self.ring_size), self.align);
        // The first `extra` segments are one unit longer.
        let long = self.base_units + 1;
        let long_span = self.extra * long;
        if unit < long_span {
            div_u32(unit, long)
        } else {
            // `base_units >= 1` by the invariant `segments <= units`.
            self.extra + div_u32(unit - long_span, self.base_units)
        }
    }

    #[cfg(not(hpcap_kernel))]
    /// Ring slot after `i`, wrapping at the ring's end.
    pub const fn next(&self, i: u32) -> u32 {
        let n = rem_u32(i, self.ring_size) + 1;
        if n == self.ring_size {
            0
        } else {
            n
        }
    }

    /// Segment after `seg` in ring order.
    #[cfg(not(hpcap_kernel))]
    pub const fn next_segment(&self, seg: u32) -> u32 {
        let n = rem_u32(seg, self.segments) + 1;
        if n == self.segments {
            0
        } else {
            n
        }
    }

    /// Ring slot after `i` for the writer that owns it: past its segment's
    /// last descriptor the writer starts its next lap at the segment start.
    /// (The engine keeps each writer's bounds instead: no divisions.)
    #[cfg(not(hpcap_kernel))]
    pub const fn next_in_segment(&self, i: u32) -> u32 {
        let seg = self.segment_of(i);
        let n = rem_u32(i, self.ring_size) + 1;
        if n == self.segment_end(seg) {
            self.segment_start(seg)
        } else {
            n
        }
    }

    /// True if ring slot `i` is the last descriptor of its segment, where
    /// the writer passes the token on.
    #[cfg(not(hpcap_kernel))]
    pub const fn is_segment_last(&self, i: u32) -> bool {
        let i = rem_u32(i, self.ring_size);
        i + 1 == self.segment_end(self.segment_of(i))
    }

    /// Tail count to arm the ring with before the NIC is enabled (nothing
    /// released yet): `ring_size - align`.
    pub const fn initial_tail(&self) -> u64 {
        self.max_tail(0)
    }

    /// Largest tail count allowed once `released` descriptors are released
    /// (see the module's tail invariant).
    pub const fn max_tail(&self, released: u64) -> u64 {
        let t = released + self.ring_size as u64 - 1;
        t & !(self.align as u64 - 1)
    }

    /// Decides whether the tail register should be written.
    ///
    /// `tail` is the count last written, `released` the count of released
    /// descriptors. Returns the new tail count when it moves by at least a
    /// batch, or when `released` sits on a segment boundary (a writer just
    /// finished a segment, so the NIC gets it back without waiting for a
    /// full batch). The register value is [`Self::tail_register`] of it.
    pub const fn tail_target(&self, tail: u64, released: u64) -> Option<u64> {
        let t = self.max_tail(released);
        if t <= tail {
            return None;
        }
        let slot = rem_u64(released, self.ring_size as u64) as u32;
        let at_boundary = self.segment_start(self.segment_of(slot)) == slot;
        if t - tail >= self.batch as u64 || at_boundary {
            Some(t)
        } else {
            None
        }
    }

    /// Ring slot to write to the tail register for tail count `tail`.
    pub const fn tail_register(&self, tail: u64) -> u32 {
        rem_u64(tail, self.ring_size as u64) as u32
    }

    /// How to bring the ring back in step with a NIC that was reset and
    /// restarts filling at slot 0, while the writers are paused having
    /// consumed `consumed` descriptors, with tail count `tail`.
    ///
    /// The writers go on from `consumed`; the NIC from slot 0, which is
    /// count `restart` (the next multiple of the ring size). Descriptors
    /// `[consumed, restart)` that the NIC did not complete before the reset
    /// are marked as no frame (a completed one keeps its frame) and the
    /// writers walk past them as usual; the NIC owns `[restart, tail)`,
    /// slots `0..tail_register`, which lie before any marked slot because
    /// `tail <= consumed + ring_size - align`.
    pub const fn realign(&self, consumed: u64, tail: u64) -> Realign {
        let n = self.ring_size as u64;
        let slot = rem_u64(consumed, n);
        let restart = if slot == 0 {
            consumed
        } else {
            consumed - slot + n
        };
        let tail = if tail > restart { tail } else { restart };
        Realign {
            skip_from: consumed,
            restart,
            tail,
            tail_register: (tail - restart) as u32,
        }
    }
}

/// See [`RingLayout::realign`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Realign {
    /// First descriptor count to mark as no frame (unless completed).
    pub skip_from: u64,
    /// Count of ring slot 0 where the NIC restarts: marks end here.
    pub restart: u64,
    /// The tail count to record ([`super::publish::PublishState::set_tail`]).
    pub tail: u64,
    /// What to write to the NIC's tail register once its queue is back.
    pub tail_register: u32,
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    extern crate std;
    use std::vec;

    #[test]
    fn rejects_bad_layouts() {
        assert_eq!(RingLayout::new(4096, 4, 32, 3), Err(LayoutError::Align));
        assert_eq!(RingLayout::new(4100, 4, 32, 1), Err(LayoutError::RingSize));
        assert_eq!(RingLayout::new(4096, 0, 32, 8), Err(LayoutError::Consumers));
        assert_eq!(
            RingLayout::new(4096, 33, 32, 8),
            Err(LayoutError::Consumers)
        );
        assert_eq!(RingLayout::new(16, 3, 8, 8), Err(LayoutError::Consumers));
        assert_eq!(RingLayout::new(4096, 4, 12, 8), Err(LayoutError::Batch));
        assert!(RingLayout::new(4096, 32, 32, 8).is_ok());
    }

    #[test]
    fn even_split() {
        let l = RingLayout::new(4096, 4, 32, 8).unwrap();
        for s in 0..4 {
            assert_eq!(l.segment_start(s), s * 1024);
            assert_eq!(l.segment_len(s), 1024);
        }
        assert_eq!(l.segment_of(1023), 0);
        assert_eq!(l.segment_of(1024), 1);
        assert_eq!(l.segment_of(4095), 3);
        assert_eq!(l.next(4095), 0);
        assert_eq!(l.next_in_segment(2047), 1024);
        assert!(l.is_segment_last(2047));
        assert_eq!(l.initial_tail(), 4088);
    }

    #[test]
    fn uneven_split_is_aligned() {
        // 512 units of 8 over 3 segments: 171, 171, 170 units.
        let l = RingLayout::new(4096, 3, 32, 8).unwrap();
        assert_eq!(l.segment_len(0), 1368);
        assert_eq!(l.segment_len(1), 1368);
        assert_eq!(l.segment_len(2), 1360);
        assert_eq!(l.segment_end(2), 4096);
    }

    #[test]
    fn tail_batches_and_segment_ends() {
        let l = RingLayout::new(64, 2, 16, 8).unwrap();
        let t0 = l.initial_tail();
        assert_eq!(t0, 56);
        // 8 released: one aligned step, below the batch of 16.
        assert_eq!(l.tail_target(t0, 8), None);
        assert_eq!(l.tail_target(t0, 16), Some(72));
        // A segment end (32) bumps even if the batch is not reached.
        assert_eq!(l.tail_target(64, 32), Some(88));
        // Unaligned release rounds down: 23 + 63 = 86 -> 80.
        assert_eq!(l.tail_target(t0, 15), Some(72));
        assert_eq!(l.tail_target(t0, 23), Some(80));
        assert_eq!(l.tail_register(72), 8);
        let igb = RingLayout::new(64, 1, 1, 1).unwrap();
        assert_eq!(igb.initial_tail(), 63);
        assert_eq!(igb.tail_target(63, 1), Some(64));
    }

    fn layouts() -> impl Strategy<Value = RingLayout> {
        (
            1u32..=64,
            prop::sample::select(vec![1u32, 2, 8]),
            1u32..=32,
            1u32..=4,
            1u32..=8,
        )
            .prop_filter_map(
                "valid layout",
                |(units8, align, consumers, laps, batch_units)| {
                    RingLayout::with_segments(
                        units8 * 8 * 8,
                        consumers,
                        consumers * laps,
                        batch_units * align,
                        align,
                    )
                    .ok()
                },
            )
    }

    #[test]
    fn interleaved_segments_take_turns() {
        let l = RingLayout::interleaved(4096, 2, 32, 8).unwrap();
        assert_eq!((l.segments(), l.segment_len(0)), (8, 512));
        assert_eq!((l.writer_of(0), l.writer_of(1), l.writer_of(7)), (0, 1, 1));
        assert_eq!(l.next_own_segment(0), 2);
        assert_eq!(l.next_own_segment(7), 1);
        assert_eq!(l.next_writer(1), 0);
        // One writer, or no room to interleave: one segment per writer.
        assert_eq!(
            RingLayout::interleaved(4096, 1, 32, 8).unwrap().segments(),
            1
        );
        assert_eq!(RingLayout::interleaved(64, 4, 8, 8).unwrap().segments(), 4);
        assert_eq!(
            RingLayout::with_segments(4096, 2, 3, 32, 8),
            Err(LayoutError::Segments)
        );
    }

    proptest! {
        /// After a NIC reset the NIC owns slots `0..tail_register`, none of
        /// them a slot the writers still have to walk past (`consumed..`
        /// up to the ring's end), and every count the writers meet before
        /// slot 0 is either completed or marked.
        #[test]
        fn realign_hands_the_nic_only_slots_behind_the_writers(
            l in layouts(), consumed in 0u64..1 << 40, lag in 0u64..8192,
        ) {
            let n = u64::from(l.ring_size());
            // Paused writers: everything consumed is released; the tail is
            // any count the tail rule allows, at least what was consumed.
            let max = l.max_tail(consumed);
            let tail = (consumed + lag.min(max - consumed)) & !(u64::from(l.align()) - 1);
            let tail = tail.max(consumed.next_multiple_of(u64::from(l.align())).min(max));
            let r = l.realign(consumed, tail);
            prop_assert_eq!(r.restart % n, 0);
            prop_assert!(r.restart >= consumed && r.restart - consumed < n);
            prop_assert_eq!(r.skip_from, consumed);
            prop_assert!(r.tail >= r.restart && r.tail >= tail);
            prop_assert_eq!(r.tail % u64::from(l.align()), 0);
            prop_assert!(u64::from(r.tail_register) < n);
            prop_assert_eq!(u64::from(r.tail_register), r.tail - r.restart);
            if consumed % n != 0 {
                prop_assert!(u64::from(r.tail_register) <= consumed % n, "{:?}", r);
            }
            // The writers' later tail counts stay on the NIC's numbering.
            prop_assert!(l.max_tail(r.restart) >= r.tail);
        }

        #[test]
        fn segments_partition_the_ring(l in layouts()) {
            let mut expected_start = 0;
            for s in 0..l.segments() {
                prop_assert_eq!(l.segment_start(s), expected_start);
                prop_assert_eq!(l.segment_len(s) % l.align(), 0);
                prop_assert!(l.segment_len(s) >= l.align());
                expected_start = l.segment_end(s);
            }
            prop_assert_eq!(expected_start, l.ring_size());
            let (min, max) = (0..l.segments()).fold((u32::MAX, 0), |(a, b), s| {
                (a.min(l.segment_len(s)), b.max(l.segment_len(s)))
            });
            prop_assert!(max - min <= l.align());
            for s in 0..l.segments() {
                // Round-robin: the next segment in ring order is the next
                // writer's, and each writer's own segments cycle.
                prop_assert_eq!(l.writer_of(l.next_segment(s)), l.next_writer(l.writer_of(s)));
                prop_assert_eq!(l.writer_of(l.next_own_segment(s)), l.writer_of(s));
            }
            for i in 0..l.ring_size() {
                let s = l.segment_of(i);
                prop_assert!(l.segment_start(s) <= i && i < l.segment_end(s));
                prop_assert_eq!(l.is_segment_last(i), i + 1 == l.segment_end(s));
                let n = l.next_in_segment(i);
                prop_assert_eq!(l.segment_of(n), s);
            }
        }

        #[test]
        fn tail_never_reaches_head(l in layouts(), steps in prop::collection::vec(1u64..100, 1..50)) {
            // Release descriptors in arbitrary steps; the tail must stay
            // aligned, monotonic, one ring behind `released`, and never lag
            // more than a batch plus an alignment unit behind its maximum.
            let mut tail = l.initial_tail();
            let mut released = 0u64;
            for s in steps {
                released += s;
                if let Some(t) = l.tail_target(tail, released) {
                    prop_assert!(t > tail);
                    tail = t;
                }
                prop_assert_eq!(tail % l.align() as u64, 0);
                prop_assert!(tail < released + l.ring_size() as u64);
                prop_assert!(l.max_tail(released) - tail < l.batch as u64 + l.align() as u64);
            }
        }
    }
}
