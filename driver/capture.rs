// SPDX-License-Identifier: GPL-2.0

//! The capture engine: consumer threads that poll one RX ring, timestamp
//! every frame, and copy it once into the stream buffer through the shared
//! core's ordered publication protocol.
//!
//! [`Shared`] is what open files see (buffer, publication and listener
//! state, counters, configuration); it lives as long as the last file or
//! mapping, so it never touches hardware. [`Engine`] owns the NIC and the
//! ring and is dropped at unbind, after its threads are stopped.
//!
//! Each consumer owns one contiguous segment of the ring. The publication
//! token follows the NIC around the ring: the holder reserves space for its
//! ready descriptors in ring order (timestamps are taken here, so they are
//! ordered too), passes the token at its segment's end, then copies in
//! parallel with the next holder and publishes in order
//! (`core/src/publish.rs`).

use crate::hpcap_core::{
    abi,
    bpf,
    frame::WireFrame,
    gate::PauseGate,
    listener::ListenerTable,
    pcapng,
    publish::{
        Geometry,
        Placement,
        PublishState,
        Span, //
    },
    raw,
    segment::RingLayout,
    stats::{
        self,
        CaptureStats,
        DropStage, //
    }, //
};
use crate::{
    buffer::StreamBuffer,
    kthread::{
        self,
        ThreadBody, //
    },
    nic::{
        Nic,
        RingConfig, //
    },
    rx_ring::RxRing,
};
use core::sync::atomic::{
    AtomicBool,
    AtomicU32,
    AtomicU64,
    Ordering, //
};
use kernel::{
    new_mutex,
    new_poll_condvar,
    new_spinlock,
    prelude::*,
    str::CString,
    sync::{
        poll::PollCondVar,
        Arc,
        Mutex,
        MutexGuard,
        SpinLock, //
    }, //
};

/// Descriptors one consumer takes per reservation batch.
const MAX_BATCH: usize = 64;
/// Released descriptors that justify a tail register write.
const TAIL_BATCH: u32 = 32;

/// How a device is set up (module parameters, validated).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    /// Stream buffer bytes, a multiple of `block_size`.
    pub(crate) buffer_size: u64,
    /// Stream block bytes, a power of two.
    pub(crate) block_size: u64,
    /// RX descriptors.
    pub(crate) ring_size: u32,
    /// Receive buffer bytes (a multiple of 1 KiB).
    pub(crate) rx_buf_size: u32,
    /// Consumer threads.
    pub(crate) consumers: u32,
    /// CPUs to pin consumers to, in order of the set bits; 0 = not pinned.
    pub(crate) core_mask: u64,
    /// Snapshot length, 0 = whole frames.
    pub(crate) snaplen: u32,
    /// `abi::FORMAT_*`.
    pub(crate) format: u32,
    /// Close a partly filled block after this many ms without traffic.
    pub(crate) flush_ms: u32,
}

/// Counters of one consumer, written only by it, read by anyone.
struct ThreadCounters([AtomicU64; 13]);

// SAFETY: atomics of all-zero bits are zero counters.
unsafe impl pin_init::Zeroable for ThreadCounters {}
// SAFETY: the core documents all-zero memory as the initial publication state
// (writer 0 holds the token, nothing reserved or published).
unsafe impl pin_init::Zeroable for PublishState {}
// SAFETY: all-zero memory is a table of free slots (state FREE = 0).
unsafe impl pin_init::Zeroable for ListenerTable {}

