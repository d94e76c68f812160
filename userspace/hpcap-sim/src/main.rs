// SPDX-License-Identifier: MIT
//! `hpcap-sim`: a software capture source. It creates a shared-memory file
//! (see `hpcap::shm` for the layout) and captures into it with exactly the
//! code the driver's capture threads run: frames arrive on a software NIC
//! (`hpcap_core::softnic`: an 82576-format RX ring that drops and counts
//! what finds no free descriptor) and one writer runs the core's capture
//! engine (`hpcap_core::engine::Writer::poll`: fates, snaplen, the BPF
//! filter, reservation, record writing, ordered publication) against the
//! listener protocol. Frames come from pcap/pcapng files or a synthetic
//! generator.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use clap::{Parser, ValueEnum};
use std::sync::atomic::Ordering;

use hpcap::core::bpf::{SockFilter, Verified};
use hpcap::core::config::{self, Stream};
use hpcap::core::desc::IgbAdv;
use hpcap::core::engine::{
    Ctx, OnFull as EngineOnFull, Polled, Port, Rec, Settings, Shared as EngineShared, Writer,
    MAX_BATCH, TAIL_BATCH,
};
use hpcap::core::format::StreamFormat;
use hpcap::core::segment::RingLayout;
use hpcap::core::softnic::{Incoming, SoftNic};
use hpcap::core::stats::{self, CaptureStats, NicCounters, COUNTERS};
use hpcap::files::CaptureFile;
use hpcap::shm::{CreateParams, ShmSource, STATE_EOS, STATE_RUNNING};
use hpcap::util::{now_ns, parse_size};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    /// Native pcapng blocks.
    Pcapng,
    /// HPCAP RAW records (packet and padding records only, no block headers).
    Raw,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum OnFull {
    /// Drop and count frames that do not fit (what a NIC does).
    Drop,
    /// Wait for blocking listeners to make room (lossless replay).
    Wait,
}

/// Software capture source over shared memory, for tests and benchmarks.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    long_about = "Creates a software capture source at PATH (normally under /dev/shm) and \
produces a pcapng (or HPCAP RAW) block stream into it, exactly as the hpcap.ko driver does \
into /dev/hpcapN: same block layout, same records, same publication and listener protocol. \
Every hpcap tool accepts PATH wherever it accepts /dev/hpcapN.",
    after_help = "\
SYNTHETIC SPEC:
  SIZES[:COUNT]  SIZES is a frame length (64), a range drawn uniformly with a fixed seed
                 (60-1514), or imix (64:7, 594:4, 1518:1). COUNT defaults to --count.
                 Frames are Ethernet/IPv4/UDP with a 64-bit sequence number at offset 42.

EXAMPLES:
  # replay a trace twice at 100 kpps once hpcapdd attached
  hpcap-sim --pcap trace.pcap --loop 2 --pps 100000 --wait-listener /dev/shm/hpcap-test
  # 10 million 64-byte frames as fast as possible, lossless for blocking listeners
  hpcap-sim --synthetic 64:10000000 --on-full wait --wait-listener /dev/shm/hpcap-test

