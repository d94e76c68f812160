// SPDX-License-Identifier: GPL-2.0

//! The capture side of a device: the state open files see ([`Shared`]),
//! and the running capture ([`Capture`]): one receive queue, the consumer
//! threads that run the shared core's capture engine on it, and the
//! slow-path service thread.
//!
//! [`Shared`] never touches hardware and lives as long as the last open
//! file or mapping. [`Capture`] owns the NIC and the ring and is stopped at
//! unbind (or when probe fails half way): the service thread first, then
//! the consumers, then the receive queue, whose `Drop` stops the NIC before
//! the ring memory is freed.
//!
//! Each consumer owns one segment of the ring and calls
//! `hpcap_core::engine::Writer::poll` (the per-frame engine shared with
//! `hpcap-sim` and the hot-path benchmark); this file only adds what is
//! kernel-specific: threads, sleeping when idle, the pause gate, per-thread
//! counters and waking readers.

use crate::hpcap_core::{
    abi,
    bpf::{
        SockFilter,
        Verified, //
    },
    config::{
        ConfigError,
        Stream, //
    },
    desc::RxFormat,
    engine::{
        self,
        Ctx,
        OnFull,
        Rec,
        Settings,
        Writer,
        MAX_BATCH,
        TAIL_BATCH, //
    },
    format::StreamFormat,
    gate::PauseGate,
    listener::ListenerTable,
    pcapng,
    publish::PublishState,
    segment::RingLayout,
    stats::{
        CaptureStats,
        NicCounters,
        COUNTER_NAMES,
        NCOUNTERS, //
    }, //
};
use crate::{
    buffer::StreamBuffer,
    kthread::{
        self,
        KThread,
        ThreadBody, //
    },
    nic::Nic,
    probe_fault::{
        fail_at,
        Step, //
    },
    rx_ring::RxQueue,
};
use core::sync::atomic::{
    AtomicBool,
    AtomicU32,
    AtomicU64,
    Ordering, //
};
use kernel::{
    alloc::KVVec,
    device::Core,
    new_mutex,
    new_poll_condvar,
    new_spinlock,
    pci,
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

/// How a device is set up (module parameters, validated; the ring
/// settings are checked against the backend's limits when it starts).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    /// Stream buffer bytes, a multiple of `block_size`.
    pub(crate) buffer_size: u64,
    /// Stream block bytes, a power of two.
    pub(crate) block_size: u64,
    /// RX descriptors.
    pub(crate) ring_size: u32,
    /// Receive buffer bytes.
    pub(crate) rx_buf_size: u32,
    /// RX descriptor bytes asked for (16 or 32), 0 = the backend's default.
    /// A backend with a choice ([`crate::nic::i40e`]) picks its descriptor
    /// format from it; [`start`] refuses a size the format does not have.
    pub(crate) rx_desc: u32,
    /// Consumer threads.
    pub(crate) consumers: u32,
    /// CPUs to pin consumers to, in order of the set bits; 0 = not pinned.
    pub(crate) core_mask: u64,
    /// Snapshot length, 0 = whole frames.
    pub(crate) snaplen: u32,
    /// Stream format.
    pub(crate) format: StreamFormat,
    /// Close a partly filled block after this many ms without traffic.
    pub(crate) flush_ms: u32,
}

/// Most consumer threads per device.
// CAST: 32 fits any usize.
const MAX_CONSUMERS: usize = crate::hpcap_core::config::MAX_CONSUMERS as usize;

/// Counters of one consumer, written only by it, read by anyone. On cache
/// lines of its own: unaligned, two consumers' counters (15 x 8 bytes each)
/// would share a line that both write after every batch.
#[repr(align(64))]
struct ThreadCounters([AtomicU64; NCOUNTERS]);

// SAFETY: atomics of all-zero bits are zero counters.
unsafe impl pin_init::Zeroable for ThreadCounters {}
// SAFETY: the core documents all-zero memory as the initial publication state
// (writer 0 holds the token, nothing reserved or published).
unsafe impl pin_init::Zeroable for PublishState {}
// SAFETY: all-zero memory is a table of free slots (state FREE = 0).
unsafe impl pin_init::Zeroable for ListenerTable {}