impl ThreadCounters {
    /// Adds a batch's counts (single writer: load + store, no RMW).
    fn add(&self, d: &CaptureStats) {
        for (c, v) in self.0.iter().zip(d.as_array()) {
            if v != 0 {
                c.store(c.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
            }
        }
    }

    fn get(&self) -> CaptureStats {
        let mut a = [0u64; 13];
        for (v, c) in a.iter_mut().zip(&self.0) {
            *v = c.load(Ordering::Relaxed);
        }
        CaptureStats::from_array(a)
    }
}

/// A verified BPF program.
pub(crate) struct Filter {
    insns: KVec<bpf::SockFilter>,
}

impl Filter {
    /// Verifies `insns` and keeps them.
    pub(crate) fn new(insns: KVec<bpf::SockFilter>) -> Result<Self> {
        bpf::verify(&insns).map_err(|_| EINVAL)?;
        Ok(Self { insns })
    }
}

/// Block sizes the stream accepts (module parameter and `SET_CONFIG`).
pub(crate) const BLOCK_SIZES: core::ops::RangeInclusive<u64> = 64 << 10..=256 << 20;

/// Format and layout of the stream: they change together, and only while
/// no listener is attached ([`Shared::switch_stream`]).
#[derive(Clone, Copy)]
pub(crate) struct Stream {
    /// `abi::FORMAT_*`.
    pub(crate) format: u32,
    /// Layout of the blocks in the buffer.
    pub(crate) geo: Geometry,
}

impl Stream {
    /// Validates a format and block size for a buffer of `buffer_size` bytes
    /// (a whole number of blocks, at least two).
    pub(crate) fn new(format: u32, buffer_size: u64, block_size: u64) -> Result<Self> {
        let header_len = match format {
            abi::FORMAT_PCAPNG => pcapng::BLOCK_HEADER_LEN as u64,
            abi::FORMAT_RAW => 0,
            _ => return Err(EINVAL),
        };
        if !BLOCK_SIZES.contains(&block_size) || buffer_size / 2 < block_size {
            return Err(EINVAL);
        }
        let geo = Geometry::new(buffer_size, block_size, header_len, pcapng::MIN_BLOCK_LEN as u64)
            .map_err(|_| EINVAL)?;
        Ok(Self { format, geo })
    }

    /// One word for [`Shared::stream`]: format in bits 7:0, log2 of the
    /// block size in bits 15:8.
    fn word(&self) -> u64 {
        u64::from(self.format & 0xFF) | (u64::from(self.geo.block_size().trailing_zeros()) << 8)
    }
}

/// Device state shared by the capture threads and every open file.
#[pin_data]
pub(crate) struct Shared {
    /// The stream buffer.
    pub(crate) buffer: StreamBuffer,
    /// Bytes in the buffer (fixed while the device is bound).
    buffer_size: u64,
    /// The current [`Stream`], as [`Stream::word`].
    stream_word: AtomicU64,
    /// The stream chosen at probe (what `stream_word` decodes to until a switch).
    initial: Stream,
    /// Consumers poll through it; [`Self::switch_stream`] closes it.
    gate: PauseGate,
    /// Serialises stream switches with listener attaches.
    #[pin]
    pub(crate) config: Mutex<()>,
    /// Ordered publication state.
    pub(crate) publish: PublishState,
    /// Listener cursors.
    pub(crate) listeners: ListenerTable,
    /// Process that attached each listener slot.
    pub(crate) pids: [AtomicU32; abi::MAX_LISTENERS],
    /// Sleepers waiting for data (ioctl WAIT, read, poll).
    #[pin]
    pub(crate) waitq: PollCondVar,
    /// Orders wake-ups after a sleeper's last check (see [`Self::wake_all`]).
    #[pin]
    pub(crate) wait_lock: Mutex<()>,
    /// Current snapshot length.
    pub(crate) snaplen: AtomicU32,
    /// Current BPF filter, if any.
    #[pin]
    pub(crate) filter: SpinLock<Option<Arc<Filter>>>,
    /// The device was unbound: no more data will come.
    pub(crate) gone: AtomicBool,
    counters: [ThreadCounters; 32],
    /// NIC missed-frame counter, refreshed by consumer 0.
    pub(crate) nic_missed: AtomicU64,
    /// Link state (1 = up) and speed, refreshed by consumer 0.
    pub(crate) link_up: AtomicU32,
    /// Link speed in Mb/s.
    pub(crate) link_mbps: AtomicU32,
    /// Static description for `HPCAP_IOC_INFO`.
    pub(crate) info: abi::Info,
    /// When the device was bound (ns since the epoch).
    pub(crate) started_ns: u64,
}

impl Shared {
    /// Creates the shared state with a buffer of `p.buffer_size` bytes on
    /// NUMA node `node`.
    // Out of line (like `Engine::spawn`): keeps probe's stack frame small.
    #[inline(never)]
    pub(crate) fn new(p: &Params, info: abi::Info, node: kernel::alloc::NumaNode) -> Result<Arc<Self>> {
        let stream = Stream::new(p.format, p.buffer_size, p.block_size)?;
        let size = usize::try_from(p.buffer_size).map_err(|_| EINVAL)?;
        let buffer = StreamBuffer::new(size, node)?;
        Arc::pin_init(
            pin_init!(Self {
                buffer,
                buffer_size: p.buffer_size,
                stream_word: AtomicU64::new(stream.word()),
                initial: stream,
                gate: PauseGate::new(),
                config <- new_mutex!(()),
                // Large, and valid as all zero: initialised in place rather
                // than built on the (small) kernel stack and moved.
                publish <- pin_init::init_zeroed(),
                listeners <- pin_init::init_zeroed(),
                pids: [const { AtomicU32::new(0) }; abi::MAX_LISTENERS],
                waitq <- new_poll_condvar!("hpcap::waitq"),
                wait_lock <- new_mutex!(()),
                snaplen: AtomicU32::new(p.snaplen),
                filter <- new_spinlock!(None),
                gone: AtomicBool::new(false),
                counters <- pin_init::init_zeroed(),
                nic_missed: AtomicU64::new(0),
                link_up: AtomicU32::new(0),
                link_mbps: AtomicU32::new(0),
                info,
                started_ns: kthread::now_ns(),
            }),
            GFP_KERNEL,
        )
    }