EXIT STATUS: 0 when the input was produced completely (or SIGINT/SIGTERM stopped it
cleanly), 1 on errors."
)]
struct Args {
    /// Replay the frames of this pcap or pcapng file (timestamps kept).
    #[arg(
        long,
        value_name = "IN",
        conflicts_with = "synthetic",
        required_unless_present = "synthetic"
    )]
    pcap: Option<PathBuf>,
    /// Generate frames: SIZES[:COUNT] (see below).
    #[arg(long, value_name = "SPEC")]
    synthetic: Option<String>,
    /// Frames per synthetic run when SPEC has no COUNT.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    count: u64,
    /// Produce the input this many times (replayed timestamps are shifted so
    /// they keep increasing).
    #[arg(long = "loop", default_value_t = 1, value_name = "N")]
    loops: u64,
    /// Frames per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0, value_name = "R")]
    pps: u64,
    /// Produce nothing until a listener is attached.
    #[arg(long)]
    wait_listener: bool,
    /// Stream format.
    #[arg(long, value_enum, default_value_t = Format::Pcapng)]
    format: Format,
    /// Block size (power of two, 64K..256M).
    #[arg(long, default_value = "4M", value_parser = parse_size, value_name = "B")]
    block_size: u64,
    /// Buffer size (a multiple of the block size).
    #[arg(long, default_value = "64M", value_parser = parse_size, value_name = "B")]
    buffer_size: u64,
    /// Snapshot length (0 = whole frames; hpcapctl may change it live).
    #[arg(long, default_value_t = 0, value_name = "N")]
    snaplen: u32,
    /// Interface name reported to listeners (used in hpcapdd's file names).
    #[arg(long, default_value = "sim0", value_name = "NAME")]
    name: String,
    /// What to do when blocking listeners leave no room.
    #[arg(long, value_enum, default_value_t = OnFull::Drop)]
    on_full: OnFull,
    /// Close a partly filled block after this long without it filling
    /// (milliseconds), as the driver does on idle links.
    #[arg(long, default_value_t = 200, value_name = "MS")]
    flush_ms: u64,
    /// Synthetic timestamps: first timestamp (ns since the epoch; default:
    /// the wall clock at each frame).
    #[arg(long, value_name = "NS")]
    ts_start: Option<u64>,
    /// Synthetic timestamps: increment per frame in ns (with --ts-start).
    #[arg(long, default_value_t = 1000, value_name = "NS")]
    ts_step: u64,
    /// Keep PATH when exiting (by default it is removed at the end of the
    /// input and on SIGINT/SIGTERM; listeners keep their mapping either way).
    #[arg(long)]
    keep: bool,
    /// Accepted for compatibility: removing PATH at exit is the default.
    #[arg(long, hide = true)]
    unlink: bool,
    /// Descriptors of the software NIC's RX ring (a multiple of 8).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    ring_size: u32,
    /// Bytes per receive buffer of the software NIC; longer frames span
    /// descriptors and are dropped as on a NIC (`dropped_ring`).
    #[arg(long, default_value_t = 16384, value_name = "B")]
    rx_buf: u32,
    /// Write the final counters as JSON to this file.
    #[arg(long, value_name = "FILE")]
    stats_json: Option<PathBuf>,
    /// Shared-memory file to create (e.g. /dev/shm/hpcap-test).
    path: PathBuf,
}

/// Frame size distribution.
#[derive(Debug, Clone)]
enum Sizes {
    Fixed(usize),
    Range(usize, usize),
    Imix,
}

fn parse_spec(spec: &str, default_count: u64) -> Result<(Sizes, u64)> {
    let (sizes, count) = match spec.split_once(':') {
        Some((s, c)) => (
            s,
            c.parse::<u64>()
                .with_context(|| format!("bad count in {spec:?}"))?,
        ),
        None => (spec, default_count),
    };
    let sizes = if sizes == "imix" {
        Sizes::Imix
    } else if let Some((a, b)) = sizes.split_once('-') {
        let (a, b): (usize, usize) = (a.parse()?, b.parse()?);
        if a < 60 || b < a {
            bail!("bad size range {sizes:?}: need 60 <= MIN <= MAX");
        }
        Sizes::Range(a, b)
    } else {
        let n: usize = sizes
            .parse()
            .with_context(|| format!("bad synthetic spec {spec:?}"))?;
        if n < 60 {
            bail!("frames must be at least 60 bytes");
        }
        Sizes::Fixed(n)
    };
    if let Sizes::Fixed(n) | Sizes::Range(_, n) = sizes {
        if n > 65535 {
            bail!("frames larger than 65535 bytes are not supported");
        }
    }
    Ok((sizes, count))
}

/// xorshift64*: deterministic sizes for a given run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl Sizes {
    fn pick(&self, rng: &mut Rng) -> usize {
        match *self {
            Sizes::Fixed(n) => n,
            Sizes::Range(a, b) => a + (rng.next() % (b - a + 1) as u64) as usize,
            Sizes::Imix => match rng.next() % 12 {
                0..=6 => 64,
                7..=10 => 594,
                _ => 1518,
            },
        }
    }
}