impl ThreadCounters {
    /// Adds a poll's counts (single writer: load + store, no RMW).
    fn add(&self, d: &CaptureStats) {
        for (c, v) in self.0.iter().zip(d.to_array()) {
            if v != 0 {
                c.store(c.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
            }
        }
    }

    fn get(&self) -> CaptureStats {
        let mut a = [0u64; NCOUNTERS];
        for (v, c) in a.iter_mut().zip(&self.0) {
            *v = c.load(Ordering::Relaxed);
        }
        CaptureStats::from_array(a)
    }
}

/// What the slow path last read from the NIC.
struct NicState {
    received: AtomicU64,
    missed: AtomicU64,
    valid: AtomicU32,
    link_up: AtomicBool,
    link_mbps: AtomicU32,
    /// NIC resets under the capture (gaps in the stream).
    resets: AtomicU32,
    /// What the NIC receives (`abi::PROMISC_*`), as the backend achieved it.
    promisc: AtomicU32,
    /// Bytes of one RX descriptor of the running backend (0 before start).
    rx_desc_bytes: AtomicU32,
}

/// A BPF program verified when it was installed.
pub(crate) type Filter = Verified<KVec<SockFilter>>;

/// Device state shared by the capture threads and every open file.
#[pin_data]
pub(crate) struct Shared {
    /// The stream buffer.
    pub(crate) buffer: StreamBuffer,
    /// Bytes in the buffer (fixed while the device is bound).
    buffer_size: u64,
    /// The current [`Stream`], as [`Stream::word`].
    stream_word: AtomicU64,
    /// The stream chosen at probe (what `stream_word` decodes to until a
    /// switch).
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
    counters: [ThreadCounters; MAX_CONSUMERS],
    /// Counted once when capture stopped: the frames left in the ring
    /// (written after the consumers stopped; single writer).
    at_stop: ThreadCounters,
    /// Stream bytes reserved but never published when capture stopped
    /// (0 unless a consumer left a batch half done).
    unpublished_at_stop: AtomicU64,
    nic: NicState,
    /// Static description for `HPCAP_IOC_INFO`.
    pub(crate) info: abi::Info,
    /// When the device was bound (ns since the epoch).
    pub(crate) started_ns: u64,
}

impl Shared {
    /// Creates the shared state with a buffer of `p.buffer_size` bytes on
    /// NUMA node `node`.
    // Out of line: keeps probe's stack frame small.
    #[inline(never)]
    pub(crate) fn new(p: &Params, info: abi::Info, node: kernel::alloc::NumaNode) -> Result<Arc<Self>> {
        let stream = Stream::new(p.format, p.buffer_size, p.block_size).map_err(|_| EINVAL)?;
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
                at_stop <- pin_init::init_zeroed(),
                unpublished_at_stop: AtomicU64::new(0),
                nic: NicState {
                    received: AtomicU64::new(0),
                    missed: AtomicU64::new(0),
                    valid: AtomicU32::new(0),
                    link_up: AtomicBool::new(false),
                    link_mbps: AtomicU32::new(0),
                    resets: AtomicU32::new(0),
                    promisc: AtomicU32::new(abi::PROMISC_UNKNOWN),
                    rx_desc_bytes: AtomicU32::new(0),
                },
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
        // Always valid: only validated streams are stored.
        Stream::from_word(w, self.buffer_size).unwrap_or(self.initial)
    }

