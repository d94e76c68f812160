// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Hot-path benchmark of the capture engine the driver runs.
//!
//! Every writer thread calls `hpcap_core::engine::Writer::poll`, the very
//! function the driver's capture threads call (`driver/capture.rs`), on an
//! instantaneous software NIC: when the token holder writes the tail
//! register, the descriptors handed over complete at once, written back in
//! the 82576 advanced format (`desc::IgbAdv::write_back`), over prefilled
//! 2048-byte packet buffers. So the per-packet work measured is the
//! driver's: descriptor check, timestamp (TSC here; the driver reads
//! `ktime_get_real_fast_ns`), fate, block-aware reservation, record header,
//! the one copy, re-arming, ordered publication and in-order tail return.
//! The descriptors are written back in each backend's real format
//! (`desc::IgbAdv`, `desc::I40e16`, `desc::Iavf32`), so the descriptor
//! check measured is the one that backend runs. The ring is split into
//! interleaved segments as the driver splits it (`RingLayout::interleaved`).
//!
//! Two reader setups: a blocking listener thread that consumes whole blocks
//! (the producer can be held back, as by hpcapdd), and no reader thread at
//! all (a lossy listener that never reads: the writers have the CPUs to
//! themselves, which is how writer scaling is measured on a 2-core
//! machine). The memcpy baseline copies the same frames (same sizes, same
//! destination buffer) back to back with no descriptors, format or atomics,
//! in the same run.
//!
//! Usage:
//!   cargo bench -p hpcap-core --bench hotpath [-- --jsonl] [-- --quick]
//!   hotpath callgrind <packets>   # 64 B, one writer, no reader, no timing
//!   hotpath callgrind2 <packets>  # the same, two writers polled in turn by
//!                                 # one thread (the several-writer path)
//!   hotpath one <writers> <size> <packets> [<batch> [<segment>]]
//!       [--counter-clock] [--jsonl]   # one instrumented measurement
//!   (--counter-clock: a counter instead of the TSC, to show what the
//!   per-descriptor clock read costs)
//!
//! `--jsonl` prints one JSON object per measurement (name, value, unit,
//! baseline, ratio) for `tests/bench/run` to store in
//! `out/bench/results.jsonl`.

use hpcap_core::bpf::{SockFilter, Verified};
use hpcap_core::config::Stream;
use hpcap_core::desc::{I40e16, Iavf32, IgbAdv, RxDone, RxFormat};
use hpcap_core::engine::{
    Ctx, Mark, OnFull, Port, Rec, Settings, Shared as EngineShared, Writer, MAX_BATCH,
};
use hpcap_core::format::StreamFormat;
use hpcap_core::listener::{ListenerId, ListenerTable, Mode, Readiness};
use hpcap_core::pcapng::BLOCK_HEADER_TYPE;
use hpcap_core::publish::PublishState;
use hpcap_core::segment::RingLayout;
use hpcap_core::softnic::SoftBuffer;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RING: u32 = 4096;
/// Polls a writer spins while the other holds the token before it yields
/// (the driver's `TOKEN_SPINS`).
const TOKEN_SPINS: u32 = 4096;
const SLOT: usize = 2048;
const BLOCK: u64 = 4 << 20;
const BUFFER: u64 = 64 << 20;

/// An instantaneous NIC: descriptors complete as soon as the tail hands
/// them over, written back in format `Fmt`, with frame lengths from the
/// size pattern. With `PROBE` it also times the phases of every writer's
/// polls ([`Port::mark`]); the measured runs leave it off (the hook then
/// compiles away, as in the driver).
///
/// Descriptor words and buffers are addressed as the driver's ring
/// addresses them (`driver/rx_ring.rs`: base + index x size, the index
/// below the ring size): fixed-size arrays indexed modulo the ring, so
/// the descriptor check measured is the format's decode, not slice bounds
/// checks of the simulation.
struct InstantNic<Fmt, const PROBE: bool = false> {
    /// `RING` descriptors of `Fmt::WORDS` words (at most 4 each).
    words: Box<[AtomicU64; RING as usize * 4]>,
    data: Box<[u8; RING as usize * SLOT]>,
    /// The write-back of a frame of each size of the size pattern,
    /// computed once.
    wbs: Vec<[u64; 2]>,
    /// Tail count the NIC has seen; written only by the token holder.
    tail: AtomicU64,
    /// Per-writer phase timings (`PROBE` only), a cache line pair each.
    probes: [Line<Probe>; 2],
    /// The writers' batch storage, in descriptors.
    batch: usize,
    _fmt: PhantomData<fn() -> Fmt>,
}

