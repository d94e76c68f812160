// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Per-device snaplen and drop/filter accounting.
//!
//! [`CaptureStats`] is shared verbatim with userspace through an ioctl, so it
//! is `#[repr(C)]`, made only of `u64`, and only ever grows at the end (its
//! size tells the version). Every frame the NIC reports lands in exactly one
//! fate: stored, filtered, or dropped at one stage, so
//! `frames_seen == frames_stored + filtered + dropped_*` (NIC misses are
//! counted by the NIC, not seen by us, and come on top).
//!
//! Counters are plain integers: each capture thread keeps its own and the
//! device sums them ([`CaptureStats::merge`]) when asked, so the hot path
//! needs no atomics.

/// Capture length of a frame of `len` bytes under `snaplen` (0 = unlimited).
pub const fn caplen(len: u32, snaplen: u32) -> u32 {
    if snaplen != 0 && len > snaplen {
        snaplen
    } else {
        len
    }
}

/// Where a frame that was not stored was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropStage {
    /// Descriptor-level drop: a frame larger than one receive buffer, or
    /// one the NIC flagged with a MAC error. (Ring overflow itself is
    /// counted by the NIC, as `nic_missed`.)
    Ring,
    /// No room in the buffer (a blocking listener holds the space), or no
    /// listener attached at all (nothing to store for).
    NoSpace,
    /// The writer failed (bad frame, too large for a block, internal error).
    Writer,
}

/// Capture counters of one device (or one thread), exported to userspace.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames received from the NIC (every one that reached the driver).
    pub frames_seen: u64,
    /// Wire bytes of those frames.
    pub bytes_seen: u64,
    /// Frames stored in the buffer.
    pub frames_stored: u64,
    /// Captured bytes stored (after snaplen, without record headers).
    pub bytes_stored: u64,
    /// Frames the NIC missed for lack of descriptors (its own counter,
    /// never seen by the driver; not part of `frames_seen`).
    pub nic_missed: u64,
    /// Frames dropped at descriptor level: larger than one receive buffer,
    /// or flagged with a MAC error by the NIC.
    pub dropped_ring: u64,
    /// Frames dropped for lack of buffer space (blocking listeners full).
    pub dropped_no_space: u64,
    /// Wire bytes of the frames dropped for lack of space.
    pub bytes_no_space: u64,
    /// Frames rejected by the BPF filter.
    pub filtered: u64,
    /// Wire bytes of the filtered frames.
    pub bytes_filtered: u64,
    /// Stored frames that snaplen truncated.
    pub truncated_by_snaplen: u64,
    /// Bytes snaplen cut off those frames.
    pub bytes_truncated: u64,
    /// Frames the writer could not store (bad frame, internal error).
    pub dropped_writer: u64,
}

/// Size of [`CaptureStats`]: 13 u64 counters.
pub const CAPTURE_STATS_LEN: usize = 13 * 8;
const _: () = assert!(core::mem::size_of::<CaptureStats>() == CAPTURE_STATS_LEN);

impl CaptureStats {
    /// All zero.
    pub const ZERO: Self = Self {
        frames_seen: 0,
        bytes_seen: 0,
        frames_stored: 0,
        bytes_stored: 0,
        nic_missed: 0,
        dropped_ring: 0,
        dropped_no_space: 0,
        bytes_no_space: 0,
        filtered: 0,
        bytes_filtered: 0,
        truncated_by_snaplen: 0,
        bytes_truncated: 0,
        dropped_writer: 0,
    };

    /// A frame of `len` wire bytes arrived.
    pub fn seen(&mut self, len: u32) {
        self.frames_seen = self.frames_seen.wrapping_add(1);
        self.bytes_seen = self.bytes_seen.wrapping_add(u64::from(len));
    }

    /// The filter rejected a frame of `len` wire bytes.
    pub fn filter_rejected(&mut self, len: u32) {
        self.filtered = self.filtered.wrapping_add(1);
        self.bytes_filtered = self.bytes_filtered.wrapping_add(u64::from(len));
    }

