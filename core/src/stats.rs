// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Capture counters: the one definition of every counter's name, meaning,
//! unit and Prometheus metric, and the per-frame accounting rules.
//!
//! [`CaptureStats`] is shared verbatim with userspace through an ioctl, so it
//! is `#[repr(C)]`, made only of `u64`, and only ever grows at the end. It is
//! generated, together with the [`COUNTERS`] table that names each field,
//! from one list below: the driver, the software source, `hpcapctl` (text,
//! JSON and Prometheus output) and `hpcapdd` all go through the table, never
//! through field positions.
//!
//! Every frame that reaches the driver lands in exactly one fate: stored,
//! filtered, or dropped at one stage, so
//! `frames_seen == frames_stored + filtered + dropped_ring + dropped_no_space
//! + dropped_lingering + dropped_writer + dropped_no_listener + dropped_stop`
//! (`dropped_stop`: frames left completed in the ring when capture stopped,
//! counted once at teardown). The NIC's own counters (`nic_*`) are read from the
//! hardware and come on top; a NIC that has no such counter reports it as
//! unavailable ([`NicCounters::valid`]), never as 0.
//!
//! Counters are plain integers: each capture thread keeps its own and the
//! device sums them ([`CaptureStats::merge`]) when asked, so the hot path
//! needs no atomics.

/// What a counter counts.
#[cfg(not(hpcap_kernel))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Frames.
    Frames,
    /// Bytes.
    Bytes,
}

/// Where a counter comes from.
#[cfg(not(hpcap_kernel))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Counted by the capture threads (always available).
    Driver,
    /// Read from the NIC; available only if its bit is set in
    /// [`NicCounters::valid`].
    Nic(u32),
}

/// One counter of [`CaptureStats`]: its name and how to export it.
#[cfg(not(hpcap_kernel))]
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    /// Field name: the key in JSON output and in `include/hpcap.h`.
    pub name: &'static str,
    /// One-line meaning (also the Prometheus `# HELP`).
    pub help: &'static str,
    /// What it counts.
    pub unit: Unit,
    /// Prometheus metric family (a monotonic counter: `_total`, base units).
    pub metric: &'static str,
    /// Value of the family's `stage` label, for loss counters.
    pub stage: Option<&'static str>,
    /// Driver-counted or NIC-read.
    pub source: Source,
    /// Reads the field.
    pub get: fn(&CaptureStats) -> u64,
}

/// [`NicCounters::valid`] bit: `nic_received` is read from the NIC.
pub const NIC_RECEIVED: u32 = 1 << 0;
/// [`NicCounters::valid`] bit: `nic_missed` is read from the NIC.
pub const NIC_MISSED: u32 = 1 << 1;