/// What one writer's polls did, phase by phase ([`Mark`]), in TSC cycles.
/// Written by its writer only (Relaxed load + store, no RMW).
#[derive(Default)]
struct Probe {
    /// TSC at the writer's previous mark.
    last: AtomicU64,
    /// Descriptors of the current batch.
    n: AtomicU64,
    /// The current batch's phases so far ([`Probe::OPEN`]..), added to
    /// `v` when it completes unless it was interrupted.
    cur: [AtomicU64; 5],
    /// Every batch's phases (cycles) and descriptors, for medians: robust
    /// against the interruptions of a loaded machine, unlike sums.
    log: std::sync::Mutex<Vec<[u32; 6]>>,
    /// [`Probe::OPEN`].. [`Probe::PUBLISH`]: cycles per phase; then
    /// batches, descriptors, batches shorter than the storage, token
    /// hand-offs, refusals because too many batches await publication.
    v: [AtomicU64; Probe::N],
}

impl Probe {
    /// Token found .. batch open (tail write, settings, limits, begin).
    const OPEN: usize = 0;
    /// Batch open .. gather done.
    const GATHER: usize = 1;
    /// Gather done .. batch finished, tail written, token passed.
    const CLOSE: usize = 2;
    /// Token passed .. records copied, descriptors re-armed.
    const COPY: usize = 3;
    /// Copied .. batch completed (ordered publication).
    const PUBLISH: usize = 4;
    const BATCHES: usize = 5;
    const DESCS: usize = 6;
    const SHORT: usize = 7;
    const HANDOFFS: usize = 8;
    const FULL: usize = 9;
    /// Batches left out of the phase timings: longer than
    /// [`Probe::INTERRUPTED`] cycles (the thread was descheduled or
    /// interrupted; on a loaded machine that is most of a 2-writer run's
    /// variance).
    const DROPPED: usize = 10;
    const N: usize = 11;
    /// A batch of 64 takes about 5,000 cycles; one that takes 200,000 lost
    /// the CPU on the way.
    const INTERRUPTED: u64 = 200_000;

    #[inline(always)]
    fn phase(&self, k: usize, dt: u64) {
        self.cur[k].store(dt, Ordering::Relaxed);
    }

    /// The batch completed: count its phases, or drop them if it was
    /// interrupted.
    fn batch_done(&self, n: usize) {
        let cur = self.cur.each_ref().map(|a| a.swap(0, Ordering::Relaxed));
        if let Ok(mut log) = self.log.lock() {
            let c = |k: usize| cur[k].min(u64::from(u32::MAX)) as u32;
            log.push([c(0), c(1), c(2), c(3), c(4), n as u32]);
        }
        if cur.iter().sum::<u64>() > Self::INTERRUPTED {
            self.add(Self::DROPPED, 1);
            return;
        }
        for (k, dt) in cur.into_iter().enumerate() {
            self.add(k, dt);
        }
        self.add(Self::BATCHES, 1);
    }

    #[inline(always)]
    fn add(&self, k: usize, x: u64) {
        let a = &self.v[k];
        a.store(a.load(Ordering::Relaxed) + x, Ordering::Relaxed);
    }

    fn get(&self, k: usize) -> u64 {
        self.v[k].load(Ordering::Relaxed)
    }
}

impl<Fmt: RxFormat, const PROBE: bool> InstantNic<Fmt, PROBE> {
    fn new(sizes: &[u32], batch: usize) -> Self {
        Self {
            words: (0..RING as usize * 4)
                .map(|_| AtomicU64::new(0))
                .collect::<Box<[_]>>()
                .try_into()
                .expect("ring words"),
            data: (0..RING as usize * SLOT)
                .map(|i| (i * 7) as u8)
                .collect::<Box<[_]>>()
                .try_into()
                .expect("ring buffers"),
            wbs: sizes
                .iter()
                .map(|&len| {
                    let wb = Fmt::write_back(&RxDone {
                        len,
                        eop: true,
                        error: false,
                        skip: false,
                        vlan: None,
                    });
                    [wb[0], wb[1]]
                })
                .collect(),
            tail: AtomicU64::new(0),
            probes: Default::default(),
            batch,
            _fmt: PhantomData,
        }
    }

    /// Descriptor `i`'s first word (`i` modulo the ring).
    #[inline(always)]
    fn desc(&self, i: u32) -> usize {
        (i % RING) as usize * Fmt::WORDS
    }

    #[inline(always)]
    fn frame_at(&self, slot: u32, len: u32) -> &[u8] {
        let at = (slot % RING) as usize * SLOT;
        // As the driver's ring: capped at the buffer size.
        &self.data[at..at + (len as usize).min(SLOT)]
    }
}