    /// The stream's current format and layout.
    pub(crate) fn stream(&self) -> Stream {
        // Acquire: pairs with the Release store in `switch_stream`.
        let w = self.stream_word.load(Ordering::Acquire);
        let block = 1u64.checked_shl(((w >> 8) & 0x3F) as u32).unwrap_or(0);
        // Always valid (only validated streams are stored).
        Stream::new((w & 0xFF) as u32, self.buffer_size, block).unwrap_or(self.initial)
    }

    /// Switches format and block size. The caller holds `config` (so no
    /// listener attaches meanwhile); fails with `EBUSY` while any listener
    /// is attached. The consumers are paused (frames arriving meanwhile
    /// wait in the ring or are dropped by the NIC and counted as missed),
    /// the stream restarts at a block boundary of the new layout, so
    /// listeners that attach later never see the old layout, and the
    /// consumers resume with the new stream.
    pub(crate) fn switch_stream(&self, _config: &MutexGuard<'_, ()>, new: Stream) -> Result {
        if self.listeners.any_attached() {
            return Err(EBUSY);
        }
        self.gate.pause();
        let deadline = kthread::now_ns().saturating_add(1_000_000_000);
        while !self.gate.idle() {
            if kthread::now_ns() > deadline {
                self.gate.resume();
                return Err(EBUSY);
            }
            kthread::sleep_us(1000, 2000);
        }
        // Every batch a consumer began is complete (they complete before
        // leaving a poll), so the restart cannot fail for a batch in flight.
        let r = self.publish.restart(&new.geo);
        if r.is_ok() {
            // Release: pairs with the Acquire load in `stream`.
            self.stream_word.store(new.word(), Ordering::Release);
        }
        self.gate.resume();
        r.map(|_| ()).map_err(|_| EBUSY)
    }

    /// Wakes every sleeper. Taking `wait_lock` first means a sleeper that
    /// checked its condition under the lock is already on the wait queue.
    pub(crate) fn wake_all(&self) {
        drop(self.wait_lock.lock());
        self.waitq.notify_all();
    }

    /// Device counters: the consumers' sums plus the NIC's missed frames.
    pub(crate) fn counters(&self) -> CaptureStats {
        let mut total = CaptureStats::ZERO;
        for c in &self.counters {
            total.merge(&c.get());
        }
        total.nic_missed = self.nic_missed.load(Ordering::Relaxed);
        total
    }