    /// Switches format and block size. The caller holds `config` (so no
    /// listener attaches meanwhile); fails with `EBUSY` while any listener
    /// is attached. The consumers are paused (frames arriving meanwhile
    /// wait in the ring or are dropped by the NIC and counted as missed),
    /// the stream restarts at a block boundary of the new layout, so
    /// listeners that attach later never see the old layout, and the
    /// consumers resume with the new stream.
    pub(crate) fn switch_stream(&self, _config: &MutexGuard<'_, ()>, new: Stream) -> Result {
        if self.listeners.list().next().is_some() {
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

    /// Device counters (the consumers' sums plus the NIC's), and which NIC
    /// counters are real.
    pub(crate) fn counters(&self) -> (CaptureStats, u32) {
        let mut total = CaptureStats::ZERO;
        for c in &self.counters {
            total.merge(&c.get());
        }
        total.merge(&self.at_stop.get());
        total.bytes_expired = self.listeners.expired_bytes();
        let n = &self.nic;
        total.set_nic(&NicCounters {
            received: n.received.load(Ordering::Relaxed),
            missed: n.missed.load(Ordering::Relaxed),
            valid: 0,
        });
        (total, n.valid.load(Ordering::Relaxed))
    }

    /// What the NIC receives (`abi::PROMISC_*`).
    pub(crate) fn promisc(&self) -> u32 {
        self.nic.promisc.load(Ordering::Relaxed)
    }

    /// Bytes of one RX descriptor (0 until the backend started).
    pub(crate) fn rx_desc_bytes(&self) -> u32 {
        self.nic.rx_desc_bytes.load(Ordering::Relaxed)
    }

    /// Prints every counter once capture has stopped (unbind, rmmod), so
    /// the final figures outlive the device: the frames left in the ring
    /// are counted by then (`dropped_stop`), and the NIC's counters were
    /// read after its queue was disabled.
    pub(crate) fn report_final(&self, dev: &kernel::device::Device) {
        let (c, valid) = self.counters();
        dev_info!(
            dev,
            "{}: final counters: {} nic_valid={} nic_resets={} unpublished_bytes={} commit={}\n",
            core::str::from_utf8(abi::get_cstr(&self.info.name)).unwrap_or("hpcap"),
            Report(&c),
            valid,
            self.nic_resets(),
            self.unpublished_at_stop.load(Ordering::Relaxed),
            self.publish.committed()
        );
    }

    /// Times the NIC was reset under the capture.
    pub(crate) fn nic_resets(&self) -> u32 {
        self.nic.resets.load(Ordering::Relaxed)
    }

    /// Link state and speed (Mb/s) as the slow path last read them.
    pub(crate) fn link(&self) -> (bool, u32) {
        (
            self.nic.link_up.load(Ordering::Relaxed),
            self.nic.link_mbps.load(Ordering::Relaxed),
        )
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

/// Every counter as `name=value`, in layout order.
struct Report<'a>(&'a CaptureStats);

impl kernel::fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, (name, v)) in COUNTER_NAMES.iter().zip(self.0.to_array()).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={}", name, v)?;
        }
        Ok(())
    }
}

/// A running capture, type-erased for the PCI driver's data.
pub(crate) trait Running: Send + Sync {
    /// Stops it in order: the service thread, the consumers, then the
    /// receive queue (the NIC stops before the ring is freed). Idempotent;
    /// also done on drop.
    fn stop(&mut self);
}