#[inline(always)]
fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions on x86_64.
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

impl<Fmt: RxFormat, const PROBE: bool> Port for InstantNic<Fmt, PROBE> {
    #[inline(always)]
    fn poll(&self, i: u32) -> Option<RxDone> {
        let base = self.desc(i);
        // Acquire: pairs with the Release "DMA complete" in `write_tail`.
        let w1 = self.words[base + 1].load(Ordering::Acquire);
        let w0 = self.words[base].load(Ordering::Relaxed);
        Fmt::decode(&[w0, w1, 0, 0])
    }

    #[inline(always)]
    unsafe fn frame(&self, i: u32, len: u32) -> &[u8] {
        self.frame_at(i, len)
    }

    #[inline(always)]
    fn arm(&self, i: u32) {
        let base = self.desc(i);
        let w = Fmt::arm(0);
        self.words[base].store(w[0], Ordering::Relaxed);
        self.words[base + 1].store(w[1], Ordering::Relaxed);
    }

    // Never inlined: this is the NIC's work (a driver's tail write is one
    // MMIO store), and `tests/bench/callgrind-64b` subtracts it by name.
    #[inline(never)]
    fn write_tail(&self, reg: u32) {
        let ring = u64::from(RING);
        let old = self.tail.load(Ordering::Relaxed);
        let delta = (u64::from(reg) + ring - old % ring) % ring;
        // The NIC's work, done here by the token holder's tail write (a
        // real NIC does it by DMA): kept cheap, as it runs while the token
        // is held. Write-backs are computed once (`wbs`); indices are
        // incremental (no division per descriptor).
        let mut slot = (old % ring) as u32;
        let mut size = (old % self.wbs.len() as u64) as usize;
        let complete = |slot: u32, wb: &[u64; 2]| {
            let at = self.desc(slot);
            self.words[at].store(wb[0], Ordering::Relaxed);
            self.words[at + 1].store(wb[1], Ordering::Release);
        };
        match self.wbs.as_slice() {
            [wb] => {
                for _ in 0..delta {
                    complete(slot, wb);
                    slot = (slot + 1) % RING;
                }
            }
            wbs => {
                for _ in 0..delta {
                    if let Some(wb) = wbs.get(size) {
                        complete(slot, wb);
                    }
                    slot = (slot + 1) % RING;
                    size = if size + 1 == wbs.len() { 0 } else { size + 1 };
                }
            }
        }
        self.tail.store(old + delta, Ordering::Relaxed);
    }

    #[inline(always)]
    fn now_ns(&self) -> u64 {
        // `one ... --counter-clock`: what the gather costs without the
        // clock read (instrumented runs only; the measured ones read the
        // TSC per descriptor, as the driver reads its clock).
        if PROBE && COUNTER_CLOCK.load(Ordering::Relaxed) {
            return self.tail.load(Ordering::Relaxed);
        }
        tsc()
    }

    fn vlan_stripped(&self) -> bool {
        false
    }

    #[inline(always)]
    fn mark(&self, writer: u32, at: Mark, n: usize) {
        if !PROBE {
            return;
        }
        let Some(p) = self.probes.get(writer as usize) else {
            return;
        };
        let now = tsc();
        let dt = now.wrapping_sub(p.last.load(Ordering::Relaxed));
        p.last.store(now, Ordering::Relaxed);
        match at {
            Mark::Token => {}
            Mark::Refused => p.add(Probe::FULL, n as u64),
            Mark::Opened => p.phase(Probe::OPEN, dt),
            Mark::Gathered => {
                p.phase(Probe::GATHER, dt);
                p.n.store(n as u64, Ordering::Relaxed);
                p.add(Probe::DESCS, n as u64);
                if n < self.batch {
                    p.add(Probe::SHORT, 1);
                }
            }
            Mark::Closed => {
                p.phase(Probe::CLOSE, dt);
                p.add(Probe::HANDOFFS, n as u64);
            }
            Mark::Copied => p.phase(Probe::COPY, dt),
            Mark::Published => {
                p.phase(Probe::PUBLISH, dt);
                p.batch_done(p.n.load(Ordering::Relaxed) as usize);
            }
        }
    }
}