/// Builds an Ethernet/IPv4/UDP frame of `len` bytes carrying `seq`.
fn synth_frame(buf: &mut [u8], len: usize, seq: u64) {
    let f = &mut buf[..len];
    f.fill(0);
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (len - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let mut sum = 0u32;
    for c in ip.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&4000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&4001u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    if len >= 50 {
        f[42..50].copy_from_slice(&seq.to_be_bytes());
    }
}

/// The producer: a software NIC and the driver's capture engine.
struct Producer {
    shm: ShmSource,
    stream: Stream,
    nic: SoftNic<IgbAdv>,
    ring: RingLayout,
    engine: EngineShared,
    writer: Writer<Vec<Rec>>,
    on_full: EngineOnFull,
    flush_ns: u64,
    stats: CaptureStats,
    filter: Option<Verified<Vec<SockFilter>>>,
    filter_version: u32,
    snaplen: u32,
    last_reap: Instant,
}

/// ns since the epoch, for the software NIC.
fn clock() -> u64 {
    now_ns()
}

impl Producer {
    fn new(shm: ShmSource, stream: Stream, args: &Args) -> Result<Self> {
        let ring = RingLayout::new(args.ring_size, 1, TAIL_BATCH.min(args.ring_size / 2), 1)
            .map_err(|e| anyhow::anyhow!("--ring-size {}: {e:?}", args.ring_size))?;
        let nic = SoftNic::new(args.ring_size, args.rx_buf, false, clock);
        let c = shm.control();
        c.publish.set_tail(ring.initial_tail());
        nic.write_tail(ring.tail_register(ring.initial_tail()));
        // Relaxed: read by listeners' statistics only.
        c.nic_valid
            .store(stats::NIC_RECEIVED | stats::NIC_MISSED, Ordering::Relaxed);
        let writer = Writer::new(0, &ring, vec![Rec::EMPTY; MAX_BATCH]);
        Ok(Self {
            shm,
            stream,
            nic,
            ring,
            engine: EngineShared::new(),
            writer,
            on_full: match args.on_full {
                OnFull::Drop => EngineOnFull::Drop,
                OnFull::Wait => EngineOnFull::Stall,
            },
            flush_ns: args.flush_ms.saturating_mul(1_000_000),
            stats: CaptureStats::ZERO,
            filter: None,
            filter_version: 0,
            snaplen: args.snaplen,
            last_reap: Instant::now(),
        })
    }

    /// Picks up configuration changes made through the control area. A
    /// filter is verified here, once, when it is installed.
    fn refresh_config(&mut self) {
        let c = self.shm.control();
        self.snaplen = c.snaplen.load(Ordering::Relaxed);
        if c.filter_version() != self.filter_version {
            let (f, v) = c.filter();
            self.filter_version = v;
            self.filter = if f.is_empty() {
                None
            } else {
                match Verified::new(f) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        eprintln!("hpcap-sim: ignoring an invalid filter: {e:?}");
                        None
                    }
                }
            };
        }
    }

    /// Every 100 ms: treats listeners whose process died as the kernel
    /// treats a closed file (named ones linger, others are detached) and
    /// frees lingering listeners past their deadline; here nobody else
    /// would.
    fn reap(&mut self) {
        if self.last_reap.elapsed() < Duration::from_millis(100) {
            return;
        }
        self.last_reap = Instant::now();
        self.shm.control().reap(hpcap::util::mono_ns());
        self.refresh_config();
    }

    /// One poll of the capture engine; `flush` lets it close an idle block.
    fn poll(&mut self, flush: bool) -> Polled {
        let c = self.shm.control();
        let cx = Ctx {
            port: &self.nic,
            memory: self.shm.data(),
            publish: &c.publish,
            listeners: &c.listeners,
            shared: &self.engine,
            ring: &self.ring,
            flush_ns: if flush { self.flush_ns } else { u64::MAX },
            on_full: self.on_full,
        };
        let (stream, snaplen, filter) = (self.stream, self.snaplen, self.filter.as_ref());
        let p = self.writer.poll(&cx, || Settings {
            stream,
            snaplen,
            filter,
        });
        self.stats.merge(&p.stats);
        if p.wake {
            c.wake_all();
        }
        p
    }

    /// Publishes the counters, the NIC's included.
    fn store_counters(&self) {
        let mut s = self.stats;
        s.set_nic(&NicCounters {
            received: self.nic.received(),
            missed: self.nic.missed(),
            valid: stats::NIC_RECEIVED | stats::NIC_MISSED,
        });
        self.shm.control().store_counters(&s);
    }

    /// Waits until a blocking listener makes room (or is gone).
    fn wait_for_room(&mut self) {
        self.store_counters();
        let c = self.shm.control();
        // Acquire: pairs with listeners' Release bump after acking.
        let seen = c.wake.load(Ordering::Acquire);
        c.sleep(seen, Duration::from_millis(5));
        self.reap();
    }

    /// Offers one frame to the NIC, running the engine until the ring has
    /// room for it (with `--on-full wait`, waiting for listeners too).
    fn push(&mut self, ts_ns: u64, orig_len: u32, frame: &[u8]) {
        let need = frame.len().div_ceil(self.nic.buf_size() as usize).max(1) as u32;
        while self.nic.free() < need && need <= self.nic.count() / 2 {
            let p = self.poll(false);
            if p.stalled && hpcap::util::stop_requested().is_none() {
                self.wait_for_room();
            } else if p.handled == 0 && p.stalled {
                // Stopping: let the NIC drop what no longer fits.
                break;
            } else if p.handled == 0 {
                std::thread::yield_now();
            }
        }
        self.nic.receive(Incoming {
            bytes: frame,
            ts_ns: Some(ts_ns),
            orig_len: Some(orig_len),
        });
        // Keep the ring moving in batches.
        if self.nic.free() < self.ring.ring_size() / 2 {
            self.poll(false);
            self.store_counters();
            self.reap();
        }
    }

    /// At the end of the input: waits until every blocking listener has
    /// read the whole stream or is gone, lingering ones included (taken
    /// over and read, killed, or expired), or a stop signal. With `all`
    /// false (a lossy replay) only for named listeners: an unnamed live one
    /// reads the rest through its mapping after we exit, but a named one
    /// may yet die or fail and linger, and its successor needs this file
    /// to find it.
    fn wait_for_readers(&mut self, all: bool) {
        let mut said = false;
        loop {
            let c = self.shm.control();
            let commit = c.publish.committed();
            let behind = c
                .listeners
                .list()
                .filter(|l| {
                    l.mode == hpcap::core::listener::Mode::Blocking
                        && !l.killed
                        && (l.lingering.is_some()
                            || ((all || l.name.is_some()) && l.cursor < commit))
                })
                .count();
            if behind == 0 || hpcap::util::stop_requested().is_some() {
                return;
            }
            if !said && c.listeners.list().any(|l| l.lingering.is_some()) {
                eprintln!(
                    "hpcap-sim: end of input; waiting for lingering listeners to be taken over \
                     and read (or to expire)"
                );
                said = true;
            }
            std::thread::sleep(Duration::from_millis(20));
            self.reap();
        }
    }

    /// Captures everything the NIC holds, then closes the open block.
    fn drain(&mut self) {
        loop {
            let p = self.poll(false);
            if p.stalled {
                if hpcap::util::stop_requested().is_some() {
                    break;
                }
                self.wait_for_room();
            } else if p.handled == 0 {
                break;
            }
        }
        // An idle poll with an immediate flush closes the open block.
        let flush_ns = std::mem::replace(&mut self.flush_ns, 0);
        self.poll(true);
        self.flush_ns = flush_ns;
        self.store_counters();
    }
}

