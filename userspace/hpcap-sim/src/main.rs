// SPDX-License-Identifier: MIT
//! `hpcap-sim`: a software capture source. It creates a shared-memory file
//! (see `hpcap::shm` for the layout) and produces a block-structured stream
//! into it with the very code the driver uses: the core's `BlockWriter`
//! (block headers, padding), its EPB/RAW writers, its ordered publication
//! (`PublishState`) and listener protocol (`ListenerTable`), snaplen and BPF
//! filter. Frames come from pcap/pcapng files or a synthetic generator.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use hpcap::core::abi;
use hpcap::core::block::{Layout, ReserveError, StreamFormat};
use hpcap::core::bpf::{self, SockFilter};
use hpcap::core::pcapng::{epb_len, write_epb_frame, EpbHeader, EpbOptions, EPB_DATA_OFFSET};
use hpcap::core::publish::{Batch, Geometry};
use hpcap::core::raw::{raw_len, write_raw, RAW_MAX_CAPLEN};
use hpcap::core::stats::{self, CaptureStats, DropStage};
use hpcap::files::CaptureFile;
use hpcap::shm::{geometry_of, CreateParams, ShmSource, STATE_EOS, STATE_RUNNING};
use hpcap::util::{now_ns, parse_size};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    /// Native pcapng blocks.
    Pcapng,
    /// HPCAP RAW records (each block opened by a header-carrying padding record).
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
    /// Remove PATH at exit (listeners keep their mapping).
    #[arg(long)]
    unlink: bool,
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

/// The stream buffer of the producer's mapping.
#[allow(clippy::mut_from_ref)]
fn buf_of(shm: &ShmSource) -> &mut [u8] {
    // SAFETY: we are the only producer; the protocol reserves every range
    // we write (Batch::place and BlockWriter agree, checked in `push`).
    unsafe { shm.data().buffer_mut() }
}

/// The producer: the driver's per-packet path, in userspace.
struct Producer {
    shm: ShmSource,
    geo: Geometry,
    writer: hpcap::core::block::BlockWriter,
    format: Format,
    on_full: OnFull,
    stats: CaptureStats,
    batch: Option<Batch>,
    batch_records: u64,
    filter: Vec<SockFilter>,
    filter_version: u32,
    snaplen: u32,
    last_reap: Instant,
    block_opened: Option<Instant>,
    flush_after: Duration,
    produced: u64,
}

impl Producer {
    /// Picks up configuration changes made through the control area.
    fn refresh_config(&mut self) {
        let c = self.shm.control();
        self.snaplen = c.snaplen.load(std::sync::atomic::Ordering::Relaxed);
        if c.filter_version() != self.filter_version {
            let (f, v) = c.filter();
            self.filter_version = v;
            self.filter = if bpf::verify(&f).is_ok() {
                f
            } else {
                Vec::new()
            };
        }
    }

    /// Detaches listeners whose process died (the kernel does this when a
    /// file is closed; here nobody else would).
    fn reap(&mut self) {
        if self.last_reap.elapsed() < Duration::from_millis(100) {
            return;
        }
        self.last_reap = Instant::now();
        let c = self.shm.control();
        for id in 0..abi::MAX_LISTENERS {
            let pid = c.listener_pid[id].load(std::sync::atomic::Ordering::Relaxed);
            if pid != 0 && !hpcap::shm::pid_alive(pid) {
                c.listener_pid[id].store(0, std::sync::atomic::Ordering::Relaxed);
                let _ = c.listeners.detach(id);
            }
        }
        self.refresh_config();
    }

    fn open_batch(&mut self) -> &mut Batch {
        if self.batch.is_none() {
            let c = self.shm.control();
            let limit = c.listeners.reserve_limit(c.publish.committed(), &self.geo);
            let b = loop {
                match c.publish.begin_batch(0, limit) {
                    Ok(b) => break b,
                    Err(_) => hpcap::core::publish::spin_wait(),
                }
            };
            self.batch = Some(b);
            self.batch_records = 0;
        }
        self.batch.as_mut().expect("just opened")
    }