macro_rules! counters {
    ($(
        $name:ident: $unit:ident, $metric:literal, $stage:expr, $source:expr,
        $help:literal;
    )+) => {
        /// Capture counters of one device (or one capture thread), exported
        /// to userspace (`struct hpcap_counters`).
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct CaptureStats {
            $( #[doc = $help] pub $name: u64, )+
        }

        /// Every field of [`CaptureStats`], in layout order.
        #[cfg(not(hpcap_kernel))]
        pub const COUNTERS: &[Counter] = &[$(
            Counter {
                name: stringify!($name),
                help: $help,
                unit: Unit::$unit,
                metric: $metric,
                stage: $stage,
                source: $source,
                get: |s| s.$name,
            },
        )+];

        /// Field names of [`CaptureStats`], in layout order (also in the
        /// kernel, which has no [`Counter`] table: its final report at
        /// unbind names every counter).
        pub const COUNTER_NAMES: [&str; NCOUNTERS] = [$( stringify!($name), )+];

        impl CaptureStats {
            /// All zero.
            pub const ZERO: Self = Self { $( $name: 0, )+ };

            /// Adds `other`'s counters (per-thread counters into a device
            /// total).
            pub fn merge(&mut self, other: &Self) {
                $( self.$name = self.$name.wrapping_add(other.$name); )+
            }

            /// The counters in layout order (for storing them in an array
            /// of atomics).
            pub fn to_array(self) -> [u64; NCOUNTERS] {
                [$( self.$name, )+]
            }

            /// Inverse of [`Self::to_array`].
            pub fn from_array(a: [u64; NCOUNTERS]) -> Self {
                let [$( $name, )+] = a;
                Self { $( $name, )+ }
            }
        }
    };
}

counters! {
    frames_seen: Frames, "hpcap_frames_seen_total", None, Source::Driver,
        "Frames that reached the driver (every completed frame it saw).";
    bytes_seen: Bytes, "hpcap_bytes_seen_total", None, Source::Driver,
        "Wire bytes of the frames that reached the driver.";
    frames_stored: Frames, "hpcap_frames_stored_total", None, Source::Driver,
        "Frames stored in the stream buffer.";
    bytes_stored: Bytes, "hpcap_bytes_stored_total", None, Source::Driver,
        "Captured bytes stored (after snaplen, without record headers).";
    nic_missed: Frames, "hpcap_frames_dropped_total", Some("nic"), Source::Nic(NIC_MISSED),
        "Frames the NIC dropped itself for lack of a free descriptor or FIFO space (never seen by the driver; not part of frames_seen).";
    dropped_ring: Frames, "hpcap_frames_dropped_total", Some("ring"), Source::Driver,
        "Frames dropped at descriptor level: larger than one receive buffer, or flagged with a MAC error by the NIC.";
    dropped_no_space: Frames, "hpcap_frames_dropped_total", Some("no_space"), Source::Driver,
        "Frames dropped for lack of buffer space: a blocking listener has not consumed the bytes the record needed.";
    bytes_no_space: Bytes, "hpcap_bytes_dropped_total", Some("no_space"), Source::Driver,
        "Wire bytes of the frames dropped for lack of buffer space.";
    filtered: Frames, "hpcap_frames_filtered_total", None, Source::Driver,
        "Frames rejected by the BPF filter.";
    bytes_filtered: Bytes, "hpcap_bytes_filtered_total", None, Source::Driver,
        "Wire bytes of the frames rejected by the BPF filter.";
    truncated_by_snaplen: Frames, "hpcap_frames_truncated_total", None, Source::Driver,
        "Stored frames that snaplen truncated.";
    bytes_truncated: Bytes, "hpcap_bytes_truncated_total", None, Source::Driver,
        "Bytes snaplen cut off those frames.";
    dropped_writer: Frames, "hpcap_frames_dropped_total", Some("writer"), Source::Driver,
        "Frames no record could hold (longer than a block, or than the format's length field).";
    nic_received: Frames, "hpcap_nic_frames_received_total", None, Source::Nic(NIC_RECEIVED),
        "Frames the NIC counted as received (its good-packets counter).";
    dropped_no_listener: Frames, "hpcap_frames_dropped_total", Some("no_listener"), Source::Driver,
        "Frames received while no listener was attached (nothing to store them for).";
    dropped_lingering: Frames, "hpcap_frames_dropped_total", Some("lingering"), Source::Driver,
        "Frames dropped for lack of buffer space that only lingering listeners (named listeners whose owner went away, kept for a restart) held.";
    dropped_stop: Frames, "hpcap_frames_dropped_total", Some("stop"), Source::Driver,
        "Frames the NIC had written into the ring that capture never took because it stopped (unbind, rmmod): found by walking the ring once the NIC's queue was off.";
    bytes_expired: Bytes, "hpcap_bytes_expired_total", None, Source::Driver,
        "Stream bytes lingering named listeners had not read when they were freed unclaimed: their linger time ran out or an administrator killed them (released to the producer, never delivered under that name).";
}

/// `# HELP` of the metric families whose counters are told apart by their
/// `stage` label (a family without stages is one counter and takes that
/// counter's help).
#[cfg(not(hpcap_kernel))]
pub const FAMILY_HELP: &[(&str, &str)] = &[
    (
        "hpcap_frames_dropped_total",
        "Frames lost, by the stage that lost them (label stage: nic, ring, no_space, lingering, no_listener, writer, stop).",
    ),
    (
        "hpcap_bytes_dropped_total",
        "Wire bytes of the frames lost, by the stage that lost them (label stage).",
    ),
];

/// The `# HELP` of metric family `metric`: the family's from
/// [`FAMILY_HELP`] if it has stages, else that of its one counter.
#[cfg(not(hpcap_kernel))]
pub fn family_help(metric: &str) -> Option<&'static str> {
    if let Some((_, h)) = FAMILY_HELP.iter().find(|(m, _)| *m == metric) {
        return Some(h);
    }
    let mut members = COUNTERS.iter().filter(|c| c.metric == metric);
    let first = members.next()?;
    members.next().is_none().then_some(first.help)
}