/// Sleeps until `deadline`, polling (and flushing idle blocks) meanwhile.
fn pace(p: &mut Producer, deadline: Instant) {
    loop {
        let now = Instant::now();
        if now >= deadline || hpcap::util::stop_requested().is_some() {
            return;
        }
        if p.poll(true).handled == 0 {
            p.store_counters();
            p.reap();
            std::thread::sleep((deadline - now).min(Duration::from_millis(5)));
        }
    }
}

fn run(args: &Args) -> Result<serde_json::Value> {
    let format = match args.format {
        Format::Pcapng => StreamFormat::Pcapng,
        Format::Raw => StreamFormat::Raw,
    };
    let stream = Stream::new(format, args.buffer_size, args.block_size).map_err(|e| {
        anyhow::anyhow!(
            "--block-size {} / --buffer-size {}: {}; the buffer must be a whole number of blocks",
            args.block_size,
            args.buffer_size,
            e.explain()
        )
    })?;
    config::snaplen(args.snaplen).map_err(|e| anyhow::anyhow!("--snaplen: {}", e.explain()))?;
    let synthetic = args
        .synthetic
        .as_deref()
        .map(|s| parse_spec(s, args.count))
        .transpose()?;
    if let Some((Sizes::Fixed(n) | Sizes::Range(_, n), _)) = &synthetic {
        if *n > args.rx_buf as usize {
            eprintln!(
                "hpcap-sim: frames up to {n} B span several {} B receive buffers and are dropped \
                 as on a NIC (dropped_ring); raise --rx-buf to store them",
                args.rx_buf
            );
        }
    }
    let input = args
        .pcap
        .as_ref()
        .map(|p| CaptureFile::open(p).with_context(|| format!("opening {}", p.display())))
        .transpose()?;
    let shm = ShmSource::create(
        &args.path,
        &CreateParams {
            buffer_size: args.buffer_size,
            block_size: args.block_size,
            format: format.abi(),
            snaplen: args.snaplen,
            name: args.name.clone(),
        },
    )
    .with_context(|| format!("creating the software source {}", args.path.display()))?;
    // From here on the file exists: remove it on every way out (unless
    // --keep), listeners keep their mappings.
    let _remove = RemoveOnDrop((!args.keep).then(|| args.path.clone()));
    let mut p = Producer::new(shm, stream, args)?;
    p.shm.control().set_state(STATE_RUNNING);
    if args.wait_listener {
        eprintln!(
            "hpcap-sim: waiting for a listener on {}",
            args.path.display()
        );
        while !p.shm.control().listeners.any_attached() {
            if hpcap::util::stop_requested().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
            p.reap();
        }
    }
    p.refresh_config();
    let t0 = Instant::now();
    let interval = (args.pps > 0).then(|| Duration::from_secs_f64(1.0 / args.pps as f64));
    let mut n: u64 = 0;
    let stop = || hpcap::util::stop_requested().is_some();
    'outer: for lap in 0..args.loops {
        if let Some(f) = &input {
            let mut it = f
                .packets()
                .map_err(|e| anyhow::anyhow!("{}: {e:?}", f.path().display()))?;
            let (first, last) = {
                let mut probe = f.packets().map_err(|e| anyhow::anyhow!("{e:?}"))?;
                let first = probe.next().and_then(|r| r.ok()).map_or(0, |p| p.ts_ns);
                let last = probe
                    .filter_map(|r| r.ok())
                    .last()
                    .map_or(first, |p| p.ts_ns);
                (first, last)
            };
            let shift = lap * (last.saturating_sub(first) + 1_000);
            for pk in it.by_ref() {
                let pk = pk.map_err(|e| anyhow::anyhow!("{}: {e:?}", f.path().display()))?;
                if let Some(iv) = interval {
                    pace(&mut p, t0 + iv * n as u32);
                }
                if stop() {
                    break 'outer;
                }
                p.push(pk.ts_ns + shift, pk.orig_len, pk.data);
                n += 1;
            }
        } else if let Some((sizes, count)) = &synthetic {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
            let mut frame = vec![0u8; 65536];
            for i in 0..*count {
                if let Some(iv) = interval {
                    pace(&mut p, t0 + iv.mul_f64(n as f64));
                }
                if i.is_multiple_of(1024) && stop() {
                    break 'outer;
                }
                let len = sizes.pick(&mut rng);
                synth_frame(&mut frame, len, n);
                let ts = match args.ts_start {
                    Some(s) => s + n * args.ts_step,
                    None => now_ns(),
                };
                p.push(ts, len as u32, &frame[..len]);
                n += 1;
            }
        }
    }
    p.drain();
    p.shm.control().set_state(STATE_EOS);
    // Lossless to the end (--on-full wait): every blocking listener reads
    // the rest. Either way a named listener whose process died (or whose
    // storage failed) holds the rest for a successor, who needs this file
    // to find it.
    p.wait_for_readers(args.on_full == OnFull::Wait);
    let secs = t0.elapsed().as_secs_f64();
    let mut s = p.stats;
    s.set_nic(&NicCounters {
        received: p.nic.received(),
        missed: p.nic.missed(),
        valid: stats::NIC_RECEIVED | stats::NIC_MISSED,
    });
    eprintln!(
        "hpcap-sim: {} frames offered, {} seen, {} stored, {} dropped by the NIC, {} dropped \
         after it (no space {}), {} filtered in {:.2} s ({:.2} Mpps)",
        n,
        s.frames_seen,
        s.frames_stored,
        s.nic_missed,
        s.dropped_total(),
        s.dropped_no_space,
        s.filtered,
        secs,
        s.frames_seen as f64 / secs.max(1e-9) / 1e6
    );
    let mut v = serde_json::Map::new();
    v.insert("frames_offered".into(), n.into());
    for c in COUNTERS {
        v.insert(c.name.into(), (c.get)(&s).into());
    }
    v.insert("commit".into(), p.shm.control().publish.committed().into());
    v.insert("seconds".into(), secs.into());
    Ok(serde_json::Value::Object(v))
}

/// Removes a path when dropped (the source file, on every way out).
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn main() {
    let args = Args::parse();
    hpcap::util::install_stop_handlers();
    match run(&args) {
        Ok(v) => {
            if let Some(f) = &args.stats_json {
                if let Err(e) = std::fs::write(f, format!("{v}\n")) {
                    eprintln!("hpcap-sim: writing {}: {e}", f.display());
                    std::process::exit(1);
                }
            }
        }
        Err(e) => {
            eprintln!("hpcap-sim: error: {e:#}");
            std::process::exit(1);
        }
    }
}