    /// Publishes the open batch.
    fn publish(&mut self) {
        if let Some(b) = self.batch.take() {
            let c = self.shm.control();
            self.produced += self.batch_records;
            let t = c.publish.finish_batch(b, self.produced);
            let p = c.publish.complete(t);
            if p.wake {
                c.wake_all();
            }
        }
        self.shm.control().store_counters(&self.stats);
    }

    /// Waits until a blocking listener makes room (or is gone).
    fn wait_for_room(&mut self) {
        self.publish();
        let c = self.shm.control();
        // Acquire: pairs with listeners' Release bump after acking.
        let seen = c.wake.load(std::sync::atomic::Ordering::Acquire);
        c.sleep(seen, Duration::from_millis(5));
        self.reap();
    }

    fn push(&mut self, ts_ns: u64, orig_len: u32, frame: &[u8]) -> Result<()> {
        self.stats.seen(orig_len);
        if !self.filter.is_empty() {
            // Verified when installed.
            let ok = bpf::verify(&self.filter)
                .map(|p| p.matches(frame, orig_len))
                .unwrap_or(true);
            if !ok {
                self.stats.filter_rejected(orig_len);
                return Ok(());
            }
        }
        let caplen = stats::caplen(frame.len() as u32, self.snaplen) as usize;
        let data = &frame[..caplen];
        let rec = match self.format {
            Format::Pcapng => epb_len(caplen, &EpbOptions::NONE),
            Format::Raw => raw_len(caplen),
        };
        if !self.writer.layout().fits_fresh_block(rec as u64)
            || (self.format == Format::Raw && caplen > RAW_MAX_CAPLEN)
        {
            self.stats.dropped(DropStage::Writer, orig_len);
            self.writer.note_drops(1);
            return Ok(());
        }
        loop {
            let geo = self.geo;
            let placed = self.open_batch().place(&geo, rec as u64);
            let Some(pl) = placed else {
                if self.on_full == OnFull::Wait && hpcap::util::stop_requested().is_none() {
                    self.wait_for_room();
                    continue;
                }
                self.stats.dropped(DropStage::NoSpace, orig_len);
                self.writer.note_drops(1);
                return Ok(());
            };
            let buf = buf_of(&self.shm);
            let slot = match self.writer.reserve(buf, rec, ts_ns, u64::MAX) {
                Ok(s) => s,
                Err(ReserveError::NoSpace) => bail!("block writer out of step with the batch"),
                Err(e) => bail!("block writer: {e:?}"),
            };
            if slot.offset != pl.record.offset {
                bail!(
                    "block layout mismatch: batch placed the record at {}, writer at {}",
                    pl.record.offset,
                    slot.offset
                );
            }
            match self.format {
                Format::Pcapng => {
                    let hdr = EpbHeader {
                        interface: 0,
                        ts_ns,
                        caplen: caplen as u32,
                        orig_len: orig_len.max(caplen as u32),
                    };
                    write_epb_frame(buf, slot.index, &hdr, &EpbOptions::NONE)
                        .map_err(|e| anyhow::anyhow!("EPB: {e:?}"))?;
                    buf[slot.index + EPB_DATA_OFFSET..][..caplen].copy_from_slice(data);
                }
                Format::Raw => {
                    write_raw(buf, slot.index, ts_ns, orig_len, data)
                        .map_err(|e| anyhow::anyhow!("RAW record: {e:?}"))?;
                }
            }
            if pl.header.is_some() {
                self.block_opened = Some(Instant::now());
            }
            self.stats.stored(orig_len, caplen as u32);
            self.batch_records += 1;
            if self.writer.layout().offset_in_block(self.writer.position()) == 0 {
                self.block_opened = None;
            }
            if self.batch_records >= 256 {
                self.publish();
                self.reap();
            }
            return Ok(());
        }
    }