/// Number of counters in [`CaptureStats`].
pub const NCOUNTERS: usize = 18;

/// Size of [`CaptureStats`] in bytes.
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub const CAPTURE_STATS_LEN: usize = NCOUNTERS * 8;
const _: () = assert!(core::mem::size_of::<CaptureStats>() == CAPTURE_STATS_LEN);
#[cfg(not(hpcap_kernel))]
const _: () = assert!(COUNTERS.len() == NCOUNTERS);

/// The NIC's own counters, as its backend reads them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NicCounters {
    /// Frames the NIC received (valid with [`NIC_RECEIVED`]).
    pub received: u64,
    /// Frames the NIC dropped for lack of descriptors or FIFO space (valid
    /// with [`NIC_MISSED`]).
    pub missed: u64,
    /// Which of the above this NIC has (`NIC_*` bits).
    pub valid: u32,
}

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
    /// No room in the buffer: a blocking listener holds the space.
    NoSpace,
    /// No room in the buffer, but only because of lingering listeners
    /// (named listeners whose owner went away): without them the frame
    /// would have been stored.
    Lingering,
    /// No listener is attached: there is nothing to store the frame for.
    NoListener,
    /// No record can hold the frame (larger than a block or than the
    /// format's length field).
    Writer,
    /// Capture stopped (unbind, rmmod) with the frame completed in the
    /// ring but not yet taken: counted once the NIC's queue is off
    /// (`engine::left_in_ring`).
    Stop,
}