/// What a backend descriptor calls to take a device over and capture.
pub(crate) type StartFn =
    fn(&pci::Device<Core<'_>>, &Params, &Arc<Shared>, &CStr) -> Result<KBox<dyn Running>>;

/// The receive side shared by the consumer and service threads.
struct Rx<N: Nic> {
    queue: RxQueue<N>,
    layout: RingLayout,
    engine: engine::Shared,
    shared: Arc<Shared>,
    flush_ns: u64,
}

impl<N: Nic> Rx<N> {
    /// Once the consumers and the service thread have stopped: disables
    /// the NIC's queue (no more DMA), counts the frames it had completed
    /// that no consumer took (`dropped_stop`), notes what was reserved but
    /// never published, and reads the NIC's counters a last time, so the
    /// device's final counters account for every frame the NIC wrote.
    fn finish(&self) {
        let (sh, q) = (&*self.shared, &self.queue);
        q.stop();
        let left = engine::left_in_ring(q, q.count(), self.engine.consumed(), sh.publish.tail());
        sh.at_stop.add(&left);
        let unpublished = sh.publish.reserved().saturating_sub(sh.publish.committed());
        sh.unpublished_at_stop.store(unpublished, Ordering::Relaxed);
        let s = q.nic().service();
        let n = &sh.nic;
        n.received.store(s.counters.received, Ordering::Relaxed);
        n.missed.store(s.counters.missed, Ordering::Relaxed);
        n.valid.store(s.counters.valid & q.caps().counters, Ordering::Relaxed);
    }
}

/// A running capture on a backend `N`.
struct Capture<N: Nic> {
    service: Option<KThread<Service<N>>>,
    consumers: KVec<KThread<Consumer<N>>>,
    rx: Option<Arc<Rx<N>>>,
}

impl<N: Nic> Running for Capture<N> {
    fn stop(&mut self) {
        // Each KThread drop waits for its thread to leave its loop.
        self.service = None;
        self.consumers.clear();
        if let Some(rx) = &self.rx {
            rx.finish();
        }
        // The last reference: the ring and the backend go (the NIC's queue
        // is already off; `RxQueue::drop` would stop it otherwise).
        self.rx = None;
    }
}

impl<N: Nic> Drop for Capture<N> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Takes the device over with backend `N` and starts capturing into
/// `shared`: the backend's bring-up, the ring, the consumer threads and the
/// service thread, each step undone on failure (see [`RxQueue`]).
// Out of line: keeps probe's stack frame small.
#[inline(never)]
pub(crate) fn start<N: Nic>(
    pdev: &pci::Device<Core<'_>>,
    p: &Params,
    shared: &Arc<Shared>,
    name: &CStr,
) -> Result<KBox<dyn Running>> {
    // CAST: 2 or 4 words.
    let desc_bytes = (N::Format::WORDS * 8) as u32;
    if p.rx_desc != 0 && p.rx_desc != desc_bytes {
        dev_err!(pdev, "rx_desc={}: this NIC has {}-byte receive descriptors only\n", p.rx_desc, desc_bytes);
        return Err(EINVAL);
    }
    let (nic, caps) = N::new(pdev)?;
    fail_at(pdev, Step::Backend)?;
    let ring = caps.ring.check(p.ring_size, p.consumers, p.rx_buf_size).inspect_err(|e| {
        dev_err!(
            pdev,
            "ring_size={} consumers={} rx_buf={}: {} (this NIC: {}..{} descriptors in steps of {}, \
             buffers {}..{} in units of {})\n",
            p.ring_size,
            p.consumers,
            p.rx_buf_size,
            ConfigError::explain(*e),
            caps.ring.min,
            caps.ring.max,
            caps.ring.step,
            caps.ring.buf_min,
            caps.ring.buf_max,
            caps.ring.buf_unit
        )
    });
    let ring = ring.map_err(|_| EINVAL)?;
    let layout = RingLayout::interleaved(ring.size, ring.consumers, TAIL_BATCH, caps.ring.tail_step).map_err(|_| EINVAL)?;
    let queue = RxQueue::start(pdev.as_ref(), nic, caps, ring.size, ring.buf)?;
    fail_at(pdev, Step::Queue)?;
    let tail = layout.initial_tail();
    shared.publish.set_tail(tail);
    shared.nic.valid.store(caps.counters, Ordering::Relaxed);
    shared.nic.rx_desc_bytes.store(desc_bytes, Ordering::Relaxed);
    engine::Port::write_tail(&queue, layout.tail_register(tail));
    fail_at(pdev, Step::Tail)?;
    let rx = Arc::new(
        Rx {
            queue,
            layout,
            engine: engine::Shared::new(),
            shared: shared.clone(),
            flush_ns: u64::from(p.flush_ms) * 1_000_000,
        },
        GFP_KERNEL,
    )?;
    let mut cap = KBox::new(
        Capture {
            service: None,
            consumers: KVec::with_capacity(usize::try_from(ring.consumers)?, GFP_KERNEL)?,
            rx: Some(rx.clone()),
        },
        GFP_KERNEL,
    )?;
    spawn_consumers(&rx, &mut cap.consumers, p, name)?;
    fail_at(pdev, Step::Consumers)?;
    let sname = CString::try_from_fmt(fmt!("{}/svc", name.to_str().map_err(|_| EINVAL)?))?;
    let service = Arc::new(
        Service {
            rx: rx.clone(),
            last_ns: AtomicU64::new(0),
        },
        GFP_KERNEL,
    )?;
    service.refresh();
    cap.service = Some(KThread::spawn(service, &sname, None)?);
    fail_at(pdev, Step::Service)?;
    let cap: KBox<dyn Running> = cap;
    Ok(cap)
}

/// Starts one consumer thread per ring segment into `threads`.
#[inline(never)]
fn spawn_consumers<N: Nic>(
    rx: &Arc<Rx<N>>,
    threads: &mut KVec<KThread<Consumer<N>>>,
    p: &Params,
    name: &CStr,
) -> Result {
    let mut cpus = PinnedCpus {
        mask: p.core_mask,
        nr: kthread::nr_cpu_ids(),
    };
    let name = name.to_str().map_err(|_| EINVAL)?;
    for id in 0..rx.layout.consumers() {
        // Filled element by element so the ~36 KiB batch never sits on the
        // (small) kernel stack; kvmalloc, as it need not be physically
        // contiguous (an order-4 kmalloc can fail on a fragmented host).
        let mut recs = KVVec::with_capacity(MAX_BATCH, GFP_KERNEL)?;
        for _ in 0..MAX_BATCH {
            recs.push(Rec::EMPTY, GFP_KERNEL)?;
        }
        let writer = Writer::new(id, &rx.layout, recs);
        let consumer = Arc::pin_init(
            pin_init!(Consumer {
                rx: rx.clone(),
                id,
                state <- new_mutex!(ConsumerState { writer, idle_polls: 0 }),
                busy_polls: AtomicU32::new(0),
            }),
            GFP_KERNEL,
        )?;
        let cname = CString::try_from_fmt(fmt!("{}/{}", name, id))?;
        threads.push(KThread::spawn(consumer, &cname, cpus.next())?, GFP_KERNEL)?;
    }
    Ok(())
}

/// Hands out the CPUs of a mask in order, then `None` (unpinned).
struct PinnedCpus {
    mask: u64,
    nr: u32,
}

impl PinnedCpus {
    fn next(&mut self) -> Option<u32> {
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

/// Per-consumer state, touched only by its own thread.
struct ConsumerState {
    writer: Writer<KVVec<Rec>>,
    idle_polls: u32,
}

/// One capture thread: the owner of one ring segment.
#[pin_data]
struct Consumer<N: Nic> {
    rx: Arc<Rx<N>>,
    id: u32,
    #[pin]
    state: Mutex<ConsumerState>,
    busy_polls: AtomicU32,
}

impl<N: Nic> Consumer<N> {
    /// One poll of the engine, inside the pause gate: descriptors handled,
    /// and whether another writer held the token.
    fn poll(&self, st: &mut ConsumerState) -> (usize, bool) {
        let rx = &*self.rx;
        let sh = &*rx.shared;
        if !sh.gate.enter() {
            return (0, false);
        }
        let cx = Ctx {
            port: &rx.queue,
            memory: &sh.buffer,
            publish: &sh.publish,
            listeners: &sh.listeners,
            shared: &rx.engine,
            ring: &rx.layout,
            flush_ns: rx.flush_ns,
            on_full: OnFull::Drop,
        };
        // Read only by the token holder (the closure runs only then).
        let mut filter = None;
        let p = st.writer.poll(&cx, || {
            filter = sh.filter.lock().clone();
            Settings {
                stream: sh.stream(),
                snaplen: sh.snaplen.load(Ordering::Relaxed),
                filter: filter.as_deref(),
            }
        });
        sh.gate.leave();
        if p.wake {
            sh.wake_all();
        }
        if p.handled != 0 {
            if let Some(c) = usize::try_from(self.id).ok().and_then(|i| sh.counters.get(i)) {
                c.add(&p.stats);
            }
        }
        (p.handled, p.token_elsewhere)
    }
}

impl<N: Nic> ThreadBody for Consumer<N> {
    fn run_once(&self) {
        let (worked, waiting, idle) = {
            let mut st = self.state.lock();
            let (worked, waiting) = self.poll(&mut st);
            st.idle_polls = if worked > 0 { 0 } else { st.idle_polls.saturating_add(1) };
            (worked, waiting, st.idle_polls)
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
        // Another writer holds the token: under traffic it comes back
        // within a batch, much sooner than a sleep would end, so spin for a
        // while (a sleeping writer would stall the segments after its own).
        if waiting && idle < TOKEN_SPINS {
            core::hint::spin_loop();
            return;
        }
        match idle {
            0..=63 => core::hint::spin_loop(),
            64..=20_000 => kthread::sleep_us(20, 50),
            _ => kthread::sleep_us(500, 1000),
        }
    }
}

/// Polls a writer spins while another writer holds the token, before it
/// backs off like an idle one (tens of microseconds: several batches).
const TOKEN_SPINS: u32 = 4096;

/// The slow path of one device, every 100 ms off the capture threads:
/// link state and NIC counters, read by the backend ([`Nic::service`]),
/// and the expiry of lingering listeners.
struct Service<N: Nic> {
    rx: Arc<Rx<N>>,
    last_ns: AtomicU64,
}

/// How often the slow path reads the NIC.
const SERVICE_PERIOD_NS: u64 = 100_000_000;

impl<N: Nic> Service<N> {
    /// Pauses the consumers; false if one does not leave its poll within
    /// a second (they are resumed then).
    fn pause(sh: &Shared) -> bool {
        sh.gate.pause();
        let deadline = kthread::now_ns().saturating_add(1_000_000_000);
        while !sh.gate.idle() {
            if kthread::now_ns() > deadline {
                sh.gate.resume();
                return false;
            }
            kthread::sleep_us(1000, 2000);
        }
        true
    }

    /// The NIC was reset under the capture and restarts at descriptor 0:
    /// once the reset is over (no DMA), with the consumers paused, the ring
    /// is brought back in step (`RingLayout::realign`): descriptors the NIC
    /// completed before the reset are kept, the rest of that lap of the
    /// ring is marked as holding no frame, the next block header carries
    /// the GAP flag and `nic_resets` counts it; then the queue is started
    /// again. If the device cannot be brought back, capture stays stopped
    /// (the backend said why; the device needs a rebind).
    fn recover(&self) -> bool {
        let rx = &*self.rx;
        let (sh, q) = (&*rx.shared, &rx.queue);
        if q.nic().await_reset().is_err() {
            return false;
        }
        if !Self::pause(sh) {
            return false;
        }
        let n = u64::from(q.count());
        let slot = |k: u64| -> u32 {
            // CAST: a remainder below the ring size (a u32).
            k.checked_rem(n).unwrap_or(0) as u32
        };
        let tail = sh.publish.tail();
        // The NIC completes descriptors in order: its head is the first
        // descriptor from the writers' position on that it did not complete.
        let mut head = rx.engine.consumed();
        while head < tail && engine::Port::poll(q, slot(head)).is_some() {
            head += 1;
        }
        let r = rx.layout.realign(head, tail);
        for k in r.skip_from..r.restart {
            q.mark_not_a_frame(slot(k));
        }
        sh.publish.set_tail(r.tail);
        rx.engine.mark_gap();
        sh.nic.resets.fetch_add(1, Ordering::Relaxed);
        let ok = q.restart().is_ok();
        if ok {
            engine::Port::write_tail(q, r.tail_register);
        }
        sh.gate.resume();
        ok
    }

    fn refresh(&self) {
        // Lingering listeners past their deadline stop holding the
        // producer back (an attach by name also frees one it finds
        // expired); the consumers re-read the limit every batch.
        let sh = &*self.rx.shared;
        sh.listeners.expire(kthread::mono_ns(), sh.publish.committed());
        let mut s = self.rx.queue.nic().service();
        if s.reset && self.recover() {
            s = self.rx.queue.nic().service();
        }
        let n = &self.rx.shared.nic;
        n.link_up.store(s.link.up, Ordering::Relaxed);
        n.link_mbps.store(s.link.mbps, Ordering::Relaxed);
        n.promisc.store(s.promisc, Ordering::Relaxed);
        n.received.store(s.counters.received, Ordering::Relaxed);
        n.missed.store(s.counters.missed, Ordering::Relaxed);
        n.valid
            .store(s.counters.valid & self.rx.queue.caps().counters, Ordering::Relaxed);
        self.last_ns.store(kthread::now_ns(), Ordering::Relaxed);
    }
}

impl<N: Nic> ThreadBody for Service<N> {
    fn run_once(&self) {
        if kthread::now_ns().saturating_sub(self.last_ns.load(Ordering::Relaxed)) >= SERVICE_PERIOD_NS {
            self.refresh();
        }
        // Short sleeps keep stopping prompt.
        kthread::sleep_us(10_000, 20_000);
    }
}