    /// Writes the 4 KiB stream file header (SHB + IDB + padding) for this
    /// device into `buf`.
    pub(crate) fn file_header(&self, buf: &mut [u8]) -> Result<usize> {
        let name = core::str::from_utf8(abi::get_cstr(&self.info.name)).unwrap_or("hpcap");
        let bus = core::str::from_utf8(abi::get_cstr(&self.info.bus_addr)).unwrap_or("");
        let info = pcapng::InterfaceInfo {
            snaplen: self.snaplen.load(Ordering::Relaxed),
            name,
            description: bus,
        };
        pcapng::write_file_header(buf, &info).map_err(|_| EINVAL)
    }
}

/// One frame of a batch, between reservation and copy.
#[derive(Clone, Copy)]
struct Rec {
    desc: u32,
    ts_ns: u64,
    /// Length on the wire (with a stripped VLAN tag put back).
    len: u32,
    caplen: u32,
    /// Bytes the NIC wrote into the descriptor's buffer.
    bytes: u32,
    /// TCI of a VLAN tag the NIC stripped from those bytes.
    tci: Option<u16>,
    place: Option<Placement>,
}

const NO_REC: Rec = Rec {
    desc: 0,
    ts_ns: 0,
    len: 0,
    caplen: 0,
    bytes: 0,
    tci: None,
    place: None,
};

/// The ring, the NIC and the publication bookkeeping of one device.
pub(crate) struct Engine<N: Nic> {
    nic: N,
    ring: RxRing<N::Format>,
    layout: RingLayout,
    shared: Arc<Shared>,
    flush_ns: u64,
    /// Descriptors consumed in ring order (token holder only).
    consumed: AtomicU64,
    /// Device drop total when the last block header was written.
    drops_at_header: AtomicU64,
}

impl<N: Nic> Engine<N> {
    /// Builds the ring and starts reception (frames are dropped by the NIC
    /// until the consumers run, which is harmless).
    pub(crate) fn start(
        dev: &kernel::device::Device<kernel::device::Bound>,
        nic: N,
        shared: Arc<Shared>,
        p: &Params,
    ) -> Result<Arc<Self>> {
        let layout = RingLayout::new(p.ring_size, p.consumers, TAIL_BATCH, N::TAIL_ALIGN).map_err(|_| EINVAL)?;
        let ring = RxRing::<N::Format>::new(dev, p.ring_size, p.rx_buf_size)?;
        let tail = layout.initial_tail();
        shared.publish.set_tail(tail);
        nic.start_rx(&RingConfig {
            dma: ring.dma(),
            count: ring.count(),
            buf_size: ring.buf_size(),
            max_frame: ring.buf_size().min(N::MAX_FRAME),
        })?;
        nic.write_tail(layout.tail_register(tail))?;
        Ok(Arc::new(
            Self {
                nic,
                ring,
                layout,
                shared,
                flush_ns: u64::from(p.flush_ms) * 1_000_000,
                consumed: AtomicU64::new(0),
                drops_at_header: AtomicU64::new(0),
            },
            GFP_KERNEL,
        )?)
    }

    /// Stops reception; the consumers must be stopped already.
    pub(crate) fn stop(&self) {
        self.nic.stop_rx();
    }

    /// The NIC backend.
    pub(crate) fn nic(&self) -> &N {
        &self.nic
    }