struct Device<Fmt, const PROBE: bool = false> {
    publ: PublishState,
    listeners: ListenerTable,
    stream: Stream,
    layout: RingLayout,
    nic: InstantNic<Fmt, PROBE>,
    buf: SoftBuffer,
    engine: EngineShared,
    /// Frames handled, added by each writer per batch.
    processed: Line<AtomicU64>,
    drops: AtomicU64,
    /// Read by every writer at every poll (spinning ones too), written
    /// once: on a cache line of its own, so the batches' `processed`
    /// updates do not pull it away from a spinning writer.
    stop: Line<AtomicBool>,
    target: u64,
    /// The writers' own counters, added once when each stops.
    counts: [AtomicU64; Counts::N],
}

/// A value on a cache line of its own (128 bytes: adjacent-line prefetch
/// pairs lines on x86).
#[derive(Default)]
#[repr(align(128))]
struct Line<T>(T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// What the writers did besides capturing, for `one` mode: explains
/// where two writers lose time (token waits, hand-offs).
#[derive(Default, Clone, Copy, Debug)]
struct Counts {
    /// Polls that found the token with the other writer (a spin).
    spins: u64,
    /// Polls that handled descriptors (batches).
    batches: u64,
    /// Polls that held the token and found nothing to do.
    idle_holding: u64,
    /// TSC cycles spent in polls that found the token elsewhere.
    spin_cycles: u64,
    /// TSC cycles spent in polls that handled descriptors.
    work_cycles: u64,
    /// TSC cycles from the writer's start to its end.
    total_cycles: u64,
}

impl Counts {
    const N: usize = 6;

    fn to_array(self) -> [u64; Self::N] {
        [
            self.spins,
            self.batches,
            self.idle_holding,
            self.spin_cycles,
            self.work_cycles,
            self.total_cycles,
        ]
    }

    fn from_array(a: [u64; Self::N]) -> Self {
        let [spins, batches, idle_holding, spin_cycles, work_cycles, total_cycles] = a;
        Self {
            spins,
            batches,
            idle_holding,
            spin_cycles,
            work_cycles,
            total_cycles,
        }
    }
}

/// One writer thread: the driver's capture loop without the sleeping.
/// With `COUNT`, it also counts its spins and batches and times its polls
/// (`one` mode; the measured runs leave it off).
/// With several ids, the thread polls the writers of those ids in turn
/// (`callgrind2`: the several-writer code path, deterministic in one
/// thread).
fn writer<Fmt: RxFormat, const COUNT: bool>(d: &Device<Fmt, COUNT>, ids: &[u32]) {
    let mut ws: Vec<_> = ids
        .iter()
        .map(|&me| Writer::new(me, &d.layout, vec![Rec::EMPTY; d.nic.batch]))
        .collect();
    let mut k = 0;
    let cx = Ctx {
        port: &d.nic,
        memory: &d.buf,
        publish: &d.publ,
        listeners: &d.listeners,
        shared: &d.engine,
        ring: &d.layout,
        flush_ns: u64::MAX,
        on_full: OnFull::Drop,
    };
    let mut idle = 0u32;
    let mut c = Counts::default();
    let t_start = tsc();
    while !d.stop.load(Ordering::Relaxed) {
        let t0 = if COUNT { tsc() } else { 0 };
        let Some(w) = ws.get_mut(k) else {
            return;
        };
        k = if k + 1 == ids.len() { 0 } else { k + 1 };
        let p = w.poll(&cx, || Settings {
            stream: d.stream,
            snaplen: 0,
            filter: None::<&Verified<Vec<SockFilter>>>,
        });
        if COUNT {
            let dt = tsc().wrapping_sub(t0);
            if p.token_elsewhere {
                c.spins += 1;
                c.spin_cycles += dt;
            } else if p.handled == 0 {
                c.idle_holding += 1;
            } else {
                c.batches += 1;
                c.work_cycles += dt;
            }
        }
        if p.handled == 0 {
            // As the driver's capture threads: while another writer holds
            // the token, spin for a while (it comes back within a batch
            // unless its thread is descheduled), as long as the driver
            // (`TOKEN_SPINS` in driver/capture.rs); otherwise spin briefly;
            // then let the CPU go (the driver sleeps instead).
            idle += 1;
            if (p.token_elsewhere && idle < TOKEN_SPINS) || idle < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
            continue;
        }
        idle = 0;
        let drops = p.stats.dropped_total();
        if drops != 0 {
            d.drops.fetch_add(drops, Ordering::Relaxed);
        }
        let seen = p.stats.frames_seen;
        if d.processed.fetch_add(seen, Ordering::Relaxed) + seen >= d.target {
            d.stop.store(true, Ordering::Relaxed);
        }
    }
    c.total_cycles = tsc().wrapping_sub(t_start);
    for (a, v) in d.counts.iter().zip(c.to_array()) {
        a.fetch_add(v, Ordering::Relaxed);
    }
}

/// Blocking listener consuming whole blocks; checks each starts with the
/// block header.
fn reader<Fmt, const PROBE: bool>(
    d: &Device<Fmt, PROBE>,
    id: ListenerId,
    stop: &AtomicBool,
) -> u64 {
    let geo = d.stream.geo;
    let mut blocks = 0;
    loop {
        match d.listeners.ready(id, BLOCK, &d.publ, &geo) {
            Ok(Readiness::Ready { available }) => {
                let (c, _) = d.listeners.cursor(id).unwrap_or((0, Mode::Blocking));
                for k in 0..available / BLOCK {
                    let at = geo.position(c + k * BLOCK) as usize;
                    // SAFETY: published and held by our blocking cursor.
                    let head = unsafe { d.buf.read(at, 4) };
                    let t = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
                    assert_eq!(t, BLOCK_HEADER_TYPE, "block without header");
                    blocks += 1;
                }
                let _ = d.listeners.ack(id, available / BLOCK * BLOCK, &d.publ);
            }
            _ => {
                if stop.load(Ordering::Relaxed) {
                    return blocks;
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
}

struct Result {
    mpps: f64,
    drops: u64,
    counts: Counts,
    /// Per writer: [`Probe`]'s values (`PROBE` runs only).
    probes: [[u64; Probe::N]; 2],
    /// Median cycles per packet of each phase over both writers' batches
    /// (`PROBE` runs only).
    medians: [f64; 5],
}

/// How the ring is shared: batch storage per writer and segment length
/// (0: the driver's layout, `RingLayout::interleaved`).
#[derive(Clone, Copy)]
struct Shape {
    batch: usize,
    segment: u32,
    /// All writers polled in turn by one thread (`callgrind2`).
    one_thread: bool,
}

const DRIVER: Shape = Shape {
    batch: MAX_BATCH,
    segment: 0,
    one_thread: false,
};

/// One capture run; with `PROBE` the writers count their spins and time
/// their phases (`one` mode; the measured runs leave it off).
fn run_capture<Fmt: RxFormat + 'static, const PROBE: bool>(
    sizes: &[u32],
    writers: u32,
    packets: u64,
    with_reader: bool,
    shape: Shape,
) -> Result {
    let layout = match RING.checked_div(shape.segment) {
        None => RingLayout::interleaved(RING, writers, 32, 8),
        Some(segments) => RingLayout::with_segments(RING, writers, segments, 32, 8),
    }
    .expect("layout");
    let stream = Stream::new(StreamFormat::Pcapng, BUFFER, BLOCK).expect("stream");
    let d = Arc::new(Device::<Fmt, PROBE> {
        publ: PublishState::new(),
        listeners: ListenerTable::new(),
        stream,
        layout,
        nic: InstantNic::<Fmt, PROBE>::new(sizes, shape.batch),
        buf: SoftBuffer::new(BUFFER as usize),
        engine: EngineShared::new(),
        processed: Line(AtomicU64::new(0)),
        drops: AtomicU64::new(0),
        stop: Line(AtomicBool::new(false)),
        target: packets,
        counts: Default::default(),
    });
    let t0 = d.layout.initial_tail();
    d.publ.set_tail(t0);
    d.nic.write_tail(d.layout.tail_register(t0));
    let stop = Arc::new(AtomicBool::new(false));
    // Without a reader a lossy listener makes the engine copy (with no
    // listener at all it counts frames and stores nothing).
    let mode = if with_reader {
        Mode::Blocking
    } else {
        Mode::Lossy
    };
    let id = d
        .listeners
        .attach(mode, &d.publ, &stream.geo)
        .expect("attach")
        .id;
    let rd = with_reader.then(|| {
        let (d, stop) = (d.clone(), stop.clone());
        std::thread::spawn(move || reader(&d, id, &stop))
    });
    let start = Instant::now();
    let threads: Vec<Vec<u32>> = if shape.one_thread {
        vec![(0..writers).collect()]
    } else {
        (0..writers).map(|w| vec![w]).collect()
    };
    let hs: Vec<_> = threads
        .into_iter()
        .map(|ids| {
            let d = d.clone();
            std::thread::spawn(move || writer::<Fmt, PROBE>(&d, &ids))
        })
        .collect();
    for h in hs {
        h.join().expect("writer");
    }
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = rd {
        h.join().expect("reader");
    }
    let n = d.processed.load(Ordering::Relaxed);
    Result {
        mpps: n as f64 / secs / 1e6,
        drops: d.drops.load(Ordering::Relaxed),
        counts: Counts::from_array(d.counts.each_ref().map(|a| a.load(Ordering::Relaxed))),
        probes: d
            .nic
            .probes
            .each_ref()
            .map(|p| std::array::from_fn(|k| p.get(k))),
        medians: medians(&d.nic.probes),
    }
}

/// The same frames copied back to back, no format, no protocol.
fn run_memcpy(sizes: &[u32], packets: u64) -> Result {
    let nic = InstantNic::<IgbAdv>::new(sizes, MAX_BATCH);
    let mut dst = vec![0u8; BUFFER as usize];
    let mut pos = 0usize;
    let start = Instant::now();
    for k in 0..packets {
        let len = sizes[(k % sizes.len() as u64) as usize];
        if pos + len as usize > dst.len() {
            pos = 0;
        }
        let src = nic.frame_at((k % u64::from(RING)) as u32, len);
        dst[pos..pos + len as usize].copy_from_slice(src);
        pos += len as usize;
    }
    std::hint::black_box(&dst);
    let secs = start.elapsed().as_secs_f64();
    Result {
        mpps: packets as f64 / secs / 1e6,
        drops: 0,
        counts: Counts::default(),
        probes: Default::default(),
        medians: [0.0; 5],
    }
}

/// Median cycles per packet of each phase over the logged batches.
fn medians(probes: &[Line<Probe>; 2]) -> [f64; 5] {
    let mut all = Vec::new();
    for p in probes {
        if let Ok(log) = p.log.lock() {
            all.extend(log.iter().filter(|b| b[5] > 0).copied());
        }
    }
    std::array::from_fn(|k| {
        let mut v: Vec<f64> = all
            .iter()
            .map(|b| f64::from(b[k]) / f64::from(b[5]))
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    })
}

/// One measurement, printed as a table row or a JSON line.
struct Row {
    name: String,
    value: f64,
    unit: &'static str,
    /// The value measured alongside to compare with, and the ratio.
    baseline: Option<(String, f64)>,
}

fn row(name: String, value: f64, unit: &'static str, baseline: Option<(String, f64)>) -> Row {
    Row {
        name,
        value,
        unit,
        baseline,
    }
}

/// Prints what the instrumented writers of one run did: batches, token
/// hand-offs, spins and the cycles of each phase, per packet.
fn report_one(w: u32, size: u64, shape: Shape, r: &Result, jsonl: bool) {
    let c = r.counts;
    let sum = |k: usize| r.probes.iter().map(|p| p[k]).sum::<u64>();
    let descs = sum(Probe::DESCS).max(1) as f64;
    // Every batch; `timed_batches` those whose phases were timed.
    let timed_batches = sum(Probe::BATCHES).max(1) as f64;
    let batches = timed_batches + sum(Probe::DROPPED) as f64;
    // Phases of the batches that were not interrupted, per packet.
    let timed = descs * timed_batches / batches;
    let per_pkt = |x: u64| x as f64 / timed;
    let seg = if shape.segment == 0 {
        "driver layout".to_string()
    } else {
        format!("segments of {}", shape.segment)
    };
    let tag = format!("{w} writer(s), {size} B, batch {}, {seg}", shape.batch);
    let held = sum(Probe::OPEN) + sum(Probe::GATHER) + sum(Probe::CLOSE);
    let after = sum(Probe::COPY) + sum(Probe::PUBLISH);
    let outside = c.total_cycles.saturating_sub(c.work_cycles + c.spin_cycles);
    let rows: Vec<(&str, f64, &str)> = vec![
        ("rate", r.mpps, "Mpps"),
        ("descriptors per batch", descs / batches, "desc"),
        (
            "short batches",
            100.0 * sum(Probe::SHORT) as f64 / batches,
            "%",
        ),
        (
            "token hand-offs per 1000 packets",
            1000.0 * sum(Probe::HANDOFFS) as f64 / descs,
            "/1000",
        ),
        (
            "polls spinning for the token per packet",
            c.spins as f64 / descs,
            "/pkt",
        ),
        (
            "refusals: completions full, per 1000 packets",
            1000.0 * sum(Probe::FULL) as f64 / descs,
            "/1000",
        ),
        (
            "batches interrupted (left out of the cycles below)",
            100.0 * sum(Probe::DROPPED) as f64 / batches,
            "%",
        ),
        (
            "cycles/pkt token-held: open (tail, limits, begin)",
            per_pkt(sum(Probe::OPEN)),
            "cyc",
        ),
        (
            "cycles/pkt token-held: gather",
            per_pkt(sum(Probe::GATHER)),
            "cyc",
        ),
        (
            "cycles/pkt token-held: close (finish, tail, pass)",
            per_pkt(sum(Probe::CLOSE)),
            "cyc",
        ),
        (
            "cycles/pkt after: copy + re-arm",
            per_pkt(sum(Probe::COPY)),
            "cyc",
        ),
        (
            "cycles/pkt after: publish (complete)",
            per_pkt(sum(Probe::PUBLISH)),
            "cyc",
        ),
        ("cycles/pkt token-held, total", per_pkt(held), "cyc"),
        ("cycles/pkt after the token, total", per_pkt(after), "cyc"),
        (
            "median cycles/pkt of a batch: open",
            r.medians[Probe::OPEN],
            "cyc",
        ),
        (
            "median cycles/pkt of a batch: gather",
            r.medians[Probe::GATHER],
            "cyc",
        ),
        (
            "median cycles/pkt of a batch: close",
            r.medians[Probe::CLOSE],
            "cyc",
        ),
        (
            "median cycles/pkt of a batch: copy + re-arm",
            r.medians[Probe::COPY],
            "cyc",
        ),
        (
            "median cycles/pkt of a batch: publish",
            r.medians[Probe::PUBLISH],
            "cyc",
        ),
        (
            "cycles/pkt spinning for the token (all writers)",
            c.spin_cycles as f64 / descs,
            "cyc",
        ),
        (
            "cycles/pkt outside polls (yields, bench loop)",
            outside as f64 / descs,
            "cyc",
        ),
    ];
    if jsonl {
        for (name, v, unit) in rows {
            println!(
                "{{\"bench\":\"hotpath\",\"name\":\"probe {tag}: {name}\",\"value\":{v:.3},\"unit\":\"{unit}\",\"baseline\":null,\"ratio\":null}}"
            );
        }
        return;
    }
    println!("{tag}, no reader (instrumented):");
    for (name, v, unit) in rows {
        println!("  {name:<52} {v:10.2} {unit}");
    }
}

/// `one ... --counter-clock`: instrumented runs read a counter instead of
/// the TSC, to show what the clock read costs.
static COUNTER_CLOCK: AtomicBool = AtomicBool::new(false);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("callgrind") {
        let n = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
        let r = run_capture::<IgbAdv, false>(&[64], 1, n, false, DRIVER);
        std::hint::black_box(r.mpps);
        return;
    }
    if args.first().map(String::as_str) == Some("callgrind2") {
        // The code path of two writers (the copy after the token), both
        // polled in turn by one thread so that callgrind counts it
        // deterministically: its split between token-held and parallel
        // phases bounds the scaling of two writers.
        let n = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
        let shape = Shape {
            one_thread: true,
            ..DRIVER
        };
        let r = run_capture::<IgbAdv, false>(&[64], 2, n, false, shape);
        std::hint::black_box(r.mpps);
        return;
    }
    if args.first().map(String::as_str) == Some("one") {
        // One instrumented measurement, for profilers and for the
        // evidence in docs/architecture.md ("Two writers at 64 B"):
        // one <writers> <size> <packets> [<batch> [<segment>]] [--jsonl]
        COUNTER_CLOCK.store(
            args.iter().any(|a| a == "--counter-clock"),
            Ordering::Relaxed,
        );
        let arg = |k: usize, d: u64| args.get(k).and_then(|s| s.parse().ok()).unwrap_or(d);
        let (w, size, n) = (arg(1, 2), arg(2, 64), arg(3, 20_000_000));
        let shape = Shape {
            batch: arg(4, MAX_BATCH as u64) as usize,
            segment: arg(5, 0) as u32,
            one_thread: false,
        };
        let r = run_capture::<IgbAdv, true>(&[size as u32], w as u32, n, false, shape);
        report_one(
            w as u32,
            size,
            shape,
            &r,
            args.iter().any(|a| a == "--jsonl"),
        );
        return;
    }
    let jsonl = args.iter().any(|a| a == "--jsonl");
    let quick = args.iter().any(|a| a == "--quick");
    let imix: Vec<u32> = [64; 7].into_iter().chain([570; 4]).chain([1514]).collect();
    let cases: Vec<(&str, Vec<u32>)> = vec![
        ("64", vec![64]),
        ("128", vec![128]),
        ("512", vec![512]),
        ("1514", vec![1514]),
        ("imix", imix),
    ];
    // About 0.5 s of traffic per case at the memcpy rate (less with --quick).
    let volume: u64 = if quick { 200 << 20 } else { 2 << 30 };
    let packets_for = |sizes: &[u32]| {
        let avg = sizes.iter().map(|&s| u64::from(s)).sum::<u64>() / sizes.len() as u64;
        (volume / avg).clamp(1 << 20, 30 << 20)
    };
    let mut rows = Vec::new();
    let mut table = Vec::new();
    for (name, sizes) in &cases {
        let packets = packets_for(sizes);
        let base = run_memcpy(sizes, packets);
        let one = run_capture::<IgbAdv, false>(sizes, 1, packets, true, DRIVER);
        let two = run_capture::<IgbAdv, false>(sizes, 2, packets, true, DRIVER);
        let one_nr = run_capture::<IgbAdv, false>(sizes, 1, packets, false, DRIVER);
        let two_nr = run_capture::<IgbAdv, false>(sizes, 2, packets, false, DRIVER);
        let memcpy = (format!("memcpy {name} B"), base.mpps);
        rows.push(row(format!("memcpy {name} B"), base.mpps, "Mpps", None));
        for (what, r) in [
            ("1 writer + reader", &one),
            ("2 writers + reader", &two),
            ("1 writer, no reader", &one_nr),
            ("2 writers, no reader", &two_nr),
        ] {
            rows.push(row(
                format!("hot path {name} B, {what}"),
                r.mpps,
                "Mpps",
                Some(memcpy.clone()),
            ));
        }
        rows.push(row(
            format!("writer scaling {name} B (2 vs 1, no reader)"),
            two_nr.mpps / one_nr.mpps,
            "x",
            None,
        ));
        table.push((name.to_string(), base, one, two, one_nr, two_nr));
    }
    // The descriptor check of each backend's format, at 64 B.
    let packets = packets_for(&[64]);
    let base = run_memcpy(&[64], packets);
    let formats = [
        (
            "82576 advanced (igb, igbvf)",
            run_capture::<IgbAdv, false>(&[64], 1, packets, false, DRIVER),
        ),
        (
            "XL710 16-byte (i40e)",
            run_capture::<I40e16, false>(&[64], 1, packets, false, DRIVER),
        ),
        (
            "XL710 32-byte (iavf)",
            run_capture::<Iavf32, false>(&[64], 1, packets, false, DRIVER),
        ),
    ];
    for (f, r) in &formats {
        rows.push(row(
            format!("hot path 64 B, 1 writer, no reader, {f}"),
            r.mpps,
            "Mpps",
            Some(("memcpy 64 B".to_string(), base.mpps)),
        ));
    }
    if jsonl {
        for r in &rows {
            let (baseline, ratio) = match &r.baseline {
                Some((n, v)) => (
                    format!("{{\"name\":\"{n}\",\"value\":{v:.4}}}"),
                    format!("{:.4}", r.value / v),
                ),
                None => ("null".to_string(), "null".to_string()),
            };
            println!(
                "{{\"bench\":\"hotpath\",\"name\":\"{}\",\"value\":{:.4},\"unit\":\"{}\",\"baseline\":{baseline},\"ratio\":{ratio}}}",
                r.name, r.value, r.unit
            );
        }
        return;
    }
    println!(
        "{:<7} {:>7}   {:>15} {:>15}   {:>15} {:>15} {:>7}",
        "frame", "memcpy", "1 writer", "2 writers", "1 w, no reader", "2 w, no reader", "scaling"
    );
    println!(
        "{:<7} {:>7}   {:>7} {:>7} {:>7} {:>7}   {:>7} {:>7} {:>7} {:>7} {:>7}",
        "(B)", "Mpps", "Mpps", "ratio", "Mpps", "ratio", "Mpps", "ratio", "Mpps", "ratio", "2 vs 1"
    );
    for (n, b, o, t, onr, tnr) in &table {
        println!(
            "{:<7} {:>7.2}   {:>7.2} {:>7.2} {:>7.2} {:>7.2}   {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2}{}",
            n,
            b.mpps,
            o.mpps,
            o.mpps / b.mpps,
            t.mpps,
            t.mpps / b.mpps,
            onr.mpps,
            onr.mpps / b.mpps,
            tnr.mpps,
            tnr.mpps / b.mpps,
            tnr.mpps / onr.mpps,
            if o.drops + t.drops > 0 {
                format!("  (drops {}/{})", o.drops, t.drops)
            } else {
                String::new()
            }
        );
    }
    println!("ratio = capture Mpps / memcpy Mpps of the same frames in the same run.");
    println!(
        "descriptor formats, 64 B, 1 writer, no reader (memcpy {:.2} Mpps):",
        base.mpps
    );
    for (f, r) in &formats {
        println!(
            "  {:<30} {:>7.2} Mpps  ratio {:.2}",
            f,
            r.mpps,
            r.mpps / base.mpps
        );
    }
}