    /// Closes the open block if it has been open too long (idle flush), or
    /// unconditionally with `force`.
    fn flush(&mut self, force: bool) {
        let due = self
            .block_opened
            .is_some_and(|t| force || t.elapsed() >= self.flush_after);
        if !due {
            return;
        }
        let geo = self.geo;
        if self.open_batch().close_block(&geo).is_some() {
            let buf = buf_of(&self.shm);
            // Same arithmetic as close_block: cannot fail.
            let _ = self.writer.finish_block(buf, u64::MAX);
            self.block_opened = None;
        }
        self.publish();
    }
}

/// Sleeps until `deadline`, publishing first (and flushing idle blocks)
/// if the wait is long.
fn pace(p: &mut Producer, deadline: Instant) {
    let now = Instant::now();
    if deadline <= now {
        return;
    }
    p.publish();
    loop {
        p.flush(false);
        p.reap();
        let now = Instant::now();
        if now >= deadline || hpcap::util::stop_requested().is_some() {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

fn run(args: &Args) -> Result<serde_json::Value> {
    let (format_code, stream_fmt) = match args.format {
        Format::Pcapng => (abi::FORMAT_PCAPNG, StreamFormat::Pcapng),
        Format::Raw => (
            abi::FORMAT_RAW,
            StreamFormat::Raw {
                block_headers: true,
            },
        ),
    };
    let layout = Layout::new(args.block_size, args.buffer_size, stream_fmt).map_err(|e| {
        anyhow::anyhow!(
            "bad geometry ({e:?}): --block-size must be a power of two in 64K..256M and divide \
             --buffer-size"
        )
    })?;
    if args.snaplen != 0 && args.snaplen < 14 {
        bail!("--snaplen must be 0 or at least 14");
    }
    let synthetic = args
        .synthetic
        .as_deref()
        .map(|s| parse_spec(s, args.count))
        .transpose()?;
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
            format: format_code,
            snaplen: args.snaplen,
            name: args.name.clone(),
        },
    )
    .with_context(|| format!("creating the software source {}", args.path.display()))?;
    let geo = geometry_of(&shm.control().info)?;
    let mut p = Producer {
        shm,
        geo,
        writer: hpcap::core::block::BlockWriter::new(layout, 0)
            .map_err(|e| anyhow::anyhow!("block writer: {e:?}"))?,
        format: args.format,
        on_full: args.on_full,
        stats: CaptureStats::ZERO,
        batch: None,
        batch_records: 0,
        filter: Vec::new(),
        filter_version: 0,
        snaplen: args.snaplen,
        last_reap: Instant::now(),
        block_opened: None,
        flush_after: Duration::from_millis(args.flush_ms),
        produced: 0,
    };
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
                p.push(pk.ts_ns + shift, pk.orig_len, pk.data)?;
                n += 1;
                if n.is_multiple_of(4096) {
                    p.flush(false);
                }
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
                p.push(ts, len as u32, &frame[..len])?;
                n += 1;
                if n.is_multiple_of(4096) {
                    p.flush(false);
                }
            }
        }
    }
    p.flush(true);
    p.publish();
    p.shm.control().set_state(STATE_EOS);
    let secs = t0.elapsed().as_secs_f64();
    let s = p.stats;
    eprintln!(
        "hpcap-sim: {} frames seen, {} stored, {} dropped (no space {}), {} filtered in {:.2} s ({:.2} Mpps)",
        s.frames_seen,
        s.frames_stored,
        s.dropped_total(),
        s.dropped_no_space,
        s.filtered,
        secs,
        s.frames_seen as f64 / secs.max(1e-9) / 1e6
    );
    Ok(serde_json::json!({
        "frames_seen": s.frames_seen,
        "bytes_seen": s.bytes_seen,
        "frames_stored": s.frames_stored,
        "bytes_stored": s.bytes_stored,
        "dropped_no_space": s.dropped_no_space,
        "dropped_writer": s.dropped_writer,
        "filtered": s.filtered,
        "truncated_by_snaplen": s.truncated_by_snaplen,
        "commit": p.shm.control().publish.committed(),
        "seconds": secs,
    }))
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
            if args.unlink {
                let _ = std::fs::remove_file(&args.path);
            }
        }
        Err(e) => {
            eprintln!("hpcap-sim: error: {e:#}");
            std::process::exit(1);
        }
    }
}