    /// Starts one consumer thread per segment.
    #[inline(never)]
    pub(crate) fn spawn(self: &Arc<Self>, p: &Params, name: &str) -> Result<KVec<kthread::KThread<Consumer<N>>>> {
        let mut threads = KVec::with_capacity(p.consumers as usize, GFP_KERNEL)?;
        let mut cpus = pinned_cpus(p.core_mask);
        for id in 0..p.consumers {
            // Built before the initializer: inside it `id` names the field.
            let next = self.layout.segment_start(id);
            // Filled element by element so the ~7 KiB never sit on the stack.
            let mut recs = KVec::with_capacity(MAX_BATCH, GFP_KERNEL)?;
            for _ in 0..MAX_BATCH {
                recs.push(NO_REC, GFP_KERNEL)?;
            }
            let consumer = Arc::pin_init(
                pin_init!(Consumer {
                    engine: self.clone(),
                    id,
                    busy_polls: AtomicU32::new(0),
                    state <- new_mutex!(ConsumerState {
                        next,
                        in_frame: false,
                        recs,
                        idle_polls: 0,
                        idle_since_ns: 0,
                        last_refresh_ns: 0,
                    }),
                }),
                GFP_KERNEL,
            )?;
            let cname = CString::try_from_fmt(fmt!("{}/{}", name, id))?;
            threads.push(kthread::KThread::spawn(consumer, &cname, cpus.flatten_next())?, GFP_KERNEL)?;
        }
        Ok(threads)
    }

    /// Writes a record's pad, header and bytes into its reserved spans.
    fn store(&self, st: &Stream, rec: &Rec, place: &Placement, frame: &WireFrame<'_>, drops: u64) {
        let sh = &*self.shared;
        if let Some(pad) = place.pad {
            self.write_pad(st, pad);
        }
        if let Some(h) = place.header {
            let hdr = pcapng::BlockHeader {
                format: pcapng::BH_FORMAT_PCAPNG,
                block_len: st.geo.block_size() as u32,
                records: 0,
                seq: h.offset >> st.geo.block_size().trailing_zeros(),
                offset: h.offset,
                first_ts_ns: rec.ts_ns,
                last_ts_ns: 0,
                drops,
                flags: 0,
            };
            // SAFETY: `h` was reserved by this thread's ticket, not yet completed.
            if let Some(buf) = unsafe { sh.buffer.span_mut(h.pos as usize, h.len as usize) } {
                let _ = pcapng::write_block_header(buf, 0, &hdr);
            }
        }
        let r = place.record;
        // SAFETY: as above.
        let Some(buf) = (unsafe { sh.buffer.span_mut(r.pos as usize, r.len as usize) }) else {
            return;
        };
        let caplen = rec.caplen as usize;
        let (data_at, ok) = if st.format == abi::FORMAT_RAW {
            let ok = raw::write_raw_header(buf, 0, rec.ts_ns, caplen, rec.len).is_ok();
            (raw::RAW_HEADER_LEN, ok)
        } else {
            let hdr = pcapng::EpbHeader {
                interface: 0,
                ts_ns: rec.ts_ns,
                caplen: rec.caplen,
                orig_len: rec.len,
            };
            let ok = pcapng::write_epb_frame(buf, 0, &hdr, &pcapng::EpbOptions::NONE).is_ok();
            (pcapng::EPB_DATA_OFFSET, ok)
        };
        if let (true, Some(dst)) = (ok, buf.get_mut(data_at..data_at + caplen)) {
            frame.copy_prefix(dst);
        }
    }