    /// A frame of `len` wire bytes was stored with `caplen` bytes.
    pub fn stored(&mut self, len: u32, caplen: u32) {
        self.frames_stored = self.frames_stored.wrapping_add(1);
        self.bytes_stored = self.bytes_stored.wrapping_add(u64::from(caplen));
        if caplen < len {
            self.truncated_by_snaplen = self.truncated_by_snaplen.wrapping_add(1);
            self.bytes_truncated = self.bytes_truncated.wrapping_add(u64::from(len - caplen));
        }
    }

    /// A frame of `len` wire bytes was lost at `stage`.
    pub fn dropped(&mut self, stage: DropStage, len: u32) {
        match stage {
            DropStage::Ring => self.dropped_ring = self.dropped_ring.wrapping_add(1),
            DropStage::NoSpace => {
                self.dropped_no_space = self.dropped_no_space.wrapping_add(1);
                self.bytes_no_space = self.bytes_no_space.wrapping_add(u64::from(len));
            }
            DropStage::Writer => self.dropped_writer = self.dropped_writer.wrapping_add(1),
        }
    }

    /// Frames lost after the driver saw them (all stages, not NIC misses).
    pub fn dropped_total(&self) -> u64 {
        self.dropped_ring
            .wrapping_add(self.dropped_no_space)
            .wrapping_add(self.dropped_writer)
    }

    /// Adds `other`'s counters (per-thread counters into a device total).
    pub fn merge(&mut self, other: &Self) {
        let a = self.as_array();
        let b = other.as_array();
        let mut out = [0u64; 13];
        for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b.iter())) {
            *o = x.wrapping_add(*y);
        }
        *self = Self::from_array(out);
    }

    /// The counters in field order (the ioctl layout).
    pub fn as_array(&self) -> [u64; 13] {
        [
            self.frames_seen,
            self.bytes_seen,
            self.frames_stored,
            self.bytes_stored,
            self.nic_missed,
            self.dropped_ring,
            self.dropped_no_space,
            self.bytes_no_space,
            self.filtered,
            self.bytes_filtered,
            self.truncated_by_snaplen,
            self.bytes_truncated,
            self.dropped_writer,
        ]
    }

    /// Inverse of [`CaptureStats::as_array`].
    pub fn from_array(a: [u64; 13]) -> Self {
        let [frames_seen, bytes_seen, frames_stored, bytes_stored, nic_missed, dropped_ring, dropped_no_space, bytes_no_space, filtered, bytes_filtered, truncated_by_snaplen, bytes_truncated, dropped_writer] =
            a;
        Self {
            frames_seen,
            bytes_seen,
            frames_stored,
            bytes_stored,
            nic_missed,
            dropped_ring,
            dropped_no_space,
            bytes_no_space,
            filtered,
            bytes_filtered,
            truncated_by_snaplen,
            bytes_truncated,
            dropped_writer,
        }
    }

    /// The matching pcapng ISB counters: `ifrecv` = seen + NIC misses,
    /// `ifdrop` = NIC misses, `osdrop` = our drops, `filteraccept` =
    /// seen − filtered.
    pub fn isb_counters(&self) -> (u64, u64, u64, u64) {
        (
            self.frames_seen.wrapping_add(self.nic_missed),
            self.nic_missed,
            self.dropped_total(),
            self.frames_seen.wrapping_sub(self.filtered),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snaplen_and_fates_add_up() {
        assert_eq!(caplen(1514, 0), 1514);
        assert_eq!(caplen(1514, 96), 96);
        assert_eq!(caplen(60, 96), 60);
        let mut s = CaptureStats::ZERO;
        for (i, len) in [60u32, 1514, 9018, 128, 64].iter().enumerate() {
            s.seen(*len);
            match i {
                0 => s.filter_rejected(*len),
                1 => s.stored(*len, caplen(*len, 256)),
                2 => s.dropped(DropStage::NoSpace, *len),
                3 => s.stored(*len, caplen(*len, 256)),
                _ => s.dropped(DropStage::Ring, *len),
            }
        }
        assert_eq!(
            s.frames_seen,
            s.frames_stored + s.filtered + s.dropped_total()
        );
        assert_eq!((s.truncated_by_snaplen, s.bytes_truncated), (1, 1514 - 256));
        assert_eq!(s.bytes_stored, 256 + 128);
        let mut t = s;
        t.merge(&s);
        assert_eq!(t.frames_seen, 10);
        assert_eq!(CaptureStats::from_array(s.as_array()), s);
    }
}