impl CaptureStats {
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
            DropStage::Lingering => self.dropped_lingering = self.dropped_lingering.wrapping_add(1),
            DropStage::Writer => self.dropped_writer = self.dropped_writer.wrapping_add(1),
            DropStage::NoListener => {
                self.dropped_no_listener = self.dropped_no_listener.wrapping_add(1)
            }
            DropStage::Stop => self.dropped_stop = self.dropped_stop.wrapping_add(1),
        }
    }

    /// Frames lost after the driver saw them (all stages, not NIC misses).
    pub fn dropped_total(&self) -> u64 {
        self.dropped_ring
            .wrapping_add(self.dropped_no_space)
            .wrapping_add(self.dropped_writer)
            .wrapping_add(self.dropped_no_listener)
            .wrapping_add(self.dropped_lingering)
            .wrapping_add(self.dropped_stop)
    }

    /// Every frame the driver saw has exactly one fate.
    #[cfg(not(hpcap_kernel))]
    pub fn fates_add_up(&self) -> bool {
        self.frames_seen
            == self
                .frames_stored
                .wrapping_add(self.filtered)
                .wrapping_add(self.dropped_total())
    }

    /// Sets the NIC-read counters from `nic` (unavailable ones read 0 here;
    /// `nic.valid` says which are real).
    pub fn set_nic(&mut self, nic: &NicCounters) {
        self.nic_received = nic.received;
        self.nic_missed = nic.missed;
    }

    /// The matching pcapng ISB counters `(ifrecv, ifdrop, osdrop,
    /// filteraccept)`. `ifrecv` and `ifdrop` need the NIC's missed counter
    /// (`nic_valid` has [`NIC_MISSED`]); without it they are `None`, as an
    /// unknown count must not be written as 0.
    #[cfg(not(hpcap_kernel))]
    pub fn isb_counters(&self, nic_valid: u32) -> (Option<u64>, Option<u64>, u64, u64) {
        let missed = (nic_valid & NIC_MISSED != 0).then_some(self.nic_missed);
        (
            missed.map(|m| self.frames_seen.wrapping_add(m)),
            missed,
            self.dropped_total(),
            self.frames_seen.wrapping_sub(self.filtered),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_family_is_named_and_explained() {
        for c in COUNTERS {
            // Prometheus conventions: a counter family ends in `_total` and
            // names its unit (frames or bytes); the loss families tell their
            // counters apart by stage.
            assert!(
                c.metric.starts_with("hpcap_") && c.metric.ends_with("_total"),
                "{}",
                c.metric
            );
            let unit = match c.unit {
                Unit::Frames => "frames",
                Unit::Bytes => "bytes",
            };
            assert!(c.metric.contains(unit), "{} counts {unit}", c.metric);
            let staged = FAMILY_HELP.iter().any(|(m, _)| *m == c.metric);
            assert_eq!(staged, c.stage.is_some(), "{}: stage label", c.name);
            assert!(
                family_help(c.metric).is_some_and(|h| !h.is_empty()),
                "{}",
                c.metric
            );
            // Two counters of one family never share a stage.
            assert_eq!(
                COUNTERS
                    .iter()
                    .filter(|o| o.metric == c.metric && o.stage == c.stage)
                    .count(),
                1,
                "{}",
                c.name
            );
        }
        for (m, _) in FAMILY_HELP {
            assert!(
                COUNTERS.iter().any(|c| c.metric == *m),
                "{m} has no counter"
            );
        }
        assert_eq!(family_help("hpcap_nonexistent_total"), None);
    }

    #[test]
    fn snaplen_and_fates_add_up() {
        assert_eq!(caplen(1514, 0), 1514);
        assert_eq!(caplen(1514, 96), 96);
        assert_eq!(caplen(60, 96), 60);
        let mut s = CaptureStats::ZERO;
        for (i, len) in [60u32, 1514, 9018, 128, 64, 200, 300].iter().enumerate() {
            s.seen(*len);
            match i {
                0 => s.filter_rejected(*len),
                1 => s.stored(*len, caplen(*len, 256)),
                2 => s.dropped(DropStage::NoSpace, *len),
                3 => s.stored(*len, caplen(*len, 256)),
                4 => s.dropped(DropStage::Ring, *len),
                5 => s.dropped(DropStage::Lingering, *len),
                _ => s.dropped(DropStage::Stop, *len),
            }
        }
        assert!(s.fates_add_up());
        assert_eq!(
            (s.dropped_lingering, s.dropped_no_space, s.dropped_stop),
            (1, 1, 1)
        );
        assert_eq!(s.dropped_total(), 4);
        assert_eq!((s.truncated_by_snaplen, s.bytes_truncated), (1, 1514 - 256));
        assert_eq!(s.bytes_stored, 256 + 128);
        let mut t = s;
        t.merge(&s);
        assert_eq!(t.frames_seen, 14);
        assert_eq!(CaptureStats::from_array(s.to_array()), s);
    }

    #[test]
    fn table_names_every_field_in_layout_order() {
        // Give each field its index + 1 through the array view, then check
        // the table reads the same field at the same position.
        let a: [u64; NCOUNTERS] = core::array::from_fn(|i| i as u64 + 1);
        let s = CaptureStats::from_array(a);
        for (i, c) in COUNTERS.iter().enumerate() {
            assert_eq!((c.get)(&s), i as u64 + 1, "{}", c.name);
            assert!(c.metric.starts_with("hpcap_") && c.metric.ends_with("_total"));
            assert!(!c.help.is_empty());
        }
        assert_eq!(COUNTERS[0].name, "frames_seen");
        assert_eq!(COUNTERS[NCOUNTERS - 1].name, "bytes_expired");
        for (c, n) in COUNTERS.iter().zip(COUNTER_NAMES) {
            assert_eq!(c.name, n);
        }
        // Loss counters of one family are told apart by their stage label.
        let drops = [
            "nic_missed",
            "dropped_ring",
            "dropped_no_space",
            "dropped_writer",
            "dropped_no_listener",
            "dropped_lingering",
            "dropped_stop",
        ];
        for name in drops {
            let c = COUNTERS.iter().find(|c| c.name == name).unwrap();
            assert_eq!(c.metric, "hpcap_frames_dropped_total");
            assert!(c.stage.is_some());
        }
    }

    #[test]
    fn unknown_nic_counters_stay_unknown_in_isb() {
        let mut s = CaptureStats::ZERO;
        s.seen(60);
        s.set_nic(&NicCounters {
            received: 5,
            missed: 3,
            valid: NIC_MISSED,
        });
        assert_eq!(s.isb_counters(NIC_MISSED), (Some(4), Some(3), 0, 1));
        assert_eq!(s.isb_counters(0), (None, None, 0, 1));
    }
}