    fn write_pad(&self, st: &Stream, span: Span) {
        let sh = &*self.shared;
        // SAFETY: the span was reserved by the caller's ticket.
        if let Some(buf) = unsafe { sh.buffer.span_mut(span.pos as usize, span.len as usize) } {
            let _ = if st.format == abi::FORMAT_RAW {
                raw::write_raw_pad(buf, 0, span.len as usize)
            } else {
                pcapng::write_pad_at(buf, 0, span.len as usize)
            };
        }
    }
}

/// Hands out the CPUs of a mask in order, then `None` (unpinned).
struct PinnedCpus {
    mask: u64,
    nr: u32,
}

fn pinned_cpus(mask: u64) -> PinnedCpus {
    PinnedCpus {
        mask,
        nr: kthread::nr_cpu_ids(),
    }
}

impl PinnedCpus {
    fn flatten_next(&mut self) -> Option<u32> {
        while self.mask != 0 {
            let c = self.mask.trailing_zeros();
            self.mask &= self.mask - 1;
            if c < self.nr {
                return Some(c);
            }
        }
        None
    }
}

/// Per-consumer progress, touched only by its own thread.
struct ConsumerState {
    /// Next descriptor of this consumer's segment to look at.
    next: u32,
    /// Inside a frame spanning descriptors (dropped as a whole).
    in_frame: bool,
    /// The current batch, between reservation and copy (`MAX_BATCH` long).
    recs: KVec<Rec>,
    idle_polls: u32,
    idle_since_ns: u64,
    last_refresh_ns: u64,
}

/// One capture thread: the owner of one ring segment.
#[pin_data]
pub(crate) struct Consumer<N: Nic> {
    engine: Arc<Engine<N>>,
    id: u32,
    #[pin]
    state: Mutex<ConsumerState>,
    busy_polls: AtomicU32,
}

impl<N: Nic> Consumer<N> {
    /// One poll: if this consumer holds the token, reserve and copy up to a
    /// batch of ready frames. Returns the number of descriptors handled.
    fn poll(&self, st: &mut ConsumerState) -> usize {
        let gate = &self.engine.shared.gate;
        if !gate.enter() {
            return 0;
        }
        let n = self.poll_batch(st);
        gate.leave();
        n
    }

    /// [`Self::poll`] once the pause gate admitted it.
    fn poll_batch(&self, st: &mut ConsumerState) -> usize {
        let e = &*self.engine;
        let sh = &*e.shared;
        let pubs = &sh.publish;
        let j = self.id;
        if !pubs.holds_token(j) {
            return 0;
        }
        if let Some(t) = pubs.tail_update(j, &e.layout) {
            let _ = e.nic.write_tail(t);
        }
        // Only the token holder gets here: the others skip this decoding.
        let stream = sh.stream();
        let copying = sh.listeners.any_attached();
        let limit = sh.listeners.reserve_limit(pubs.committed(), &stream.geo);
        let Ok(mut batch) = pubs.begin_batch(j, limit) else {
            return 0;
        };
        let filter = if copying { sh.filter.lock().clone() } else { None };
        let prog = filter.as_ref().and_then(|f| bpf::verify(&f.insns).ok());
        let snaplen = sh.snaplen.load(Ordering::Relaxed);
        // The batch lives in the consumer's heap state: 64 records are
        // ~7 KiB, too much for a kernel stack frame.
        let recs = &mut st.recs;
        let mut local = CaptureStats::ZERO;
        let mut n = 0;
        let mut seg_done = false;
        let mut i = st.next;
        while n < MAX_BATCH {
            let Some(done) = e.ring.poll(i) else {
                break;
            };
            let tci = if N::RX_VLAN_STRIPPED { done.vlan } else { None };
            // SAFETY: descriptor `i` is done and owned by this thread until
            // it is re-armed below.
            let frame = WireFrame::new(unsafe { e.ring.frame(i, done.len) }, tci);
            let mut rec = Rec {
                desc: i,
                ts_ns: kthread::now_ns(),
                // On the wire: with the stripped tag, if any.
                len: frame.len() as u32,
                bytes: done.len,
                tci,
                ..NO_REC
            };
            if done.skip {
                // Not a frame (XL710 programming status): just recycle.
            } else if st.in_frame || !done.eop || done.error {
                // Frames spanning descriptors are larger than the receive
                // buffer; they and frames with MAC errors are counted once,
                // at their last descriptor.
                st.in_frame = !done.eop;
                if done.eop {
                    local.seen(rec.len);
                    local.dropped(DropStage::Ring, rec.len);
                }
            } else {
                local.seen(rec.len);
                if !copying {
                    local.dropped(DropStage::NoSpace, rec.len);
                } else if prog.as_ref().is_some_and(|p| !p.matches_frame(&frame, rec.len)) {
                    local.filter_rejected(rec.len);
                } else {
                    rec.caplen = stats::caplen(rec.len, snaplen);
                    let reclen = if stream.format == abi::FORMAT_RAW {
                        raw::RAW_HEADER_LEN + rec.caplen as usize
                    } else {
                        pcapng::epb_len(rec.caplen as usize, &pcapng::EpbOptions::NONE)
                    };
                    match batch.place(&stream.geo, reclen as u64) {
                        Some(p) => {
                            rec.place = Some(p);
                            local.stored(rec.len, rec.caplen);
                        }
                        None => local.dropped(DropStage::NoSpace, rec.len),
                    }
                }
            }
            recs[n] = rec;
            n += 1;
            let last = e.layout.is_segment_last(i);
            i = e.layout.next_in_segment(i);
            if last {
                seg_done = true;
                break;
            }
        }
        let now = kthread::now_ns();
        if n > 0 {
            st.idle_since_ns = now;
        }
        // Close a partly filled block once traffic pauses, so listeners get
        // it (and a blocking listener's first block arrives) promptly.
        let flush = if n == 0 && copying && now.saturating_sub(st.idle_since_ns) >= e.flush_ns {
            batch.close_block(&stream.geo)
        } else {
            None
        };
        if n == 0 && flush.is_none() {
            return 0;
        }
        let consumed = e.consumed.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        let ticket = pubs.finish_batch(batch, consumed);
        st.next = i;
        if seg_done {
            if let Some(t) = pubs.tail_update(j, &e.layout) {
                let _ = e.nic.write_tail(t);
            }
            pubs.pass_token(j, e.layout.next_segment(j));
        }
        // Copy phase: in parallel with the next token holder.
        for rec in &recs[..n] {
            if let Some(p) = &rec.place {
                // Drops since the previous block header (summed only when a
                // block opens: a few hundred loads, once per block).
                let drops = if p.header.is_some() {
                    let now = local.dropped_total().saturating_add(sh.counters().dropped_total());
                    now.saturating_sub(e.drops_at_header.swap(now, Ordering::Relaxed))
                } else {
                    0
                };
                // SAFETY: descriptor still owned by this thread (re-armed next).
                let frame = WireFrame::new(unsafe { e.ring.frame(rec.desc, rec.bytes) }, rec.tci);
                e.store(&stream, rec, p, &frame, drops);
            }
            e.ring.arm(rec.desc);
        }
        if let Some(span) = flush {
            e.write_pad(&stream, span);
        }
        if pubs.complete(ticket).wake {
            sh.wake_all();
        }
        sh.counters[j as usize].add(&local);
        n.max(1)
    }

    /// Consumer 0 refreshes link state and the NIC's missed counter.
    fn refresh(&self, st: &mut ConsumerState) {
        let now = kthread::now_ns();
        if self.id != 0 || now.saturating_sub(st.last_refresh_ns) < 100_000_000 {
            return;
        }
        st.last_refresh_ns = now;
        let e = &*self.engine;
        let link = e.nic.link();
        e.shared.link_up.store(u32::from(link.up), Ordering::Relaxed);
        e.shared.link_mbps.store(link.mbps, Ordering::Relaxed);
        e.shared.nic_missed.store(e.nic.missed(), Ordering::Relaxed);
    }
}

impl<N: Nic> ThreadBody for Consumer<N> {
    fn run_once(&self) {
        let (worked, idle) = {
            let mut st = self.state.lock();
            let worked = self.poll(&mut st);
            self.refresh(&mut st);
            st.idle_polls = if worked > 0 { 0 } else { st.idle_polls.saturating_add(1) };
            (worked, st.idle_polls)
        };
        // Back off when idle: spin briefly, then sleep a little, then more,
        // so an idle device costs almost nothing and a busy one is polled.
        // Under sustained traffic, yield now and then so kernels without
        // full preemption still run other work on this CPU.
        if worked > 0 {
            let busy = self.busy_polls.fetch_add(1, Ordering::Relaxed);
            if busy % 1024 == 1023 {
                kthread::yield_now();
            }
            return;
        }
        match idle {
            0..=63 => core::hint::spin_loop(),
            64..=20_000 => kthread::sleep_us(20, 50),
            _ => kthread::sleep_us(500, 1000),
        }
    }
}
